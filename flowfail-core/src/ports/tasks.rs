//! The TaskDB: the fenced retry and the [`TaskStore`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{StatusCounts, Task, TaskId, TaskStatus, Timestamp};

/// A request to retry one task, fenced on its attempt count.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryRequest {
    /// The task.
    pub task_id: TaskId,
    /// The attempt count the caller read; the retry applies only if it is still this.
    pub expected_attempts: u32,
    /// Earliest time the retry may run.
    pub not_before: Timestamp,
}

impl RetryRequest {
    /// A retry of `task_id`, fenced on `expected_attempts`, runnable from `not_before`.
    pub fn new(task_id: TaskId, expected_attempts: u32, not_before: Timestamp) -> Self {
        RetryRequest {
            task_id,
            expected_attempts,
            not_before,
        }
    }
}

/// What happened to one retry request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryOutcome {
    /// Scheduled; `attempts` is the new attempt count (expected + 1).
    Scheduled {
        /// New attempt count.
        attempts: u32,
    },
    /// The attempt count was not the expected one: someone else retried first.
    Conflict {
        /// The attempt count found.
        current_attempts: u32,
    },
    /// The task is not in a retryable state (not failed, or final).
    NotRetryable {
        /// Its status.
        status: TaskStatus,
    },
    /// No such task.
    NotFound,
}

/// Failed tasks as read for triage, with the rows left out because flowfail cannot read them.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FailedRead {
    /// The failed tasks, newest first (as [`TaskStore::recent_failed`] returns them).
    pub tasks: Vec<Task>,
    /// Failed rows left out, by why (`flow type not known`, `id not a valid task id`): they
    /// count in the alert's failure rate but cannot be triaged. A data gap, never silent.
    pub unreadable: std::collections::BTreeMap<String, u64>,
}

impl FailedRead {
    /// Failed tasks, none left out.
    pub fn new(tasks: Vec<Task>) -> Self {
        FailedRead {
            tasks,
            unreadable: Default::default(),
        }
    }

    /// The same, with `n` rows left out for `why`.
    pub fn with_unreadable(mut self, why: impl Into<String>, n: u64) -> Self {
        if n > 0 {
            *self.unreadable.entry(why.into()).or_default() += n;
        }
        self
    }

    /// How many rows were left out.
    pub fn unreadable_total(&self) -> u64 {
        self.unreadable.values().sum()
    }
}

/// FlowEngine's TaskDB.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskStore: Send + Sync + Debug + 'static {
    /// The runbook's query: failed tasks, newest first
    /// (`… WHERE status='failed' ORDER BY created_at DESC LIMIT n`).
    ///
    /// **Behavior**
    /// 1. Only tasks with status [`TaskStatus::Failed`] are returned, newest `created_at` first.
    /// 2. At most `limit` tasks are returned; `limit == 0` returns none.
    /// 3. A read that fails part-way is an error, never a shorter list.
    async fn recent_failed(&self, limit: usize) -> Result<Vec<Task>>;

    /// [`recent_failed`](Self::recent_failed), saying which failed rows it left out because
    /// they cannot be read (the triage reports them as a data gap). The default leaves none
    /// out; a store over data it does not control (PostgreSQL) overrides it.
    async fn recent_failed_read(&self, limit: usize) -> Result<FailedRead> {
        Ok(FailedRead::new(self.recent_failed(limit).await?))
    }

    /// Finished tasks in `[since, until)` by outcome, and tasks in flight now.
    ///
    /// **Behavior**
    /// 1. A task counts once, by its current status, if it finished (or, when the finish time
    ///    is unknown, was created) inside the window.
    /// 2. `Failed` and `FailedFinal` both count as failed.
    async fn counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts>;

    /// [`counts`](Self::counts) of the alert window, which the supervisor reads again every
    /// poll, slid forward a little each time: a store may keep a tally of the window and read
    /// only what changed (PostgreSQL does). The answer is what `counts` would say.
    async fn window_counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts> {
        self.counts(since, until).await
    }

    /// One task.
    ///
    /// **Behavior**
    /// 1. A missing task is [`crate::ErrorKind::NotFound`].
    async fn get(&self, task_id: &TaskId) -> Result<Task>;

    /// The tasks with these ids, read in one call (the responder reads back the tasks it
    /// retried, to know whether they finished).
    ///
    /// **Behavior**
    /// 1. Each stored task among `ids` is returned once, in any order; an id the store does
    ///    not hold is left out (not an error); no other task is returned.
    /// 2. An empty `ids` returns none.
    /// 3. A read that fails part-way is an error, never a shorter list.
    ///
    /// The default calls [`TaskStore::get`] once per id; adapters answer in one query.
    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Task>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(id).await {
                Ok(t) => out.push(t),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The task's TaskObject JSON, if the store holds one.
    ///
    /// **Behavior**
    /// 1. A missing task is [`crate::ErrorKind::NotFound`]; a task without a TaskObject is `Ok(None)`.
    async fn task_object(&self, task_id: &TaskId) -> Result<Option<serde_json::Value>>;

    /// Schedules retries, each fenced on its attempt count; one outcome per request, in order.
    ///
    /// **Behavior**
    /// 1. A request applies only if the task is `Failed` and its attempt count equals
    ///    `expected_attempts`; it then becomes `Pending` with `attempts + 1`.
    /// 2. Two calls with the same request schedule it once: the second sees `Conflict`.
    /// 3. Requests are independent: one conflict does not stop the others.
    /// 4. A store error fails the whole call; outcomes already applied stay applied, and a
    ///    repeated call reports them as `Conflict` (never a second retry).
    async fn schedule_retries(&self, requests: &[RetryRequest]) -> Result<Vec<RetryOutcome>>;

    /// Marks a task failed for good (no more retries), fenced on its attempt count.
    ///
    /// **Behavior**
    /// 1. Applies only to a `Failed` task whose attempts equal `expected_attempts`; otherwise
    ///    [`crate::ErrorKind::Conflict`] (or `NotFound`).
    /// 2. Marking an already final task with the same attempts succeeds (idempotent).
    async fn mark_final(&self, task_id: &TaskId, expected_attempts: u32) -> Result<()>;
}
