//! The decision engine: what the runbook says to do, given what the ports report.
//!
//! [`decide`] is pure and synchronous: `(observation, incident state, policy) -> Decision`.
//! It never performs I/O; [`crate::respond`] carries the decision out. Every action it
//! considered and did not take comes back as a [`Skip`] with the reason, so the report can say
//! why flowfail did *not* act as clearly as what it did.
//!
//! The branches, with the default [`Policy`]:
//!
//! | runbook | decision |
//! |---|---|
//! | alert | ≥ `min_sample` finished tasks in the window and failure rate > 1 %; no alert, no action |
//! | timeout | bundle > 500 KB → prune to ≤ 180 KB, then retry; otherwise retry with backoff |
//! | rate limit | quota > 80 % → `ENABLE_CIRCUIT_BREAKER=true` once; retries wait for half-open (60 s), one probe first; quota ≥ 95 % → page on-call; unknown quota → no flip |
//! | validation | never retried; a finding with JSON pointers and any schema-version mismatch |
//! | model API 5xx | primary vendor down → `FALLBACK_MODEL` if the fallback vendor is operational, else `MANUAL_REVIEW_MODE=true`; > 30 min → page SRE + TL, notify stakeholders; recovered → undo, retry |
//! | unknown | page on-call once with the evidence (new failure mode) |
//! | widespread | ≥ 25 %, not vendor-caused, recent deploy, previous revision recorded at open → roll back to it once, verify; persisting → page, never a second rollback |
//! | retry | ≤ `max_attempts` per task, jittered exponential backoff, a per-pass budget |

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::breaker::{Admission, Breaker};
use crate::classify::Classification;
use crate::detect::{AlertState, alert_from_counts};
use crate::model::{
    DeploymentState, FailureKind, Quota, StatusCounts, Task, TaskId, TaskStatus, Timestamp,
    VendorHealth, VendorStatus,
};
use crate::policy::Policy;
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
    /// Error log events in the window (count), and whether the read was truncated.
    pub log_events: Option<(usize, bool)>,
    /// The primary vendor's quota.
    pub quota: Quota,
    /// Vendor health, for the primary and fallback vendors.
    pub vendors: BTreeMap<String, VendorStatus>,
    /// The Deployment.
    pub deployment: Option<DeploymentState>,
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
            log_events: None,
            quota: Quota::Unknown {
                reason: "not read".into(),
            },
            vendors: BTreeMap::new(),
            deployment: None,
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

/// Retries flowfail scheduled for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryRecord {
    /// Attempt count after the last retry flowfail scheduled.
    pub attempts: u32,
    /// When.
    pub last_at: Timestamp,
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
    /// flowfail's breaker for rate-limited retries.
    pub breaker: Breaker,
    /// When the circuit breaker env was enabled (by flowfail or found enabled).
    pub breaker_enabled_at: Option<Timestamp>,
    /// First time each vendor was seen degraded.
    pub outage_seen: BTreeMap<String, Timestamp>,
    /// The rollback, if one was performed.
    pub rollback: Option<RollbackRecord>,
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
    /// When the incident was escalated to humans.
    pub escalated_at: Option<Timestamp>,
    /// When it resolved.
    pub resolved_at: Option<Timestamp>,
}

