//! The ports: every system the runbook touches, as an async trait.
//!
//! flowfail's engine never talks to CloudWatch, PostgreSQL, S3, Kubernetes or a vendor directly.
//! It talks to these traits, held as `Arc<dyn …>`, and each trait has
//!
//! - an in-memory implementation in [`crate::memory`], always compiled, for tests and replays;
//! - adapters in their own crates (`flowfail-aws`, `flowfail-pg`, `flowfail-k8s`, `flowfail-http`);
//! - a behavioural suite in `flowfail_core::conformance` (feature `conformance`) that every
//!   implementation runs, so the in-memory fakes and the real adapters agree.
//!
//! Each method's documentation ends with numbered **Behavior** rules: the contract the
//! conformance suite checks. Ids reach a port only as [`TaskId`]; every error is a
//! [`crate::Error`] whose [`crate::ErrorKind`] the rules name.
//!
//! The traits are deliberately minimal (no provided methods): conveniences built on them live
//! in extension traits with blanket impls ([`crate::bundle::BundleStoreExt`]), not in
//! implementors' way.
//!
//! [`Ports`] bundles one implementation of each trait for the responder; build it with
//! [`Ports::builder`] from any mix of adapters and in-memory backends.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{
    ChangeCause, DeploymentState, EnvChange, LogEvent, Quota, RolloutStatus, StatusCounts, Task,
    TaskId, TaskStatus, Timestamp, VendorStatus,
};
use crate::operator::{Approval, Pause};

// ---------------------------------------------------------------------------------------------
// Logs

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

impl LogQuery {
    /// A query for `ERROR` events in `[start, end)`, at most 10,000 of them.
    pub fn errors(start: Timestamp, end: Timestamp) -> Self {
        LogQuery {
            start,
            end,
            pattern: "ERROR".into(),
            max_events: 10_000,
        }
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
    /// 5. `task_id` is set only from a valid [`TaskId`] found in the message.
    async fn errors(&self, query: &LogQuery) -> Result<LogBatch>;
}

// ---------------------------------------------------------------------------------------------
// TaskDB

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

    /// Finished tasks in `[since, until)` by outcome, and tasks in flight now.
    ///
    /// **Behavior**
    /// 1. A task counts once, by its current status, if it finished (or, when the finish time
    ///    is unknown, was created) inside the window.
    /// 2. `Failed` and `FailedFinal` both count as failed.
    async fn counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts>;

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

// ---------------------------------------------------------------------------------------------
// Context bundles

/// Opaque version of a stored bundle (an S3 ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BundleVersion(pub String);

/// Size and version of a stored bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BundleMeta {
    /// Size in bytes.
    pub size: u64,
    /// Current version.
    pub version: BundleVersion,
}

impl BundleMeta {
    /// Metadata of a bundle.
    pub fn new(size: u64, version: BundleVersion) -> Self {
        BundleMeta { size, version }
    }
}

/// A bundle's bytes and the version they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bundle {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The version read.
    pub version: BundleVersion,
}

impl Bundle {
    /// A bundle read at `version`.
    pub fn new(bytes: Vec<u8>, version: BundleVersion) -> Self {
        Bundle { bytes, version }
    }
}

