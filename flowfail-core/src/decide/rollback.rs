//! Widespread failures: roll back to the revision recorded at open, once, verified.

use super::{Action, Builder, Ctx, IncidentState, Observation, pct, secs};
use crate::detect::AlertState;
use crate::model::FailureKind;
use crate::policy::Policy;

/// Verifies a rollback in progress, pages when it failed, and plans a rollback when failures
/// are widespread. Returns whether a rollback completed in this incident.
pub(super) fn decide(cx: &Ctx<'_>, b: &mut Builder) -> bool {
    let (now, policy, state, alert) = (cx.now, cx.policy, cx.state, &cx.alert);
    let mut rollback_verified = false;
    if let Some(rb) = &state.rollback {
        match rb.rollout.as_deref() {
            None => {
                b.actions.push(Action::VerifyRollout {
                    deployment: policy.deployment.clone(),
                });
                b.wait("rollout of the rollback", None);
            }
            Some("complete") => rollback_verified = true,
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
                b.skip("rollback", "", never_twice(rb));
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
