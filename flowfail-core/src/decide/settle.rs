//! Settling: an incident with nothing left to do or to wait for is escalated to humans.

use super::{Action, Builder, Ctx, IncidentState, Settle, pct};

/// Escalates when no mutation is planned and nothing is awaited; pages on-call then, unless
/// on-call was already paged in this incident (or is paged in this pass).
pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) -> Option<Settle> {
    let (policy, state, alert) = (cx.policy, cx.state, &cx.alert);
    let busy = b.actions.iter().any(Action::is_mutation) || !b.waiting.is_empty();
    if busy {
        return None;
    }
    let on_call = format!("page:{}:", policy.on_call_target);
    let paged_on_call = state.effects.iter().any(|k| k.starts_with(&on_call))
        || b.actions
            .iter()
            .filter_map(Action::effect_key)
            .any(|k| k.starts_with(&on_call));
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