/// Where context bundles live (`s3://context-bundles/<task_id>.json`).
#[async_trait]
pub trait BundleStore: Send + Sync + Debug + 'static {
    /// Size and version of the task's bundle.
    ///
    /// **Behavior**
    /// 1. A missing bundle is [`crate::ErrorKind::NotFound`].
    /// 2. The version changes whenever the bytes change.
    async fn head(&self, task_id: &TaskId) -> Result<BundleMeta>;

    /// The task's bundle, refusing bundles larger than `max_bytes`.
    ///
    /// **Behavior**
    /// 1. A missing bundle is `NotFound`; one larger than `max_bytes` is
    ///    [`crate::ErrorKind::TooLarge`] (nothing is buffered beyond the bound).
    /// 2. The version returned is the version of exactly the bytes returned.
    async fn get(&self, task_id: &TaskId, max_bytes: u64) -> Result<Bundle>;

    /// Stores `bytes` as the archive of the task's bundle under `checksum` (hex SHA-256 of
    /// `bytes`), create-only.
    ///
    /// **Behavior**
    /// 1. Create-only: if an archive with this checksum exists, the call is
    ///    [`crate::ErrorKind::AlreadyExists`] and the stored archive is untouched.
    /// 2. The live bundle is never modified.
    async fn put_archive(&self, task_id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()>;

    /// Reads an archive back (to verify it), refusing archives larger than `max_bytes`.
    ///
    /// **Behavior**
    /// 1. A missing archive is `NotFound`.
    async fn get_archive(
        &self,
        task_id: &TaskId,
        checksum: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>>;

    /// Replaces the task's bundle with `bytes` only if its version is still `expected`.
    ///
    /// **Behavior**
    /// 1. If the stored version differs from `expected` (a concurrent writer), the call is
    ///    [`crate::ErrorKind::Conflict`] and the stored bundle is untouched.
    /// 2. A missing bundle is `NotFound` (this never creates a bundle).
    /// 3. On success the new version is returned and differs from `expected`.
    async fn put_if_version(
        &self,
        task_id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion>;
}

// ---------------------------------------------------------------------------------------------
// Quota

/// Model-vendor quota usage.
#[async_trait]
pub trait QuotaChecker: Send + Sync + Debug + 'static {
    /// The vendor's quota usage.
    ///
    /// **Behavior**
    /// 1. Usage that cannot be read or understood is `Ok(Quota::Unknown { .. })`, never 0 % or 100 %.
    /// 2. A known `used_ratio` is within `0.0..=1.0`.
    /// 3. A vendor that is not configured is [`crate::ErrorKind::NotFound`].
    async fn quota(&self, vendor: &str) -> Result<Quota>;
}

// ---------------------------------------------------------------------------------------------
// Deployment

/// The FlowEngine Deployment (`kubectl set env`, guarded rollback, `rollout status`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DeploymentController: Send + Sync + Debug + 'static {
    /// The Deployment's state.
    ///
    /// **Behavior**
    /// 1. A missing Deployment is `NotFound`.
    /// 2. `resource_version` changes on every write to the Deployment.
    async fn state(&self, name: &str) -> Result<DeploymentState>;

    /// Applies env changes to the main container.
    ///
    /// **Behavior**
    /// 1. With `precondition = Some(rv)`, applies only if the Deployment's resourceVersion is
    ///    still `rv`; otherwise [`crate::ErrorKind::Conflict`] and nothing changes.
    /// 2. Setting a variable to the value it already has, or unsetting a missing one, changes
    ///    nothing (idempotent) and succeeds.
    /// 3. Returns the state after the change.
    /// 4. `cause` says why (the incident and the purpose), for this call alone: an adapter
    ///    that can record it (Kubernetes' `kubernetes.io/change-cause`) does so with this
    ///    change; nothing of it is kept for a later call. An empty cause records none.
    async fn set_env(
        &self,
        name: &str,
        changes: &[EnvChange],
        precondition: Option<String>,
        cause: &ChangeCause,
    ) -> Result<DeploymentState>;

    /// Rolls back to the given revision's template, only if the resourceVersion is still
    /// `expected_resource_version`. Never a relative "undo".
    ///
    /// **Behavior**
    /// 1. A resourceVersion that changed is `Conflict`, nothing applied.
    /// 2. A paused Deployment, or a revision no longer in the history, is
    ///    [`crate::ErrorKind::Refused`], nothing applied.
    /// 3. On success the Deployment runs `to_revision`'s template (as a new revision number,
    ///    as Kubernetes does) and the new state is returned.
    /// 4. `cause` says why, for this call alone, as for [`DeploymentController::set_env`].
    async fn rollback(
        &self,
        name: &str,
        to_revision: u64,
        expected_resource_version: &str,
        cause: &ChangeCause,
    ) -> Result<DeploymentState>;

    /// Rollout progress, judged as `kubectl rollout status` does; does not wait.
    ///
    /// **Behavior**
    /// 1. `Complete` only when the controller observed the latest generation and all replicas
    ///    are updated and available.
    async fn rollout_status(&self, name: &str) -> Result<RolloutStatus>;
}

// ---------------------------------------------------------------------------------------------
// Vendor status pages

