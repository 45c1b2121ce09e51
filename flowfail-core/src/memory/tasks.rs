//! In-memory [`TaskStore`](crate::ports::TaskStore).

use super::*;

#[derive(Debug, Clone)]
struct TaskEntry {
    task: Task,
    task_object: Option<serde_json::Value>,
    /// Outcomes of successive retries (the last one repeats); empty = retries stay `Pending`.
    on_retry: VecDeque<TaskStatus>,
}

#[derive(Debug, Default)]
struct TaskDb {
    tasks: BTreeMap<TaskId, TaskEntry>,
    background: StatusCounts,
}

/// In-memory [`TaskStore`].
///
/// Retries can be scripted per task ([`MemoryTaskStore::script_retries`]): a scheduled retry
/// then runs at once with the next scripted outcome. Unscripted retries stay `Pending`, as in a
/// real TaskDB waiting for a worker. Background volume ([`MemoryTaskStore::set_background`])
/// stands for finished tasks that are not stored individually and counts in every window.
#[derive(Debug, Clone, Default)]
pub struct MemoryTaskStore {
    db: Arc<Mutex<TaskDb>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryTaskStore {
    /// An empty TaskDB.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();

    /// Inserts or replaces a task.
    pub fn insert(&self, task: Task) {
        lock(&self.db).tasks.insert(
            task.task_id.clone(),
            TaskEntry {
                task,
                task_object: None,
                on_retry: VecDeque::new(),
            },
        );
    }

    /// Attaches a TaskObject to a stored task.
    pub fn set_task_object(&self, id: &TaskId, object: serde_json::Value) {
        if let Some(e) = lock(&self.db).tasks.get_mut(id) {
            e.task_object = Some(object);
        }
    }

    /// Scripts the outcomes of the task's successive retries (the last outcome repeats).
    pub fn script_retries(&self, id: &TaskId, outcomes: impl IntoIterator<Item = TaskStatus>) {
        if let Some(e) = lock(&self.db).tasks.get_mut(id) {
            e.on_retry = outcomes.into_iter().collect();
        }
    }

    /// Sets the background volume of finished tasks not stored individually.
    pub fn set_background(&self, succeeded: u64, failed: u64) {
        lock(&self.db).background = StatusCounts::new(succeeded, failed);
    }

    /// Sets a task's status (a worker finishing it, a human changing it).
    pub fn set_status(&self, id: &TaskId, status: TaskStatus, at: Timestamp) {
        if let Some(e) = lock(&self.db).tasks.get_mut(id) {
            e.task.status = status;
            e.task.finished_at = Some(at);
        }
    }

    /// A snapshot of every stored task.
    pub fn tasks(&self) -> Vec<Task> {
        lock(&self.db)
            .tasks
            .values()
            .map(|e| e.task.clone())
            .collect()
    }
}

#[async_trait]
impl TaskStore for MemoryTaskStore {
    async fn recent_failed(&self, limit: usize) -> Result<Vec<Task>> {
        let t = enter(&self.log, &self.faults, "task.recent_failed", false, || {
            format!("limit={limit}")
        })
        .await?;
        let db = lock(&self.db);
        let mut v: Vec<Task> = db
            .tasks
            .values()
            .filter(|e| e.task.status == TaskStatus::Failed)
            .map(|e| e.task.clone())
            .collect();
        v.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.task_id.cmp(&b.task_id))
        });
        v.truncate(limit);
        t.finish("task.recent_failed", v)
    }

    async fn counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts> {
        let t = enter(&self.log, &self.faults, "task.counts", false, || {
            format!("{since}..{until}")
        })
        .await?;
        let db = lock(&self.db);
        let mut c = db.background;
        for e in db.tasks.values() {
            let s = e.task.status;
            if s.is_finished() {
                let at = e.task.finished_or_created();
                if at >= since && at < until {
                    if s.is_failure() {
                        c.failed += 1;
                    } else {
                        c.succeeded += 1;
                    }
                }
            } else {
                c.in_flight += 1;
            }
        }
        t.finish("task.counts", c)
    }

    async fn get(&self, id: &TaskId) -> Result<Task> {
        let t = enter(&self.log, &self.faults, "task.get", false, || {
            id.to_string()
        })
        .await?;
        let r = lock(&self.db)
            .tasks
            .get(id)
            .map(|e| e.task.clone())
            .ok_or_else(|| not_found("task.get", format!("task {id}")))?;
        t.finish("task.get", r)
    }

    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Task>> {
        let t = enter(&self.log, &self.faults, "task.get_many", false, || {
            ids.iter().map(TaskId::as_str).collect::<Vec<_>>().join(",")
        })
        .await?;
        let db = lock(&self.db);
        let mut seen = std::collections::BTreeSet::new();
        let r = ids
            .iter()
            .filter(|id| seen.insert(*id))
            .filter_map(|id| db.tasks.get(id).map(|e| e.task.clone()))
            .collect();
        drop(db);
        t.finish("task.get_many", r)
    }

    async fn task_object(&self, id: &TaskId) -> Result<Option<serde_json::Value>> {
        let t = enter(&self.log, &self.faults, "task.task_object", false, || {
            id.to_string()
        })
        .await?;
        let r = lock(&self.db)
            .tasks
            .get(id)
            .map(|e| e.task_object.clone())
            .ok_or_else(|| not_found("task.task_object", format!("task {id}")))?;
        t.finish("task.task_object", r)
    }

    async fn schedule_retries(&self, requests: &[RetryRequest]) -> Result<Vec<RetryOutcome>> {
        let t = enter(
            &self.log,
            &self.faults,
            "task.schedule_retries",
            true,
            || {
                requests
                    .iter()
                    .map(|r| format!("{}@{}", r.task_id, r.expected_attempts))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
        .await?;
        let mut db = lock(&self.db);
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            let Some(e) = db.tasks.get_mut(&r.task_id) else {
                out.push(RetryOutcome::NotFound);
                continue;
            };
            if e.task.attempts != r.expected_attempts {
                out.push(RetryOutcome::Conflict {
                    current_attempts: e.task.attempts,
                });
                continue;
            }
            if e.task.status != TaskStatus::Failed {
                out.push(RetryOutcome::NotRetryable {
                    status: e.task.status,
                });
                continue;
            }
            e.task.attempts += 1;
            let next = if e.on_retry.len() > 1 {
                e.on_retry.pop_front()
            } else {
                e.on_retry.front().copied()
            };
            match next {
                Some(status) => {
                    e.task.status = status;
                    e.task.finished_at = Some(r.not_before);
                }
                None => e.task.status = TaskStatus::Pending,
            }
            out.push(RetryOutcome::Scheduled {
                attempts: e.task.attempts,
            });
        }
        drop(db);
        t.finish("task.schedule_retries", out)
    }

    async fn mark_final(&self, id: &TaskId, expected_attempts: u32) -> Result<()> {
        let t = enter(&self.log, &self.faults, "task.mark_final", true, || {
            format!("{id}@{expected_attempts}")
        })
        .await?;
        {
            let mut db = lock(&self.db);
            let e = db
                .tasks
                .get_mut(id)
                .ok_or_else(|| not_found("task.mark_final", format!("task {id}")))?;
            match e.task.status {
                TaskStatus::FailedFinal if e.task.attempts == expected_attempts => {}
                TaskStatus::Failed if e.task.attempts == expected_attempts => {
                    e.task.status = TaskStatus::FailedFinal;
                }
                s => {
                    return Err(Error::conflict(format!(
                        "task {id} is {s:?} with {} attempts, expected failed with {expected_attempts}",
                        e.task.attempts
                    ))
                    .with_operation("task.mark_final")
                    .with_backend(BACKEND));
                }
            }
        }
        t.finish("task.mark_final", ())
    }
}
