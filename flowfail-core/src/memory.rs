//! In-memory implementations of every port, always compiled.
//!
//! They back the scenario replay, flowfail's own tests, and users' unit tests. Each is `Clone`
//! with shared state (clones see the same data), records every call ([`CallLog`]), and can
//! inject faults ([`Faults`]): an error on the Nth call, added latency (tokio time, so paused
//! tests stay instant), or a *lost reply* — the effect applies but the caller sees an error, as
//! when a network drops the response.
//!
//! ```
//! use flowfail_core::memory::MemoryTaskStore;
//! use flowfail_core::{ErrorKind, Task, TaskId, TaskStatus, FlowType, TaskStore};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = MemoryTaskStore::new();
//! let id = TaskId::parse("t-1").unwrap();
//! store.insert(Task::new(id.clone(), FlowType::Plan, TaskStatus::Failed, chrono::Utc::now()));
//! store.faults().fail_nth("task.get", 1, ErrorKind::Unavailable);
//! assert!(store.get(&id).await.is_err()); // first call fails
//! assert!(store.get(&id).await.is_ok());  // second succeeds
//! # });
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    ChangeCause, DeploymentState, EnvChange, LogEvent, Quota, RevisionInfo, RolloutStatus,
    StatusCounts, Task, TaskId, TaskStatus, Timestamp, VendorStatus,
};
use crate::operator::{Approval, Pause};
use crate::policy::Policy;
use crate::ports::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Delivery, DeploymentController, Epoch,
    IncidentRecord, IncidentStore, LogBatch, LogQuery, LogSource, Notification, Notifier, Page,
    Pager, Ports, PortsBuilder, QuotaChecker, RetryOutcome, RetryRequest, StatusPage, TaskStore,
    TimelineEntry,
};

const BACKEND: &str = "memory";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Faults and call logs

/// What a fault rule does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Fail the call with this kind, before any effect.
    Fail(ErrorKind),
    /// Apply the effect, then fail the call (the reply was lost).
    LoseReply,
    /// Wait this long (tokio time) before the call.
    Delay(Duration),
}

#[derive(Debug, Clone)]
struct FaultRule {
    op: String,
    /// 1-based call number to hit, or every call when `None`.
    nth: Option<u64>,
    action: FaultAction,
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<FaultRule>,
    calls: HashMap<String, u64>,
}

/// Fault injection for one in-memory backend. Operation names are the ones in [`CallLog`]
/// (`"task.get"`, `"bundle.put_if_version"`, …); `"*"` matches every operation.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

/// What the backend must do after the effect.
#[derive(Debug, Clone)]
struct Ticket {
    lose_reply: bool,
    /// The recorded call, marked applied when the backend finishes it.
    call: Option<(CallLog, usize)>,
}

impl Faults {
    /// Fails the `n`th call (1-based) of `op` with `kind`.
    pub fn fail_nth(&self, op: &str, n: u64, kind: ErrorKind) {
        self.push(op, Some(n), FaultAction::Fail(kind));
    }
    /// Fails every call of `op` with `kind` until [`Faults::clear`].
    pub fn fail_always(&self, op: &str, kind: ErrorKind) {
        self.push(op, None, FaultAction::Fail(kind));
    }
    /// Applies the `n`th call of `op`, then reports an error.
    pub fn lose_reply_nth(&self, op: &str, n: u64) {
        self.push(op, Some(n), FaultAction::LoseReply);
    }
    /// Delays every call of `op`.
    pub fn delay(&self, op: &str, by: Duration) {
        self.push(op, None, FaultAction::Delay(by));
    }
    /// Removes every rule (call counts are kept).
    pub fn clear(&self) {
        lock(&self.0).rules.clear();
    }

    fn push(&self, op: &str, nth: Option<u64>, action: FaultAction) {
        lock(&self.0).rules.push(FaultRule {
            op: op.to_owned(),
            nth,
            action,
        });
    }

    async fn enter(&self, op: &'static str) -> Result<Ticket> {
        let actions: Vec<FaultAction> = {
            let mut s = lock(&self.0);
            let n = {
                let c = s.calls.entry(op.to_owned()).or_insert(0);
                *c += 1;
                *c
            };
            s.rules
                .iter()
                .filter(|r| (r.op == op || r.op == "*") && r.nth.is_none_or(|k| k == n))
                .map(|r| r.action.clone())
                .collect()
        };
        let mut ticket = Ticket {
            lose_reply: false,
            call: None,
        };
        for a in actions {
            match a {
                FaultAction::Delay(d) => tokio::time::sleep(d).await,
                FaultAction::Fail(kind) => {
                    // A fault of a kind that real backends report for passing trouble is
                    // injected as transient, every other kind as permanent.
                    let transient = matches!(
                        kind,
                        ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::RateLimited
                    );
                    return Err(Error::new(kind, "injected fault")
                        .transient_if(transient)
                        .with_operation(op)
                        .with_backend(BACKEND));
                }
                FaultAction::LoseReply => ticket.lose_reply = true,
            }
        }
        Ok(ticket)
    }
}

