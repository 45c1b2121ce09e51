//! Model API outages: the fallback model, manual review, escalation after 30 minutes, undo on
//! recovery.
//!
//! A vendor is judged on two kinds of evidence ([`super::vendor`]): its status page, and its
//! observed 5xx rate in the TaskDB window. Degraded by either means degraded; healthy needs
//! both. Every decision of this branch says which evidence it used, with the numbers.

use super::actions;
use super::kinds::ActionKind;
use super::vendor::{VendorJudgement, judge};
use super::{Action, Builder, Ctx, Finding, IncidentState, secs};
use crate::model::FailureKind;

/// What the outage branch tells the per-task branch.
pub(super) struct OutageView {
    /// The primary vendor is healthy this pass (status page operational, not observed failing).
    pub(super) primary_healthy: bool,
    /// Why 5xx retries wait, while the primary is degraded.
    pub(super) hold_5xx: Option<String>,
}

pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) -> OutageView {
    let (now, policy, state, obs) = (cx.now, cx.policy, cx.state, cx.obs);
    let primary = policy.primary_vendor.as_str();
    let fallback_vendor = policy.fallbacks.get(primary).map(|f| f.vendor.as_str());
    let names: Vec<&str> = std::iter::once(primary).chain(fallback_vendor).collect();
    let mut judged = judge(cx, &names).into_iter();
    let Some(p) = judged.next() else {
        return OutageView {
            primary_healthy: false,
            hold_5xx: None,
        };
    };
    let fb = judged.next();
    let has_5xx = cx.classes[&FailureKind::ModelApi5xx] > 0;
    let mut hold_5xx = None;
    if p.degraded() {
        if !state.outage_seen.contains_key(primary) {
            b.findings.push(Finding {
                kind: "vendor_degraded".into(),
                task_id: None,
                summary: format!("{primary} degraded ({})", p.describe(policy)),
                details: p.details(policy),
            });
        }
        let first_seen = *next.outage_seen.entry(primary.to_owned()).or_insert(now);
        let start = obs
            .vendors
            .get(primary)
            .and_then(|s| s.since)
            .map_or(first_seen, |s| s.min(first_seen));
        if has_5xx || state.env_changes.contains_key(&policy.fallback_env) {
            route_around(cx, &p, fb.as_ref(), b);
            let escalate_at = start + secs(policy.outage_escalation_after_s);
            if now >= escalate_at {
                escalate(cx, &p, (now - start).num_minutes(), b);
            } else {
                b.wait(
                    format!("outage escalation at {escalate_at}"),
                    Some(escalate_at),
                );
            }
        }
        hold_5xx = Some(format!(
            "{primary} is degraded ({}): retries wait for recovery",
            short(&p)
        ));
        b.wait(format!("{primary} recovery"), None);
    } else if p.healthy() {
        undo(cx, &p, b);
    } else if has_5xx {
        b.skip(
            ActionKind::SetEnv,
            policy.fallback_env.clone(),
            format!("{primary} status unknown: no fallback on an unreadable status page"),
        );
    }
    OutageView {
        primary_healthy: p.healthy(),
        hold_5xx,
    }
}

/// The evidence that made a vendor degraded, in a few words.
fn short(j: &VendorJudgement) -> String {
    let o = &j.observed;
    let seen = format!(
        "{} of {} tasks ({}) failed with {} 5xx",
        o.failures_5xx,
        o.window_tasks,
        super::pct(o.rate),
        j.vendor
    );
    match j.evidence() {
        "observed_rate" => format!("observed: {seen}; status page {:?}", j.page),
        "both" => format!("status page {:?}; observed: {seen}", j.page),
        _ => format!("status page {:?}", j.page),
    }
}

/// The primary recovered by both kinds of evidence: undo what flowfail set, if still its value.
fn undo(cx: &Ctx<'_>, p: &VendorJudgement, b: &mut Builder) {
    let (policy, state) = (cx.policy, cx.state);
    for name in [&policy.fallback_env, &policy.manual_review_env] {
        if let Some(rec) = state.env_changes.get(name)
            && rec.value.is_some()
            && cx.env.is_some_and(|e| e.get(name) == rec.value.as_ref())
        {
            b.actions.push(Action::SetEnv(actions::SetEnv {
                deployment: policy.deployment.clone(),
                name: name.clone(),
                value: rec.previous.clone(),
                purpose: format!(
                    "{} recovered (status page {:?}; observed: {}): undo",
                    p.vendor,
                    p.page,
                    p.observed_words(policy)
                ),
            }));
        }
    }
}

