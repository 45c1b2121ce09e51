//! Model API outages: the fallback model, manual review, escalation after 30 minutes, undo on
//! recovery.

use super::{Action, Builder, Ctx, IncidentState, secs};
use crate::model::{FailureKind, VendorHealth};

/// What the outage branch tells the per-task branch.
pub(super) struct OutageView {
    /// The primary vendor's health this pass.
    pub(super) primary_health: VendorHealth,
    /// Why 5xx retries wait, while the primary is degraded.
    pub(super) hold_5xx: Option<String>,
}

pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) -> OutageView {
    let (now, policy, state, obs) = (cx.now, cx.policy, cx.state, cx.obs);
    let primary = policy.primary_vendor.as_str();
    let primary_health = obs.vendor(primary);
    let has_5xx = cx.classes[&FailureKind::ModelApi5xx] > 0;
    let mut hold_5xx = None;
    if primary_health.is_degraded() {
        let first_seen = *next.outage_seen.entry(primary.to_owned()).or_insert(now);
        let start = obs
            .vendors
            .get(primary)
            .and_then(|s| s.since)
            .map_or(first_seen, |s| s.min(first_seen));
        if has_5xx || state.env_changes.contains_key(&policy.fallback_env) {
            route_around(cx, primary_health, b);
            let escalate_at = start + secs(policy.outage_escalation_after_s);
            if now >= escalate_at {
                escalate(cx, primary_health, (now - start).num_minutes(), b);
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
                && cx.env.is_some_and(|e| e.get(name) == rec.value.as_ref())
            {
                b.actions.push(Action::SetEnv {
                    deployment: policy.deployment.clone(),
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
    OutageView {
        primary_health,
        hold_5xx,
    }
}

/// The fallback model when its vendor is operational, manual review otherwise.
fn route_around(cx: &Ctx<'_>, primary_health: VendorHealth, b: &mut Builder) {
    let policy = cx.policy;
    let primary = policy.primary_vendor.as_str();
    let fallback = policy.fallbacks.get(primary);
    let fb_health = fallback.map(|f| cx.obs.vendor(&f.vendor));
    match (fallback, fb_health, cx.env) {
        (_, _, None) => b.skip(
            "set_env",
            policy.fallback_env.clone(),
            "deployment state unreadable",
        ),
        (Some(f), Some(h), Some(env)) if h.is_operational() => {
            if env.get(&policy.fallback_env) != Some(&f.model) {
                b.actions.push(Action::SetEnv {
                    deployment: policy.deployment.clone(),
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
                    deployment: policy.deployment.clone(),
                    name: policy.manual_review_env.clone(),
                    value: Some("true".into()),
                    purpose: format!(
                        "{primary} is {primary_health:?} and no healthy fallback: manual review"
                    ),
                });
            }
        }
    }
}

/// The reason of the notice that tells stakeholders an outage they were told about is over.
pub(super) const OUTAGE_OVER: &str = "outage_over";

/// The alert cleared: stakeholders told of the outage are told it is over, once. Returns `true`
/// while that notice has not gone out (the incident stays open until it has, so a failed or
/// paused delivery is tried again, never lost).
pub(super) fn tell_outage_over(
    cx_state: &IncidentState,
    policy: &crate::policy::Policy,
    b: &mut Builder,
) -> bool {
    let audience = &policy.stakeholder_audience;
    let told = format!("notify:{audience}");
    if !cx_state.effects.contains(&told) {
        return false;
    }
    let n = Action::Notify {
        audience: audience.clone(),
        message: format!(
            "FlowEngine recovered: the failure rate is back under the alert threshold; the {} outage is over (incident {})",
            policy.primary_vendor, cx_state.key
        ),
        reason: Some(OUTAGE_OVER.to_owned()),
    };
    if n.effect_key()
        .is_some_and(|k| cx_state.effects.contains(&k))
    {
        return false;
    }
    b.actions.push(n);
    b.wait("stakeholders told the outage is over", None);
    true
}

/// Past the escalation delay: page SRE and TL, tell stakeholders, once each.
fn escalate(cx: &Ctx<'_>, primary_health: VendorHealth, mins: i64, b: &mut Builder) {
    let (policy, state) = (cx.policy, cx.state);
    let primary = policy.primary_vendor.as_str();
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
        reason: None,
    };
    if !state.effects.contains("notify:stakeholders")
        && n.effect_key().is_some_and(|k| !state.effects.contains(&k))
    {
        b.actions.push(n);
    }
}