impl Ticket {
    fn finish<T>(self, op: &'static str, value: T) -> Result<T> {
        if let Some((log, i)) = &self.call {
            log.mark_applied(*i);
        }
        if self.lose_reply {
            Err(Error::new(
                ErrorKind::Unavailable,
                "injected fault: reply lost after the effect applied",
            )
            .transient()
            .with_operation(op)
            .with_backend(BACKEND))
        } else {
            Ok(value)
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Call {
    /// Operation name (`"deployment.rollback"`).
    pub op: &'static str,
    /// Arguments, rendered for humans and assertions.
    pub detail: String,
    /// Whether the operation changes anything.
    pub mutation: bool,
    /// Whether the backend carried the call out (its effect applied, even when the reply was
    /// then lost); `false` for a call refused before any effect (an injected fault, a failed
    /// precondition, an unknown id).
    pub applied: bool,
    /// The change cause a Deployment mutation carried; `None` for every other call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<ChangeCause>,
}

/// Every call an in-memory backend received, in order.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    fn record(
        &self,
        op: &'static str,
        mutation: bool,
        detail: String,
        cause: Option<ChangeCause>,
    ) -> usize {
        let mut calls = lock(&self.0);
        calls.push(Call {
            op,
            detail,
            mutation,
            applied: false,
            cause,
        });
        calls.len() - 1
    }
    fn mark_applied(&self, i: usize) {
        if let Some(c) = lock(&self.0).get_mut(i) {
            c.applied = true;
        }
    }
    /// Calls whose effect applied (see [`Call::applied`]).
    pub fn applied(&self) -> Vec<Call> {
        lock(&self.0)
            .iter()
            .filter(|c| c.applied)
            .cloned()
            .collect()
    }
    /// All calls so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.0).clone()
    }
    /// Calls that change state.
    pub fn mutations(&self) -> Vec<Call> {
        lock(&self.0)
            .iter()
            .filter(|c| c.mutation)
            .cloned()
            .collect()
    }
    /// Calls of one operation.
    pub fn of(&self, op: &str) -> Vec<Call> {
        lock(&self.0)
            .iter()
            .filter(|c| c.op == op)
            .cloned()
            .collect()
    }
}

macro_rules! common_accessors {
    () => {
        /// Fault injection for this backend.
        pub fn faults(&self) -> &Faults {
            &self.faults
        }
        /// The calls this backend received.
        pub fn calls(&self) -> &CallLog {
            &self.log
        }
    };
}

async fn enter(
    log: &CallLog,
    faults: &Faults,
    op: &'static str,
    mutation: bool,
    detail: impl FnOnce() -> String,
) -> Result<Ticket> {
    enter_caused(log, faults, op, mutation, None, detail).await
}

/// [`enter`] for a Deployment mutation, recording the change cause it carries.
async fn enter_caused(
    log: &CallLog,
    faults: &Faults,
    op: &'static str,
    mutation: bool,
    cause: Option<ChangeCause>,
    detail: impl FnOnce() -> String,
) -> Result<Ticket> {
    let i = log.record(op, mutation, detail(), cause);
    let mut ticket = faults.enter(op).await?;
    ticket.call = Some((log.clone(), i));
    Ok(ticket)
}

// ---------------------------------------------------------------------------------------------
// Logs

/// In-memory [`LogSource`].
#[derive(Debug, Clone, Default)]
pub struct MemoryLogSource {
    events: Arc<Mutex<Vec<LogEvent>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryLogSource {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Adds an event.
    pub fn push(&self, event: LogEvent) {
        let mut e = lock(&self.events);
        e.push(event);
        e.sort_by_key(|e| e.timestamp);
    }
}

#[async_trait]
impl LogSource for MemoryLogSource {
    async fn errors(&self, q: &LogQuery) -> Result<LogBatch> {
        let t = enter(&self.log, &self.faults, "logs.errors", false, || {
            format!("{}..{} {:?}", q.start, q.end, q.pattern)
        })
        .await?;
        let events = lock(&self.events);
        let mut out = Vec::new();
        let mut truncated = false;
        for e in events
            .iter()
            .filter(|e| e.timestamp >= q.start && e.timestamp < q.end)
            .filter(|e| q.pattern.is_empty() || e.message.contains(q.pattern.as_str()))
        {
            if out.len() == q.max_events {
                truncated = true;
                break;
            }
            out.push(e.clone());
        }
        t.finish("logs.errors", LogBatch::new(out, truncated))
    }
}

// ---------------------------------------------------------------------------------------------
// TaskDB

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

fn not_found(op: &'static str, what: String) -> Error {
    Error::not_found(format!("{what} not found"))
        .with_operation(op)
        .with_backend(BACKEND)
}

// ---------------------------------------------------------------------------------------------
// Bundles

#[derive(Debug, Default)]
struct BundleDb {
    live: HashMap<TaskId, (Vec<u8>, u64)>,
    archives: HashMap<(TaskId, String), Vec<u8>>,
    next_version: u64,
}

/// In-memory [`BundleStore`]. Versions are ETag-like (`"v7"`), unique across the store.
#[derive(Debug, Clone, Default)]
pub struct MemoryBundleStore {
    db: Arc<Mutex<BundleDb>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryBundleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();

    /// Stores (or replaces) a bundle, as FlowEngine (or a concurrent writer) would.
    pub fn put(&self, id: &TaskId, bytes: Vec<u8>) -> BundleVersion {
        let mut db = lock(&self.db);
        db.next_version += 1;
        let v = db.next_version;
        db.live.insert(id.clone(), (bytes, v));
        version(v)
    }

