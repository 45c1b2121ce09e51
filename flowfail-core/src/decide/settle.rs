//! Settling: an incident with nothing left to do or to wait for is escalated to humans.

use super::{Action, Builder, Ctx, IncidentState, Observation, Settle, pct};
use crate::model::Quota;
use crate::policy::Policy;

/// Escalates when no mutation is planned and nothing is awaited; pages on-call then, unless
/// on-call was already paged in this incident (or is paged in this pass).
pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) -> Option<Settle> {
    let (policy, state, alert) = (cx.policy, cx.state, &cx.alert);
    let busy = b.actions.iter().any(Action::is_mutation) || !b.waiting.is_empty();
    if busy {
        return None;
    }
    let on_call = format!("page:{}:", policy.on_call_target);
    // The operator's notices (paused, approval wanted) are not an escalation.
    let escalation = |k: &String| {
        k.strip_prefix(&on_call).is_some_and(|r| {
            r != crate::control::PAUSED_NOTICE_REASON && !r.starts_with("approval_")
        })
    };
    let paged_on_call = state.effects.iter().any(escalation)
        || b.actions
            .iter()
            .filter_map(Action::effect_key)
            .any(|k| escalation(&k));
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
    next.escalated_at = Some(cx.now);
    Some(Settle::Escalated)
}

/// The alert cleared: the env changes flowfail made and that still hold its value are restored
/// when that is safe (the breaker once quota is back under `quota_breaker_clear`, the fallback
/// and manual review once the primary vendor is operational); otherwise, and for a change a
/// human has since overwritten, on-call is paged once with what is left in place (the record's
/// `left_in_place` lists them too). Returns `true` while a restore is under way (the incident
/// stays open until it lands).
pub(super) fn restore_on_close(
    obs: &Observation,
    state: &IncidentState,
    policy: &Policy,
    b: &mut Builder,
) -> bool {
    if state.env_changes.is_empty() {
        return false;
    }
    let Some(deployment) = &obs.deployment else {
        b.wait(
            "deployment state readable, to restore flowfail's env changes",
            None,
        );
        return true;
    };
    let mut restoring = false;
    let mut handed_over = Vec::new();
    for (name, rec) in &state.env_changes {
        let current = deployment.env.get(name);
        if current != rec.value.as_ref() {
            handed_over.push(format!("{name} (changed since by someone else)"));
            continue;
        }
        let safe = if *name == policy.breaker_env {
            matches!(&obs.quota, Quota::Known(u) if u.used_ratio <= policy.quota_breaker_clear)
        } else {
            obs.vendor(&policy.primary_vendor).is_operational()
        };
        if safe {
            b.actions.push(Action::SetEnv {
                deployment: policy.deployment.clone(),
                name: name.clone(),
                value: rec.previous.clone(),
                purpose: "incident resolved: restore what flowfail changed".into(),
            });
            restoring = true;
        } else {
            let value = rec.value.as_deref().unwrap_or("unset");
            handed_over.push(format!("{name}={value} (not yet safe to restore)"));
        }
    }
    if restoring {
        b.wait("flowfail's env changes restored", None);
    }
    if !handed_over.is_empty() && !restoring {
        b.page(
            state,
            policy,
            &policy.on_call_target,
            "changes_left_in_place",
            format!(
                "incident resolved with flowfail's changes left in place for a human: {}",
                handed_over.join(", ")
            ),
        );
    }
    restoring
}
