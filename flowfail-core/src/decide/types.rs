//! The engine's inputs (what a pass observed), the incident state, and its outputs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::actions::Action;
use super::kinds::{RolloutVerdict, SkipKind};
use crate::breaker::Breaker;
use crate::classify::Classification;
use crate::detect::AlertState;
use crate::model::{
    DeploymentState, FailureKind, Quota, StatusCounts, Task, TaskId, TaskStatus, Timestamp,
    VendorHealth, VendorStatus,
};
use crate::schema::SchemaReport;

// ---------------------------------------------------------------------------------------------
// Inputs

/// What flowfail knows about a context bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BundleObs {
    /// Not looked at (not a timeout).
    NotChecked,
    /// There is no bundle for the task.
    Missing,
    /// The bundle's size.
    Size {
        /// Bytes.
        bytes: u64,
    },
    /// The size could not be read.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// What flowfail knows about a task's TaskObject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchemaObs {
    /// Validated.
    Checked(SchemaReport),
    /// The TaskDB holds no TaskObject for the task.
    Missing,
    /// It could not be read.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// A failed task with the evidence gathered about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ObservedTask {
    /// The task.
    pub task: Task,
    /// Its classification.
    pub class: Classification,
    /// Its bundle (timeouts only).
    pub bundle: BundleObs,
    /// Its TaskObject validation (validation failures only).
    pub schema: Option<SchemaObs>,
}

impl ObservedTask {
    /// A task with its classification and no evidence yet.
    pub fn from_parts(task: Task, class: Classification) -> Self {
        ObservedTask {
            task,
            class,
            bundle: BundleObs::NotChecked,
            schema: None,
        }
    }
}

/// The function's logs in the alert window: error lines, Lambda's own `Task timed out` lines
/// (which an `ERROR` filter misses), and the tasks error lines name that the TaskDB does not
/// show as failed — the detection gap the runbook asks to report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LogsObs {
    /// Error lines (`ERROR`, and Lambda's `Task timed out after N seconds` lines).
    pub errors: u64,
    /// Of them, Lambda's `Task timed out` lines: invocations the runtime ended.
    pub lambda_timeouts: u64,
    /// One `Task timed out` line, as logged (sanitized), when there is one.
    pub timeout_example: Option<String>,
    /// Tasks that error lines name and the TaskDB does not show failed: with their status
    /// (`None`: not in the TaskDB) and one line each, at most [`LogsObs::MAX_NAMED`].
    pub not_failed: Vec<(TaskId, Option<crate::model::TaskStatus>, String)>,
    /// Whether a read hit its bound (the counts are then at least these).
    pub truncated: bool,
}

impl LogsObs {
    /// At most this many tasks named in error lines are looked up per pass.
    pub const MAX_NAMED: usize = 100;
}

/// Everything one pass observed. A read that failed is `None` (or `Unknown`) and listed in
/// `gaps`: the engine never decides on data it does not have.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Observation {
    /// When.
    pub now: Timestamp,
    /// Finished tasks in the alert window.
    pub counts: Option<StatusCounts>,
    /// Failed tasks (the runbook's query), with evidence.
    pub failed: Option<Vec<ObservedTask>>,
    /// `true` when the failed-task read hit `triage_limit`.
    pub failed_truncated: bool,
    /// Tasks flowfail is watching (the breaker's probe), by id.
    pub watched: BTreeMap<TaskId, Task>,
    /// The tasks flowfail retried in this incident and has not yet seen finish, read back by
    /// id; `None` for one the TaskDB no longer holds. A retried task missing here was not read
    /// (the read failed, or the retry was recorded after this pass observed): not finished.
    pub retried: BTreeMap<TaskId, Option<Task>>,
    /// What the function's logs showed in the alert window (`None` when they could not be
    /// read): see [`LogsObs`].
    pub logs: Option<LogsObs>,
    /// The primary vendor's quota.
    pub quota: Quota,
    /// Vendor health, for the primary and fallback vendors.
    pub vendors: BTreeMap<String, VendorStatus>,
    /// The Deployment.
    pub deployment: Option<DeploymentState>,
    /// Finished tasks of the alert window from its start until the current revision was
    /// deployed, when that was inside the window: the failure mix before the deploy.
    pub before_deploy: Option<StatusCounts>,
    /// Reads that failed.
    pub gaps: Vec<String>,
}

