//! What an action did, and the one function that writes it into the incident state.
//!
//! The responder executes an [`Action`] and reports an [`ActionOutcome`]; [`apply_outcome`]
//! is the only place where an action's effect enters the [`IncidentState`]. It is pure, so the
//! state transitions of every (action, outcome) pair can be tested in one place.

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
    /// The rollout's verdict: `complete`, `failed: …` or `timeout`.
    RolloutVerdict {
        /// The verdict.
        verdict: String,
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
            Action::PruneContext { task_id, .. },
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
            Action::PruneContext { task_id, .. },
            O::Failed {
                reason,
                final_for_incident: true,
            },
        ) => {
            state.prune_failed.insert(task_id.clone(), reason.clone());
        }
        (
            Action::SetEnv { name, value, .. },
            O::Applied(Applied::EnvSet {
                resource_version,
                previous,
            }),
        ) => env_set(state, policy, name, value, resource_version, previous, now),
        (Action::RetryTask { task_id, probe, .. }, O::Applied(Applied::Retried { attempts })) => {
            state.retries.insert(
                task_id.clone(),
                RetryRecord {
                    attempts: *attempts,
                    last_at: now,
                },
            );
            if *probe {
                state.breaker.probe_sent(task_id.clone());
            }
        }
        (Action::Rollback { .. }, _) => rollback(state, action, outcome, now),
        (Action::VerifyRollout { .. }, O::Applied(Applied::RolloutVerdict { verdict })) => {
            if let Some(rb) = state.rollback.take() {
                state.rollback = Some(RollbackRecord {
                    rollout: Some(verdict.clone()),
                    verified_at: Some(now),
                    ..rb
                });
            }
        }
        (Action::Page { .. } | Action::Notify { .. }, O::Applied(Applied::Delivered { .. })) => {
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
    let Action::Rollback {
        from_revision,
        to_revision,
        ..
    } = action
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
                Some(format!("rollback failed: {reason}")),
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

/// Reconciles the state with the effects the ledger has reserved: a rollback reserved but not
/// in the state (the process that reserved it stopped before recording its outcome) is taken
/// as performed, to the revision recorded at open, and goes to verification — never attempted
/// again, and never mistaken for a human's change to the Deployment.
pub fn reconcile_reserved(state: &mut IncidentState, effects: &[String], now: Timestamp) {
    if state.rollback.is_some() || !effects.iter().any(|e| e == "rollback") {
        return;
    }
    let Some(at_open) = &state.deployment_at_open else {
        return;
    };
    let Some(to_revision) = at_open.previous_revision else {
        return;
    };
    state.rollback = Some(RollbackRecord {
        at: now,
        from_revision: at_open.revision,
        to_revision,
        rollout: None,
        verified_at: None,
    });
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
