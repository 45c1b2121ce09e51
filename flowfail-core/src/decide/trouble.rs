//! What the engine decides from what happened to a pass itself (pure): the page about
//! flowfail's own trouble, the one "automation paused" notice, and whether a retry that was to
//! follow a prune may go.

use super::actions;
use super::actions::Action;
use super::kinds::ActionKind;
use super::outcome::{ActionOutcome, Applied};
use super::types::IncidentState;
use crate::operator::{PAUSED_NOTICE_REASON, Pause};
use crate::policy::Policy;

/// flowfail's own trouble in a pass, which on-call hears about once per incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trouble {
    /// An action of this kind panicked (contained): whether it happened is unknown.
    ActionPanicked(ActionKind),
    /// The action rate limit deferred this many actions (they are decided again next pass).
    RateLimited {
        /// The policy's limit, a minute.
        per_minute: u32,
        /// How many were deferred.
        deferred: usize,
    },
}

/// The page to on-call about `trouble`, unless the incident already sent it.
pub fn escalation(
    trouble: Trouble,
    state: &IncidentState,
    policy: &Policy,
) -> Option<actions::Page> {
    let (reason, summary) = match trouble {
        Trouble::ActionPanicked(kind) => (
            "action_panicked",
            format!("flowfail: a {kind} action panicked and was contained; a human should look"),
        ),
        Trouble::RateLimited {
            per_minute,
            deferred,
        } => (
            "action_rate_limited",
            format!(
                "flowfail hit its action rate limit ({per_minute} a minute): {deferred} action(s) deferred; a human may want to look"
            ),
        ),
    };
    let page = actions::Page {
        target: policy.on_call_target.clone(),
        reason: reason.to_owned(),
        summary,
        details: serde_json::Value::Null,
    };
    let key = super::effects::page(&page.target, &page.reason);
    (!state.effects.contains(&key)).then_some(page)
}

/// Whether a retry decided to follow a prune of its bundle may go, given what became of that
/// prune in this pass: pruned or found within the budget; or held for a reason that holds the
/// retry too (the kill switch, a dry run or shadow mode, the operator's pause), so the retry is
/// reported held for that reason. A prune that failed, was deferred or was never carried out
/// (awaiting approval) means the retry would run into the same timeout: refused, with why.
pub fn retry_after_prune(prune: Option<&ActionOutcome>) -> Result<(), &'static str> {
    match prune {
        Some(
            ActionOutcome::Applied(Applied::Pruned { .. } | Applied::AlreadySmall { .. })
            | ActionOutcome::DryRun
            | ActionOutcome::Refused { .. },
        ) => Ok(()),
        _ => Err("bundle was not pruned: not retrying into the same timeout"),
    }
}

/// The one "automation paused" notice of an incident: the page to on-call while `pause` holds,
/// unless the incident already sent it. (The responder reserves it in the ledger before sending,
/// so replicas and restarts send it once.)
pub fn pause_notice(pause: &Pause, state: &IncidentState, policy: &Policy) -> Option<Action> {
    let notice = Action::Page(actions::Page {
        target: policy.on_call_target.clone(),
        reason: PAUSED_NOTICE_REASON.to_owned(),
        summary: format!(
            "flowfail automation is paused during incident {} (by {}: {}); it observes and records, and changes nothing until resumed",
            state.key, pause.by, pause.reason
        ),
        details: serde_json::Value::Null,
    });
    let key = notice.effect_key()?;
    (!state.effects.contains(&key)).then_some(notice)
}
