//! What an action did, and the one function that writes it into the incident state.
//!
//! The responder executes an [`Action`] and reports an [`ActionOutcome`]; [`apply_outcome`]
//! is the only place where an action's effect enters the [`IncidentState`]. It is pure, so the
//! state transitions of every (action, outcome) pair can be tested in one place.

use super::actions;
use super::{Action, EnvRecord, IncidentState, PruneRecord, RetryRecord, RollbackRecord};
use crate::breaker::Breaker;
use crate::model::Timestamp;
use crate::policy::Policy;

/// What carrying out one action did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionOutcome {
    /// It happened (or was found already done, for idempotent actions).
    Applied(Applied),
    /// A dry run: it would have been done.
    DryRun,
    /// Not attempted: a safeguard or a precondition stopped it (the kill switch, a bundle that
    /// was not pruned, a task that is no longer retryable). Nothing changed; the action may be
    /// decided again.
    Refused {
        /// Why.
        reason: String,
    },
    /// Someone else did it first (another replica, an earlier pass whose outcome was lost).
    DoneElsewhere {
        /// Why flowfail believes so.
        reason: String,
    },
    /// Attempted and not done.
    Failed {
        /// The error.
        reason: String,
        /// `true` when the action must not be decided again in this incident (a reserved
        /// rollback that failed, a bundle that cannot be pruned).
        final_for_incident: bool,
    },
    /// It may or may not have happened: the call panicked and the panic was contained.
    Unknown {
        /// What is known.
        reason: String,
    },
    /// Held back by the action rate limit: not attempted, not recorded as an action (the
    /// excess is escalated); decided again next pass.
    Deferred,
    /// Not attempted: another responder claimed the incident after this pass did. Nothing is
    /// recorded and the pass stops acting.
    Superseded,
}

impl ActionOutcome {
    /// Not attempted, with why.
    pub fn refused(reason: impl Into<String>) -> Self {
        ActionOutcome::Refused {
            reason: reason.into(),
        }
    }

    /// Attempted and not done; `final_for_incident` when it must not be decided again.
    pub fn failed(reason: impl Into<String>, final_for_incident: bool) -> Self {
        ActionOutcome::Failed {
            reason: reason.into(),
            final_for_incident,
        }
    }
}

/// What an applied action returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The bundle was pruned; the original is archived under `archive_checksum`.
    Pruned {
        /// Size before.
        from_bytes: u64,
        /// Size after.
        to_bytes: u64,
        /// SHA-256 of the original.
        archive_checksum: String,
    },
    /// The bundle was already within the budget: nothing to prune, the retry may go.
    AlreadySmall {
        /// Its size.
        bytes: u64,
    },
    /// The env var has the value; `previous` is what it replaced.
    EnvSet {
        /// The Deployment's resourceVersion after the change.
        resource_version: String,
        /// The value before (for undo).
        previous: Option<String>,
    },
    /// The retry is scheduled; `attempts` is the new attempt count.
    Retried {
        /// New attempt count.
        attempts: u32,
    },
    /// The Deployment runs the target revision's template.
    RolledBack {
        /// resourceVersion after the rollback.
        resource_version: String,
    },
    /// The rollout's verdict: complete, failed or timed out.
    RolloutVerdict {
        /// The verdict.
        verdict: super::RolloutVerdict,
    },
    /// The rollout is still in progress: no verdict yet.
    RolloutPending,
    /// The page or notification reached its system.
    Delivered {
        /// The system already had one with the same key.
        deduplicated: bool,
    },
}

