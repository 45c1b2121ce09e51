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
    /// Retried with its finish time cleared.
    cleared: bool,
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

    /// `window_read_sql` as `plan` says (a [`Plan::Read`]), then its `lookup` of what
    /// [`WindowTally::left_flight`] names: what `window_counts` reads in one snapshot.
    fn read(&self, tally: &WindowTally, plan: &Plan) -> Vec<ReadRow<'_>> {
        let Plan::Read { from, .. } = plan else {
            return Vec::new();
        };
        fn row(r: &Row, part: Part) -> ReadRow<'_> {
            ReadRow {
                id: &r.id,
                at: Some(r.at()),
                class: r.class(),
                part,
            }
        }
        let slice = self.rows.iter().filter(|r| r.at() >= *from);
        let flying = self.rows.iter().filter(|r| r.class() == Class::InFlight);
        let mut rows: Vec<ReadRow<'_>> = slice
            .map(|r| row(r, Part::Slice))
            .chain(flying.map(|r| ReadRow {
                at: None,
                class: Class::InFlight,
                ..row(r, Part::InFlight)
            }))
            .collect();
        let left = tally.left_flight(&rows);
        rows.extend(
            self.rows
                .iter()
                .filter(|r| left.iter().any(|id| **id == *r.id))
                .map(|r| row(r, Part::WasInFlight)),
        );
        rows
    }
}

fn t0() -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
}

const WINDOW: TimeDelta = TimeDelta::seconds(300);

/// Succeeded, failed, unknown status, in flight.
type Counts = (u64, u64, u64, u64);

/// One poll at `now`, as `window_counts` makes it: the difference a full read found, if any.
fn poll_drift(tally: &mut WindowTally, db: &Db, now: Timestamp) -> Option<[i64; 3]> {
    let (since, until) = (now - WINDOW, now + TimeDelta::milliseconds(1));
    let plan = tally.plan(since, until);
    let rows = db.read(tally, &plan);
    tally.apply(&plan, since, until, &rows)
}

/// One poll: the tally's counts, and the plain count's.
fn poll(tally: &mut WindowTally, db: &Db, now: Timestamp) -> (Counts, Counts) {
    let drift = poll_drift(tally, db, now);
    assert_eq!(drift, None, "a full read found the tally off");
    (
        tally.counts(),
        db.plain(now - WINDOW, now + TimeDelta::milliseconds(1)),
    )
}

