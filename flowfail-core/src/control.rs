//! Operator control: an external pause, and approvals for gated actions.
//!
//! Both live in the incident ledger, not in a process, so every replica obeys them and a
//! restart forgets neither:
//!
//! - **Pause** ([`pause`], [`resume`], [`paused`]): a flag per scope (the Deployment) that every
//!   responder reads each pass before any mutation. Paused, flowfail observes, decides, records
//!   and reports, and mutates nothing: the one [guard](crate::respond) refuses every call
//!   ("automation paused"), and the refusal is recorded in the timeline. The only page a paused
//!   responder sends is one notice per incident that automation is paused (deduplicated by a
//!   ledger reservation, so replicas and restarts do not repeat it).
//! - **Approvals** ([`approve`], [`gate`]): the policy's `require_approval` names actions
//!   (from [`GATED_ACTIONS`]) that wait for a human. The engine still decides them; a gated
//!   action without an approval in force is *proposed* — held back, recorded with its reason,
//!   and on-call is paged once with the command that approves it. An approval lets the next
//!   pass carry the action out if the engine still decides it (its preconditions still hold);
//!   it expires after the policy's `approval_ttl_s`.
//!
//! The functions here take the ledger port, so the CLI, an HTTP handler and a test call the
//! same code:
//!
//! ```
//! use flowfail_core::control;
//! use flowfail_core::memory::MemoryIncidentStore;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ledger = MemoryIncidentStore::new();
//! let now = chrono::Utc::now();
//! control::pause(&ledger, "flowengine", "deploy freeze", "alice", now).await.unwrap();
//! assert_eq!(control::paused(&ledger, "flowengine").await.unwrap().unwrap().by, "alice");
//! control::resume(&ledger, "flowengine", "alice", now).await.unwrap();
//! assert!(control::paused(&ledger, "flowengine").await.unwrap().is_none());
//! // An approval needs an incident the ledger knows, and an action that can be gated.
//! let e = control::approve(&ledger, "nope", "rollback", "alice", now).await.unwrap_err();
//! assert_eq!(e.kind(), flowfail_core::ErrorKind::NotFound);
//! # });
//! ```

use crate::error::{Error, Result};
use crate::model::{Timestamp, describe_untrusted};
use crate::ports::IncidentStore;

pub use crate::decide::approval::{Gated, Proposal, describe_action, gate, gate_name};
pub use crate::operator::{
    Approval, GATED_ACTIONS, MAX_APPROVAL_TTL_S, MAX_BY_CHARS, MAX_REASON_CHARS,
    PAUSED_NOTICE_REASON, Pause,
};

/// Operator text (a reason, a name): trimmed, non-empty, bounded, no control characters.
/// Operator text (a reason, a name) as the ledger takes it: trimmed, not empty, at most
/// `max_chars` characters, no control or invisible formatting characters; an error names
/// `field`.
pub fn operator_text(field: &str, s: &str, max_chars: usize) -> Result<String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Error::invalid_input(format!("{field} must not be empty")));
    }
    if t.chars().count() > max_chars {
        return Err(Error::invalid_input(format!(
            "{field} is longer than {max_chars} characters"
        )));
    }
    if t.chars()
        .any(|c| c.is_control() || crate::text::is_format_char(c))
    {
        // Control characters rewrite a terminal; invisible format characters (bidi overrides,
        // zero-width characters) make a record read differently from what it holds.
        return Err(Error::invalid_input(format!(
            "{field} must not contain control or invisible formatting characters: {}",
            describe_untrusted(t)
        )));
    }
    Ok(t.to_owned())
}

fn scope_name(scope: &str) -> Result<&str> {
    if scope.trim().is_empty() {
        return Err(Error::invalid_input(
            "the scope (Deployment) must not be empty",
        ));
    }
    Ok(scope)
}

