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

/// The alert window's error events read so far by this process, oldest first.
#[derive(Debug, Default)]
pub(super) struct LogWindow {
    events: VecDeque<(Timestamp, String, Option<TaskId>)>,
    read_until: Option<Timestamp>,
    truncated: bool,
}

impl LogWindow {
    /// Takes in a read of `[from, until)`, drops what left the window (before `since`), and
    /// sums the window up.
    fn take(
        &mut self,
        batch: crate::ports::LogBatch,
        q: &LogQuery,
        since: Timestamp,
        until: Timestamp,
    ) -> LogsObs {
        // What the read covers again is replaced by it.
        while self.events.back().is_some_and(|e| e.0 >= q.start) {
            self.events.pop_back();
        }
        while self.events.front().is_some_and(|e| e.0 < since) {
            self.events.pop_front();
        }
        // An emulator may ignore part of the filter: filtered again here.
        for e in batch.events.into_iter().filter(|e| q.matches(&e.message)) {
            self.events.push_back((e.timestamp, e.message, e.task_id));
        }
        // A whole-window read starts the count afresh; an incremental one keeps a bound hit.
        let whole = q.start <= since;
        self.truncated = batch.truncated || (self.truncated && !whole);
        while self.events.len() > KEEP_BOUND {
            self.events.pop_front();
            self.truncated = true;
        }
        self.read_until = Some(until);
        let mut obs = LogsObs {
            errors: self.events.len() as u64,
            truncated: self.truncated,
            ..LogsObs::default()
        };
        for (_, message, _) in self.events.iter().filter(|e| e.1.contains(LAMBDA_TIMEOUT)) {
            obs.lambda_timeouts += 1;
            if obs.timeout_example.is_none() {
                obs.timeout_example = Some(crate::model::sanitize(message, 200));
            }
        }
        obs
    }

    /// The tasks error lines name, with the newest line naming each, at most `n`.
    fn named(&self, n: usize) -> BTreeMap<TaskId, String> {
        let mut out = BTreeMap::new();
        for (_, message, id) in self.events.iter().rev() {
            if let Some(id) = id
                && (out.len() < n || out.contains_key(id))
            {
                out.entry(id.clone())
                    .or_insert_with(|| crate::model::sanitize(message, 200));
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
        let from = match lock(&self.inner).log_window.read_until {
            Some(r) if r > since => (r - TimeDelta::seconds(OVERLAP_S)).max(since),
            _ => since,
        };
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
        let (mut logs, named) = {
            let mut inner = lock(&self.inner);
            let logs = inner.log_window.take(batch, &q, since, until);
            (logs, inner.log_window.named(LogsObs::MAX_NAMED))
        };
        let seen: std::collections::BTreeSet<&TaskId> = obs
            .failed
            .iter()
            .flatten()
            .map(|t| &t.task.task_id)
            .collect();
        let unseen: Vec<TaskId> = named
            .keys()
            .filter(|id| !seen.contains(id))
            .cloned()
            .collect();
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
                        // the TaskDB knows how it ended. Pending, running or absent: it does not.
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
