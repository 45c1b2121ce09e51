//! The alert window counted incrementally: the supervisor asks for the same sliding window
//! every poll, and with 100,000 failures inside it a plain count reads 100,000 index entries
//! to learn what a few hundred rows changed. Once the window holds [`TALLY_ABOVE`] finished
//! rows, [`WindowTally`] keeps them by id and brings them up to date from reads in one
//! read-only snapshot, served by the indexes the plain count uses and the primary key:
//!
//! - the rows whose window time (`coalesce(finished_at, created_at)`) is
//!   `previous end − LOOKBACK` or later: tasks that finished since the last poll, with a
//!   lookback for a finish committed a little after the time it writes (and rows whose time
//!   lies past the window's end, from a clock ahead of flowfail's: they leave the tally until
//!   the window reaches them);
//! - the ids of every task in flight: a task retried inside the window (`failed` →
//!   `pending`, its finish time kept or cleared) stops counting at once;
//! - by id, the tasks that were in flight at the last read and are in neither (a second
//!   statement, only when there are such tasks): one that failed without a finish time counts
//!   by its creation time, which may be long before.
//!
//! Rows whose window time fell behind `since` are dropped. A smaller window is counted in full
//! every poll (a few milliseconds). Every [`REBUILD_EVERY`] reads the window is read whole
//! again and compared with the tally; a difference is logged and corrected. What the reads
//! cannot see in between, and the full read corrects: a finished row rewritten to another
//! finished status with its window time unchanged (`failed` → `failed_final` counts the same),
//! a row deleted inside the window, a finish committed more than [`LOOKBACK`] after the time
//! it writes (on FlowEngine's clock against flowfail's: a clock behind shortens the
//! lookback), a row inserted already finished with an older time, and a task retried with its
//! finish time cleared that fails again without one before the next poll.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::TimeDelta;
use flowfail_core::Timestamp;

/// How far before the previous read's end the next one starts.
pub(crate) const LOOKBACK: TimeDelta = TimeDelta::seconds(60);
/// Incremental reads between two full reads of the window.
pub(crate) const REBUILD_EVERY: u32 = 60;

/// What a row counts as in the window (the SQL's `class` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    InFlight,
    Succeeded,
    Failed,
    Unknown,
}

impl Class {
    pub(crate) fn from_sql(v: i16) -> Class {
        match v {
            1 => Class::Succeeded,
            2 => Class::Failed,
            3 => Class::Unknown,
            _ => Class::InFlight,
        }
    }

    fn slot(self) -> Option<usize> {
        match self {
            Class::InFlight => None,
            Class::Succeeded => Some(0),
            Class::Failed => Some(1),
            Class::Unknown => Some(2),
        }
    }
}

/// Which part of a read a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// A row whose window time is the read's `from` or later.
    Slice,
    /// A task in flight now (no time).
    InFlight,
    /// A task that was in flight at the last read, wherever its time is now: one that
    /// finished without a finish time counts by its creation time, which may be long before.
    WasInFlight,
}

impl Part {
    pub(crate) fn from_sql(v: i16) -> Part {
        match v {
            1 => Part::InFlight,
            2 => Part::WasInFlight,
            _ => Part::Slice,
        }
    }
}

/// One row of a read.
#[derive(Debug, Clone)]
pub(crate) struct ReadRow<'a> {
    pub(crate) id: &'a str,
    pub(crate) at: Option<Timestamp>,
    pub(crate) class: Class,
    pub(crate) part: Part,
}

/// What the next poll of a window reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A window of fewer finished rows than the tally is kept for: counted in full (the
    /// plain count), no tally kept.
    Count,
    /// The rows whose window time is `from` or later and the tasks in flight; then, by id,
    /// the tasks that were in flight at the last read and are in neither
    /// ([`WindowTally::left_flight`]).
    Read {
        from: Timestamp,
        /// The whole window: rebuilt from the read.
        full: bool,
        /// For a full read of a window already tallied: where an incremental read would have
        /// started, to compare the tally kept with the one read.
        check_from: Option<Timestamp>,
    },
}

/// The finished rows of one sliding window, by id.
#[derive(Debug)]
pub(crate) struct WindowTally {
    /// Windows of fewer finished rows than this are counted in full every poll.
    above: u64,
    /// The finished rows of the window the last poll saw.
    last_total: u64,
    /// The window read last, if a tally is kept.
    last: Option<(Timestamp, Timestamp)>,
    rows: HashMap<Arc<str>, (Timestamp, Class)>,
    by_time: BTreeSet<(Timestamp, Arc<str>)>,
    /// The tasks in flight at the last read.
    flying: Vec<String>,
    /// Succeeded, failed, unknown status.
    tally: [u64; 3],
    in_flight: u64,
    reads: u32,
}

/// Windows of fewer finished rows than this are counted in full every poll (a few
/// milliseconds at most); larger ones are tallied.
pub(crate) const TALLY_ABOVE: u64 = 20_000;

impl Default for WindowTally {
    fn default() -> Self {
        WindowTally::above(TALLY_ABOVE)
    }
}

