//! Rate limits: quota, the circuit-breaker env var, flowfail's own breaker.

use super::actions;
use super::kinds::ActionKind;
use super::{Action, Builder, Ctx, IncidentState, pct};
use crate::breaker::Breaker;
use crate::model::{FailureKind, Quota, QuotaUsage, TaskStatus};

/// Advances the breaker with what the pass observed (its clock, the probe's result, a breaker
/// env found already on), plans the breaker env change, and returns the breaker *as planned*
/// for this pass: open when this pass enables the breaker env, so no rate-limited retry goes
/// out beside it. The state records the opening only when the env change is applied.
pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) -> Breaker {
    settle_probe(cx, next);
    let mut plan = next.breaker.clone();
    if cx.classes[&FailureKind::RateLimit] > 0 {
        match &cx.obs.quota {
            Quota::Known(u) => plan_for_quota(cx, u, next, b, &mut plan),
            Quota::Unknown { reason } => b.skip(
                ActionKind::SetEnv,
                cx.policy.breaker_env.clone(),
                format!(
                    "quota unknown ({reason}): not enabling the breaker on rate-limit errors alone"
                ),
            ),
        }
    }
    restore_breaker_env(cx, &plan, b);
    plan
}

/// Advances the breaker's clock and settles its half-open probe with the probed task's result.
fn settle_probe(cx: &Ctx<'_>, next: &mut IncidentState) {
    let (now, policy) = (cx.now, cx.policy);
    next.breaker.tick(now);
    if let Some(p) = next.breaker.probe().cloned() {
        match cx.obs.watched.get(&p).map(|t| t.status) {
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
}

/// Plans the breaker env change for rate-limit failures with the quota known: enables it above
/// the threshold (or records it found already on), and pages when quota is critical.
fn plan_for_quota(
    cx: &Ctx<'_>,
    u: &QuotaUsage,
    next: &mut IncidentState,
    b: &mut Builder,
    plan: &mut Breaker,
) {
    let (now, policy, state) = (cx.now, cx.policy, cx.state);
    if u.used_ratio > policy.quota_breaker_threshold && state.breaker_enabled_at.is_none() {
        match cx.env {
            Some(env) if env.get(&policy.breaker_env).map(String::as_str) == Some("true") => {
                b.skip(
                    ActionKind::SetEnv,
                    policy.breaker_env.clone(),
                    "circuit breaker already enabled",
                );
                next.breaker_enabled_at = Some(now);
                next.breaker = Breaker::open(now, policy.half_open_after_s);
                *plan = next.breaker.clone();
            }
            Some(_) => {
                b.actions.push(Action::SetEnv(actions::SetEnv {
                    deployment: policy.deployment.clone(),
                    name: policy.breaker_env.clone(),
                    value: Some("true".into()),
                    purpose: format!(
                        "quota {} above {}: enable circuit breaker",
                        pct(u.used_ratio),
                        pct(policy.quota_breaker_threshold)
                    ),
                }));
                *plan = Breaker::open(now, policy.half_open_after_s);
            }
            None => b.skip(
                ActionKind::SetEnv,
                policy.breaker_env.clone(),
                "deployment state unreadable",
            ),
        }
    } else if u.used_ratio <= policy.quota_breaker_threshold && state.breaker_enabled_at.is_none() {
        b.skip(
            ActionKind::SetEnv,
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

/// Restores the breaker env flowfail set, once the planned breaker is closed and quota is
/// comfortably low.
fn restore_breaker_env(cx: &Ctx<'_>, plan: &Breaker, b: &mut Builder) {
    let (policy, state) = (cx.policy, cx.state);
    // Undo a breaker flowfail enabled once quota is comfortably low (hysteresis), only while
    // the Deployment still holds flowfail's value (as closing does): a value a human set since
    // stands, and without a read of the Deployment nothing is written (no blind write).
    if let (Some(rec), Quota::Known(u)) =
        (state.env_changes.get(&policy.breaker_env), &cx.obs.quota)
        && rec.value.as_deref() == Some("true")
        && u.used_ratio <= policy.quota_breaker_clear
        && matches!(plan, Breaker::Closed)
    {
        let Some(env) = cx.env else {
            b.skip(
                ActionKind::SetEnv,
                policy.breaker_env.clone(),
                "deployment state unreadable: circuit breaker restored once it can be read",
            );
            b.wait(
                "deployment state readable, to restore the circuit breaker setting",
                None,
            );
            return;
        };
        if env.get(&policy.breaker_env) != rec.value.as_ref() {
            b.skip(
                ActionKind::SetEnv,
                policy.breaker_env.clone(),
                "changed since by someone else: their value stands",
            );
            return;
        }
        b.actions.push(Action::SetEnv(actions::SetEnv {
            deployment: policy.deployment.clone(),
            name: policy.breaker_env.clone(),
            value: rec.previous.clone(),
            purpose: format!(
                "quota back to {}: restore circuit breaker setting",
                pct(u.used_ratio)
            ),
        }));
    }
}
