//! The approval gates, decided (pure): which decided actions wait for a human
//! ([`gate_name`], [`gate`]), what each proposal says, and when an approval unlocks one. The
//! operator's calls that write approvals are in [`crate::control`].

use super::actions;
use chrono::TimeDelta;

use super::actions::Action;
use super::types::{Decision, IncidentState, Skip};
use crate::model::Timestamp;
use crate::operator::{Approval, MAX_APPROVAL_TTL_S};
use crate::policy::Policy;

impl Approval {
    /// When it stops unlocking the action: `at + approval_ttl_s`.
    pub fn expires_at(&self, policy: &Policy) -> Timestamp {
        let ttl = i64::try_from(policy.approval_ttl_s.min(MAX_APPROVAL_TTL_S)).unwrap_or(0);
        self.at
            .checked_add_signed(TimeDelta::seconds(ttl))
            .unwrap_or(self.at)
    }

    /// Whether it unlocks `action` of `incident` at `now`: same incident and action, given no
    /// later than `now` and not expired.
    pub fn unlocks(&self, incident: &str, action: &str, policy: &Policy, now: Timestamp) -> bool {
        !self.denied
            && self.incident == incident
            && self.action == action
            && self.at <= now
            && now < self.expires_at(policy)
    }
}

/// The [`GATED_ACTIONS`](crate::operator::GATED_ACTIONS) name of `action`, if it is one: the rollback, a prune, and env changes
/// flowfail has not made yet in this incident (manual review, the fallback model, the
/// breaker). Undoing flowfail's own change is never gated.
pub fn gate_name(action: &Action, state: &IncidentState, policy: &Policy) -> Option<&'static str> {
    match action {
        Action::Rollback(_) => Some("rollback"),
        Action::PruneContext(_) => Some("prune_context"),
        Action::SetEnv(actions::SetEnv { name, value, .. })
            if value.is_some() && !state.env_changes.contains_key(name) =>
        {
            if *name == policy.manual_review_env {
                Some("manual_review")
            } else if *name == policy.fallback_env {
                Some("fallback_model")
            } else if *name == policy.breaker_env {
                Some("circuit_breaker")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A gated action held back for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Proposal {
    /// Its name in [`GATED_ACTIONS`](crate::operator::GATED_ACTIONS).
    pub gate: &'static str,
    /// The action as decided.
    pub action: Action,
    /// Why the engine decided it.
    pub reason: String,
    /// The command that approves it.
    pub approve_with: String,
}

/// What [`gate`] did with a decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gated {
    /// Actions held back, waiting for approval.
    pub proposed: Vec<Proposal>,
    /// Gated actions let through, with the approval that unlocked each.
    pub approved: Vec<(Action, Approval)>,
    /// Gated actions an operator denied in this incident, with the denial: dropped, never
    /// proposed again.
    pub denied: Vec<(Action, Approval)>,
}

/// Holds back the decision's gated actions that no approval in force unlocks (pure). Each one
/// becomes a [`Skip`] ("awaiting approval") and a [`Proposal`]; on-call is paged once per
/// incident and gate with the proposal, its reason and the approving command (a page the
/// incident's effects already hold is not decided again).
pub fn gate(
    d: &mut Decision,
    state: &IncidentState,
    approvals: &[Approval],
    policy: &Policy,
    now: Timestamp,
) -> Gated {
    let mut out = Gated::default();
    if policy.require_approval.is_empty() {
        return out;
    }
    let mut kept = Vec::with_capacity(d.actions.len());
    for a in std::mem::take(&mut d.actions) {
        let Some(g) =
            gate_name(&a, state, policy).filter(|g| policy.require_approval.iter().any(|r| r == g))
        else {
            kept.push(a);
            continue;
        };
        // A "no" is final for the incident, whatever approvals came before or after it.
        if let Some(no) = approvals
            .iter()
            .find(|ap| ap.denied && ap.incident == state.key && ap.action == g && ap.at <= now)
        {
            d.skipped.push(Skip::new(
                a.kind(),
                subject(&a),
                format!(
                    "denied by {}: {}",
                    no.by,
                    no.reason.as_deref().unwrap_or("no reason given")
                ),
            ));
            out.denied.push((a, no.clone()));
            continue;
        }
        if let Some(ap) = approvals
            .iter()
            .rev()
            .find(|ap| ap.unlocks(&state.key, g, policy, now))
        {
            out.approved.push((a.clone(), ap.clone()));
            kept.push(a);
            continue;
        }
        let reason = proposal_reason(&a, d);
        let approve_with = format!("flowfail approve {} {g}", state.key);
        d.skipped.push(Skip::new(
            a.kind(),
            subject(&a),
            format!(
                "awaiting approval ({g} is in require_approval): approve with `{approve_with}`"
            ),
        ));
        out.proposed.push(Proposal {
            gate: g,
            action: a,
            reason,
            approve_with,
        });
    }
    d.actions = kept;
    for p in &out.proposed {
        let page = Action::Page(actions::Page {
            target: policy.on_call_target.clone(),
            reason: format!("approval_{}", p.gate),
            summary: format!(
                "flowfail proposes to {} ({}); it waits for approval: `{}` (valid {} min)",
                describe_action(&p.action),
                p.reason,
                p.approve_with,
                policy.approval_ttl_s / 60
            ),
            details: serde_json::Value::Null,
        });
        let fresh = page
            .effect_key()
            .is_some_and(|k| !state.effects.contains(&k));
        if fresh && !d.actions.contains(&page) {
            d.actions.push(page);
        }
    }
    out
}

/// Why the engine decided `a`, in the report's words.
fn proposal_reason(a: &Action, d: &Decision) -> String {
    match a {
        Action::SetEnv(actions::SetEnv { purpose, .. }) => purpose.clone(),
        Action::PruneContext(actions::PruneContext {
            from_bytes,
            max_bytes,
            ..
        }) => format!("bundle of {from_bytes} bytes exceeds the prune target of {max_bytes}"),
        _ => match &d.alert {
            Some(al) => format!(
                "failure rate {:.2}% over {} tasks",
                al.failure_rate * 100.0,
                al.window_tasks
            ),
            None => "decided by the runbook".to_owned(),
        },
    }
}

/// The action in a few words.
pub fn describe_action(a: &Action) -> String {
    match a {
        Action::Rollback(actions::Rollback {
            deployment,
            from_revision,
            to_revision,
            ..
        }) => format!("roll {deployment} back from revision {from_revision} to {to_revision}"),
        Action::SetEnv(actions::SetEnv {
            deployment,
            name,
            value: Some(v),
            ..
        }) => format!("set {name}={v} on {deployment}"),
        Action::SetEnv(actions::SetEnv {
            deployment, name, ..
        }) => format!("unset {name} on {deployment}"),
        Action::PruneContext(actions::PruneContext { task_id, .. }) => {
            format!("prune the context bundle of {task_id}")
        }
        other => other.kind().as_str().replace('_', " "),
    }
}

fn subject(a: &Action) -> String {
    match a {
        Action::Rollback(actions::Rollback { to_revision, .. }) => {
            format!("revision {to_revision}")
        }
        Action::SetEnv(actions::SetEnv { name, .. }) => name.clone(),
        Action::PruneContext(actions::PruneContext { task_id, .. }) => task_id.to_string(),
        _ => String::new(),
    }
}
