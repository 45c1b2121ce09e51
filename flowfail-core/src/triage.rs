//! The runbook's triage reads, as values: the alert over the last window and the most recent
//! failed tasks, classified; the error logs of the window, classified. `flowfail triage` only
//! prints these; anyone holding a [`TaskStore`] or a [`LogSource`] can ask the same.

use std::collections::BTreeMap;

use crate::classify::{Classification, RuleSet};
use crate::decide::alert;
use crate::detect::AlertState;
use crate::error::Result;
use crate::model::{LogEvent, Task, Timestamp};
use crate::policy::Policy;
use crate::ports::{LogQuery, LogSource, TaskStore};

/// The TaskDB's part of triage.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskTriage {
    /// The alert over the policy's window ending now.
    pub alert: AlertState,
    /// The most recent failed tasks (at most the limit asked for), each with its class.
    pub failed: Vec<(Task, Classification)>,
    /// How many of those failed tasks fall in each failure kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// Reads the alert's counts over the policy's window ending at `now` and the `limit` most
/// recent failed tasks, and classifies them with `rules`.
pub async fn tasks(
    store: &dyn TaskStore,
    rules: &RuleSet,
    policy: &Policy,
    now: Timestamp,
    limit: usize,
) -> Result<TaskTriage> {
    let window = chrono::TimeDelta::seconds(policy.alert_window_s as i64);
    let counts = store.counts(now - window, now).await?;
    let recent = store.recent_failed(limit).await?;
    let alert = alert(&counts, false, policy);
    let mut by_kind = BTreeMap::new();
    let failed = recent
        .into_iter()
        .map(|t| {
            let c = rules.classify(t.error_message.as_deref().unwrap_or(""), t.http_status);
            *by_kind.entry(c.kind.as_str().to_owned()).or_insert(0) += 1;
            (t, c)
        })
        .collect();
    Ok(TaskTriage {
        alert,
        failed,
        by_kind,
    })
}

/// The error logs' part of triage.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LogTriage {
    /// How many error events the window holds (as read).
    pub events: usize,
    /// Whether the source stopped before the end of the window.
    pub truncated: bool,
    /// Events per failure kind.
    pub by_kind: BTreeMap<String, u64>,
    /// The first events read (at most the limit asked for), each with its class.
    pub recent: Vec<(LogEvent, Classification)>,
}

/// Reads the error events of the policy's window ending at `now` and classifies them with
/// `rules`; keeps the first `limit` of them.
pub async fn logs(
    source: &dyn LogSource,
    rules: &RuleSet,
    policy: &Policy,
    now: Timestamp,
    limit: usize,
) -> Result<LogTriage> {
    let window = chrono::TimeDelta::seconds(policy.alert_window_s as i64);
    let q = LogQuery::errors(now - window, now);
    let batch = source.errors(&q).await?;
    let mut by_kind = BTreeMap::new();
    let mut recent = Vec::new();
    // A store that ignores part of the filter (a local emulator and its OR) returns more.
    let matching: Vec<_> = batch
        .events
        .into_iter()
        .filter(|e| q.matches(&e.message))
        .collect();
    let events = matching.len();
    for e in matching {
        let c = rules.classify(&e.message, None);
        *by_kind.entry(c.kind.as_str().to_owned()).or_insert(0) += 1;
        if recent.len() < limit {
            recent.push((e, c));
        }
    }
    Ok(LogTriage {
        events,
        truncated: batch.truncated,
        by_kind,
        recent,
    })
}