/// Model-vendor status pages.
#[async_trait]
pub trait StatusPage: Send + Sync + Debug + 'static {
    /// The vendor's health.
    ///
    /// **Behavior**
    /// 1. A page that cannot be read or understood is `Ok(VendorHealth::Unknown)`, never an outage.
    /// 2. A vendor that is not configured is `NotFound`.
    async fn health(&self, vendor: &str) -> Result<VendorStatus>;
}

// ---------------------------------------------------------------------------------------------
// Paging and notification

/// A page to a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Page {
    /// Configured target (`on_call`, `sre`, `tech_lead`).
    pub target: String,
    /// Idempotency key (PagerDuty `dedup_key`, ≤ 255 chars): derived from the incident key.
    pub dedup_key: String,
    /// One-line summary.
    pub summary: String,
    /// Evidence for the human.
    pub details: serde_json::Value,
}

impl Page {
    /// A page.
    pub fn new(
        target: impl Into<String>,
        dedup_key: impl Into<String>,
        summary: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Page {
            target: target.into(),
            dedup_key: dedup_key.into(),
            summary: summary.into(),
            details,
        }
    }
}

/// Whether a page or notification was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// Delivered for the first time.
    Sent,
    /// A page or notification with the same key was already delivered; nothing new was sent.
    Deduplicated,
}

/// The pager (PagerDuty Events API v2).
#[async_trait]
pub trait Pager: Send + Sync + Debug + 'static {
    /// Triggers a page.
    ///
    /// **Behavior**
    /// 1. A second page with the same `dedup_key` pages nobody again: `Deduplicated`.
    /// 2. A target that is not configured is [`crate::ErrorKind::Refused`], nothing sent.
    async fn page(&self, page: &Page) -> Result<Delivery>;

    /// Resolves the page with this key.
    ///
    /// **Behavior**
    /// 1. Resolving an unknown or already resolved key succeeds.
    async fn resolve(&self, dedup_key: &str) -> Result<()>;
}

/// A notification to an audience (stakeholders).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// Audience (`stakeholders`).
    pub audience: String,
    /// Idempotency key.
    pub dedup_key: String,
    /// The message.
    pub message: String,
}

impl Notification {
    /// A notification.
    pub fn new(
        audience: impl Into<String>,
        dedup_key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Notification {
            audience: audience.into(),
            dedup_key: dedup_key.into(),
            message: message.into(),
        }
    }
}

/// Stakeholder notifications (a chat webhook).
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Sends a notification.
    ///
    /// **Behavior**
    /// 1. A second notification with the same `dedup_key` is `Deduplicated`.
    async fn notify(&self, notification: &Notification) -> Result<Delivery>;
}

// ---------------------------------------------------------------------------------------------
// Incident ledger

/// Fencing token of an incident: every write carries the epoch its writer claimed; a write with
/// an older epoch than the incident's is rejected as stale.
pub type Epoch = u64;

/// One entry of an incident's append-only timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimelineEntry {
    /// When.
    pub at: Timestamp,
    /// What (`detected`, `action`, `finding`, `resolved`, ...).
    pub kind: String,
    /// Details.
    pub detail: serde_json::Value,
}

impl TimelineEntry {
    /// An entry.
    pub fn new(at: Timestamp, kind: impl Into<String>, detail: serde_json::Value) -> Self {
        TimelineEntry {
            at,
            kind: kind.into(),
            detail,
        }
    }
}

/// An incident as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IncidentRecord {
    /// Deterministic incident key.
    pub key: String,
    /// The scope it belongs to (the Deployment name): one open incident per scope.
    pub scope: String,
    /// Current epoch.
    pub epoch: Epoch,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// The responder's state (opaque JSON, written by [`IncidentStore::save_state`]).
    pub state: serde_json::Value,
    /// Effects reserved so far (see [`IncidentStore::reserve_effect`]).
    pub effects: Vec<String>,
    /// The timeline, in append order.
    pub timeline: Vec<TimelineEntry>,
    /// When it was closed, if it was.
    pub closed_at: Option<Timestamp>,
    /// The post-incident record, once closed.
    pub post_incident: Option<serde_json::Value>,
}

