use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Pending,
    Running,
    Succeeded,
    Failed,
    FailedFinal,
    /// A status flowfail does not know.
    Odd,
}

#[derive(Debug, Clone)]
struct Row {
    id: Arc<str>,
    created: Timestamp,
    fin: Option<Timestamp>,
    st: St,
}

impl Row {
    fn at(&self) -> Timestamp {
        self.fin.unwrap_or(self.created)
    }
    fn class(&self) -> Class {
        match self.st {
            St::Pending | St::Running => Class::InFlight,
            St::Succeeded => Class::Succeeded,
            St::Failed | St::FailedFinal => Class::Failed,
            St::Odd => Class::Unknown,
        }
    }
}

/// The TaskDB as the two SQL statements see it.
#[derive(Default)]
struct Db {
    rows: Vec<Row>,
}

impl Db {
    /// `counts_sql`: succeeded, failed, unknown status in the window; in flight anywhere.
    fn plain(&self, since: Timestamp, until: Timestamp) -> (u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0);
        for r in &self.rows {
            if r.class() == Class::InFlight {
                c.3 += 1;
            }
            if r.at() < since || r.at() >= until {
                continue;
            }
            match r.class() {
                Class::Succeeded => c.0 += 1,
                Class::Failed => c.1 += 1,
                Class::Unknown => c.2 += 1,
                Class::InFlight => {}
            }
        }
        c
    }

    /// `window_read_sql` from `from` on.
    fn read(&self, from: Timestamp) -> Vec<ReadRow<'_>> {
        let slice = self.rows.iter().filter(|r| r.at() >= from);
        let flying = self.rows.iter().filter(|r| r.class() == Class::InFlight);
        slice
            .map(|r| ReadRow {
                id: &r.id,
                at: Some(r.at()),
                class: r.class(),
            })
            .chain(flying.map(|r| ReadRow {
                id: &r.id,
                at: None,
                class: Class::InFlight,
            }))
            .collect()
    }
}

fn t0() -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
}

const WINDOW: TimeDelta = TimeDelta::seconds(300);

/// One poll: the tally's counts, and the plain count's.
fn poll(
    tally: &mut WindowTally,
    db: &Db,
    now: Timestamp,
) -> ((u64, u64, u64, u64), (u64, u64, u64, u64)) {
    let (since, until) = (now - WINDOW, now + TimeDelta::milliseconds(1));
    let plan = tally.plan(since, until);
    let drift = tally.apply(plan, since, until, &db.read(plan.from));
    assert_eq!(drift, None, "a full read found the tally off");
    (tally.counts(), db.plain(since, until))
}

/// What FlowEngine (and flowfail's retries) do to a task.
#[derive(Debug, Clone)]
enum Op {
    Create,
    Start(usize),
    /// Finished (ok or not), its finish time up to 39 s in the past when it commits, or up
    /// to 20 s in the future (a clock ahead of flowfail's).
    Finish(usize, bool, i8),
    /// An unknown status written at the finish.
    FinishOdd(usize),
    /// `failed` → `pending`, the finish time kept (flowfail's retry) or cleared.
    Retry(usize, bool),
    GiveUp(usize),
    /// Retried and failed again between two polls: a new finish time, maybe ahead.
    Refail(usize, i8),
    Advance(u8),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Create),
        3 => any::<usize>().prop_map(Op::Start),
        3 => (any::<usize>(), any::<bool>(), -20i8..40).prop_map(|(i, ok, d)| Op::Finish(i, ok, d)),
        1 => any::<usize>().prop_map(Op::FinishOdd),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, keep)| Op::Retry(i, keep)),
        1 => any::<usize>().prop_map(Op::GiveUp),
        1 => (any::<usize>(), -20i8..40).prop_map(|(i, d)| Op::Refail(i, d)),
        2 => (1u8..20).prop_map(Op::Advance),
        2 => Just(Op::Poll),
    ]
}