impl WindowTally {
    /// A tally kept for windows of at least `rows` finished rows.
    pub(crate) fn above(rows: u64) -> Self {
        WindowTally {
            above: rows,
            last_total: 0,
            last: None,
            rows: HashMap::new(),
            by_time: BTreeSet::new(),
            flying: Vec::new(),
            tally: [0; 3],
            in_flight: 0,
            reads: 0,
        }
    }

    /// What to read for the window `[since, until)`.
    pub(crate) fn plan(&self, since: Timestamp, until: Timestamp) -> Plan {
        if self.last_total < self.above {
            return Plan::Count;
        }
        let full = Plan::Read {
            from: since,
            full: true,
            check_from: None,
        };
        let Some((s, u)) = self.last else {
            return full;
        };
        // The same window, slid forward by less than its length.
        let slid = until - since == u - s && since >= s && until >= u && until - u < until - since;
        if !slid {
            return full;
        }
        let from = (u - LOOKBACK).max(since);
        Plan::Read {
            from: if self.reads >= REBUILD_EVERY {
                since
            } else {
                from
            },
            full: self.reads >= REBUILD_EVERY,
            check_from: (self.reads >= REBUILD_EVERY).then_some(from),
        }
    }

    /// The tasks in flight at the last read that `rows` (the first read of a poll) do not
    /// show: they finished, and a finish without a finish time counts by the creation time,
    /// which the slice may not reach. They are read again by id.
    pub(crate) fn left_flight(&self, rows: &[ReadRow<'_>]) -> Vec<String> {
        if self.flying.is_empty() {
            return Vec::new();
        }
        let seen: std::collections::HashSet<&str> = rows.iter().map(|r| r.id).collect();
        self.flying
            .iter()
            .filter(|id| !seen.contains(id.as_str()))
            .cloned()
            .collect()
    }

    /// Records a poll answered by the plain count: no tally is kept for it.
    pub(crate) fn counted(&mut self, finished: u64) {
        self.clear();
        self.last = None;
        self.flying.clear();
        self.last_total = finished;
    }

    /// Applies a read made as `plan` said (a [`Plan::Read`]). For a full read of a window
    /// already tallied, returns how the tally kept differs from the one read (succeeded,
    /// failed, unknown; read minus kept) when it does.
    pub(crate) fn apply(
        &mut self,
        plan: &Plan,
        since: Timestamp,
        until: Timestamp,
        rows: &[ReadRow<'_>],
    ) -> Option<[i64; 3]> {
        let Plan::Read {
            full, check_from, ..
        } = plan
        else {
            return None;
        };
        let mut drift = None;
        if let Some(from) = *check_from {
            // What the incremental read would have made of the tally kept, then the tally
            // the full read makes.
            // A task in flight at the last read would have been looked up by id had the
            // incremental read not shown it.
            let was: std::collections::HashSet<String> = self.flying.iter().cloned().collect();
            let slice = rows.iter().filter(|r| {
                r.part != Part::Slice || r.at.is_some_and(|at| at >= from) || was.contains(r.id)
            });
            self.update(since, until, slice);
            let kept = self.tally;
            self.clear();
            self.update(since, until, rows.iter());
            let d: [i64; 3] = std::array::from_fn(|i| self.tally[i] as i64 - kept[i] as i64);
            drift = d.iter().any(|v| *v != 0).then_some(d);
        } else {
            if *full {
                self.clear();
            }
            self.update(since, until, rows.iter());
        }
        self.reads = if *full { 0 } else { self.reads + 1 };
        self.last_total = self.rows.len() as u64;
        drift
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.by_time.clear();
        self.tally = [0; 3];
    }

    fn update<'r>(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        rows: impl Iterator<Item = &'r ReadRow<'r>>,
    ) {
        self.in_flight = 0;
        self.flying.clear();
        for r in rows {
            let at = match (r.part, r.at) {
                (Part::InFlight, _) | (_, None) => {
                    if r.part == Part::InFlight {
                        self.in_flight += 1;
                        self.flying.push(r.id.to_owned());
                    }
                    self.remove(r.id);
                    continue;
                }
                (_, Some(at)) => at,
            };
            let counts = at >= since && at < until && r.class != Class::InFlight;
            // Most rows of a read are the lookback's, already tallied as they are.
            if counts && self.rows.get(r.id) == Some(&(at, r.class)) {
                continue;
            }
            self.remove(r.id);
            if counts {
                self.insert(Arc::from(r.id), at, r.class);
            }
        }
        while let Some((at, id)) = self.by_time.first().cloned() {
            if at >= since {
                break;
            }
            self.remove(&id);
        }
        self.last = Some((since, until));
    }

    /// Succeeded, failed, unknown status, in flight.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        (self.tally[0], self.tally[1], self.tally[2], self.in_flight)
    }

    /// Finished rows held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    fn insert(&mut self, id: Arc<str>, at: Timestamp, class: Class) {
        if let Some(slot) = class.slot() {
            self.tally[slot] += 1;
            self.by_time.insert((at, Arc::clone(&id)));
            self.rows.insert(id, (at, class));
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some((key, (at, class))) = self.rows.remove_entry(id) {
            if let Some(slot) = class.slot() {
                self.tally[slot] -= 1;
            }
            self.by_time.remove(&(at, key));
        }
    }
}

#[cfg(test)]
mod tests;
