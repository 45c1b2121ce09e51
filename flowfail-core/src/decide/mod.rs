//! The decision engine: what the runbook says to do, given what the ports report.
//!
//! [`decide`] is pure and synchronous: `(observation, incident state, policy) -> Decision`.
//! It never performs I/O; [`crate::respond`] carries the decision out. Every action it
//! considered and did not take comes back as a [`Skip`] with the reason, so the report can say
//! why flowfail did *not* act as clearly as what it did.
//!
//! The incident state has one owner per kind of change. [`decide`] records only what it
//! *observed* (alert hysteresis, the breaker's clock, a human's change to the Deployment, when an
//! outage was first seen, the settlement) and returns *intentions*. What an action did is
//! applied by [`apply_outcome`], a pure function of (state, action, [`ActionOutcome`]):
//! applied, refused, failed or unknown. Nothing is written for an action that has not happened.
//!
//! One file per runbook branch: `rate_limit`, `outage` (with `vendor`: the observed per-vendor
//! 5xx rates), `rollback`, `tasks` (per-task remediation and new failure modes, summarised as
//! message templates by [`crate::templates`]), `settle`; `types` holds the inputs and outputs
//! and `outcome` the state transitions of action outcomes.
//!
//! The branches, with the default [`Policy`]:
//!
//! | runbook | decision |
//! |---|---|
//! | alert | ≥ `min_sample` finished tasks in the window and failure rate > 1 %; no alert, no action |
//! | timeout | bundle > 500 KB → prune to ≤ 180 KB, then retry; otherwise retry with backoff |
//! | rate limit | quota > 80 % → `ENABLE_CIRCUIT_BREAKER=true` once; retries wait for half-open (60 s), one probe first; quota ≥ 95 % → page on-call; unknown quota → no flip |
//! | validation | never retried; a finding with JSON pointers and any schema-version mismatch |
//! | model API 5xx | primary vendor degraded — its status page says so, *or* its observed 5xx rate in the window is ≥ 5 % of ≥ 100 tasks with a 5xx in the last 10 min ([`vendor_of`]) — → `FALLBACK_MODEL` if the fallback vendor is healthy (operational and not observed failing), else `MANUAL_REVIEW_MODE=true`; > 30 min → page SRE + TL, notify stakeholders; recovered by both → undo, retry |
//! | unknown | page on-call once (new failure mode) with the failures grouped into message templates, each with a count, an example and a proposed rule ([`crate::templates`]) |
//! | widespread | ≥ 25 %, not vendor-caused, recent deploy, previous revision recorded at open → roll back to it once, verify; persisting → page, never a second rollback |
//! | retry | ≤ `max_attempts` per task, jittered exponential backoff, a per-pass budget |

use std::collections::BTreeMap;

use chrono::TimeDelta;

use crate::classify::Classification;
use crate::detect::{AlertState, alert_from_counts};
use crate::model::{FailureKind, StatusCounts, Task, TaskId, Timestamp};
use crate::policy::Policy;

pub mod actions;
pub mod approval;
mod builder;
mod detection;
pub mod effects;
mod gitops;
mod kinds;
mod outage;
mod outcome;
mod rate_limit;
mod rollback;
mod schema_mismatch;
mod settle;
mod tasks;
mod trouble;
mod types;
mod vendor;

pub use actions::Action;
use builder::Builder;
pub use kinds::{ActionKind, RolloutVerdict, SkipKind};
pub use outcome::{
    ActionOutcome, Applied, ROLLBACK_NEVER_REACHED, ReservedRollback, apply_outcome,
    escalate_after_panic, reconcile_env_intents, reconcile_reserved,
};
pub use trouble::{Trouble, escalation, pause_notice, retry_after_prune};
pub use types::{
    BundleObs, Decision, DeploymentAtOpen, EnvRecord, Finding, IncidentState, LogsObs, Observation,
    ObservedTask, PruneRecord, RetryRecord, RollbackRecord, SchemaObs, Settle, Skip,
};
pub use vendor::{ObservedRate, vendor_of};

/// Why a validation failure is not retried (every path that considers a retry says it alike).
const NEVER_AS_IS: &str = "validation failures are never retried as-is";
/// Why an unknown failure is not retried before a verified rollback.
const NO_FIX_FOR_UNKNOWN: &str = "no automated fix for unknown failures";

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

/// The retry gates of one task that need no incident context: a kind that is safe to retry
/// as-is and attempts left. `Err` gives the reason, in the report's words.
pub fn retry_gate(task: &Task, class: &Classification, policy: &Policy) -> Result<(), String> {
    if !class.retryable && class.kind != FailureKind::Unknown {
        return Err(format!(
            "{} failure is not safe to retry blindly ({})",
            class.kind, class.rule
        ));
    }
    if task.attempts >= policy.max_attempts {
        return Err(format!(
            "attempts exhausted ({}/{})",
            task.attempts, policy.max_attempts
        ));
    }
    Ok(())
}

