//! The operator's controls in a pass: the pause flag, read before any mutation, with its one
//! notice per incident; and the approval gates, applied to the decision before acting. See
//! [`crate::control`].

use super::{Responder, lock};
use crate::control::{self, Pause};
use crate::decide::{Action, Decision, IncidentState};
use crate::model::Timestamp;
use crate::ports::Op;
use crate::ports::{Epoch, TimelineEntry, TimelineKind};

/// The pause as one pass read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum PauseState {
    /// Not paused: mutations may go.
    #[default]
    Running,
    /// Paused by an operator.
    Paused(Pause),
    /// The flag could not be read: nothing is mutated this pass (a pause must not be missed).
    Unknown(String),
}

impl PauseState {
    /// Why the guard refuses mutations, when it does.
    pub(super) fn refusal(&self) -> Option<String> {
        match self {
            PauseState::Running => None,
            PauseState::Paused(p) => Some(format!(
                "automation paused by {} since {}: {}",
                p.by,
                p.since.format("%Y-%m-%dT%H:%M:%SZ"),
                p.reason
            )),
            PauseState::Unknown(e) => Some(format!(
                "automation pause flag unreadable, nothing changed this pass: {e}"
            )),
        }
    }
}

impl Responder {
    /// The guard's view of the pause for this pass.
    pub(super) fn pause_refusal(&self) -> Option<String> {
        lock(&self.inner).pause.refusal()
    }

    /// Reads the pause flag for this pass (before any mutation), notes a change in the report
    /// and the timeline, and — paused, under a ledger claim — returns the incident's one
    /// "automation paused" notice to send, until one was delivered.
    pub(super) async fn read_pause(
        &self,
        state: &IncidentState,
        epoch: Option<Epoch>,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
    ) -> Option<Action> {
        let scope = self.base_scope.as_str();
        let read = self
            .read(Op::IncidentPauseFlag, || {
                self.ports.incidents.pause_flag(scope)
            })
            .await;
        let current = match read {
            Ok(Some(p)) => PauseState::Paused(p),
            Ok(None) => PauseState::Running,
            Err(e) => {
                self.note_gap(format!("incident ledger: pause flag: {e}"));
                PauseState::Unknown(e.to_string())
            }
        };
        let previous = std::mem::replace(&mut lock(&self.inner).pause, current.clone());
        match (&previous, &current) {
            (PauseState::Paused(_), PauseState::Paused(_)) | (_, PauseState::Unknown(_)) => {}
            (_, PauseState::Paused(p)) => {
                let line = current.refusal().unwrap_or_default();
                lock(&self.inner).report.note(now, line);
                entries.push(TimelineEntry::new(
                    now,
                    TimelineKind::Paused,
                    serde_json::json!({"by": p.by, "reason": p.reason, "since": p.since}),
                ));
            }
            (PauseState::Paused(_), PauseState::Running) => {
                lock(&self.inner).paused_seen.clear();
                lock(&self.inner)
                    .report
                    .note(now, "automation resumed".to_owned());
                entries.push(TimelineEntry::new(
                    now,
                    TimelineKind::Resumed,
                    serde_json::json!({}),
                ));
            }
            _ => {}
        }
        let (PauseState::Paused(p), Some(_)) = (&current, epoch) else {
            return None;
        };
        // Shadow mode pages nobody: the reservation is kept for a responder that acts.
        if self.shadow {
            return None;
        }
        // One notice per incident: sent until one is delivered (a delivered page goes into the
        // incident's effects, which `pause_notice` checks). Not reserved before the send: a
        // failed send is tried again next pass. Replicas paging at once share its dedup key.
        crate::decide::pause_notice(p, state, &self.policy)
    }

    /// Holds back the decision's actions that wait for approval (see [`control::gate`]),
    /// reading the incident's approvals only when a gated action was decided (and the pass
    /// holds a ledger claim: a dry run has no incident in the ledger, so nothing approved).
    /// Proposals and the approvals used are noted once each in the report and the timeline.
    /// Returns the gates of the actions held back.
    pub(super) async fn gate(
        &self,
        d: &mut Decision,
        state: &IncidentState,
        epoch: Option<Epoch>,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
    ) -> Vec<String> {
        let gated = |a: &Action| {
            control::gate_name(a, state, &self.policy)
                .is_some_and(|g| self.policy.require_approval.iter().any(|r| r == g))
        };
        if !d.actions.iter().any(gated) {
            return Vec::new();
        }
        let read = match epoch {
            Some(_) => {
                self.read(Op::IncidentApprovals, || {
                    self.ports.incidents.approvals(&state.key)
                })
                .await
            }
            None => Ok(Vec::new()),
        };
        let approvals = match read {
            Ok(a) => a,
            Err(e) => {
                // No approval read is no approval: the gated actions wait.
                self.note_gap(format!("incident ledger: approvals: {e}"));
                Vec::new()
            }
        };
        let out = control::gate(d, state, &approvals, &self.policy, now);
        for p in &out.proposed {
            let line = format!(
                "proposed: {} ({}); waits for approval: `{}`",
                control::describe_action(&p.action),
                p.reason,
                p.approve_with
            );
            if lock(&self.inner).proposed_seen.insert(line.clone()) {
                lock(&self.inner).report.note(now, line);
                entries.push(TimelineEntry::new(
                    now,
                    TimelineKind::Proposed,
                    serde_json::json!({
                        "gate": p.gate,
                        "action": control::describe_action(&p.action),
                        "reason": p.reason,
                        "approve_with": p.approve_with,
                        "mode": crate::report::Conduct::AwaitingApproval,
                    }),
                ));
            }
        }
        for (a, ap) in &out.approved {
            let line = format!(
                "approved by {} at {}: {}",
                ap.by,
                ap.at.format("%Y-%m-%dT%H:%M:%SZ"),
                control::describe_action(a)
            );
            if lock(&self.inner).proposed_seen.insert(line.clone()) {
                lock(&self.inner).report.note(now, line);
                entries.push(TimelineEntry::new(
                    now,
                    TimelineKind::Approved,
                    serde_json::json!({"gate": ap.action, "by": ap.by, "at": ap.at}),
                ));
            }
        }
        for (a, no) in &out.denied {
            let line = format!(
                "denied by {} at {}: {} ({})",
                no.by,
                no.at.format("%Y-%m-%dT%H:%M:%SZ"),
                control::describe_action(a),
                no.reason.as_deref().unwrap_or("no reason given")
            );
            if lock(&self.inner).proposed_seen.insert(line.clone()) {
                lock(&self.inner).report.note(now, line);
                entries.push(TimelineEntry::new(
                    now,
                    TimelineKind::Denied,
                    serde_json::json!({"gate": no.action, "by": no.by, "at": no.at, "reason": no.reason}),
                ));
            }
        }
        let mut held: Vec<String> = out.proposed.iter().map(|p| p.gate.to_string()).collect();
        held.dedup();
        held
    }
}
