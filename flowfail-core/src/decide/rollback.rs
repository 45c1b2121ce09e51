//! Widespread failures: roll back to the revision recorded at open, once, verified.

use super::actions;
use super::kinds::{ActionKind, RolloutVerdict};
use super::{Action, Builder, Ctx, DeploymentAtOpen, IncidentState, Observation, pct, secs};
use crate::detect::AlertState;
use crate::model::{DeploymentState, FailureKind};
use crate::policy::Policy;

/// Verifies a rollback in progress, pages when it failed, and plans a rollback when failures
/// are widespread. Returns whether a rollback completed in this incident.
pub(super) fn decide(cx: &Ctx<'_>, b: &mut Builder) -> bool {
    let (now, policy, state, alert) = (cx.now, cx.policy, cx.state, &cx.alert);
    let mut rollback_verified = false;
    if let Some(rb) = &state.rollback {
        match rb.verdict() {
            None => {
                b.actions.push(Action::VerifyRollout(actions::VerifyRollout {
                    deployment: policy.deployment.clone(),
                }));
                b.wait("rollout of the rollback", None);
            }
            Some(RolloutVerdict::Complete) => rollback_verified = true,
            Some(_) if rb.never_reached() => b.page(
                state,
                policy,
                &policy.on_call_target,
                "rollback_not_applied",
                format!(
                    "the rollback to revision {} was reserved by a process that stopped before calling the Kubernetes API: it never reached the Deployment and is not attempted again in this incident",
                    rb.to_revision
                ),
            ),
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
    let dominant = cx
        .classes
        .iter()
        .max_by_key(|(k, n)| (**n, k.is_external()))
        .map(|(k, _)| *k)
        .filter(|_| !cx.failed.is_empty());
    let (rate, left_out) = rollback_rate(cx);
    let widespread =
        alert.window_tasks >= policy.min_sample && rate >= policy.widespread_failure_rate;
    if let Some(why) = left_out.filter(|_| {
        !widespread
            && alert.window_tasks >= policy.min_sample
            && alert.failure_rate >= policy.widespread_failure_rate
    }) {
        b.skip(
            ActionKind::Rollback,
            "",
            format!(
                "{why}; without them the failure rate is {} (under {}): invalid input is not a bad deploy",
                pct(rate),
                pct(policy.widespread_failure_rate)
            ),
        );
    }
    if widespread {
        match (dominant, &state.rollback) {
            (Some(k), _) if k.is_external() => b.skip(
                ActionKind::Rollback,
                "",
                format!("failures are mostly {k}: a vendor problem, not a bad deploy"),
            ),
            (_, Some(rb)) => {
                let persisting_after = rb
                    .verified_at
                    .map(|v| v + secs(policy.rollback_verify_after_s));
                b.skip(ActionKind::Rollback, "", never_twice(rb));
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
            (_, None) => plan_rollback(cx.obs, state, policy, alert, dominant, b),
        }
    }
    rollback_verified
}

/// How many minutes a span of time is, at least one.
fn minutes(d: chrono::TimeDelta) -> f64 {
    (d.num_seconds() as f64 / 60.0).max(1.0)
}

/// The failure rate a rollback weighs: every failure of the window, except validation failures
/// that did not begin with the current deploy — a steady stream of invalid tenant input never
/// rolls a deploy back, a deploy that starts rejecting yesterday's TaskObjects still does.
/// Returns the rate and, when validation failures were left out, why.
fn rollback_rate(cx: &Ctx<'_>) -> (f64, Option<String>) {
    let alert = &cx.alert;
    let window_start = cx
        .now
        .checked_sub_signed(cx.policy.alert_window())
        .unwrap_or(cx.now);
    let listed: Vec<&super::ObservedTask> = cx
        .failed
        .iter()
        .filter(|t| t.task.finished_or_created() >= window_start)
        .collect();
    let validation = listed
        .iter()
        .filter(|t| t.class.kind == FailureKind::Validation)
        .count();
    if validation == 0 {
        return (alert.failure_rate, None);
    }
    let Err(why) = began_with_deploy(cx, window_start, &listed) else {
        return (alert.failure_rate, None);
    };
    let failed = cx.obs.counts.as_ref().map_or(0, |c| c.failed) as f64;
    // A sample cut at `triage_limit` stands for every failure of the window in proportion.
    let left_out = if cx.obs.failed_truncated {
        failed * validation as f64 / listed.len() as f64
    } else {
        validation as f64
    };
    let rate = if alert.window_tasks == 0 {
        0.0
    } else {
        (failed - left_out).max(0.0) / alert.window_tasks as f64
    };
    (
        rate,
        Some(format!(
            "{validation} validation failures left out of the rollback decision: {why}"
        )),
    )
}

/// Whether the window's validation failures began with the current deploy: none (or far
/// fewer per minute) before it, many after. `Err` says why not, or why it cannot be told.
fn began_with_deploy(
    cx: &Ctx<'_>,
    window_start: crate::model::Timestamp,
    listed: &[&super::ObservedTask],
) -> Result<(), String> {
    let Some(deployment) = &cx.obs.deployment else {
        return Err(
            "the Deployment could not be read, so whether they began with a deploy is unknown"
                .into(),
        );
    };
    let Some(at) = deployment.deployed_at else {
        return Err("the current revision's deploy time is unknown".into());
    };
    if at <= window_start {
        return Err(format!(
            "revision {} was deployed before the alert window: they did not begin with it",
            deployment.revision
        ));
    }
    let is_validation = |t: &&&super::ObservedTask| t.class.kind == FailureKind::Validation;
    let after = listed
        .iter()
        .filter(is_validation)
        .filter(|t| t.task.finished_or_created() >= at)
        .count();
    let before = listed
        .iter()
        .filter(is_validation)
        .filter(|t| t.task.finished_or_created() < at)
        .count();
    if after == 0 {
        return Err(format!(
            "none of them came after revision {} was deployed",
            deployment.revision
        ));
    }
    schema_errors_are_the_deploys(listed, at, deployment.revision)?;
    // No failure at all before the deploy: none of them was a validation failure.
    if cx.obs.before_deploy.as_ref().is_some_and(|c| c.failed == 0) {
        return Ok(());
    }
    let reaches_before =
        !cx.obs.failed_truncated || listed.iter().any(|t| t.task.finished_or_created() < at);
    if !reaches_before {
        return Err(format!(
            "the failed-task sample (cut at {}) does not reach back before revision {} was deployed, so whether they began with it cannot be told",
            cx.policy.triage_limit, deployment.revision
        ));
    }
    let per_min_before = before as f64 / minutes(at - window_start);
    let per_min_after = after as f64 / minutes(cx.now - at);
    if per_min_after > 4.0 * per_min_before {
        return Ok(());
    }
    Err(format!(
        "they came as often before revision {} was deployed ({before} in the {:.0} min before, {after} in the {:.0} min after): a steady stream, not the deploy",
        deployment.revision,
        minutes(at - window_start),
        minutes(cx.now - at)
    ))
}

/// Schema errors that began with a deploy are the deploy's only when the new revision
/// rejects TaskObjects a known schema accepts: a version mismatch, or an object valid under
/// some known version. TaskObjects invalid under every version, with no mismatch, are invalid
/// input even when they arrive right after a deploy. Failures whose TaskObject was not checked
/// are judged by their timing alone.
fn schema_errors_are_the_deploys(
    listed: &[&super::ObservedTask],
    at: crate::model::Timestamp,
    revision: u64,
) -> Result<(), String> {
    let checked: Vec<&crate::schema::SchemaReport> = listed
        .iter()
        .filter(|t| t.class.kind == FailureKind::Validation && t.task.finished_or_created() >= at)
        .filter_map(|t| match &t.schema {
            Some(super::SchemaObs::Checked(r)) => Some(r),
            _ => None,
        })
        .collect();
    if checked.is_empty()
        || checked
            .iter()
            .any(|r| r.version_mismatch.is_some() || !r.valid_against.is_empty())
    {
        return Ok(());
    }
    Err(format!(
        "they began after revision {revision} was deployed, but the {} TaskObjects checked are invalid under every known schema version with no version mismatch: invalid input, not the deploy",
        checked.len()
    ))
}

/// No roll forward: a revision flowfail rolled the Deployment away from, in an earlier incident,
/// is never a rollback target (the ledger carries them from incident to incident).
fn rolled_away_from(state: &IncidentState, target: u64) -> Option<String> {
    state.rolled_away.get(&target).map(|incident| {
        format!(
            "revision {target} is one flowfail rolled back from (incident {incident}): never redeployed by a rollback"
        )
    })
}

/// Why a rollback is not planned again in an incident that has one.
fn never_twice(rb: &super::RollbackRecord) -> String {
    if rb.never_reached() {
        format!(
            "a rollback to revision {} was reserved in this incident and never reached the Deployment: not attempted twice",
            rb.to_revision
        )
    } else {
        format!(
            "already rolled back to revision {} in this incident: never twice",
            rb.to_revision
        )
    }
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
            ActionKind::Rollback,
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
        b.skip(
            ActionKind::Rollback,
            "",
            "deployment state unreadable this pass",
        );
        b.wait("deployment state readable", None);
        return;
    };
    if !deployed_recently(obs, policy, at_open, b) {
        return;
    }
    let refuse = |b: &mut Builder, reason: &str, summary: String| {
        b.skip(ActionKind::Rollback, "", summary.clone());
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
    if let Some(why) = rollback_refused(state, current, target) {
        refuse(b, "rollback_refused", why);
        return;
    }
    b.actions.push(Action::Rollback(actions::Rollback {
        deployment: policy.deployment.clone(),
        from_revision: current.revision,
        to_revision: target,
        expected_resource_version: current.resource_version.clone(),
    }));
}

/// Whether the revision of the incident's open was deployed recently enough to roll back;
/// when not, the skip says why.
fn deployed_recently(
    obs: &Observation,
    policy: &Policy,
    at_open: &DeploymentAtOpen,
    b: &mut Builder,
) -> bool {
    match at_open.deployed_at {
        Some(t) if obs.now - t <= secs(policy.rollback_max_deploy_age_s) => true,
        Some(t) => {
            b.skip(
                ActionKind::Rollback,
                "",
                format!(
                    "revision {} deployed {} h ago: not a recent deploy",
                    at_open.revision,
                    (obs.now - t).num_hours()
                ),
            );
            false
        }
        None => {
            b.skip(
                ActionKind::Rollback,
                "",
                "deploy time of the current revision unknown",
            );
            false
        }
    }
}

/// Why a rollback to `target` is refused, if it is: a revision rolled away from, a paused
/// Deployment, a change made outside flowfail, a revision gone from the history.
fn rollback_refused(
    state: &IncidentState,
    current: &DeploymentState,
    target: u64,
) -> Option<String> {
    if let Some(why) = rolled_away_from(state, target) {
        return Some(why);
    }
    if current.paused {
        return Some("deployment is paused: rollback refused".into());
    }
    if let Some(o) = &current.gitops {
        return Some(format!(
            "owned by {}: a rollback here is undone by its next sync; roll back in Git",
            o.describe()
        ));
    }
    if state.deployment_changed_externally
        || state.known_resource_version.as_deref() != Some(current.resource_version.as_str())
    {
        return Some("deployment changed outside flowfail since the incident opened: not overriding a human change".into());
    }
    if !current.history.iter().any(|h| h.revision == target) {
        return Some(format!("revision {target} is no longer in the history"));
    }
    None
}
