//! The alert window counted incrementally: the supervisor asks for the same sliding window
//! every poll, and with 100,000 failures inside it a plain count reads 100,000 index entries
//! (16 ms) to learn what a few hundred rows changed. [`WindowTally`] keeps the window's
//! finished rows by id and is brought up to date from two reads in one statement (one
//! snapshot), both served by the indexes the plain count uses:
//!
//! - the rows whose window time (`coalesce(finished_at, created_at)`) is
//!   `previous until − LOOKBACK` or later: tasks that finished since the last poll, with a
//!   lookback for transactions that commit a finish time a little in the past (and rows
//!   whose time lies past the window's end, from a clock ahead of flowfail's: they leave the
//!   tally until the window reaches them);
//! - the ids of every task in flight: a task retried inside the window (`failed` → `pending`,
//!   its finish time unchanged or cleared) stops counting at once.
//!
//! Rows whose window time fell behind `since` are dropped. Every [`REBUILD_EVERY`] reads the
//! window is read whole again and compared with the tally; a difference is logged. What it
//! cannot see between two full reads is a change FlowEngine does not make: a finished row
//! rewritten to another finished status with its finish time unchanged, a row deleted inside
//! the window, a finish committed more than [`LOOKBACK`] after its finish time.

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

/// One row of a read: a row of the slice with its window time and class, or (no time) a task
/// in flight.
#[derive(Debug, Clone)]
pub(crate) struct ReadRow<'a> {
    pub(crate) id: &'a str,
    pub(crate) at: Option<Timestamp>,
    pub(crate) class: Class,
}

/// What the next read of a window must cover: the rows whose window time is `from` or later,
/// and the tasks in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) from: Timestamp,
    /// The whole window: rebuilt from the read.
    pub(crate) full: bool,
    /// For a full read of a window already tallied: where an incremental read would have
    /// started, to compare the tally kept with the one read.
    check_from: Option<Timestamp>,
}

/// The finished rows of one sliding window, by id.
#[derive(Debug, Default, Clone)]
pub(crate) struct WindowTally {
    /// The window read last, if any.
    last: Option<(Timestamp, Timestamp)>,
    rows: HashMap<Arc<str>, (Timestamp, Class)>,
    by_time: BTreeSet<(Timestamp, Arc<str>)>,
    /// Succeeded, failed, unknown status.
    tally: [u64; 3],
    in_flight: u64,
    reads: u32,
}

impl WindowTally {
    /// What to read for the window `[since, until)`.
    pub(crate) fn plan(&self, since: Timestamp, until: Timestamp) -> Plan {
        let full = Plan {
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
        if self.reads >= REBUILD_EVERY {
            return Plan {
                check_from: Some(from),
                ..full
            };
        }
        Plan {
            from,
            full: false,
            check_from: None,
        }
    }

    /// Applies a read made as `plan` said. For a full read of a window already tallied,
    /// returns how the tally kept differs from the one read (succeeded, failed, unknown; read
    /// minus kept) when it does.
    pub(crate) fn apply(
        &mut self,
        plan: Plan,
        since: Timestamp,
        until: Timestamp,
        rows: &[ReadRow<'_>],
    ) -> Option<[i64; 3]> {
        let drift = plan.check_from.and_then(|from| {
            let mut kept = self.clone();
            let slice = rows.iter().filter(|r| r.at.is_none_or(|at| at >= from));
            kept.update(since, until, slice);
            self.clear();
            self.update(since, until, rows.iter());
            let d: [i64; 3] = std::array::from_fn(|i| self.tally[i] as i64 - kept.tally[i] as i64);
            d.iter().any(|v| *v != 0).then_some(d)
        });
        if plan.check_from.is_none() {
            if plan.full {
                self.clear();
            }
            self.update(since, until, rows.iter());
        }
        self.reads = if plan.full { 0 } else { self.reads + 1 };
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
        for r in rows {
            let Some(at) = r.at else {
                self.in_flight += 1;
                self.remove(r.id);
                continue;
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