/// Pauses automation in `scope` (the Deployment): from the next pass of every replica on,
/// nothing is mutated until [`resume`]. A second pause replaces the first (its reason, author
/// and time). An empty or oversized `reason` or `by` is [`crate::ErrorKind::InvalidInput`] and
/// changes nothing.
pub async fn pause(
    ledger: &dyn IncidentStore,
    scope: &str,
    reason: &str,
    by: &str,
    now: Timestamp,
) -> Result<Pause> {
    let scope = scope_name(scope)?;
    let p = Pause::new(
        operator_text("reason", reason, MAX_REASON_CHARS)?,
        operator_text("by", by, MAX_BY_CHARS)?,
        now,
    );
    ledger
        .set_pause(scope, Some(&p))
        .await
        .map_err(|e| e.with_operation("control.pause"))?;
    tracing::info!(scope, by = %p.by, reason = %p.reason, "automation paused");
    Ok(p)
}

/// Lifts the pause of `scope`; returns the pause lifted (`None`: it was not paused, and nothing
/// changed). `by` is validated like [`pause`]'s and logged.
pub async fn resume(
    ledger: &dyn IncidentStore,
    scope: &str,
    by: &str,
    now: Timestamp,
) -> Result<Option<Pause>> {
    let scope = scope_name(scope)?;
    let by = operator_text("by", by, MAX_BY_CHARS)?;
    let was = ledger
        .pause_flag(scope)
        .await
        .map_err(|e| e.with_operation("control.resume"))?;
    if was.is_some() {
        ledger
            .set_pause(scope, None)
            .await
            .map_err(|e| e.with_operation("control.resume"))?;
        tracing::info!(scope, by = %by, at = %now, "automation resumed");
    }
    Ok(was)
}

/// The pause of `scope`, if automation is paused there.
pub async fn paused(ledger: &dyn IncidentStore, scope: &str) -> Result<Option<Pause>> {
    ledger
        .pause_flag(scope_name(scope)?)
        .await
        .map_err(|e| e.with_operation("control.paused"))
}

/// `action` is one of [`GATED_ACTIONS`], or the call `op` is `InvalidInput`.
fn gated(action: &str, op: &'static str) -> Result<()> {
    if GATED_ACTIONS.contains(&action) {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "{} is not an action that waits for approval (one of {})",
        describe_untrusted(action),
        GATED_ACTIONS.join(", ")
    ))
    .with_operation(op))
}

/// The open incident `incident` an operator wants to `verb` an action of: unknown is
/// `NotFound`, closed is `Refused` (nothing left to `verb`).
async fn open_incident(
    ledger: &dyn IncidentStore,
    incident: &str,
    verb: &str,
    op: &'static str,
) -> Result<crate::ports::IncidentRecord> {
    let rec = ledger
        .get(incident)
        .await
        .map_err(|e| e.with_operation(op))?;
    if rec.closed_at.is_some() {
        return Err(Error::refused(format!(
            "incident {} is closed: nothing left to {verb}",
            describe_untrusted(incident)
        ))
        .with_operation(op));
    }
    Ok(rec)
}

/// Approves `action` (one of [`GATED_ACTIONS`]) for the open incident `incident`: the next
/// pass carries it out if the engine still decides it, until the approval expires
/// (`approval_ttl_s`). An unknown action name, or an empty `by`, is
/// [`crate::ErrorKind::InvalidInput`]; an unknown incident is
/// [`crate::ErrorKind::NotFound`]; a closed one is [`crate::ErrorKind::Refused`]. A refused
/// call writes nothing.
pub async fn approve(
    ledger: &dyn IncidentStore,
    incident: &str,
    action: &str,
    by: &str,
    now: Timestamp,
) -> Result<Approval> {
    gated(action, "control.approve")?;
    let by = operator_text("by", by, MAX_BY_CHARS)?;
    let rec = open_incident(ledger, incident, "approve", "control.approve").await?;
    let a = Approval::new(rec.key, action, by, now);
    ledger
        .add_approval(&a.incident, &a)
        .await
        .map_err(|e| e.with_operation("control.approve"))?;
    tracing::info!(incident = %a.incident, action, by = %a.by, "action approved");
    Ok(a)
}

