//! The error logs: the query and the [`LogSource`] port.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{LogEvent, Timestamp};

/// A query for error log events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogQuery {
    /// Start of the window, inclusive.
    pub start: Timestamp,
    /// End of the window, exclusive.
    pub end: Timestamp,
    /// Filter pattern (CloudWatch syntax; the runbook uses `ERROR`).
    pub pattern: String,
    /// Return at most this many events.
    pub max_events: usize,
}

/// The filter of [`LogQuery::errors`]: `ERROR` lines, or Lambda's own `Task timed out after N
/// seconds` lines (logged by the runtime when it ends an invocation, without `ERROR`).
pub const ERROR_PATTERN: &str = "?ERROR ?\"Task timed out\"";

impl LogQuery {
    /// A query for error events in `[start, end)` ([`ERROR_PATTERN`]), at most 10,000 of them.
    pub fn errors(start: Timestamp, end: Timestamp) -> Self {
        LogQuery {
            start,
            end,
            pattern: ERROR_PATTERN.into(),
            max_events: 10_000,
        }
    }

    /// Whether `message` matches the pattern, for the CloudWatch filter syntax flowfail uses:
    /// empty (every event), one term or quoted phrase (contained, case-sensitive), or terms
    /// and phrases each prefixed with `?` (any of them). A store that ignores part of a pattern
    /// (a local emulator) returns more: the caller filters again with this.
    pub fn matches(&self, message: &str) -> bool {
        let p = self.pattern.trim();
        if p.is_empty() {
            return true;
        }
        if !p.starts_with('?') {
            return message.contains(p.trim_matches('"'));
        }
        let mut terms = Vec::new();
        let mut rest = p;
        while let Some(r) = rest.trim_start().strip_prefix('?') {
            let r = r.trim_start();
            let (term, after) = match r.strip_prefix('"') {
                Some(q) => q.split_once('"').unwrap_or((q, "")),
                None => r.split_once(' ').unwrap_or((r, "")),
            };
            terms.push(term);
            rest = after;
        }
        terms.iter().any(|t| !t.is_empty() && message.contains(t))
    }
    /// Sets the bound on events returned.
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n;
        self
    }
}

/// The events a log query returned.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LogBatch {
    /// Events, oldest first.
    pub events: Vec<LogEvent>,
    /// `true` when the bound on events or pages stopped the read before the window was
    /// exhausted: the batch is a sample, not the whole window.
    pub truncated: bool,
}

impl LogBatch {
    /// A batch.
    pub fn new(events: Vec<LogEvent>, truncated: bool) -> Self {
        LogBatch { events, truncated }
    }
}

/// Error log events (CloudWatch Logs `FilterLogEvents`).
#[async_trait]
pub trait LogSource: Send + Sync + Debug + 'static {
    /// Error events matching `query.pattern` in `[query.start, query.end)`.
    ///
    /// **Behavior**
    /// 1. Events are returned oldest first, each with `timestamp` inside the window.
    /// 2. At most `query.max_events` events are returned; when more exist, `truncated` is `true`.
    /// 3. An empty window returns an empty, non-truncated batch, not an error.
    /// 4. A read that fails part-way is an error, never a partial batch reported as complete.
    /// 5. `task_id` is set only from a valid [`TaskId`](crate::model::TaskId) found in the message.
    async fn errors(&self, query: &LogQuery) -> Result<LogBatch>;
}