    /// The live bundle's bytes.
    pub fn bytes(&self, id: &TaskId) -> Option<Vec<u8>> {
        lock(&self.db).live.get(id).map(|(b, _)| b.clone())
    }

    /// The ids of every live bundle.
    pub fn ids(&self) -> Vec<TaskId> {
        lock(&self.db).live.keys().cloned().collect()
    }

    /// Every archive of a task: (checksum, bytes).
    pub fn archives(&self, id: &TaskId) -> Vec<(String, Vec<u8>)> {
        lock(&self.db)
            .archives
            .iter()
            .filter(|((t, _), _)| t == id)
            .map(|((_, c), b)| (c.clone(), b.clone()))
            .collect()
    }
}

fn version(v: u64) -> BundleVersion {
    BundleVersion(format!("\"v{v}\""))
}

#[async_trait]
impl BundleStore for MemoryBundleStore {
    async fn head(&self, id: &TaskId) -> Result<BundleMeta> {
        let t = enter(&self.log, &self.faults, "bundle.head", false, || {
            id.to_string()
        })
        .await?;
        let r = lock(&self.db)
            .live
            .get(id)
            .map(|(b, v)| BundleMeta::new(b.len() as u64, version(*v)))
            .ok_or_else(|| not_found("bundle.head", format!("bundle {id}")))?;
        t.finish("bundle.head", r)
    }

    async fn get(&self, id: &TaskId, max_bytes: u64) -> Result<Bundle> {
        let t = enter(&self.log, &self.faults, "bundle.get", false, || {
            id.to_string()
        })
        .await?;
        let r = {
            let db = lock(&self.db);
            let (b, v) = db
                .live
                .get(id)
                .ok_or_else(|| not_found("bundle.get", format!("bundle {id}")))?;
            if b.len() as u64 > max_bytes {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "bundle {id} is {} bytes, over the {max_bytes}-byte limit",
                        b.len()
                    ),
                )
                .with_operation("bundle.get")
                .with_backend(BACKEND));
            }
            Bundle::new(b.clone(), version(*v))
        };
        t.finish("bundle.get", r)
    }

    async fn put_archive(&self, id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()> {
        let t = enter(&self.log, &self.faults, "bundle.put_archive", true, || {
            format!("{id} {checksum}")
        })
        .await?;
        {
            let mut db = lock(&self.db);
            let k = (id.clone(), checksum.to_owned());
            if db.archives.contains_key(&k) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("archive {checksum} of {id} already exists"),
                )
                .with_operation("bundle.put_archive")
                .with_backend(BACKEND));
            }
            db.archives.insert(k, bytes.to_vec());
        }
        t.finish("bundle.put_archive", ())
    }

    async fn get_archive(&self, id: &TaskId, checksum: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let t = enter(&self.log, &self.faults, "bundle.get_archive", false, || {
            format!("{id} {checksum}")
        })
        .await?;
        let r = {
            let db = lock(&self.db);
            let b = db
                .archives
                .get(&(id.clone(), checksum.to_owned()))
                .ok_or_else(|| {
                    not_found("bundle.get_archive", format!("archive {checksum} of {id}"))
                })?;
            if b.len() as u64 > max_bytes {
                return Err(Error::new(ErrorKind::TooLarge, "archive over the limit")
                    .with_operation("bundle.get_archive")
                    .with_backend(BACKEND));
            }
            b.clone()
        };
        t.finish("bundle.get_archive", r)
    }

    async fn put_if_version(
        &self,
        id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion> {
        let t = enter(
            &self.log,
            &self.faults,
            "bundle.put_if_version",
            true,
            || format!("{id} if {} ({} bytes)", expected.0, bytes.len()),
        )
        .await?;
        let v = {
            let mut db = lock(&self.db);
            let current = db
                .live
                .get(id)
                .map(|(_, v)| version(*v))
                .ok_or_else(|| not_found("bundle.put_if_version", format!("bundle {id}")))?;
            if &current != expected {
                return Err(Error::conflict(format!(
                    "bundle {id} is at {}, not {}",
                    current.0, expected.0
                ))
                .with_operation("bundle.put_if_version")
                .with_backend(BACKEND));
            }
            db.next_version += 1;
            let v = db.next_version;
            db.live.insert(id.clone(), (bytes.to_vec(), v));
            version(v)
        };
        t.finish("bundle.put_if_version", v)
    }
}

// ---------------------------------------------------------------------------------------------
// Quota and status pages