/// Denies `action` (one of [`GATED_ACTIONS`]) for the open incident `incident`: the
/// responder drops it from every later decision of the incident and records why (it is not
/// proposed, nor paged for, again). Validated like [`approve`]; `reason` like a pause's. Like
/// an approval, a denial only concerns an action the policy holds for approval
/// (`require_approval`); `flowfail deny` and the listener refuse any other.
pub async fn deny(
    ledger: &dyn IncidentStore,
    incident: &str,
    action: &str,
    reason: &str,
    by: &str,
    now: Timestamp,
) -> Result<Approval> {
    gated(action, "control.deny")?;
    let reason = operator_text("reason", reason, MAX_REASON_CHARS)?;
    let by = operator_text("by", by, MAX_BY_CHARS)?;
    let rec = open_incident(ledger, incident, "deny", "control.deny").await?;
    let a = Approval::denial(rec.key, action, by, reason, now);
    ledger
        .add_approval(&a.incident, &a)
        .await
        .map_err(|e| e.with_operation("control.deny"))?;
    tracing::info!(incident = %a.incident, action, by = %a.by, "action denied");
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::EnvRecord;
    use crate::decide::{Action, IncidentState};
    use crate::detect::AlertState;
    use crate::policy::Policy;
    use chrono::TimeDelta;

    fn state(now: Timestamp) -> IncidentState {
        let alert = AlertState {
            firing: true,
            failure_rate: 0.3,
            window_tasks: 400,
            failed: 120,
        };
        IncidentState::open("inc".into(), now, alert, Default::default(), None)
    }

    #[test]
    fn only_new_changes_are_gated_never_an_undo() {
        let now = chrono::Utc::now();
        let p = Policy::default();
        let set = |name: &str, value: Option<&str>| {
            Action::SetEnv(crate::decide::actions::SetEnv {
                deployment: "flowengine".into(),
                name: name.into(),
                value: value.map(str::to_owned),
                purpose: "test".into(),
            })
        };
        let mut s = state(now);
        assert_eq!(
            gate_name(&set("MANUAL_REVIEW_MODE", Some("true")), &s, &p),
            Some("manual_review")
        );
        assert_eq!(
            gate_name(&set("FALLBACK_MODEL", Some("m")), &s, &p),
            Some("fallback_model")
        );
        assert_eq!(
            gate_name(&set("ENABLE_CIRCUIT_BREAKER", Some("true")), &s, &p),
            Some("circuit_breaker")
        );
        assert_eq!(gate_name(&set("OTHER", Some("1")), &s, &p), None);
        s.env_changes.insert(
            "MANUAL_REVIEW_MODE".into(),
            EnvRecord {
                value: Some("true".into()),
                previous: Some("false".into()),
                at: now,
            },
        );
        assert_eq!(
            gate_name(&set("MANUAL_REVIEW_MODE", Some("false")), &s, &p),
            None,
            "restoring what flowfail changed is never gated"
        );
        assert_eq!(gate_name(&set("FALLBACK_MODEL", None), &s, &p), None);
    }

    #[test]
    fn an_approval_unlocks_its_incident_and_action_until_it_expires() {
        let now = chrono::Utc::now();
        let p = Policy {
            approval_ttl_s: 60,
            ..Policy::default()
        };
        let a = Approval::new("inc", "rollback", "alice", now);
        assert!(a.unlocks("inc", "rollback", &p, now));
        assert!(a.unlocks("inc", "rollback", &p, now + TimeDelta::seconds(59)));
        assert!(!a.unlocks("inc", "rollback", &p, now + TimeDelta::seconds(60)));
        assert!(!a.unlocks("inc", "rollback", &p, now - TimeDelta::seconds(1)));
        assert!(!a.unlocks("other", "rollback", &p, now));
        assert!(!a.unlocks("inc", "manual_review", &p, now));
    }

    #[test]
    fn operator_text_is_trimmed_bounded_and_printable() {
        assert_eq!(operator_text("by", "  alice ", 10).unwrap(), "alice");
        for bad in [
            "",
            "   ",
            "a\u{1b}[2Jb",
            "x\ny",
            &"é".repeat(11),
            "deploy \u{202E}kcabllor",
            "al\u{200B}ice",
            "\u{2066}bob\u{2069}",
        ] {
            assert!(operator_text("by", bad, 10).is_err(), "{bad:?}");
        }
        assert!(operator_text("by", &"é".repeat(10), 10).is_ok());
    }
}