impl IncidentState {
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
            breaker: Breaker::Closed,
            breaker_enabled_at: None,
            outage_seen: BTreeMap::new(),
            rollback: None,
            effects: BTreeSet::new(),
            pruned: BTreeMap::new(),
            prune_failed: BTreeMap::new(),
            retries: BTreeMap::new(),
            findings_reported: BTreeSet::new(),
            escalated_at: None,
            resolved_at: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Prune the task's context bundle to `max_bytes`.
    PruneContext {
        /// Task.
        task_id: TaskId,
        /// Bundle size seen.
        from_bytes: u64,
        /// Budget.
        max_bytes: u64,
    },
    /// Set (or, with `value: None`, unset) an env var on the Deployment.
    SetEnv {
        /// Deployment.
        deployment: String,
        /// Variable.
        name: String,
        /// New value.
        value: Option<String>,
        /// Why, in the runbook's words.
        purpose: String,
    },
    /// Retry a task, fenced on its attempt count.
    RetryTask {
        /// Task.
        task_id: TaskId,
        /// The attempt this is (1-based).
        attempt: u32,
        /// Attempt count the retry is fenced on.
        expected_attempts: u32,
        /// The failure being retried.
        failure_kind: FailureKind,
        /// Only if the bundle was pruned in this pass (or needs no prune).
        after_prune: bool,
        /// The breaker's half-open probe.
        probe: bool,
    },
    /// Roll back to a recorded revision, only if the Deployment is unchanged.
    Rollback {
        /// Deployment.
        deployment: String,
        /// Current revision.
        from_revision: u64,
        /// Target revision (the previous one when the incident opened).
        to_revision: u64,
        /// Precondition.
        expected_resource_version: String,
    },
    /// Check the rollout after a rollback.
    VerifyRollout {
        /// Deployment.
        deployment: String,
    },
    /// Page a human.
    Page {
        /// Configured target.
        target: String,
        /// Short machine-readable reason (`quota_critical`, `outage_30min`, …).
        reason: String,
        /// Human summary.
        summary: String,
    },
    /// Notify an audience.
    Notify {
        /// Audience.
        audience: String,
        /// Message.
        message: String,
    },
}

impl Action {
    /// The report's `kind` of this action.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::PruneContext { .. } => "prune_context",
            Action::SetEnv { .. } => "set_env",
            Action::RetryTask { .. } => "retry_task",
            Action::Rollback { .. } => "rollback",
            Action::VerifyRollout { .. } => "verify_rollout",
            Action::Page { .. } => "page",
            Action::Notify { .. } => "notify",
        }
    }

    /// Whether carrying it out changes anything.
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Action::VerifyRollout { .. })
    }

    /// The effect key used for at-most-once reservations and dedup keys (pages, notifications,
    /// rollback).
    pub fn effect_key(&self) -> Option<String> {
        match self {
            Action::Page { target, reason, .. } => Some(format!("page:{target}:{reason}")),
            Action::Notify { audience, .. } => Some(format!("notify:{audience}")),
            Action::Rollback { .. } => Some("rollback".into()),
            _ => None,
        }
    }
}

/// An action considered and not taken, with the reason. Repeated reasons are aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Skip {
    /// The action kind not taken (`retry_task`, `rollback`, `set_env`, …).
    pub action: String,
    /// Why.
    pub reason: String,
    /// How many subjects.
    pub count: usize,
    /// Up to 10 subjects (task ids, env names).
    pub examples: Vec<String>,
}

impl Skip {
    /// A skip of one subject.
    pub fn new(action: &str, subject: impl Into<String>, reason: impl Into<String>) -> Self {
        let s = subject.into();
        Skip {
            action: action.to_owned(),
            reason: reason.into(),
            count: 1,
            examples: if s.is_empty() { Vec::new() } else { vec![s] },
        }
    }
}

/// Something found and reported, not acted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The incident state after this decision (before action outcomes are recorded).
    #[serde(skip)]
    pub state: Option<IncidentState>,
}

struct Builder {
    actions: Vec<Action>,
    skips: BTreeMap<(String, String), Skip>,
    skip_order: Vec<(String, String)>,
    findings: Vec<Finding>,
    waiting: Vec<String>,
    wake_at: Option<Timestamp>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            actions: Vec::new(),
            skips: BTreeMap::new(),
            skip_order: Vec::new(),
            findings: Vec::new(),
            waiting: Vec::new(),
            wake_at: None,
        }
    }
    fn skip(&mut self, action: &str, subject: impl Into<String>, reason: impl Into<String>) {
        let key = (action.to_owned(), reason.into());
        let e = self.skips.entry(key.clone()).or_insert_with(|| {
            self.skip_order.push(key.clone());
            Skip {
                action: key.0.clone(),
                reason: key.1.clone(),
                count: 0,
                examples: Vec::new(),
            }
        });
        e.count += 1;
        let s = subject.into();
        if e.examples.len() < 10 && !s.is_empty() {
            e.examples.push(s);
        }
    }
    fn wait(&mut self, what: impl Into<String>, until: Option<Timestamp>) {
        let w = what.into();
        if !self.waiting.contains(&w) {
            self.waiting.push(w);
        }
        if let Some(u) = until {
            self.wake_at = Some(self.wake_at.map_or(u, |w| w.min(u)));
        }
    }
    fn page(
        &mut self,
        state: &IncidentState,
        policy: &Policy,
        target: &str,
        reason: &str,
        summary: String,
    ) {
        if !policy.is_page_target(target) {
            self.skip("page", target, "target is not in the policy's page_targets");
            return;
        }
        let a = Action::Page {
            target: target.to_owned(),
            reason: reason.to_owned(),
            summary,
        };
        if let Some(k) = a.effect_key()
            && !state.effects.contains(&k)
            && !self.actions.contains(&a)
        {
            self.actions.push(a);
        }
    }
    fn skips(&self) -> Vec<Skip> {
        self.skip_order
            .iter()
            .filter_map(|k| self.skips.get(k).cloned())
            .collect()
    }
}