/// Writes what `action` did into `state`. Pure: the only writer of action effects.
///
/// An outcome that changed nothing in the world (refused, dry run, failed and retryable,
/// unknown) changes nothing in the state, so the next pass decides the action again; the
/// exceptions are the ones the runbook asks for: a failed rollback or an unprunable bundle is
/// never tried again, and a rollback another replica reserved counts as done.
pub fn apply_outcome(
    state: &mut IncidentState,
    action: &Action,
    outcome: &ActionOutcome,
    policy: &Policy,
    now: Timestamp,
) {
    use ActionOutcome as O;
    match (action, outcome) {
        (
            Action::PruneContext(actions::PruneContext { task_id, .. }),
            O::Applied(Applied::Pruned {
                from_bytes,
                to_bytes,
                ..
            }),
        ) => {
            state.pruned.insert(
                task_id.clone(),
                PruneRecord {
                    at: now,
                    from_bytes: *from_bytes,
                    to_bytes: *to_bytes,
                },
            );
        }
        (
            Action::PruneContext(actions::PruneContext { task_id, .. }),
            O::Failed {
                reason,
                final_for_incident: true,
            },
        ) => {
            state.prune_failed.insert(task_id.clone(), reason.clone());
        }
        (
            Action::SetEnv(actions::SetEnv { name, value, .. }),
            O::Applied(Applied::EnvSet {
                resource_version,
                previous,
            }),
        ) => env_set(state, policy, name, value, resource_version, previous, now),
        (
            Action::RetryTask(actions::RetryTask { task_id, probe, .. }),
            O::Applied(Applied::Retried { attempts }),
        ) => {
            state.retries.insert(
                task_id.clone(),
                RetryRecord {
                    attempts: *attempts,
                    last_at: now,
                    finished: None,
                },
            );
            if *probe {
                state.breaker.probe_sent(task_id.clone());
            }
        }
        (Action::Rollback(_), _) => rollback(state, action, outcome, now),
        (Action::VerifyRollout(_), O::Applied(Applied::RolloutVerdict { verdict })) => {
            if let Some(rb) = state.rollback.take() {
                state.rollback = Some(RollbackRecord {
                    rollout: Some(verdict.to_string()),
                    verified_at: Some(now),
                    ..rb
                });
            }
        }
        (Action::Page(_) | Action::Notify(_), O::Applied(Applied::Delivered { .. })) => {
            if let Some(k) = action.effect_key() {
                state.effects.insert(k);
            }
        }
        _ => {}
    }
}

fn env_set(
    state: &mut IncidentState,
    policy: &Policy,
    name: &String,
    value: &Option<String>,
    resource_version: &str,
    previous: &Option<String>,
    now: Timestamp,
) {
    state.known_resource_version = Some(resource_version.to_owned());
    match state.env_changes.get(name) {
        // Restoring what flowfail found: the change is undone.
        Some(rec) if rec.previous == *value => {
            state.env_changes.remove(name);
            state.env_undone.insert(name.clone());
        }
        Some(_) => {}
        None => {
            state.env_changes.insert(
                name.clone(),
                EnvRecord {
                    value: value.clone(),
                    previous: previous.clone(),
                    at: now,
                },
            );
        }
    }
    if *name == policy.breaker_env {
        if value.as_deref() == Some("true") {
            state.breaker_enabled_at = Some(now);
            state.breaker = Breaker::open(now, policy.half_open_after_s);
        } else {
            state.breaker_enabled_at = None;
        }
    }
}

fn rollback(state: &mut IncidentState, action: &Action, outcome: &ActionOutcome, now: Timestamp) {
    let Action::Rollback(actions::Rollback {
        from_revision,
        to_revision,
        ..
    }) = action
    else {
        return;
    };
    let record = |rollout: Option<String>, verified_at: Option<Timestamp>| RollbackRecord {
        at: now,
        from_revision: *from_revision,
        to_revision: *to_revision,
        rollout,
        verified_at,
    };
    match outcome {
        ActionOutcome::Applied(Applied::RolledBack { resource_version }) => {
            state.known_resource_version = Some(resource_version.clone());
            state.rollback = Some(record(None, None));
        }
        ActionOutcome::DoneElsewhere { .. } if state.rollback.is_none() => {
            state.rollback = Some(record(
                Some("unknown: reserved but outcome not recorded".into()),
                Some(now),
            ));
        }
        // Reserved and not applied: never attempted again in this incident.
        ActionOutcome::Failed {
            reason,
            final_for_incident: true,
        }
        | ActionOutcome::Unknown { reason } => {
            state.rollback = Some(record(
                Some(super::RolloutVerdict::RollbackFailed(reason.to_string()).to_string()),
                Some(now),
            ));
        }
        _ => {}
    }
}