impl Observation {
    /// An empty observation at `now`: nothing read yet.
    pub fn new(now: Timestamp) -> Self {
        Observation {
            now,
            counts: None,
            failed: None,
            failed_truncated: false,
            watched: BTreeMap::new(),
            retried: BTreeMap::new(),
            logs: None,
            quota: Quota::Unknown {
                reason: "not read".into(),
            },
            vendors: BTreeMap::new(),
            deployment: None,
            before_deploy: None,
            gaps: Vec::new(),
        }
    }

    /// A vendor's health; missing means unknown.
    pub fn vendor(&self, v: &str) -> VendorHealth {
        self.vendors
            .get(v)
            .map_or(VendorHealth::Unknown, |s| s.health)
    }
}

// ---------------------------------------------------------------------------------------------
// Incident state

/// The Deployment as it was when the incident opened: the rollback target is decided from this,
/// never from a later state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeploymentAtOpen {
    /// Revision running then.
    pub revision: u64,
    /// When it was deployed.
    pub deployed_at: Option<Timestamp>,
    /// Its resourceVersion then.
    pub resource_version: String,
    /// The previous revision then (the rollback target).
    pub previous_revision: Option<u64>,
}

/// An env var flowfail set, with the value it replaced (for undo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnvRecord {
    /// Value set (`None`: unset).
    pub value: Option<String>,
    /// Value before flowfail touched it.
    pub previous: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// The rollback flowfail performed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RollbackRecord {
    /// When.
    pub at: Timestamp,
    /// From revision.
    pub from_revision: u64,
    /// To revision.
    pub to_revision: u64,
    /// Rollout verdict: `None` while verifying, then `complete`, `failed` or `timeout`.
    pub rollout: Option<String>,
    /// When the verdict came.
    pub verified_at: Option<Timestamp>,
}

impl RollbackRecord {
    /// A rollback reserved in the ledger by a process that stopped before the call, which never
    /// reached the Deployment ([`crate::decide::reconcile_reserved`]).
    pub fn never_reached(&self) -> bool {
        self.verdict() == Some(RolloutVerdict::NeverReached)
    }

    /// The rollout's verdict, when there is one.
    pub fn verdict(&self) -> Option<RolloutVerdict> {
        self.rollout.as_deref().map(RolloutVerdict::parse)
    }

    /// Whether the rollback may have changed the Deployment: all but one that never reached it
    /// and one the API refused (a panic while calling it may have landed).
    pub fn may_have_landed(&self) -> bool {
        let refused = matches!(
            self.verdict(),
            Some(RolloutVerdict::RollbackFailed(why)) if !why.starts_with("panicked")
        );
        !self.never_reached() && !refused
    }
}

/// Retries flowfail scheduled for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryRecord {
    /// Attempt count after the last retry flowfail scheduled.
    pub attempts: u32,
    /// When.
    pub last_at: Timestamp,
    /// How that retry ended, once flowfail saw it finish: `succeeded`, or `failed` /
    /// `failed_final` (failed again). `None` while it has not been seen finished: the incident
    /// does not resolve then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<TaskStatus>,
}

/// A bundle flowfail pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PruneRecord {
    /// When.
    pub at: Timestamp,
    /// Size before.
    pub from_bytes: u64,
    /// Size after.
    pub to_bytes: u64,
}

