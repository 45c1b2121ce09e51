//! Tasks: the validated task id, flow types, statuses, status counts and log events.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Timestamp, describe_untrusted};
use crate::error::{Error, Result};

/// The longest task id accepted.
pub const TASK_ID_MAX_LEN: usize = 64;

/// A FlowEngine task id, validated against `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`.
///
/// This is the only way an id reaches an S3 key, a SQL parameter, a pager payload or a log line:
/// ids read from logs, databases or users are parsed into a `TaskId` first, and anything that does
/// not match is rejected (path separators, `%2F`, quotes, NUL, newlines, ANSI escapes, the empty
/// string, and anything longer than 64 bytes).
///
/// ```
/// use flowfail_core::TaskId;
/// assert!(TaskId::parse("t-00042").is_ok());
/// assert!(TaskId::parse("../etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// Validates `s` as a task id.
    pub fn parse(s: &str) -> Result<Self> {
        if Self::is_valid(s) {
            Ok(TaskId(s.to_owned()))
        } else {
            Err(Error::invalid_input(format!(
                "invalid task id {}: must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$",
                describe_untrusted(s)
            )))
        }
    }

    /// Whether `s` is a valid task id.
    pub fn is_valid(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= TASK_ID_MAX_LEN
            && b[0].is_ascii_alphanumeric()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    }

    /// The id as a string slice (always ASCII, safe for keys, parameters and logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskId::parse(s)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The flow a task runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlowType {
    /// Planning.
    Plan,
    /// Implementation.
    Impl,
    /// Review.
    Review,
    /// Documentation.
    Docs,
}

/// A task's status in the TaskDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting to run (including a scheduled retry).
    Pending,
    /// Running now.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error; may be retried.
    Failed,
    /// Failed for good: flowfail (or a human) decided it will not be retried.
    FailedFinal,
}

impl TaskStatus {
    /// Whether the task has finished (counts towards the failure rate).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::FailedFinal
        )
    }

    /// Whether the task finished with a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::FailedFinal)
    }
}

/// A task as the TaskDB reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Task {
    /// The task id.
    pub task_id: TaskId,
    /// The flow it runs through.
    pub flow_type: FlowType,
    /// Its status.
    pub status: TaskStatus,
    /// The error message of its last failure, if any.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The HTTP status of its last failure, when the failure was an HTTP response.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last finished (defaults to `created_at` when the store does not know).
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// How many retries it has had.
    #[serde(default)]
    pub attempts: u32,
}

impl Task {
    /// A task with the given id, flow, status and creation time; no error, no attempts.
    pub fn new(
        task_id: TaskId,
        flow_type: FlowType,
        status: TaskStatus,
        created_at: Timestamp,
    ) -> Self {
        Task {
            task_id,
            flow_type,
            status,
            error_message: None,
            http_status: None,
            created_at,
            finished_at: None,
            attempts: 0,
        }
    }

    /// Sets the failure message and HTTP status.
    pub fn with_error(mut self, message: impl Into<String>, http_status: Option<u16>) -> Self {
        self.error_message = Some(message.into());
        self.http_status = http_status;
        self
    }

    /// Sets the number of retries already made.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// When the task finished, or was created when that is unknown.
    pub fn finished_or_created(&self) -> Timestamp {
        self.finished_at.unwrap_or(self.created_at)
    }
}

/// Counts of finished tasks in a window, as the failure-rate alert sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusCounts {
    /// Tasks that succeeded in the window.
    pub succeeded: u64,
    /// Tasks that failed in the window (retryable or final).
    pub failed: u64,
    /// Tasks running or pending now.
    pub in_flight: u64,
    /// Tasks that finished in the window with a status the store does not read (in no count
    /// above, nor in the failure rate): a data gap.
    #[serde(default)]
    pub unknown_status: u64,
}

impl StatusCounts {
    /// Counts with the given numbers of succeeded and failed tasks.
    pub fn new(succeeded: u64, failed: u64) -> Self {
        StatusCounts {
            succeeded,
            failed,
            in_flight: 0,
            unknown_status: 0,
        }
    }

    /// Finished tasks: succeeded + failed.
    pub fn finished(&self) -> u64 {
        self.succeeded.saturating_add(self.failed)
    }

    /// Failure rate among finished tasks (0 when none finished).
    pub fn failure_rate(&self) -> f64 {
        let n = self.finished();
        if n == 0 {
            0.0
        } else {
            self.failed as f64 / n as f64
        }
    }
}

/// One error log event (a CloudWatch Logs event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogEvent {
    /// When it was logged.
    pub timestamp: Timestamp,
    /// The raw message (outside data: never used as a key or a target).
    pub message: String,
    /// The task id found in the message, if a valid one was found.
    #[serde(default)]
    pub task_id: Option<TaskId>,
}

impl LogEvent {
    /// An event; the task id is extracted from the message with [`extract_task_id`].
    pub fn new(timestamp: Timestamp, message: impl Into<String>) -> Self {
        let message = message.into();
        let task_id = extract_task_id(&message);
        LogEvent {
            timestamp,
            message,
            task_id,
        }
    }
}

/// Finds a FlowEngine task id (`t-<digits>` style, or `task_id=...`/`task ...` forms) in a log
/// message. Returns only ids that pass [`TaskId`] validation.
pub fn extract_task_id(message: &str) -> Option<TaskId> {
    // Explicit `task_id=X`, `task_id: X`, `"task_id":"X"` forms first.
    for marker in ["task_id", "task-id", "taskId"] {
        if let Some(pos) = message.find(marker) {
            let rest = &message[pos + marker.len()..];
            let rest = rest.trim_start_matches(['"', '\'', ' ', '=', ':']);
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            if let Ok(id) = TaskId::parse(&rest[..end]) {
                return Some(id);
            }
        }
    }
    // Then a FlowEngine-style `t-123` token.
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .find(|tok| {
            tok.len() > 2 && tok.starts_with("t-") && tok[2..].bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|tok| TaskId::parse(tok).ok())
}