/// In-memory [`QuotaChecker`].
#[derive(Debug, Clone, Default)]
pub struct MemoryQuota {
    quotas: Arc<Mutex<HashMap<String, Quota>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryQuota {
    /// No vendors configured.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Sets a vendor's quota.
    pub fn set(&self, vendor: &str, quota: Quota) {
        lock(&self.quotas).insert(vendor.to_owned(), quota);
    }
}

#[async_trait]
impl QuotaChecker for MemoryQuota {
    async fn quota(&self, vendor: &str) -> Result<Quota> {
        let t = enter(&self.log, &self.faults, "quota.quota", false, || {
            vendor.to_owned()
        })
        .await?;
        let q = lock(&self.quotas)
            .get(vendor)
            .cloned()
            .ok_or_else(|| not_found("quota.quota", format!("vendor {vendor:?}")))?;
        t.finish("quota.quota", q)
    }
}

/// In-memory [`StatusPage`].
#[derive(Debug, Clone, Default)]
pub struct MemoryStatusPage {
    statuses: Arc<Mutex<HashMap<String, VendorStatus>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryStatusPage {
    /// No vendors configured.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Sets a vendor's status.
    pub fn set(&self, vendor: &str, status: VendorStatus) {
        lock(&self.statuses).insert(vendor.to_owned(), status);
    }
}

#[async_trait]
impl StatusPage for MemoryStatusPage {
    async fn health(&self, vendor: &str) -> Result<VendorStatus> {
        let t = enter(&self.log, &self.faults, "status.health", false, || {
            vendor.to_owned()
        })
        .await?;
        let s = lock(&self.statuses)
            .get(vendor)
            .cloned()
            .ok_or_else(|| not_found("status.health", format!("vendor {vendor:?}")))?;
        t.finish("status.health", s)
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment

/// A revision's pod template, reduced to what flowfail touches: the main container's env.
type Template = BTreeMap<String, String>;

#[derive(Debug)]
struct DeployDb {
    state: DeploymentState,
    /// revision -> template, including the current one.
    templates: BTreeMap<u64, Template>,
    rv: u64,
    /// Status polls left before the current rollout completes.
    rollout_polls_left: u32,
    rollout_polls: u32,
    /// The next rollout fails (`ProgressDeadlineExceeded`).
    fail_next: bool,
    /// The current rollout failed.
    rollout_failing: bool,
}

/// In-memory [`DeploymentController`] for one Deployment, behaving as Kubernetes does: an env
/// change creates a new revision; a rollback re-deploys an old revision's template under the
/// next revision number; every write bumps the resourceVersion; a rollout completes after a
/// configurable number of status polls. Each mutation's change cause is kept with its call
/// ([`Call::cause`]).
#[derive(Debug, Clone)]
pub struct MemoryDeployment {
    db: Arc<Mutex<DeployDb>>,
    clock: Clock,
    faults: Faults,
    log: CallLog,
}

impl MemoryDeployment {
    /// A Deployment at `revision`, deployed at `deployed_at`, with `env`, and older revisions
    /// (each with the same env) available for rollback.
    pub fn new(
        name: &str,
        revision: u64,
        deployed_at: Option<Timestamp>,
        env: BTreeMap<String, String>,
        history: Vec<RevisionInfo>,
        clock: Clock,
    ) -> Self {
        let mut templates = BTreeMap::new();
        for h in &history {
            templates.insert(h.revision, env.clone());
        }
        templates.insert(revision, env.clone());
        let state = DeploymentState {
            name: name.to_owned(),
            revision,
            deployed_at,
            resource_version: "1".into(),
            env,
            paused: false,
            history,
        };
        MemoryDeployment {
            db: Arc::new(Mutex::new(DeployDb {
                state,
                templates,
                rv: 1,
                rollout_polls_left: 0,
                rollout_polls: 1,
                fail_next: false,
                rollout_failing: false,
            })),
            clock,
            faults: Faults::default(),
            log: CallLog::default(),
        }
    }
    common_accessors!();

    /// A snapshot of the state.
    pub fn snapshot(&self) -> DeploymentState {
        lock(&self.db).state.clone()
    }

    /// Pauses or resumes rollouts (a human's `kubectl rollout pause`).
    pub fn set_paused(&self, paused: bool) {
        let mut db = lock(&self.db);
        db.state.paused = paused;
        bump(&mut db);
    }

    /// A human edits the env outside flowfail (bumps the resourceVersion, new revision).
    pub fn human_set_env(&self, name: &str, value: &str) {
        let now = self.clock.now();
        let mut db = lock(&self.db);
        let mut env = db.state.env.clone();
        env.insert(name.to_owned(), value.to_owned());
        new_revision(&mut db, env, now);
    }

    /// A new revision is deployed (a human's `kubectl apply`): the current one joins the history.
    pub fn deploy(&self, revision: u64, at: Timestamp) {
        let mut db = lock(&self.db);
        let env = db.state.env.clone();
        let old = db.state.revision;
        let old_at = db.state.deployed_at;
        db.state.history.push(RevisionInfo::new(old, old_at));
        db.templates.insert(revision, env);
        db.state.revision = revision;
        db.state.deployed_at = Some(at);
        db.rollout_polls_left = db.rollout_polls;
        bump(&mut db);
    }

    /// How many status polls a rollout takes before it completes (default 1).
    pub fn set_rollout_polls(&self, polls: u32) {
        lock(&self.db).rollout_polls = polls;
    }

    /// Makes the next rollout fail with `ProgressDeadlineExceeded`.
    pub fn fail_next_rollout(&self) {
        lock(&self.db).fail_next = true;
    }

    /// Removes a revision from the history (its ReplicaSet was garbage-collected).
    pub fn forget_revision(&self, revision: u64) {
        let mut db = lock(&self.db);
        db.templates.remove(&revision);
        db.state.history.retain(|h| h.revision != revision);
    }
}

fn bump(db: &mut DeployDb) {
    db.rv += 1;
    db.state.resource_version = db.rv.to_string();
}

fn new_revision(db: &mut DeployDb, env: BTreeMap<String, String>, now: Timestamp) {
    let old = db.state.revision;
    let next = db.templates.keys().max().copied().unwrap_or(old) + 1;
    db.state
        .history
        .push(RevisionInfo::new(old, db.state.deployed_at));
    db.templates.insert(next, env.clone());
    db.state.revision = next;
    db.state.deployed_at = Some(now);
    db.state.env = env;
    db.rollout_polls_left = db.rollout_polls;
    db.rollout_failing = std::mem::take(&mut db.fail_next);
    bump(db);
}

#[async_trait]
impl DeploymentController for MemoryDeployment {
    async fn state(&self, name: &str) -> Result<DeploymentState> {
        let t = enter(&self.log, &self.faults, "deployment.state", false, || {
            name.to_owned()
        })
        .await?;
        let s = {
            let db = lock(&self.db);
            if db.state.name != name {
                return Err(not_found(
                    "deployment.state",
                    format!("deployment {name:?}"),
                ));
            }
            db.state.clone()
        };
        t.finish("deployment.state", s)
    }

    async fn set_env(
        &self,
        name: &str,
        changes: &[EnvChange],
        precondition: Option<String>,
        cause: &ChangeCause,
    ) -> Result<DeploymentState> {
        let t = enter_caused(
            &self.log,
            &self.faults,
            "deployment.set_env",
            true,
            Some(cause.clone()),
            || {
                let c: Vec<String> = changes
                    .iter()
                    .map(|c| match &c.value {
                        Some(v) => format!("{}={v}", c.name),
                        None => format!("{}-", c.name),
                    })
                    .collect();
                format!("{name} {} if rv={precondition:?}", c.join(" "))
            },
        )
        .await?;
        let now = self.clock.now();
        let s = {
            let mut db = lock(&self.db);
            if db.state.name != name {
                return Err(not_found(
                    "deployment.set_env",
                    format!("deployment {name:?}"),
                ));
            }
            if let Some(rv) = &precondition
                && *rv != db.state.resource_version
            {
                return Err(Error::conflict(format!(
                    "deployment {name} is at resourceVersion {}, not {rv}",
                    db.state.resource_version
                ))
                .with_operation("deployment.set_env")
                .with_backend(BACKEND));
            }
            let mut env = db.state.env.clone();
            for c in changes {
                match &c.value {
                    Some(v) => {
                        env.insert(c.name.clone(), v.clone());
                    }
                    None => {
                        env.remove(&c.name);
                    }
                }
            }
            if env != db.state.env {
                new_revision(&mut db, env, now);
            }
            db.state.clone()
        };
        t.finish("deployment.set_env", s)
    }

    async fn rollback(
        &self,
        name: &str,
        to_revision: u64,
        expected_resource_version: &str,
        cause: &ChangeCause,
    ) -> Result<DeploymentState> {
        let t = enter_caused(
            &self.log,
            &self.faults,
            "deployment.rollback",
            true,
            Some(cause.clone()),
            || format!("{name} to {to_revision} if rv={expected_resource_version}"),
        )
        .await?;
        let now = self.clock.now();
        let s = {
            let mut db = lock(&self.db);
            let err = |kind: ErrorKind, msg: String| {
                Error::new(kind, msg)
                    .with_operation("deployment.rollback")
                    .with_backend(BACKEND)
            };
            if db.state.name != name {
                return Err(not_found(
                    "deployment.rollback",
                    format!("deployment {name:?}"),
                ));
            }
            if db.state.resource_version != expected_resource_version {
                return Err(err(
                    ErrorKind::Conflict,
                    format!(
                        "deployment {name} is at resourceVersion {}, not {expected_resource_version}",
                        db.state.resource_version
                    ),
                ));
            }
            if db.state.paused {
                return Err(err(
                    ErrorKind::Refused,
                    format!("deployment {name} is paused"),
                ));
            }
            if to_revision == db.state.revision {
                return Err(err(
                    ErrorKind::Refused,
                    format!("revision {to_revision} is already the current revision"),
                ));
            }
            let Some(tpl) = db.templates.get(&to_revision).cloned() else {
                return Err(err(
                    ErrorKind::Refused,
                    format!("revision {to_revision} is no longer in the history"),
                ));
            };
            // Kubernetes re-labels the old ReplicaSet with the next revision number.
            db.templates.remove(&to_revision);
            db.state.history.retain(|h| h.revision != to_revision);
            new_revision(&mut db, tpl, now);
            db.state.clone()
        };
        t.finish("deployment.rollback", s)
    }

    async fn rollout_status(&self, name: &str) -> Result<RolloutStatus> {
        let t = enter(
            &self.log,
            &self.faults,
            "deployment.rollout_status",
            false,
            || name.to_owned(),
        )
        .await?;
        let s = {
            let mut db = lock(&self.db);
            if db.state.name != name {
                return Err(not_found(
                    "deployment.rollout_status",
                    format!("deployment {name:?}"),
                ));
            }
            if db.rollout_polls_left > 0 {
                db.rollout_polls_left -= 1;
                RolloutStatus::Progressing {
                    message: "Waiting for deployment rollout to finish: 1 old replicas are pending termination".into(),
                }
            } else if db.rollout_failing {
                RolloutStatus::Failed {
                    message: format!("deployment {name:?} exceeded its progress deadline"),
                }
            } else {
                RolloutStatus::Complete
            }
        };
        t.finish("deployment.rollout_status", s)
    }
}

// ---------------------------------------------------------------------------------------------
// Pager and notifier

/// In-memory [`Pager`]: pages are deduplicated by key; only configured targets are accepted.
#[derive(Debug, Clone)]
pub struct MemoryPager {
    targets: Arc<HashSet<String>>,
    pages: Arc<Mutex<Vec<Page>>>,
    resolved: Arc<Mutex<Vec<String>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryPager {
    /// A pager that accepts these targets.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(targets: I) -> Self {
        MemoryPager {
            targets: Arc::new(targets.into_iter().map(Into::into).collect()),
            pages: Arc::default(),
            resolved: Arc::default(),
            faults: Faults::default(),
            log: CallLog::default(),
        }
    }
    common_accessors!();
    /// Pages delivered (deduplicated ones excluded).
    pub fn pages(&self) -> Vec<Page> {
        lock(&self.pages).clone()
    }
    /// Keys resolved.
    pub fn resolved(&self) -> Vec<String> {
        lock(&self.resolved).clone()
    }
}

#[async_trait]
impl Pager for MemoryPager {
    async fn page(&self, page: &Page) -> Result<Delivery> {
        let t = enter(&self.log, &self.faults, "pager.page", true, || {
            format!("{} {}", page.target, page.dedup_key)
        })
        .await?;
        if !self.targets.contains(&page.target) {
            return Err(
                Error::refused(format!("page target {:?} is not configured", page.target))
                    .with_operation("pager.page")
                    .with_backend(BACKEND),
            );
        }
        let d = {
            let mut pages = lock(&self.pages);
            if pages.iter().any(|p| p.dedup_key == page.dedup_key) {
                Delivery::Deduplicated
            } else {
                pages.push(page.clone());
                Delivery::Sent
            }
        };
        t.finish("pager.page", d)
    }

    async fn resolve(&self, dedup_key: &str) -> Result<()> {
        let t = enter(&self.log, &self.faults, "pager.resolve", true, || {
            dedup_key.to_owned()
        })
        .await?;
        lock(&self.resolved).push(dedup_key.to_owned());
        t.finish("pager.resolve", ())
    }
}

/// In-memory [`Notifier`], deduplicated by key.
#[derive(Debug, Clone, Default)]
pub struct MemoryNotifier {
    sent: Arc<Mutex<Vec<Notification>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryNotifier {
    /// A notifier.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Notifications delivered.
    pub fn sent(&self) -> Vec<Notification> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn notify(&self, n: &Notification) -> Result<Delivery> {
        let t = enter(&self.log, &self.faults, "notifier.notify", true, || {
            format!("{} {}", n.audience, n.dedup_key)
        })
        .await?;
        let d = {
            let mut sent = lock(&self.sent);
            if sent.iter().any(|s| s.dedup_key == n.dedup_key) {
                Delivery::Deduplicated
            } else {
                sent.push(n.clone());
                Delivery::Sent
            }
        };
        t.finish("notifier.notify", d)
    }
}

// ---------------------------------------------------------------------------------------------
// Incident ledger

/// In-memory [`IncidentStore`].
#[derive(Debug, Clone, Default)]
pub struct MemoryIncidentStore {
    incidents: Arc<Mutex<BTreeMap<String, IncidentRecord>>>,
    pauses: Arc<Mutex<BTreeMap<String, Pause>>>,
    approvals: Arc<Mutex<BTreeMap<String, Vec<Approval>>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryIncidentStore {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Every incident.
    pub fn incidents(&self) -> Vec<IncidentRecord> {
        lock(&self.incidents).values().cloned().collect()
    }
    /// Changes an incident's record in place, past the ledger's rules (epochs, append-only
    /// timeline): for tests that fabricate or damage a record.
    pub fn edit(&self, key: &str, f: impl FnOnce(&mut IncidentRecord)) {
        if let Some(r) = lock(&self.incidents).get_mut(key) {
            f(r);
        }
    }
}

fn check_epoch(r: &IncidentRecord, epoch: Epoch, op: &'static str) -> Result<()> {
    if epoch < r.epoch {
        Err(Error::conflict(format!(
            "stale writer: epoch {epoch} is older than the incident's epoch {}",
            r.epoch
        ))
        .with_operation(op)
        .with_backend(BACKEND))
    } else {
        Ok(())
    }
}

#[async_trait]
impl IncidentStore for MemoryIncidentStore {
    async fn open(
        &self,
        scope: &str,
        key: &str,
        opened_at: Timestamp,
        state: &serde_json::Value,
    ) -> Result<(IncidentRecord, bool)> {
        let t = enter(&self.log, &self.faults, "incident.open", true, || {
            format!("{scope} {key}")
        })
        .await?;
        let r = {
            let mut all = lock(&self.incidents);
            if let Some(r) = all.get(key) {
                (r.clone(), false)
            } else if let Some(r) = all
                .values()
                .find(|r| r.scope == scope && r.closed_at.is_none())
            {
                (r.clone(), false)
            } else {
                let r = IncidentRecord {
                    key: key.to_owned(),
                    scope: scope.to_owned(),
                    epoch: 0,
                    opened_at,
                    state: state.clone(),
                    effects: Vec::new(),
                    timeline: Vec::new(),
                    closed_at: None,
                    post_incident: None,
                };
                all.insert(key.to_owned(), r.clone());
                (r, true)
            }
        };
        t.finish("incident.open", r)
    }

    async fn find_open(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        let t = enter(&self.log, &self.faults, "incident.find_open", false, || {
            scope.to_owned()
        })
        .await?;
        let r = lock(&self.incidents)
            .values()
            .find(|r| r.scope == scope && r.closed_at.is_none())
            .cloned();
        t.finish("incident.find_open", r)
    }

    async fn latest_closed(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.latest_closed",
            false,
            || scope.to_owned(),
        )
        .await?;
        let r = lock(&self.incidents)
            .values()
            .filter(|r| r.scope == scope)
            .filter_map(|r| r.closed_at.map(|at| (at, r)))
            .max_by(|(a, x), (b, y)| {
                a.cmp(b)
                    .then(x.opened_at.cmp(&y.opened_at))
                    .then(x.key.cmp(&y.key))
            })
            .map(|(_, r)| r.clone());
        t.finish("incident.latest_closed", r)
    }

    async fn claim(&self, key: &str) -> Result<Epoch> {
        let t = enter(&self.log, &self.faults, "incident.claim", true, || {
            key.to_owned()
        })
        .await?;
        let e = {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.claim", format!("incident {key:?}")))?;
            r.epoch += 1;
            r.epoch
        };
        t.finish("incident.claim", e)
    }

    async fn get(&self, key: &str) -> Result<IncidentRecord> {
        let t = enter(&self.log, &self.faults, "incident.get", false, || {
            key.to_owned()
        })
        .await?;
        let r = lock(&self.incidents)
            .get(key)
            .cloned()
            .ok_or_else(|| not_found("incident.get", format!("incident {key:?}")))?;
        t.finish("incident.get", r)
    }

    async fn save_state(&self, key: &str, epoch: Epoch, state: &serde_json::Value) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.save_state", true, || {
            format!("{key}@{epoch}")
        })
        .await?;
        {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.save_state", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.save_state")?;
            r.state = state.clone();
        }
        t.finish("incident.save_state", ())
    }