fn run(db: &mut Db, now: &mut Timestamp, op: &Op) {
    let pick = |db: &mut Db, i: usize, st: St| {
        let matching: Vec<usize> = (0..db.rows.len())
            .filter(|k| db.rows[*k].st == st)
            .collect();
        (!matching.is_empty()).then(|| matching[i % matching.len()])
    };
    match *op {
        Op::Create => {
            let id: Arc<str> = Arc::from(format!("t-{}", db.rows.len()));
            db.rows.push(Row {
                id,
                created: *now,
                fin: None,
                st: St::Pending,
            });
        }
        Op::Start(i) => {
            if let Some(k) = pick(db, i, St::Pending) {
                db.rows[k].st = St::Running;
            }
        }
        Op::Finish(i, ok, delay) => {
            if let Some(k) = pick(db, i, St::Running) {
                let r = &mut db.rows[k];
                r.st = if ok { St::Succeeded } else { St::Failed };
                r.fin = Some((*now - TimeDelta::seconds(delay.into())).max(r.created));
            }
        }
        Op::FinishOdd(i) => {
            if let Some(k) = pick(db, i, St::Running) {
                db.rows[k].st = St::Odd;
                db.rows[k].fin = Some(*now);
            }
        }
        Op::Retry(i, keep) => {
            if let Some(k) = pick(db, i, St::Failed) {
                db.rows[k].st = St::Pending;
                if !keep {
                    db.rows[k].fin = None;
                }
            }
        }
        Op::GiveUp(i) => {
            if let Some(k) = pick(db, i, St::Failed) {
                db.rows[k].st = St::FailedFinal;
            }
        }
        Op::Refail(i, delay) => {
            if let Some(k) = pick(db, i, St::Failed) {
                let r = &mut db.rows[k];
                r.fin = Some((*now - TimeDelta::seconds(delay.into())).max(r.created));
            }
        }
        Op::Advance(s) => *now += TimeDelta::seconds(s.into()),
        Op::Poll => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// At every poll the tally says what the plain count says, over random histories of what
    /// FlowEngine does to tasks (finishes committed late, retries that keep or clear the
    /// finish time, give-ups, unknown statuses), polls at random gaps, full reads included.
    #[test]
    fn the_tally_equals_the_plain_count_at_every_poll(ops in prop::collection::vec(op(), 1..400)) {
        let mut db = Db::default();
        let mut now = t0();
        let mut tally = WindowTally::default();
        for op in &ops {
            run(&mut db, &mut now, op);
            if matches!(op, Op::Poll | Op::Advance(_)) {
                let (kept, plain) = poll(&mut tally, &db, now);
                prop_assert_eq!(kept, plain, "after {:?} at {}", op, now);
            }
        }
    }
}

#[test]
fn reads_after_the_first_cover_the_lookback_not_the_window() {
    let mut tally = WindowTally::default();
    let now = t0();
    let (since, until) = (now - WINDOW, now);
    assert!(tally.plan(since, until).full);
    tally.apply(tally.plan(since, until), since, until, &[]);
    let later = now + TimeDelta::seconds(5);
    let plan = tally.plan(later - WINDOW, later);
    assert!(!plan.full);
    assert_eq!(plan.from, now - LOOKBACK);
    // Another window, or one that moved back, is read whole.
    assert!(tally.plan(later - WINDOW * 2, later).full);
    assert!(
        tally
            .plan(since - TimeDelta::seconds(1), until - TimeDelta::seconds(1))
            .full
    );
}

#[test]
fn a_change_the_reads_cannot_see_is_found_and_corrected_by_the_next_full_read() {
    let mut db = Db::default();
    let now = t0();
    for k in 0..10 {
        db.rows.push(Row {
            id: Arc::from(format!("t-{k}")),
            created: now - TimeDelta::seconds(100),
            fin: Some(now - TimeDelta::seconds(90)),
            st: St::Failed,
        });
    }
    let mut tally = WindowTally::default();
    poll(&mut tally, &db, now);
    // An operator rewrites a failure as a success in place: no read of the slice or of the
    // tasks in flight sees it.
    db.rows[0].st = St::Succeeded;
    let mut at = now;
    let mut found = None;
    for _ in 0..=REBUILD_EVERY {
        at += TimeDelta::seconds(1);
        let (since, until) = (at - WINDOW, at + TimeDelta::milliseconds(1));
        let plan = tally.plan(since, until);
        if let Some(d) = tally.apply(plan, since, until, &db.read(plan.from)) {
            found = Some(d);
            assert_eq!(tally.counts(), db.plain(since, until));
        }
    }
    assert_eq!(found, Some([1, -1, 0]));
    assert_eq!(tally.len(), 10);
}