impl IncidentRecord {
    /// A new open incident at epoch 0 with no effects and an empty timeline (adapters fill in
    /// the rest from their storage).
    pub fn new(
        key: impl Into<String>,
        scope: impl Into<String>,
        opened_at: Timestamp,
        state: serde_json::Value,
    ) -> Self {
        IncidentRecord {
            key: key.into(),
            scope: scope.into(),
            epoch: 0,
            opened_at,
            state,
            effects: Vec::new(),
            timeline: Vec::new(),
            closed_at: None,
            post_incident: None,
        }
    }
}

/// The incident ledger: where replicas agree on one incident and one effect per action.
#[async_trait]
pub trait IncidentStore: Send + Sync + Debug + 'static {
    /// Opens an incident in `scope` under `key`, unless one is already open in that scope.
    /// Returns the open incident and whether this call created it.
    ///
    /// **Behavior**
    /// 1. At most one open incident per scope: concurrent calls create one, the others get it.
    /// 2. A closed incident never blocks opening a new one with a different key.
    /// 3. Reopening a closed key returns the closed record with `created == false`.
    async fn open(
        &self,
        scope: &str,
        key: &str,
        opened_at: Timestamp,
        state: &serde_json::Value,
    ) -> Result<(IncidentRecord, bool)>;

    /// The open incident in `scope`, if any (how a restarted responder finds its incident).
    ///
    /// **Behavior**
    /// 1. Returns the incident `open` would return for the scope, or `None` when none is open.
    async fn find_open(&self, scope: &str) -> Result<Option<IncidentRecord>>;

    /// The incident of `scope` closed most recently (by close time, then open time, then key),
    /// if any: the supervisor's cool-down after an escalation and the revisions flowfail rolled
    /// away from are read from it. Its timeline need not be included.
    ///
    /// **Behavior**
    /// 1. `None` while no incident of the scope is closed; an open incident is never returned.
    /// 2. Scopes are independent.
    /// 3. A closed incident still takes [`IncidentStore::reserve_effect`] at its current epoch
    ///    (the end of an escalated incident's cool-down is its effect `cooldown_over`).
    async fn latest_closed(&self, scope: &str) -> Result<Option<IncidentRecord>>;

    /// Claims the incident for a pass: increments and returns its epoch.
    ///
    /// **Behavior**
    /// 1. Each call returns a larger epoch than any before it.
    /// 2. An unknown key is `NotFound`.
    async fn claim(&self, key: &str) -> Result<Epoch>;

    /// The incident.
    ///
    /// **Behavior**
    /// 1. An unknown key is `NotFound`.
    async fn get(&self, key: &str) -> Result<IncidentRecord>;

    /// Replaces the responder's state.
    ///
    /// **Behavior**
    /// 1. An epoch older than the incident's is [`crate::ErrorKind::Conflict`], nothing written.
    async fn save_state(&self, key: &str, epoch: Epoch, state: &serde_json::Value) -> Result<()>;

    /// Reserves a named effect (`rollback`, `page:sre:outage`, ...) for this incident.
    /// Returns `true` the first time, `false` when it was already reserved.
    ///
    /// **Behavior**
    /// 1. At most one reservation per (incident, effect) ever succeeds, across all writers.
    /// 2. An epoch older than the incident's is `Conflict`, nothing reserved.
    async fn reserve_effect(&self, key: &str, epoch: Epoch, effect: &str) -> Result<bool>;

    /// Checks that `epoch` is still the incident's: a writer whose claim was superseded by
    /// another replica's gets [`crate::ErrorKind::Conflict`]. The responder asks right before
    /// every mutation of the world (env changes, retries, prunes, pages), which the ledger's own
    /// fencing cannot cover. The default reads the record with [`IncidentStore::get`]; stores
    /// with a cheaper read of the epoch alone override it.
    ///
    /// **Behavior**
    /// 1. An epoch older than the incident's is `Conflict`; the current one (or a newer) is `Ok`.
    /// 2. An unknown key is `NotFound`.
    async fn check_epoch(&self, key: &str, epoch: Epoch) -> Result<()> {
        let current = self.get(key).await?.epoch;
        if epoch < current {
            Err(crate::Error::conflict(format!(
                "stale claim: epoch {epoch} is older than the incident's epoch {current}"
            ))
            .with_operation("incident.check_epoch"))
        } else {
            Ok(())
        }
    }

    /// Appends timeline entries.
    ///
    /// **Behavior**
    /// 1. Entries are kept in append order and never rewritten.
    /// 2. An epoch older than the incident's is `Conflict`, nothing appended.
    async fn append(&self, key: &str, epoch: Epoch, entries: &[TimelineEntry]) -> Result<()>;

    /// Closes the incident with its post-incident record.
    ///
    /// **Behavior**
    /// 1. An epoch older than the incident's is `Conflict`.
    /// 2. Closing a closed incident again succeeds and keeps the first record.
    async fn close(
        &self,
        key: &str,
        epoch: Epoch,
        closed_at: Timestamp,
        post_incident: &serde_json::Value,
    ) -> Result<()>;

    /// Pauses automation in `scope` (`Some`), or lifts the pause (`None`). An operator's
    /// switch, read by every replica each pass (see [`crate::control`]); it carries no epoch.
    ///
    /// **Behavior**
    /// 1. After `Some(p)`, [`IncidentStore::pause_flag`] returns `p` (a second pause replaces the
    ///    first); after `None`, it returns `None`.
    /// 2. Lifting a pause that is not set succeeds and changes nothing.
    /// 3. Scopes are independent.
    async fn set_pause(&self, scope: &str, pause: Option<&Pause>) -> Result<()>;

    /// The pause of `scope`, if automation is paused there.
    ///
    /// **Behavior**
    /// 1. `None` when no pause was set, or the last one was lifted.
    async fn pause_flag(&self, scope: &str) -> Result<Option<Pause>>;

    /// Records a human's approval of a gated action for the incident `key` (see
    /// [`crate::control::approve`]); it carries no epoch.
    ///
    /// **Behavior**
    /// 1. An unknown key is `NotFound`; a closed incident is [`crate::ErrorKind::Refused`];
    ///    either way nothing is written.
    /// 2. Approvals are kept in the order recorded and never rewritten.
    async fn add_approval(&self, key: &str, approval: &Approval) -> Result<()>;

    /// The approvals recorded for the incident `key`, oldest first (expired ones included).
    ///
    /// **Behavior**
    /// 1. An unknown key is `NotFound`; an incident without approvals has none (`Ok(vec![])`).
    async fn approvals(&self, key: &str) -> Result<Vec<Approval>>;
}