    async fn reserve_effect(&self, key: &str, epoch: Epoch, effect: &str) -> Result<bool> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.reserve_effect",
            true,
            || format!("{key}@{epoch} {effect}"),
        )
        .await?;
        let fresh = {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.reserve_effect", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.reserve_effect")?;
            if r.effects.iter().any(|e| e == effect) {
                false
            } else {
                r.effects.push(effect.to_owned());
                true
            }
        };
        t.finish("incident.reserve_effect", fresh)
    }

    async fn check_epoch(&self, key: &str, epoch: Epoch) -> Result<()> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.check_epoch",
            false,
            || format!("{key}@{epoch}"),
        )
        .await?;
        {
            let all = lock(&self.incidents);
            let r = all
                .get(key)
                .ok_or_else(|| not_found("incident.check_epoch", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.check_epoch")?;
        }
        t.finish("incident.check_epoch", ())
    }

    async fn append(&self, key: &str, epoch: Epoch, entries: &[TimelineEntry]) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.append", true, || {
            format!("{key}@{epoch} +{}", entries.len())
        })
        .await?;
        {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.append", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.append")?;
            r.timeline.extend_from_slice(entries);
        }
        t.finish("incident.append", ())
    }

    async fn close(
        &self,
        key: &str,
        epoch: Epoch,
        closed_at: Timestamp,
        post_incident: &serde_json::Value,
    ) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.close", true, || {
            format!("{key}@{epoch}")
        })
        .await?;
        {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.close", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.close")?;
            if r.closed_at.is_none() {
                r.closed_at = Some(closed_at);
                r.post_incident = Some(post_incident.clone());
            }
        }
        t.finish("incident.close", ())
    }

    async fn set_pause(&self, scope: &str, pause: Option<&Pause>) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.set_pause", true, || {
            format!(
                "{scope} {}",
                if pause.is_some() { "pause" } else { "resume" }
            )
        })
        .await?;
        {
            let mut all = lock(&self.pauses);
            match pause {
                Some(p) => {
                    all.insert(scope.to_owned(), p.clone());
                }
                None => {
                    all.remove(scope);
                }
            }
        }
        t.finish("incident.set_pause", ())
    }

    async fn pause_flag(&self, scope: &str) -> Result<Option<Pause>> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.pause_flag",
            false,
            || scope.to_owned(),
        )
        .await?;
        let p = lock(&self.pauses).get(scope).cloned();
        t.finish("incident.pause_flag", p)
    }

    async fn add_approval(&self, key: &str, approval: &Approval) -> Result<()> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.add_approval",
            true,
            || format!("{key} {}", approval.action),
        )
        .await?;
        {
            let all = lock(&self.incidents);
            let r = all
                .get(key)
                .ok_or_else(|| not_found("incident.add_approval", format!("incident {key:?}")))?;
            if r.closed_at.is_some() {
                return Err(Error::refused(format!("incident {key:?} is closed"))
                    .with_operation("incident.add_approval")
                    .with_backend(BACKEND));
            }
            lock(&self.approvals)
                .entry(key.to_owned())
                .or_default()
                .push(approval.clone());
        }
        t.finish("incident.add_approval", ())
    }

    async fn approvals(&self, key: &str) -> Result<Vec<Approval>> {
        let t = enter(&self.log, &self.faults, "incident.approvals", false, || {
            key.to_owned()
        })
        .await?;
        if !lock(&self.incidents).contains_key(key) {
            return Err(not_found("incident.approvals", format!("incident {key:?}")));
        }
        let a = lock(&self.approvals).get(key).cloned().unwrap_or_default();
        t.finish("incident.approvals", a)
    }
}