/// The alert on counts read from the TaskDB, with hysteresis.
pub fn alert(counts: &StatusCounts, was_firing: bool, policy: &Policy) -> AlertState {
    alert_from_counts(counts.succeeded, counts.failed, was_firing, policy)
}

/// Failed tasks by kind (all five kinds present).
pub fn classification(tasks: &[ObservedTask]) -> BTreeMap<FailureKind, u64> {
    let mut m: BTreeMap<FailureKind, u64> = FailureKind::ALL.iter().map(|k| (*k, 0)).collect();
    for t in tasks {
        *m.entry(t.class.kind).or_default() += 1;
    }
    m
}

/// The backoff before retry attempt `attempt` (1-based): none before the first, then
/// `retry_base_delay_s · 2^(attempt-2)` capped at `retry_max_delay_s`, scaled by a jitter in
/// `[0.5, 1.0]` derived from the task id (deterministic, so replicas agree).
pub fn backoff(policy: &Policy, task: &TaskId, attempt: u32) -> TimeDelta {
    if attempt <= 1 {
        return TimeDelta::zero();
    }
    let exp = attempt.saturating_sub(2).min(30);
    let raw = policy
        .retry_base_delay_s
        .saturating_mul(1u64 << exp)
        .min(policy.retry_max_delay_s);
    // FNV-1a over the id and attempt.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in task.as_str().bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let jitter = 0.5 + (h % 1001) as f64 / 2000.0;
    TimeDelta::milliseconds((raw as f64 * 1000.0 * jitter) as i64)
}