// ---------------------------------------------------------------------------------------------
// All of them

/// Every port the responder uses, one implementation each.
///
/// ```
/// use std::sync::Arc;
/// use flowfail_core::memory::{MemoryTaskStore, World};
/// use flowfail_core::{Clock, Policy, ports::Ports};
///
/// let world = World::new(&Policy::default(), Clock::system());
/// // Start from any implementations; here the in-memory ones, with the TaskDB swapped.
/// let from_world = world.ports();
/// let ports = Ports::builder()
///     .logs(from_world.logs.clone())
///     .tasks(Arc::new(MemoryTaskStore::new()))
///     .bundles(from_world.bundles.clone())
///     .quota(from_world.quota.clone())
///     .deployment(from_world.deployment.clone())
///     .status(from_world.status.clone())
///     .pager(from_world.pager.clone())
///     .notifier(from_world.notifier.clone())
///     .incidents(from_world.incidents.clone())
///     .build()
///     .unwrap();
/// # let _ = ports;
///
/// // A missing port is named.
/// let e = Ports::builder().build().unwrap_err();
/// assert!(e.to_string().contains("logs"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ports {
    /// Error logs.
    pub logs: Arc<dyn LogSource>,
    /// The TaskDB.
    pub tasks: Arc<dyn TaskStore>,
    /// Context bundles.
    pub bundles: Arc<dyn BundleStore>,
    /// Vendor quota.
    pub quota: Arc<dyn QuotaChecker>,
    /// The Deployment.
    pub deployment: Arc<dyn DeploymentController>,
    /// Vendor status pages.
    pub status: Arc<dyn StatusPage>,
    /// The pager.
    pub pager: Arc<dyn Pager>,
    /// Stakeholder notifications.
    pub notifier: Arc<dyn Notifier>,
    /// The incident ledger.
    pub incidents: Arc<dyn IncidentStore>,
}