/// Builds a valid FlowEngine-style context bundle of exactly `size` bytes (at least 256), for
/// replays and tests: a task, a system prompt, a conversation history and file contents.
pub fn synthesize_bundle(task_id: &TaskId, size: u64) -> Vec<u8> {
    let size = size.max(256) as usize;
    let head = format!(
        r#"{{"task":{{"task_id":"{task_id}","instructions":"Fix the failing flow"}},"system_prompt":"You are FlowEngine's planning model.","messages":["#
    );
    let tail = "]}";
    let mut out = head.into_bytes();
    let mut turn = 0u64;
    // Turns of ~2 KB until near the target, then pad the last turn's text to land exactly.
    loop {
        let prefix = format!(
            r#"{}{{"role":"{}","turn":{turn},"content":""#,
            if turn == 0 { "" } else { "," },
            if turn.is_multiple_of(2) {
                "user"
            } else {
                "assistant"
            }
        );
        let suffix = r#""}"#;
        let fixed = out.len() + prefix.len() + suffix.len() + tail.len();
        if fixed > size && turn > 0 {
            break;
        }
        let room = size.saturating_sub(fixed);
        let take = if room <= 2048 + prefix.len() + suffix.len() + 16 {
            room
        } else {
            2000
        };
        out.extend_from_slice(prefix.as_bytes());
        out.extend((0..take).map(|i| b"lorem ipsum dolor sit amet "[i % 27]));
        out.extend_from_slice(suffix.as_bytes());
        turn += 1;
        if take == room {
            break;
        }
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// A whole world

/// A world of in-memory backends, one per port, sharing a clock: for replays, examples and
/// tests. Keep the `World` to seed it and to inspect what the responder did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct World {
    /// Logs.
    pub logs: MemoryLogSource,
    /// TaskDB.
    pub tasks: MemoryTaskStore,
    /// Bundles.
    pub bundles: MemoryBundleStore,
    /// Quota.
    pub quota: MemoryQuota,
    /// Deployment.
    pub deployment: MemoryDeployment,
    /// Status pages.
    pub status: MemoryStatusPage,
    /// Pager.
    pub pager: MemoryPager,
    /// Notifier.
    pub notifier: MemoryNotifier,
    /// Ledger.
    pub incidents: MemoryIncidentStore,
}

impl World {
    /// An empty world: the policy's Deployment at revision 1 with no history, no tasks, no
    /// vendors.
    pub fn new(policy: &Policy, clock: Clock) -> Self {
        World {
            logs: MemoryLogSource::new(),
            tasks: MemoryTaskStore::new(),
            bundles: MemoryBundleStore::new(),
            quota: MemoryQuota::new(),
            deployment: MemoryDeployment::new(
                &policy.deployment,
                1,
                None,
                BTreeMap::new(),
                Vec::new(),
                clock,
            ),
            status: MemoryStatusPage::new(),
            pager: MemoryPager::new(policy.page_targets.iter().cloned()),
            notifier: MemoryNotifier::new(),
            incidents: MemoryIncidentStore::new(),
        }
    }

    /// The ports, sharing this world's state.
    pub fn ports(&self) -> Ports {
        self.ports_builder()
            .build()
            .unwrap_or_else(|_| unreachable!("every port is set"))
    }

    /// A [`PortsBuilder`] with every port set to this world's backends: replace the ones a test
    /// wants to wrap or swap, then build.
    pub fn ports_builder(&self) -> PortsBuilder {
        Ports::builder()
            .logs(Arc::new(self.logs.clone()))
            .tasks(Arc::new(self.tasks.clone()))
            .bundles(Arc::new(self.bundles.clone()))
            .quota(Arc::new(self.quota.clone()))
            .deployment(Arc::new(self.deployment.clone()))
            .status(Arc::new(self.status.clone()))
            .pager(Arc::new(self.pager.clone()))
            .notifier(Arc::new(self.notifier.clone()))
            .incidents(Arc::new(self.incidents.clone()))
    }

    /// Every mutating call any backend received, in backend order.
    pub fn mutations(&self) -> Vec<Call> {
        [
            self.logs.calls().mutations(),
            self.tasks.calls().mutations(),
            self.bundles.calls().mutations(),
            self.quota.calls().mutations(),
            self.deployment.calls().mutations(),
            self.status.calls().mutations(),
            self.pager.calls().mutations(),
            self.notifier.calls().mutations(),
            self.incidents.calls().mutations(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesized_bundles_are_valid_json_of_the_asked_size() {
        let id = TaskId::parse("t-1").unwrap();
        for size in [256u64, 500, 4_000, 734_003, 736_003, 1_000_000] {
            let b = synthesize_bundle(&id, size);
            assert_eq!(b.len() as u64, size, "size {size}");
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()));
        }
    }
}
