//! The Lambda side: the function's logs, read incrementally. Each pass reads only the error
//! events logged since the last read (with a minute of overlap, for events the log store
//! ingested late), keeps the alert window's events in memory (bounded), and tells apart
//! Lambda's own `Task timed out` lines and the tasks error lines name that the TaskDB does not
//! show failed: the detection gap the runbook asks to report.

use std::collections::{BTreeMap, VecDeque};

use chrono::TimeDelta;

use super::stats::PassLog;
use super::{Responder, lock};
use crate::decide::{LogsObs, Observation};
use crate::model::{TaskId, TaskStatus, Timestamp};
use crate::ports::{LogQuery, Op};

/// Events read again at each pass, for those the log store ingested after their timestamp.
const OVERLAP_S: i64 = 60;
/// At most this many events per read.
const READ_BOUND: usize = 10_000;
/// At most this many events kept for the window; the oldest go first (the counts are then
/// marked truncated).
const KEEP_BOUND: usize = 50_000;
/// What Lambda's runtime logs when it ends an invocation at its timeout.
const LAMBDA_TIMEOUT: &str = "Task timed out";
/// An error line names a task the TaskDB does not show failed only once it is this old: the
/// worker may still be writing the task's row.
const SETTLE_S: i64 = 120;

/// One error event as kept: what the window's sums need, not the whole message.
#[derive(Debug)]
struct Kept {
    at: Timestamp,
    timed_out: bool,
    task_id: Option<TaskId>,
    /// The line, sanitized and cut to 200 characters.
    line: String,
}

/// The alert window's error events read so far by this process, oldest first.
#[derive(Debug, Default)]
pub(super) struct LogWindow {
    events: VecDeque<Kept>,
    /// Where the next read starts (before the overlap, unless `resume_exact`).
    read_until: Option<Timestamp>,
    /// The last read stopped at its bound: the next one starts exactly where it stopped.
    resume_exact: bool,
    /// The newest event dropped to keep the window bounded.
    dropped_until: Option<Timestamp>,
    /// The last read stopped at its bound (the window's newest events are still to read).
    behind: bool,
}

impl LogWindow {
    /// Where the next read of the window `[since, until)` starts.
    fn next_from(&self, since: Timestamp, until: Timestamp) -> Timestamp {
        let from = match self.read_until {
            Some(r) if r > since && self.resume_exact => r,
            Some(r) if r > since => (r - TimeDelta::seconds(OVERLAP_S)).max(since),
            _ => since,
        };
        // A clock stepped back never asks for an empty or inverted window.
        from.min(until)
    }

    /// Takes in a read of `[q.start, until)`, drops what left the window (before `since`), and
    /// sums the window up.
    fn take(
        &mut self,
        batch: crate::ports::LogBatch,
        q: &LogQuery,
        since: Timestamp,
        until: Timestamp,
    ) -> LogsObs {
        // What the read covers again is replaced by it.
        while self.events.back().is_some_and(|e| e.at >= q.start) {
            self.events.pop_back();
        }
        while self.events.front().is_some_and(|e| e.at < since) {
            self.events.pop_front();
        }
        let mut newest = None;
        // An emulator may ignore part of the filter: filtered again here.
        for e in batch.events.into_iter().filter(|e| q.matches(&e.message)) {
            newest = newest.max(Some(e.timestamp));
            self.events.push_back(Kept {
                at: e.timestamp,
                timed_out: e.message.contains(LAMBDA_TIMEOUT),
                task_id: e.task_id,
                line: crate::model::sanitize(&e.message, 200),
            });
        }
        // A read cut at its bound resumes where it stopped, so nothing newer is skipped.
        self.behind = batch.truncated && newest.is_some();
        self.resume_exact = self.behind;
        self.read_until = Some(if self.behind {
            newest.unwrap_or(until)
        } else {
            until
        });
        while self.events.len() > KEEP_BOUND {
            if let Some(e) = self.events.pop_front() {
                self.dropped_until = self.dropped_until.max(Some(e.at));
            }
        }
        let mut obs = LogsObs {
            errors: self.events.len() as u64,
            truncated: self.behind || self.dropped_until.is_some_and(|d| d >= since),
            ..LogsObs::default()
        };
        for e in self.events.iter().filter(|e| e.timed_out) {
            obs.lambda_timeouts += 1;
            if obs.timeout_example.is_none() {
                obs.timeout_example = Some(e.line.clone());
            }
        }
        obs
    }

    /// The tasks error lines at least [`SETTLE_S`] old name, other than `seen`, with the
    /// newest line naming each; at most `n`.
    fn named(
        &self,
        n: usize,
        until: Timestamp,
        seen: &std::collections::BTreeSet<&TaskId>,
    ) -> BTreeMap<TaskId, String> {
        let settled = until - TimeDelta::seconds(SETTLE_S);
        let mut out = BTreeMap::new();
        for e in self.events.iter().rev().filter(|e| e.at <= settled) {
            if let Some(id) = &e.task_id
                && !seen.contains(id)
                && (out.len() < n || out.contains_key(id))
            {
                out.entry(id.clone()).or_insert_with(|| e.line.clone());
            }
        }
        out
    }
}

impl Responder {
    /// The function's error logs of the alert window `[since, until)`, read incrementally; the
    /// tasks they name that the triage did not see failed are looked up in the TaskDB (at most
    /// [`LogsObs::MAX_NAMED`]). A read that fails is a gap and the window is read whole next
    /// time.
    pub(super) async fn observe_logs(
        &self,
        obs: &mut Observation,
        since: Timestamp,
        until: Timestamp,
        log: &PassLog,
    ) {
        let from = lock(&self.inner).log_window.next_from(since, until);
        let q = LogQuery::errors(from, until).max_events(READ_BOUND);
        let batch = match self
            .read_noted(log, Op::LogsErrors, || self.ports.logs.errors(&q))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                lock(&self.inner).log_window = LogWindow::default();
                obs.gaps.push(format!("error logs: {e}"));
                return;
            }
        };
        let seen: std::collections::BTreeSet<&TaskId> = obs
            .failed
            .iter()
            .flatten()
            .map(|t| &t.task.task_id)
            .collect();
        let (mut logs, named) = {
            let mut inner = lock(&self.inner);
            let logs = inner.log_window.take(batch, &q, since, until);
            (
                logs,
                inner.log_window.named(LogsObs::MAX_NAMED, until, &seen),
            )
        };
        let unseen: Vec<TaskId> = named.keys().cloned().collect();
        if !unseen.is_empty() {
            match self
                .read_noted(log, Op::TaskGetMany, || self.ports.tasks.get_many(&unseen))
                .await
            {
                Ok(found) => {
                    let status: BTreeMap<&TaskId, TaskStatus> =
                        found.iter().map(|t| (&t.task_id, t.status)).collect();
                    for id in &unseen {
                        let st = status.get(id).copied();
                        // Failed (outside the triage's window or limit), final or succeeded:
                        // the TaskDB knows how it ended. Pending, running or absent (or a row
                        // flowfail cannot read): it does not.
                        if matches!(st, None | Some(TaskStatus::Pending | TaskStatus::Running)) {
                            let line = named.get(id).cloned().unwrap_or_default();
                            logs.not_failed.push((id.clone(), st, line));
                        }
                    }
                }
                Err(e) => obs
                    .gaps
                    .push(format!("TaskDB tasks named in error logs: {e}")),
            }
        }
        obs.logs = Some(logs);
    }
}