fn secs(s: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

fn pct(r: f64) -> String {
    format!("{:.2}%", r * 100.0)
}

/// Decides one pass. See the [module docs](self).
pub fn decide(obs: &Observation, state: &IncidentState, policy: &Policy) -> Decision {
    let now = obs.now;
    let mut b = Builder::new();
    let mut next = state.clone();

    let Some(counts) = &obs.counts else {
        b.skip(
            "all",
            "",
            "TaskDB counts could not be read: no decision on missing data",
        );
        b.wait("TaskDB counts readable again", None);
        return finish(b, None, BTreeMap::new(), None, next);
    };
    let alert = alert(counts, state.alert_firing, policy);
    next.alert_firing = alert.firing;
    let Some(failed) = &obs.failed else {
        b.skip(
            "all",
            "",
            "failed tasks could not be read: no decision on missing data",
        );
        b.wait("failed tasks readable again", None);
        return finish(b, Some(alert), BTreeMap::new(), None, next);
    };
    let classes = classification(failed);

    if !alert.firing {
        next.resolved_at = Some(now);
        return finish(b, Some(alert), classes, Some(Settle::Resolved), next);
    }

    let env = obs.deployment.as_ref().map(|d| &d.env);
    let deployment = policy.deployment.clone();
    if let (Some(known), Some(d)) = (&state.known_resource_version, &obs.deployment)
        && *known != d.resource_version
    {
        next.deployment_changed_externally = true;
        next.known_resource_version = Some(d.resource_version.clone());
    }

    // --- rate limits: quota, circuit breaker ---------------------------------------------
    next.breaker.tick(now);
    if let Some(p) = next.breaker.probe().cloned() {
        match obs.watched.get(&p).map(|t| t.status) {
            Some(TaskStatus::Succeeded) => {
                next.breaker
                    .probe_result(true, now, policy.half_open_after_s)
            }
            Some(TaskStatus::Failed | TaskStatus::FailedFinal) => {
                next.breaker
                    .probe_result(false, now, policy.half_open_after_s)
            }
            _ => {}
        }
    }
    let rate_limited = classes[&FailureKind::RateLimit] > 0;
    if rate_limited {
        match &obs.quota {
            Quota::Known(u) => {
                if u.used_ratio > policy.quota_breaker_threshold
                    && state.breaker_enabled_at.is_none()
                {
                    match env {
                        Some(env)
                            if env.get(&policy.breaker_env).map(String::as_str) == Some("true") =>
                        {
                            b.skip(
                                "set_env",
                                policy.breaker_env.clone(),
                                "circuit breaker already enabled",
                            );
                            next.breaker_enabled_at = Some(now);
                            next.breaker = Breaker::open(now, policy.half_open_after_s);
                        }
                        Some(_) => {
                            b.actions.push(Action::SetEnv {
                                deployment: deployment.clone(),
                                name: policy.breaker_env.clone(),
                                value: Some("true".into()),
                                purpose: format!(
                                    "quota {} above {}: enable circuit breaker",
                                    pct(u.used_ratio),
                                    pct(policy.quota_breaker_threshold)
                                ),
                            });
                            next.breaker_enabled_at = Some(now);
                            next.breaker = Breaker::open(now, policy.half_open_after_s);
                        }
                        None => b.skip(
                            "set_env",
                            policy.breaker_env.clone(),
                            "deployment state unreadable",
                        ),
                    }
                } else if u.used_ratio <= policy.quota_breaker_threshold
                    && state.breaker_enabled_at.is_none()
                {
                    b.skip(
                        "set_env",
                        policy.breaker_env.clone(),
                        format!(
                            "quota {} is not above {}: breaker not needed",
                            pct(u.used_ratio),
                            pct(policy.quota_breaker_threshold)
                        ),
                    );
                }
                if u.used_ratio >= policy.quota_critical_threshold {
                    b.page(
                        state,
                        policy,
                        &policy.on_call_target,
                        "quota_critical",
                        format!(
                            "{} quota at {}: request a vendor limit increase",
                            policy.primary_vendor,
                            pct(u.used_ratio)
                        ),
                    );
                }
            }
            Quota::Unknown { reason } => b.skip(
                "set_env",
                policy.breaker_env.clone(),
                format!(
                    "quota unknown ({reason}): not enabling the breaker on rate-limit errors alone"
                ),
            ),
        }
    }
    // Undo a breaker flowfail enabled once quota is comfortably low (hysteresis).
    if let (Some(rec), Quota::Known(u)) = (state.env_changes.get(&policy.breaker_env), &obs.quota)
        && rec.value.as_deref() == Some("true")
        && u.used_ratio <= policy.quota_breaker_clear
        && matches!(next.breaker, Breaker::Closed)
    {
        b.actions.push(Action::SetEnv {
            deployment: deployment.clone(),
            name: policy.breaker_env.clone(),
            value: rec.previous.clone(),
            purpose: format!(
                "quota back to {}: restore circuit breaker setting",
                pct(u.used_ratio)
            ),
        });
    }

    // --- model API outage ------------------------------------------------------------------
    let primary = policy.primary_vendor.as_str();
    let primary_health = obs.vendor(primary);
    let has_5xx = classes[&FailureKind::ModelApi5xx] > 0;
    let mut hold_5xx: Option<String> = None;
    if primary_health.is_degraded() {
        let first_seen = *next.outage_seen.entry(primary.to_owned()).or_insert(now);
        let start = obs
            .vendors
            .get(primary)
            .and_then(|s| s.since)
            .map_or(first_seen, |s| s.min(first_seen));
        if has_5xx || state.env_changes.contains_key(&policy.fallback_env) {
            let fallback = policy.fallbacks.get(primary);
            let fb_health = fallback.map(|f| obs.vendor(&f.vendor));
            match (fallback, fb_health, env) {
                (_, _, None) => b.skip(
                    "set_env",
                    policy.fallback_env.clone(),
                    "deployment state unreadable",
                ),
                (Some(f), Some(h), Some(env)) if h.is_operational() => {
                    if env.get(&policy.fallback_env) != Some(&f.model) {
                        b.actions.push(Action::SetEnv {
                            deployment: deployment.clone(),
                            name: policy.fallback_env.clone(),
                            value: Some(f.model.clone()),
                            purpose: format!(
                                "{primary} is {primary_health:?}: route to {} on {}",
                                f.model, f.vendor
                            ),
                        });
                    }
                }
                (f, h, Some(env)) => {
                    let why = match (f, h) {
                        (Some(f), Some(h)) => {
                            format!("fallback vendor {} is {h:?}: not routing there", f.vendor)
                        }
                        _ => format!("no fallback configured for {primary}"),
                    };
                    b.skip("set_env", policy.fallback_env.clone(), why);
                    if env.get(&policy.manual_review_env).map(String::as_str) != Some("true") {
                        b.actions.push(Action::SetEnv {
                            deployment: deployment.clone(),
                            name: policy.manual_review_env.clone(),
                            value: Some("true".into()),
                            purpose: format!("{primary} is {primary_health:?} and no healthy fallback: manual review"),
                        });
                    }
                }
            }
            let escalate_at = start + secs(policy.outage_escalation_after_s);
            if now >= escalate_at {
                let mins = (now - start).num_minutes();
                for t in &policy.outage_page_targets {
                    b.page(
                        state,
                        policy,
                        t,
                        "outage_30min",
                        format!("{primary} outage for {mins} min ({primary_health:?})"),
                    );
                }
                let n = Action::Notify {
                    audience: policy.stakeholder_audience.clone(),
                    message: format!(
                        "FlowEngine degraded: {primary} outage for {mins} min; flows are on fallback or manual review"
                    ),
                };
                if !state.effects.contains("notify:stakeholders")
                    && n.effect_key().is_some_and(|k| !state.effects.contains(&k))
                {
                    b.actions.push(n);
                }
            } else {
                b.wait(
                    format!("outage escalation at {escalate_at}"),
                    Some(escalate_at),
                );
            }
        }
        hold_5xx = Some(format!(
            "{primary} is {primary_health:?}: retries wait for recovery"
        ));
        b.wait(format!("{primary} recovery"), None);
    } else if primary_health.is_operational() {
        for name in [&policy.fallback_env, &policy.manual_review_env] {
            if let Some(rec) = state.env_changes.get(name)
                && rec.value.is_some()
                && env.is_some_and(|e| e.get(name) == rec.value.as_ref())
            {
                b.actions.push(Action::SetEnv {
                    deployment: deployment.clone(),
                    name: name.clone(),
                    value: rec.previous.clone(),
                    purpose: format!("{primary} recovered: undo"),
                });
            }
        }
    } else if has_5xx {
        b.skip(
            "set_env",
            policy.fallback_env.clone(),
            format!("{primary} status unknown: no fallback on an unreadable status page"),
        );
    }

    // --- widespread failures: rollback -------------------------------------------------------
    let mut rollback_verified = false;
    if let Some(rb) = &state.rollback {
        match rb.rollout.as_deref() {
            None => {
                b.actions.push(Action::VerifyRollout {
                    deployment: deployment.clone(),
                });
                b.wait("rollout of the rollback", None);
            }
            Some("complete") => rollback_verified = true,
            Some(other) => b.page(
                state,
                policy,
                &policy.on_call_target,
                "rollback_rollout_failed",
                format!(
                    "rollback to revision {} did not complete: {other}",
                    rb.to_revision
                ),
            ),
        }
    }
    let dominant = classes
        .iter()
        .max_by_key(|(k, n)| (**n, k.is_external()))
        .map(|(k, _)| *k)
        .filter(|_| !failed.is_empty());
    let widespread = alert.window_tasks >= policy.min_sample
        && alert.failure_rate >= policy.widespread_failure_rate;
    if widespread {
        match (dominant, &state.rollback) {
            (Some(k), _) if k.is_external() => b.skip(
                "rollback",
                "",
                format!("failures are mostly {k}: a vendor problem, not a bad deploy"),
            ),
            (_, Some(rb)) => {
                let persisting_after = rb
                    .verified_at
                    .map(|v| v + secs(policy.rollback_verify_after_s));
                b.skip(
                    "rollback",
                    "",
                    format!(
                        "already rolled back to revision {} in this incident: never twice",
                        rb.to_revision
                    ),
                );
                if let Some(t) = persisting_after {
                    if now >= t {
                        b.page(
                            state,
                            policy,
                            &policy.on_call_target,
                            "failures_persist_after_rollback",
                            format!(
                                "failure rate {} persists after rollback to revision {}",
                                pct(alert.failure_rate),
                                rb.to_revision
                            ),
                        );
                    } else {
                        b.wait("failure rate after the rollback", Some(t));
                    }
                }
            }
            (_, None) => plan_rollback(obs, state, policy, &alert, dominant, &mut b),
        }
    }

    // --- per task ---------------------------------------------------------------------------
    let admission = next.breaker.admission();
    let mut probe_chosen = false;
    let mut budget = policy.retry_budget_per_pass;
    let mut unknown_samples: Vec<serde_json::Value> = Vec::new();
    for t in failed {
        let id = &t.task.task_id;
        let kind = t.class.kind;
        match kind {
            FailureKind::Validation => {
                b.skip(
                    "retry_task",
                    id.to_string(),
                    "validation failures are never retried as-is",
                );
                if !state.findings_reported.contains(id) {
                    b.findings.push(validation_finding(t));
                    next.findings_reported.insert(id.clone());
                }
                continue;
            }
            FailureKind::Unknown if !rollback_verified => {
                if unknown_samples.len() < 5 {
                    unknown_samples.push(serde_json::json!({
                        "task_id": id,
                        "error": t.task.error_message.as_deref().map(|m| crate::model::sanitize(m, 300)),
                        "rule": t.class.rule,
                    }));
                }
                b.skip(
                    "retry_task",
                    id.to_string(),
                    "no automated fix for unknown failures",
                );
                continue;
            }
            _ => {}
        }
        if !t.class.retryable && kind != FailureKind::Unknown {
            b.skip(
                "retry_task",
                id.to_string(),
                format!(
                    "{kind} failure is not safe to retry blindly ({})",
                    t.class.rule
                ),
            );
            if kind == FailureKind::RateLimit {
                b.page(
                    state,
                    policy,
                    &policy.on_call_target,
                    "quota_exhausted",
                    format!(
                        "{} quota or spend limit exhausted: request a limit increase",
                        policy.primary_vendor
                    ),
                );
            }
            continue;
        }
        if t.task.attempts >= policy.max_attempts {
            b.skip(
                "retry_task",
                id.to_string(),
                format!(
                    "attempts exhausted ({}/{})",
                    t.task.attempts, policy.max_attempts
                ),
            );
            continue;
        }
        if let Some(r) = state.retries.get(id)
            && r.attempts > t.task.attempts
        {
            b.skip(
                "retry_task",
                id.to_string(),
                "a retry flowfail scheduled is not reflected yet",
            );
            b.wait("scheduled retries to land", None);
            continue;
        }
        let mut after_prune = false;
        if kind == FailureKind::Timeout {
            match &t.bundle {
                BundleObs::Size { bytes } if *bytes > policy.timeout_bundle_threshold.bytes() => {
                    if state.pruned.contains_key(id) {
                        b.skip(
                            "prune_context",
                            id.to_string(),
                            "already pruned once in this incident and still over the threshold",
                        );
                        continue;
                    } else if let Some(why) = state.prune_failed.get(id) {
                        b.skip(
                            "prune_context",
                            id.to_string(),
                            format!("prune failed earlier: {why}"),
                        );
                        continue;
                    }
                    if budget == 0 {
                        b.skip(
                            "prune_context",
                            id.to_string(),
                            "retry budget for this pass used up",
                        );
                        b.wait("retry budget", None);
                        continue;
                    }
                    b.actions.push(Action::PruneContext {
                        task_id: id.clone(),
                        from_bytes: *bytes,
                        max_bytes: policy.prune_target.bytes(),
                    });
                    after_prune = true;
                }
                BundleObs::Size { .. } if !state.pruned.contains_key(id) => b.skip(
                    "prune_context",
                    id.to_string(),
                    format!(
                        "bundle within {}: retry without pruning",
                        policy.timeout_bundle_threshold
                    ),
                ),
                BundleObs::Missing => {
                    b.skip("prune_context", id.to_string(), "no context bundle found")
                }
                BundleObs::Unreadable { reason } => {
                    b.skip(
                        "retry_task",
                        id.to_string(),
                        format!("bundle size unknown ({reason}): no prune, no retry this pass"),
                    );
                    b.wait("bundle sizes readable", None);
                    continue;
                }
                _ => {}
            }
        }
        // When is this retry due?
        let attempt = t.task.attempts + 1;
        let base = state
            .retries
            .get(id)
            .map_or_else(|| t.task.finished_or_created(), |r| r.last_at);
        let mut due = base + backoff(policy, id, attempt);
        if kind == FailureKind::RateLimit && attempt == 1 {
            due = due.max(base + secs(policy.retry_base_delay_s));
        }
        if kind == FailureKind::ModelApi5xx {
            if let Some(why) = &hold_5xx {
                b.skip("retry_task", id.to_string(), why.clone());
                continue;
            }
            if attempt == 1 && !primary_health.is_operational() {
                due = due.max(base + secs(policy.retry_base_delay_s));
            }
        }
        let mut probe = false;
        if kind == FailureKind::RateLimit {
            match &admission {
                Admission::All => {}
                Admission::Probe if !probe_chosen => probe = true,
                Admission::Probe => {
                    b.skip(
                        "retry_task",
                        id.to_string(),
                        "circuit breaker half-open: one probe first",
                    );
                    continue;
                }
                Admission::None { reason, until } => {
                    b.skip("retry_task", id.to_string(), reason.clone());
                    b.wait("circuit breaker", *until);
                    continue;
                }
            }
        }
        if due > now {
            b.skip("retry_task", id.to_string(), "waiting for backoff");
            b.wait("retry backoff", Some(due));
            continue;
        }
        if budget == 0 {
            b.skip(
                "retry_task",
                id.to_string(),
                "retry budget for this pass used up",
            );
            b.wait("retry budget", None);
            continue;
        }
        budget -= 1;
        if probe {
            probe_chosen = true;
            next.breaker.probe_sent(id.clone());
        }
        b.actions.push(Action::RetryTask {
            task_id: id.clone(),
            attempt,
            expected_attempts: t.task.attempts,
            failure_kind: kind,
            after_prune,
            probe,
        });
    }
    if next.breaker.probe().is_some() {
        b.wait("half-open probe", None);
    }

    // --- unknown failures: a new failure mode -------------------------------------------------
    if classes[&FailureKind::Unknown] > 0 && !rollback_verified {
        let n = classes[&FailureKind::Unknown];
        b.page(
            state,
            policy,
            &policy.on_call_target,
            "new_failure_mode",
            format!("{n} failed tasks match no known failure type: new failure mode"),
        );
        if !state
            .effects
            .contains(&format!("page:{}:new_failure_mode", policy.on_call_target))
        {
            b.findings.push(Finding {
                kind: "new_failure_mode".into(),
                task_id: None,
                summary: format!("{n} failures of unknown type"),
                details: serde_json::Value::Array(unknown_samples),
            });
        }
    }

    // --- settle ------------------------------------------------------------------------------
    let busy = b.actions.iter().any(Action::is_mutation) || !b.waiting.is_empty();
    let settle = if busy {
        None
    } else {
        let paged_on_call = state
            .effects
            .iter()
            .chain(
                b.actions
                    .iter()
                    .filter_map(|a| a.effect_key())
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .any(|k| k.starts_with(&format!("page:{}:", policy.on_call_target)));
        if !paged_on_call {
            b.page(
                state,
                policy,
                &policy.on_call_target,
                "automation_exhausted",
                format!(
                    "failure rate {} over {} tasks persists and no automated step remains",
                    pct(alert.failure_rate),
                    alert.window_tasks
                ),
            );
        }
        next.escalated_at = Some(now);
        Some(Settle::Escalated)
    };
    finish(b, Some(alert), classes, settle, next)
}

fn plan_rollback(
    obs: &Observation,
    state: &IncidentState,
    policy: &Policy,
    alert: &AlertState,
    dominant: Option<FailureKind>,
    b: &mut Builder,
) {
    let why = format!(
        "widespread failures: {} of {} tasks, mostly {}",
        pct(alert.failure_rate),
        alert.window_tasks,
        dominant.map_or("unclassified", FailureKind::as_str)
    );
    let Some(at_open) = &state.deployment_at_open else {
        b.skip(
            "rollback",
            "",
            "deployment state at incident open unknown: no rollback target",
        );
        b.page(
            state,
            policy,
            &policy.on_call_target,
            "widespread_no_rollback",
            format!("{why}; deployment state unknown"),
        );
        return;
    };
    let Some(current) = &obs.deployment else {
        b.skip("rollback", "", "deployment state unreadable this pass");
        b.wait("deployment state readable", None);
        return;
    };
    match at_open.deployed_at {
        Some(t) if obs.now - t <= secs(policy.rollback_max_deploy_age_s) => {}
        Some(t) => {
            b.skip(
                "rollback",
                "",
                format!(
                    "revision {} deployed {} h ago: not a recent deploy",
                    at_open.revision,
                    (obs.now - t).num_hours()
                ),
            );
            return;
        }
        None => {
            b.skip(
                "rollback",
                "",
                "deploy time of the current revision unknown",
            );
            return;
        }
    }
    let refuse = |b: &mut Builder, reason: &str, summary: String| {
        b.skip("rollback", "", summary.clone());
        b.page(
            state,
            policy,
            &policy.on_call_target,
            reason,
            format!("{why}; {summary}"),
        );
    };
    let Some(target) = at_open.previous_revision else {
        refuse(
            b,
            "widespread_no_rollback",
            "no previous revision to roll back to".into(),
        );
        return;
    };
    if current.paused {
        refuse(
            b,
            "rollback_refused",
            "deployment is paused: rollback refused".into(),
        );
        return;
    }
    if state.deployment_changed_externally
        || state.known_resource_version.as_deref() != Some(current.resource_version.as_str())
    {
        refuse(
            b,
            "rollback_refused",
            "deployment changed outside flowfail since the incident opened: not overriding a human change".into(),
        );
        return;
    }
    if !current.history.iter().any(|h| h.revision == target) {
        refuse(
            b,
            "rollback_refused",
            format!("revision {target} is no longer in the history"),
        );
        return;
    }
    b.actions.push(Action::Rollback {
        deployment: policy.deployment.clone(),
        from_revision: current.revision,
        to_revision: target,
        expected_resource_version: current.resource_version.clone(),
    });
}

fn validation_finding(t: &ObservedTask) -> Finding {
    let (summary, details) = match &t.schema {
        Some(SchemaObs::Checked(r)) => (
            match &r.version_mismatch {
                Some(m) => format!("TaskObject invalid: {} error(s); {m}", r.errors.len()),
                None => format!("TaskObject invalid: {} error(s)", r.errors.len()),
            },
            serde_json::to_value(r).unwrap_or_default(),
        ),
        Some(SchemaObs::Missing) => (
            "no TaskObject stored for the task".into(),
            serde_json::Value::Null,
        ),
        Some(SchemaObs::Unreadable { reason }) => (
            format!("TaskObject unreadable: {reason}"),
            serde_json::Value::Null,
        ),
        None => ("TaskObject not checked".into(), serde_json::Value::Null),
    };
    Finding {
        kind: "validation".into(),
        task_id: Some(t.task.task_id.clone()),
        summary,
        details: serde_json::json!({
            "error": t.task.error_message.as_deref().map(|m| crate::model::sanitize(m, 300)),
            "schema": details,
        }),
    }
}

fn finish(
    b: Builder,
    alert: Option<AlertState>,
    classification: BTreeMap<FailureKind, u64>,
    settle: Option<Settle>,
    next: IncidentState,
) -> Decision {
    Decision {
        alert,
        classification,
        skipped: b.skips(),
        actions: b.actions,
        findings: b.findings,
        waiting: b.waiting,
        wake_at: b.wake_at,
        settle,
        state: Some(next),
    }
}