/// The fallback model when its vendor is healthy (status page operational and not observed
/// failing), manual review otherwise.
fn route_around(cx: &Ctx<'_>, p: &VendorJudgement, fb: Option<&VendorJudgement>, b: &mut Builder) {
    let policy = cx.policy;
    let primary = policy.primary_vendor.as_str();
    let fallback = policy.fallbacks.get(primary);
    if let Some(name) = [&policy.fallback_env, &policy.manual_review_env]
        .into_iter()
        .find(|n| cx.state.env_undone.contains(*n))
    {
        // Failing over again would flap FlowEngine between models; on-call decides (the
        // escalation below pages them when the outage lasts).
        b.skip(
            ActionKind::SetEnv,
            name.clone(),
            format!("{primary} degraded again after flowfail undid {name} in this incident: no second failover"),
        );
        return;
    }
    match (fallback, fb, cx.env) {
        (_, _, None) => b.skip(
            ActionKind::SetEnv,
            policy.fallback_env.clone(),
            "deployment state unreadable",
        ),
        (Some(f), Some(h), Some(env)) if h.healthy() => {
            if env.get(&policy.fallback_env) != Some(&f.model) {
                b.actions.push(Action::SetEnv(actions::SetEnv {
                    deployment: policy.deployment.clone(),
                    name: policy.fallback_env.clone(),
                    value: Some(f.model.clone()),
                    purpose: format!(
                        "{primary} is degraded ({}): route to {} on {} (status page {:?}; observed: {})",
                        short(p),
                        f.model,
                        f.vendor,
                        h.page,
                        h.observed_words(policy)
                    ),
                }));
            }
        }
        (f, h, Some(env)) => {
            let why = match (f, h) {
                (Some(f), Some(h)) if h.failing => format!(
                    "fallback vendor {} is failing ({}): not routing there",
                    f.vendor,
                    h.describe(policy)
                ),
                (Some(f), Some(h)) => {
                    format!(
                        "fallback vendor {} is {:?} (status page): not routing there",
                        f.vendor, h.page
                    )
                }
                _ => format!("no fallback configured for {primary}"),
            };
            b.skip(ActionKind::SetEnv, policy.fallback_env.clone(), why);
            if env.get(&policy.manual_review_env).map(String::as_str) != Some("true") {
                b.actions.push(Action::SetEnv(actions::SetEnv {
                    deployment: policy.deployment.clone(),
                    name: policy.manual_review_env.clone(),
                    value: Some("true".into()),
                    purpose: format!(
                        "{primary} is degraded ({}) and no healthy fallback: manual review",
                        short(p)
                    ),
                }));
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
    let told = super::effects::notify(audience, None);
    if !cx_state.effects.contains(&told) {
        return false;
    }
    let n = Action::Notify(actions::Notify {
        audience: audience.clone(),
        message: format!(
            "FlowEngine recovered: the failure rate is back under the alert threshold; the {} outage is over (incident {})",
            policy.primary_vendor, cx_state.key
        ),
        reason: Some(OUTAGE_OVER.to_owned()),
    });
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
fn escalate(cx: &Ctx<'_>, p: &VendorJudgement, mins: i64, b: &mut Builder) {
    let (policy, state) = (cx.policy, cx.state);
    let primary = policy.primary_vendor.as_str();
    for t in &policy.outage_page_targets {
        b.page_with(
            state,
            policy,
            t,
            "outage_30min",
            format!("{primary} outage for {mins} min ({})", short(p)),
            serde_json::json!({ "vendor_health": p.details(policy) }),
        );
    }
    let n = Action::Notify(actions::Notify {
        audience: policy.stakeholder_audience.clone(),
        message: format!(
            "FlowEngine degraded: {primary} outage for {mins} min; flows are on fallback or manual review"
        ),
        reason: None,
    });
    if !state
        .effects
        .contains(&super::effects::notify("stakeholders", None))
        && n.effect_key().is_some_and(|k| !state.effects.contains(&k))
    {
        b.actions.push(n);
    }
}