/// Everything flowfail remembers about an open incident. It lives in the incident ledger, not
/// in memory, so a restarted responder (or another replica) carries on where the last pass
/// stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IncidentState {
    /// Deterministic incident key.
    pub key: String,
    /// When the alert was first seen firing.
    pub detected_at: Timestamp,
    /// The alert at detection.
    pub alert_at_detection: AlertState,
    /// Failed tasks by kind at detection.
    pub classification_at_detection: BTreeMap<FailureKind, u64>,
    /// Whether the alert fired at the last pass (hysteresis).
    pub alert_firing: bool,
    /// The Deployment when the incident opened.
    pub deployment_at_open: Option<DeploymentAtOpen>,
    /// The resourceVersion flowfail last saw or produced; a different one means someone else
    /// changed the Deployment.
    pub known_resource_version: Option<String>,
    /// Someone other than flowfail changed the Deployment during the incident: no rollback.
    #[serde(default)]
    pub deployment_changed_externally: bool,
    /// Env vars flowfail set.
    pub env_changes: BTreeMap<String, EnvRecord>,
    /// Env vars flowfail set and later undid in this incident: never set a second time (an
    /// outage that comes back after recovery is escalated, not flapped over).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub env_undone: BTreeSet<String>,
    /// Env changes about to be made (write-ahead): written to the ledger right before the call
    /// and gone from the next state written after it. One still here when a pass starts belongs
    /// to a process that stopped between the call and its record; it is reconciled with the
    /// Deployment ([`crate::decide::reconcile_env_intents`]) before anything is decided.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_intents: BTreeMap<String, EnvRecord>,
    /// flowfail's breaker for rate-limited retries.
    pub breaker: Breaker,
    /// When the circuit breaker env was enabled (by flowfail or found enabled).
    pub breaker_enabled_at: Option<Timestamp>,
    /// First time each vendor was seen degraded.
    pub outage_seen: BTreeMap<String, Timestamp>,
    /// The rollback, if one was performed.
    pub rollback: Option<RollbackRecord>,
    /// Revisions flowfail rolled the Deployment away from in earlier incidents, each with the
    /// incident that did: no rollback redeploys one. Read from the incident of the scope closed
    /// last when this one opened ([`IncidentState::inherit`]), so the ledger carries them from
    /// incident to incident.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rolled_away: BTreeMap<u64, String>,
    /// Pages and notifications sent (effect keys).
    pub effects: BTreeSet<String>,
    /// Bundles pruned.
    pub pruned: BTreeMap<TaskId, PruneRecord>,
    /// Bundles that could not be pruned, and why (never tried again in this incident).
    pub prune_failed: BTreeMap<TaskId, String>,
    /// Retries scheduled.
    pub retries: BTreeMap<TaskId, RetryRecord>,
    /// Tasks whose validation findings were reported.
    pub findings_reported: BTreeSet<TaskId>,
    /// Whether the detection gap (failures the logs show and the TaskDB does not) was
    /// reported in this incident.
    #[serde(default)]
    pub detection_gap_reported: bool,
    /// Whether the schema-version mismatch was reported in this incident.
    #[serde(default)]
    pub schema_mismatch_reported: bool,
    /// Env vars flowfail set that the Deployment's GitOps controller put back (reported once;
    /// the change belongs in Git).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub gitops_reverted: BTreeSet<String>,
    /// When the incident was escalated to humans.
    pub escalated_at: Option<Timestamp>,
    /// When it resolved.
    pub resolved_at: Option<Timestamp>,
    /// The alert that woke flowfail for this incident (a Grafana or Alertmanager webhook), when
    /// one did; flowfail still checked the failure rate itself before opening it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woken_by: Option<String>,
}

impl IncidentState {
    /// Carries what the ledger remembers across incidents from `previous`, the state of the
    /// incident of the scope closed last (as JSON; only the fields read here need to parse): the
    /// revisions flowfail rolled away from, its own rollback's included.
    pub fn inherit(&mut self, previous_key: &str, previous: &serde_json::Value) {
        if let Some(m) = previous
            .get("rolled_away")
            .and_then(|v| serde_json::from_value::<BTreeMap<u64, String>>(v.clone()).ok())
        {
            self.rolled_away.extend(m);
        }
        if let Some(rb) = previous
            .get("rollback")
            .and_then(|v| serde_json::from_value::<Option<RollbackRecord>>(v.clone()).ok())
            .flatten()
            .filter(RollbackRecord::may_have_landed)
        {
            self.rolled_away
                .insert(rb.from_revision, previous_key.to_owned());
        }
    }