/// What FlowEngine (and flowfail's retries) do to a task.
#[derive(Debug, Clone)]
enum Op {
    Create,
    Start(usize),
    /// Finished (ok or not), its finish time up to 59 s in the past when it commits, or up
    /// to 20 s in the future (a clock ahead of flowfail's).
    Finish(usize, bool, i8),
    /// Failed without a finish time: it counts by its creation time.
    FailNoTime(usize),
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
        3 => (any::<usize>(), any::<bool>(), -20i8..60).prop_map(|(i, ok, d)| Op::Finish(i, ok, d)),
        1 => any::<usize>().prop_map(Op::FinishOdd),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, keep)| Op::Retry(i, keep)),
        1 => any::<usize>().prop_map(Op::GiveUp),
        1 => (any::<usize>(), -20i8..60).prop_map(|(i, d)| Op::Refail(i, d)),
        1 => any::<usize>().prop_map(Op::FailNoTime),
        3 => (1u8..40).prop_map(Op::Advance),
        3 => Just(Op::Poll),
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
                cleared: false,
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
        Op::FailNoTime(i) => {
            // Not after a retry that cleared the finish time: a task retried so and failed
            // again without a time between two polls moves to its creation time unseen (a
            // documented limit).
            if let Some(k) = pick(db, i, St::Running).filter(|k| !db.rows[*k].cleared) {
                db.rows[k].st = St::Failed;
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
                    db.rows[k].cleared = true;
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
    /// FlowEngine does to tasks (finishes committed up to 59 s late or stamped ahead, failures
    /// without a finish time, retries that keep or clear the finish time, retries that fail
    /// again, give-ups, unknown statuses), polls at random gaps (longer than the lookback and
    /// than the window too), full reads included.
    #[test]
    fn the_tally_equals_the_plain_count_at_every_poll(ops in prop::collection::vec(op(), 1..400)) {
        let mut db = Db::default();
        let mut now = t0();
        let mut tally = WindowTally::above(0);
        for op in &ops {
            run(&mut db, &mut now, op);
            if matches!(op, Op::Poll) {
                let (kept, plain) = poll(&mut tally, &db, now);
                prop_assert_eq!(kept, plain, "after {:?} at {}", op, now);
            }
        }
    }
}

fn from(plan: &Plan) -> Option<(Timestamp, bool)> {
    match plan {
        Plan::Read { from, full, .. } => Some((*from, *full)),
        Plan::Count => None,
    }
}

#[test]
fn reads_after_the_first_cover_the_lookback_not_the_window() {
    let mut tally = WindowTally::above(0);
    let now = t0();
    let (since, until) = (now - WINDOW, now);
    assert_eq!(from(&tally.plan(since, until)), Some((since, true)));
    tally.apply(&tally.plan(since, until), since, until, &[]);
    let later = now + TimeDelta::seconds(5);
    assert_eq!(
        from(&tally.plan(later - WINDOW, later)),
        Some((now - LOOKBACK, false))
    );
    // Another window, or one that moved back, is read whole.
    assert_eq!(
        from(&tally.plan(later - WINDOW * 2, later)),
        Some((later - WINDOW * 2, true))
    );
    let back = since - TimeDelta::seconds(1);
    assert_eq!(
        from(&tally.plan(back, until - TimeDelta::seconds(1))),
        Some((back, true))
    );
}

#[test]
fn a_small_window_is_counted_in_full_and_a_large_one_tallied() {
    let mut tally = WindowTally::above(100);
    let now = t0();
    let (since, until) = (now - WINDOW, now);
    assert_eq!(tally.plan(since, until), Plan::Count);
    tally.counted(99);
    assert_eq!(tally.plan(since, until), Plan::Count);
    tally.counted(100);
    assert_eq!(from(&tally.plan(since, until)), Some((since, true)));
}

#[test]
fn a_finish_committed_later_than_the_lookback_waits_for_the_full_read() {
    let mut db = Db::default();
    let now = t0();
    let mut tally = WindowTally::above(0);
    poll(&mut tally, &db, now);
    // A failure committed 61 s after the time it writes.
    db.rows.push(Row {
        id: Arc::from("late"),
        created: now - TimeDelta::seconds(100),
        fin: Some(now - TimeDelta::seconds(61)),
        st: St::Failed,
        cleared: false,
    });
    let mut at = now;
    let mut found = None;
    for k in 0..=REBUILD_EVERY {
        at += TimeDelta::milliseconds(1);
        if let Some(d) = poll_drift(&mut tally, &db, at) {
            found = Some((k, d));
        }
        let missed = tally.counts().1 == 0;
        assert_eq!(missed, found.is_none(), "poll {k}");
    }
    assert_eq!(found, Some((REBUILD_EVERY, [0, 1, 0])));
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
            cleared: false,
        });
    }
    let mut tally = WindowTally::above(0);
    poll(&mut tally, &db, now);
    // An operator rewrites a failure as a success in place: no read of the slice or of the
    // tasks in flight sees it.
    db.rows[0].st = St::Succeeded;
    let mut at = now;
    let mut found = None;
    for _ in 0..=REBUILD_EVERY {
        at += TimeDelta::seconds(1);
        if let Some(d) = poll_drift(&mut tally, &db, at) {
            found = Some(d);
            let (since, until) = (at - WINDOW, at + TimeDelta::milliseconds(1));
            assert_eq!(tally.counts(), db.plain(since, until));
        }
    }
    assert_eq!(found, Some([1, -1, 0]));
    assert_eq!(tally.len(), 10);
}