/// A retry asked for by a human (`flowfail retry`), judged by the same gates as the
/// responder's: the task's kind and attempts, the open incident's breaker and outage hold, a
/// retry flowfail already scheduled. Returns the retry and when it may run (its backoff), or
/// why not.
pub fn manual_retry(
    task: &ObservedTask,
    incident: Option<&IncidentState>,
    policy: &Policy,
    now: Timestamp,
) -> Result<(Action, Timestamp), String> {
    if task.task.status != crate::model::TaskStatus::Failed {
        return Err(format!("task is {:?}, not failed", task.task.status));
    }
    match task.class.kind {
        FailureKind::Validation => return Err(NEVER_AS_IS.into()),
        FailureKind::Unknown
            if !incident.is_some_and(|s| {
                s.rollback
                    .as_ref()
                    .and_then(RollbackRecord::verdict)
                    .is_some_and(|v| v.is_complete())
            }) =>
        {
            return Err(NO_FIX_FOR_UNKNOWN.into());
        }
        _ => {}
    }
    let empty;
    let state = match incident {
        Some(s) => s,
        None => {
            empty = IncidentState::open(
                String::new(),
                now,
                crate::detect::AlertState {
                    firing: true,
                    failure_rate: 0.0,
                    window_tasks: 0,
                    failed: 0,
                },
                BTreeMap::new(),
                None,
            );
            &empty
        }
    };
    let mut obs = Observation::new(now);
    obs.failed = Some(vec![task.clone()]);
    let classes = classification(std::slice::from_ref(task));
    let cx = Ctx {
        obs: &obs,
        state,
        policy,
        now,
        alert: state.alert_at_detection,
        failed: std::slice::from_ref(task),
        classes: &classes,
        env: None,
    };
    let mut b = Builder::new();
    if !tasks::retry_allowed(&cx, &mut b, task) {
        return Err(first_skip(&b));
    }
    let routed_around = [&policy.fallback_env, &policy.manual_review_env]
        .iter()
        .any(|e| state.env_changes.get(*e).is_some_and(|r| r.value.is_some()));
    let outage = outage::OutageView {
        primary_healthy: false,
        hold_5xx: routed_around.then(|| {
            format!(
                "{} outage in progress (incident {}): retries wait for recovery",
                policy.primary_vendor, state.key
            )
        }),
    };
    let attempt = task.task.attempts + 1;
    let Some(due) = tasks::due(&cx, &mut b, &outage, task, attempt) else {
        return Err(first_skip(&b));
    };
    let mut breaker = state.breaker.clone();
    breaker.tick(now);
    if task.class.kind == FailureKind::RateLimit
        && let crate::breaker::Admission::None { reason, .. } = breaker.admission()
    {
        return Err(reason);
    }
    Ok((
        Action::RetryTask(actions::RetryTask {
            task_id: task.task.task_id.clone(),
            attempt,
            expected_attempts: task.task.attempts,
            failure_kind: task.class.kind,
            after_prune: false,
            probe: false,
        }),
        due,
    ))
}

fn first_skip(b: &Builder) -> String {
    b.skips()
        .into_iter()
        .next()
        .map_or_else(|| "not retried".to_owned(), |s| s.reason)
}

/// What every branch reads: the observation, the state as the pass found it, the policy, and
/// what the pass derived from them.
struct Ctx<'a> {
    obs: &'a Observation,
    /// The state as the pass found it (before this pass's observations).
    state: &'a IncidentState,
    policy: &'a Policy,
    now: Timestamp,
    alert: AlertState,
    failed: &'a [ObservedTask],
    classes: &'a BTreeMap<FailureKind, u64>,
    env: Option<&'a BTreeMap<String, String>>,
}

/// Decides one pass. See the [module docs](self).
pub fn decide(obs: &Observation, state: &IncidentState, policy: &Policy) -> Decision {
    let now = obs.now;
    let mut b = Builder::new();
    let mut next = state.clone();

    let Some(counts) = &obs.counts else {
        b.skip(
            SkipKind::All,
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
            SkipKind::All,
            "",
            "failed tasks could not be read: no decision on missing data",
        );
        b.wait("failed tasks readable again", None);
        return finish(b, Some(alert), BTreeMap::new(), None, next);
    };
    let classes = classification(failed);
    let unfinished_retries = settle::retries(obs, state, &mut next, &mut b);
    // A GitOps controller's revert is reported as such, closing or not.
    gitops::detect(obs, state, policy, &mut next, &mut b);

    if !alert.firing {
        settle::left_failed(failed, obs.failed_truncated, state, &mut b);
        // Closing restores what flowfail set, or hands it to a human: never left silently.
        let restoring = settle::restore_on_close(obs, &next, policy, &mut b);
        // Retried tasks left the failure count when they went back to pending: resolved
        // means they finished, not that they are out of the count.
        let retrying = settle::wait_for_retries(&unfinished_retries, &mut b);
        if outage::tell_outage_over(state, policy, &mut b) || restoring || retrying {
            return finish(b, Some(alert), classes, None, next);
        }
        next.resolved_at = Some(now);
        return finish(b, Some(alert), classes, Some(Settle::Resolved), next);
    }

    if let (Some(known), Some(d)) = (&state.known_resource_version, &obs.deployment)
        && *known != d.resource_version
    {
        next.deployment_changed_externally = true;
        next.known_resource_version = Some(d.resource_version.clone());
    }
    let cx = Ctx {
        obs,
        state,
        policy,
        now,
        alert,
        failed,
        classes: &classes,
        env: obs.deployment.as_ref().map(|d| &d.env),
    };
    let mut breaker = rate_limit::decide(&cx, &mut next, &mut b);
    let outage = outage::decide(&cx, &mut next, &mut b);
    let rollback_verified = rollback::decide(&cx, &mut b);
    tasks::decide(
        &cx,
        &mut next,
        &mut b,
        &mut breaker,
        &outage,
        rollback_verified,
    );
    tasks::new_failure_mode(&cx, &mut b, rollback_verified);
    detection::decide(&cx, &mut next, &mut b);
    schema_mismatch::decide(&cx, &mut next, &mut b);
    let settle = settle::decide(&cx, &mut next, &mut b);
    gitops::hold(&next, &mut b);
    finish(b, Some(alert), classes, settle, next)
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