impl Ports {
    /// A builder; every port is required.
    pub fn builder() -> PortsBuilder {
        PortsBuilder::default()
    }
}

/// Builds [`Ports`]. Every port is required: [`PortsBuilder::build`] names the ones missing.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct PortsBuilder {
    logs: Option<Arc<dyn LogSource>>,
    tasks: Option<Arc<dyn TaskStore>>,
    bundles: Option<Arc<dyn BundleStore>>,
    quota: Option<Arc<dyn QuotaChecker>>,
    deployment: Option<Arc<dyn DeploymentController>>,
    status: Option<Arc<dyn StatusPage>>,
    pager: Option<Arc<dyn Pager>>,
    notifier: Option<Arc<dyn Notifier>>,
    incidents: Option<Arc<dyn IncidentStore>>,
}

impl PortsBuilder {
    /// Error logs (CloudWatch Logs in production).
    pub fn logs(mut self, p: Arc<dyn LogSource>) -> Self {
        self.logs = Some(p);
        self
    }
    /// The TaskDB (PostgreSQL in production).
    pub fn tasks(mut self, p: Arc<dyn TaskStore>) -> Self {
        self.tasks = Some(p);
        self
    }
    /// Context bundles (S3 in production).
    pub fn bundles(mut self, p: Arc<dyn BundleStore>) -> Self {
        self.bundles = Some(p);
        self
    }
    /// Vendor quota.
    pub fn quota(mut self, p: Arc<dyn QuotaChecker>) -> Self {
        self.quota = Some(p);
        self
    }
    /// The Deployment (Kubernetes in production).
    pub fn deployment(mut self, p: Arc<dyn DeploymentController>) -> Self {
        self.deployment = Some(p);
        self
    }
    /// Vendor status pages.
    pub fn status(mut self, p: Arc<dyn StatusPage>) -> Self {
        self.status = Some(p);
        self
    }
    /// The pager (PagerDuty in production).
    pub fn pager(mut self, p: Arc<dyn Pager>) -> Self {
        self.pager = Some(p);
        self
    }
    /// Stakeholder notifications (a webhook in production).
    pub fn notifier(mut self, p: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(p);
        self
    }
    /// The incident ledger (PostgreSQL in production).
    pub fn incidents(mut self, p: Arc<dyn IncidentStore>) -> Self {
        self.incidents = Some(p);
        self
    }

    /// The ports, or an [`crate::ErrorKind::InvalidInput`] error naming every missing one.
    pub fn build(self) -> Result<Ports> {
        let missing: Vec<&str> = [
            ("logs", self.logs.is_none()),
            ("tasks", self.tasks.is_none()),
            ("bundles", self.bundles.is_none()),
            ("quota", self.quota.is_none()),
            ("deployment", self.deployment.is_none()),
            ("status", self.status.is_none()),
            ("pager", self.pager.is_none()),
            ("notifier", self.notifier.is_none()),
            ("incidents", self.incidents.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        match (
            self.logs,
            self.tasks,
            self.bundles,
            self.quota,
            self.deployment,
            self.status,
            self.pager,
            self.notifier,
            self.incidents,
        ) {
            (
                Some(logs),
                Some(tasks),
                Some(bundles),
                Some(quota),
                Some(deployment),
                Some(status),
                Some(pager),
                Some(notifier),
                Some(incidents),
            ) => Ok(Ports {
                logs,
                tasks,
                bundles,
                quota,
                deployment,
                status,
                pager,
                notifier,
                incidents,
            }),
            _ => Err(
                crate::Error::invalid_input(format!("ports missing: {}", missing.join(", ")))
                    .with_operation("ports.build"),
            ),
        }
    }
}

#[allow(dead_code, clippy::too_many_arguments)]
fn _dyn_compatible(
    _: &dyn LogSource,
    _: &dyn TaskStore,
    _: &dyn BundleStore,
    _: &dyn QuotaChecker,
    _: &dyn DeploymentController,
    _: &dyn StatusPage,
    _: &dyn Pager,
    _: &dyn Notifier,
    _: &dyn IncidentStore,
) {
}