    /// A new incident detected at `now`.
    pub fn open(
        key: String,
        now: Timestamp,
        alert: AlertState,
        classification: BTreeMap<FailureKind, u64>,
        deployment: Option<&DeploymentState>,
    ) -> Self {
        IncidentState {
            key,
            detected_at: now,
            alert_at_detection: alert,
            classification_at_detection: classification,
            alert_firing: alert.firing,
            deployment_at_open: deployment.map(|d| DeploymentAtOpen {
                revision: d.revision,
                deployed_at: d.deployed_at,
                resource_version: d.resource_version.clone(),
                previous_revision: d.previous_revision(),
            }),
            known_resource_version: deployment.map(|d| d.resource_version.clone()),
            deployment_changed_externally: false,
            env_changes: BTreeMap::new(),
            env_undone: BTreeSet::new(),
            env_intents: BTreeMap::new(),
            breaker: Breaker::Closed,
            breaker_enabled_at: None,
            outage_seen: BTreeMap::new(),
            rollback: None,
            rolled_away: BTreeMap::new(),
            effects: BTreeSet::new(),
            pruned: BTreeMap::new(),
            prune_failed: BTreeMap::new(),
            retries: BTreeMap::new(),
            findings_reported: BTreeSet::new(),
            detection_gap_reported: false,
            schema_mismatch_reported: false,
            gitops_reverted: BTreeSet::new(),
            escalated_at: None,
            resolved_at: None,
            woken_by: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// An action considered and not taken, with the reason. Repeated reasons are aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Skip {
    /// What was not done (`retry_task`, `rollback`, `set_env`, … `resolve`, `all`).
    pub action: SkipKind,
    /// Why.
    pub reason: String,
    /// How many subjects.
    pub count: usize,
    /// Up to 10 subjects (task ids, env names).
    pub examples: Vec<String>,
}

impl Skip {
    /// A skip of one subject.
    pub fn new(
        action: impl Into<SkipKind>,
        subject: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let s = subject.into();
        Skip {
            action: action.into(),
            reason: reason.into(),
            count: 1,
            examples: if s.is_empty() { Vec::new() } else { vec![s] },
        }
    }
}

/// Something found and reported, not acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// `validation`, `new_failure_mode`, …
    pub kind: String,
    /// The task, if about one.
    pub task_id: Option<TaskId>,
    /// What.
    pub summary: String,
    /// Evidence (validation errors with pointers, version mismatch, samples).
    pub details: serde_json::Value,
}

/// How an incident ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Settle {
    /// The alert cleared.
    Resolved,
    /// Nothing automated remains; humans have it.
    Escalated,
}

/// The result of [`decide`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Decision {
    /// The alert this pass (None when the counts could not be read).
    pub alert: Option<AlertState>,
    /// Failed tasks by kind.
    pub classification: BTreeMap<FailureKind, u64>,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// What was considered and not done.
    pub skipped: Vec<Skip>,
    /// What was found.
    pub findings: Vec<Finding>,
    /// What the incident waits for (non-empty keeps it open).
    pub waiting: Vec<String>,
    /// Earliest time something becomes due.
    pub wake_at: Option<Timestamp>,
    /// Resolved or escalated.
    pub settle: Option<Settle>,
    /// The incident state with what this pass *observed*: the alert's hysteresis, the breaker's
    /// clock and probe result, changes made by others, when an outage was first seen, and the
    /// settlement. It holds nothing about the actions, which have not happened yet: their
    /// outcomes are applied one by one with [`super::apply_outcome`].
    #[serde(skip)]
    pub state: Option<IncidentState>,
}