/// An action panicked: the panic is contained and the incident is handed to humans.
pub fn escalate_after_panic(state: &mut IncidentState, now: Timestamp) {
    state.escalated_at = Some(now);
}

/// What [`reconcile_reserved`] found of a rollback reserved in the ledger with no outcome in
/// the state (its process stopped between the reservation and the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReservedRollback {
    /// The Deployment runs the target's template: the rollback landed. Recorded as applied; it
    /// goes to verification.
    Landed {
        /// Revision rolled away from.
        from_revision: u64,
        /// Revision rolled back to.
        to_revision: u64,
    },
    /// The Deployment is not rolled back: the call never reached it. Recorded as not applied
    /// (never verified, never attempted again in this incident); on-call is paged.
    NeverReached {
        /// Revision it would have rolled away from.
        from_revision: u64,
        /// Revision it would have rolled back to.
        to_revision: u64,
    },
}

/// The rollout verdict of a rollback that was reserved and never reached the Deployment.
pub const ROLLBACK_NEVER_REACHED: &str = "not applied: reserved by a process that stopped before the call; it never reached the Deployment";

/// Reconciles the state with the effects the ledger has reserved and the Deployment as observed
/// now. A rollback reserved but not in the state (the process that reserved it stopped before
/// recording its outcome) is never attempted again; it is recorded as what the Deployment shows:
/// applied and going to verification when the Deployment runs the target's template (its
/// revision moved on and the target's ReplicaSet was relabelled), otherwise as never applied —
/// never reported as applied or verified. A rollback recorded as never applied is looked at again
/// each pass and recorded as applied if it shows up on the Deployment after all (a replica's
/// call in flight). With the Deployment unreadable nothing is decided.
pub fn reconcile_reserved(
    state: &mut IncidentState,
    effects: &[String],
    deployment: Option<&crate::model::DeploymentState>,
    now: Timestamp,
) -> Option<ReservedRollback> {
    if !effects.iter().any(|e| e == "rollback") {
        return None;
    }
    let d = deployment?;
    let landed =
        |from: u64, to: u64| d.revision != from && !d.history.iter().any(|h| h.revision == to);
    let (from_revision, to_revision) = match &state.rollback {
        Some(rb) if rb.never_reached() => (rb.from_revision, rb.to_revision),
        Some(_) => return None,
        None => {
            let at_open = state.deployment_at_open.as_ref()?;
            (at_open.revision, at_open.previous_revision?)
        }
    };
    let record = |rollout: Option<String>| RollbackRecord {
        at: now,
        from_revision,
        to_revision,
        rollout,
        verified_at: None,
    };
    if landed(from_revision, to_revision) {
        state.rollback = Some(record(None));
        state.known_resource_version = Some(d.resource_version.clone());
        Some(ReservedRollback::Landed {
            from_revision,
            to_revision,
        })
    } else if state.rollback.is_none() {
        state.rollback = Some(record(Some(ROLLBACK_NEVER_REACHED.to_owned())));
        Some(ReservedRollback::NeverReached {
            from_revision,
            to_revision,
        })
    } else {
        None
    }
}

/// Reconciles the env changes a process intended (written ahead to the ledger) with the
/// Deployment as observed now: an intent whose value the Deployment holds was applied by a process
/// that stopped before recording it, and is recorded as flowfail's change (so closing restores
/// it, and the new resourceVersion is not mistaken for a human's change); an intent whose value
/// is not there never landed, and is dropped. With the Deployment unreadable the intents wait.
pub fn reconcile_env_intents(
    state: &mut IncidentState,
    deployment: Option<&crate::model::DeploymentState>,
    policy: &Policy,
) {
    let Some(d) = deployment else {
        return;
    };
    for (name, intent) in std::mem::take(&mut state.env_intents) {
        if d.env.get(&name) == intent.value.as_ref() {
            env_set(
                state,
                policy,
                &name,
                &intent.value,
                &d.resource_version,
                &intent.previous,
                intent.at,
            );
        }
    }
}
