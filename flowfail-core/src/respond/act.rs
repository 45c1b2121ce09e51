//! Act: carry out a decision's actions, each through the [guard](super::guard), and report one
//! [`ActionOutcome`] per action. The outcome enters the incident state only through
//! [`apply_outcome`]; it is recorded in the report and in the ledger's timeline.

use chrono::TimeDelta;

use super::guard::{Budget, Fence, Gate};
use super::{Responder, dedup_key, lock};
use crate::bundle::{BundleStoreExt, PruneContextOutcome};
use crate::decide::{
    Action, ActionKind, ActionOutcome, Applied, Decision, EnvRecord, IncidentState, Observation,
    RolloutVerdict, Skip, Trouble, apply_outcome, escalate_after_panic, escalation,
    retry_after_prune,
};
use crate::error::{ErrorKind, Result};
use crate::model::{
    ByteSize, ChangeCause, DeploymentState, EnvChange, RolloutStatus, TaskId, Timestamp,
};
use crate::ports::{Epoch, Notification, Page, RetryOutcome, RetryRequest, TimelineEntry};

/// What acting on one decision produced.
pub(super) struct Acted {
    /// Timeline entries for the ledger.
    pub(super) entries: Vec<TimelineEntry>,
    /// An action panicked (contained): the incident goes to humans.
    pub(super) panicked: bool,
    /// Another responder claimed the incident mid-pass: this pass stopped acting.
    pub(super) stale: bool,
}

/// What one action came to.
enum Done {
    /// An outcome to apply and record.
    Outcome(ActionOutcome),
    /// Held back by the action rate limit: not recorded as an action; decided again next pass.
    Deferred,
    /// Nothing to record (a dry-run rollout check, a rollout still in progress).
    Nothing,
    /// Another responder holds the incident now: not called, not recorded; the pass stops.
    Stale,
}

/// The state of one act phase.
struct ActPhase<'a> {
    obs: &'a Observation,
    /// The pass's claim and pause: what the guard checks every mutation against.
    fence: &'a Fence,
    epoch: Option<Epoch>,
    now: Timestamp,
    entries: Vec<TimelineEntry>,
    /// What became of this pass's prunes, by task: the retries that follow them are judged by
    /// [`retry_after_prune`].
    prunes: Vec<(TaskId, ActionOutcome)>,
    deferred: usize,
    panicked: bool,
    stale: bool,
}

/// Write-ahead: the state with the env change's intent, saved in the ledger before the call, so
/// a process that stops between the call and its record leaves a trace the next pass reconciles.
fn written_ahead(
    state: &IncidentState,
    name: &str,
    value: &Option<String>,
    previous: &Option<String>,
    now: Timestamp,
) -> serde_json::Result<serde_json::Value> {
    let mut ahead = state.clone();
    ahead.env_intents.insert(
        name.to_owned(),
        EnvRecord {
            value: value.clone(),
            previous: previous.clone(),
            at: now,
        },
    );
    serde_json::to_value(&ahead)
}

/// The outcome of a call the guard did not let run to completion.
fn stopped<T>(gate: Gate<T>) -> std::result::Result<T, Done> {
    match gate {
        Gate::Ran(t) => Ok(t),
        Gate::Halted => Err(Done::Outcome(refused("kill switch is on"))),
        Gate::DryRun => Err(Done::Outcome(ActionOutcome::DryRun)),
        Gate::Paused(why) => Err(Done::Outcome(refused(why))),
        Gate::Deferred => Err(Done::Deferred),
        Gate::TimedOut(e) => Err(Done::Outcome(failed(e.to_string(), false))),
        Gate::Panicked(what) => Err(Done::Outcome(ActionOutcome::Unknown {
            reason: format!("panicked: {what}"),
        })),
        Gate::Stale => Err(Done::Stale),
        Gate::Unfenced(e) => Err(Done::Outcome(failed(
            format!("the ledger could not confirm this pass's claim: {e}"),
            false,
        ))),
    }
}

fn refused(reason: impl Into<String>) -> ActionOutcome {
    ActionOutcome::Refused {
        reason: reason.into(),
    }
}

fn failed(reason: String, final_for_incident: bool) -> ActionOutcome {
    ActionOutcome::Failed {
        reason,
        final_for_incident,
    }
}

impl Responder {
    /// Carries out `d`'s actions in order; consecutive retries go to the store as one batch.
    pub(super) async fn act(
        &self,
        d: &Decision,
        obs: &Observation,
        state: &mut IncidentState,
        fence: &Fence,
        now: Timestamp,
    ) -> Acted {
        let mut pass = ActPhase {
            obs,
            fence,
            epoch: fence.epoch(),
            now,
            entries: Vec::new(),
            prunes: Vec::new(),
            deferred: 0,
            panicked: false,
            stale: false,
        };
        let mut i = 0;
        while i < d.actions.len() && !pass.stale {
            if let Action::RetryTask { .. } = d.actions[i] {
                let start = i;
                while matches!(d.actions.get(i), Some(Action::RetryTask { .. })) {
                    i += 1;
                }
                self.retry_batch(&d.actions[start..i], state, &mut pass)
                    .await;
                self.checkpoint(state, &mut pass).await;
                continue;
            }
            let a = &d.actions[i];
            i += 1;
            let done = self.execute(a, state, &mut pass).await;
            if self.finish(a, done, state, &mut pass) {
                self.escalate(Trouble::ActionPanicked(a.kind()), state, &mut pass)
                    .await;
            }
            self.checkpoint(state, &mut pass).await;
        }
        for f in &d.findings {
            pass.entries.push(TimelineEntry::new(
                now,
                "finding",
                serde_json::to_value(f).unwrap_or_default(),
            ));
        }
        if pass.deferred > 0 && !pass.stale {
            // Excess is escalated, never dropped: the deferred actions are decided again.
            let trouble = Trouble::RateLimited {
                per_minute: self.policy.max_actions_per_minute,
                deferred: pass.deferred,
            };
            self.escalate(trouble, state, &mut pass).await;
        }
        Acted {
            entries: pass.entries,
            panicked: pass.panicked,
            stale: pass.stale,
        }
    }

    /// Writes what happened so far to the ledger (its timeline entries and the state), so a
    /// process that dies mid-pass loses at most the action in flight from the record. A write
    /// that fails keeps the entries for the pass's final write.
    async fn checkpoint(&self, state: &IncidentState, pass: &mut ActPhase<'_>) {
        let Some(epoch) = pass.epoch else { return };
        if pass.entries.is_empty() {
            return;
        }
        let appended = self
            .call(
                "incident.append",
                self.ports
                    .incidents
                    .append(&state.key, epoch, &pass.entries),
            )
            .await;
        if let Err(e) = appended
            && !self.appended_anyway(&state.key, &pass.entries, &e).await
        {
            tracing::warn!(error = %e, "incident ledger checkpoint failed");
            return;
        }
        pass.entries.clear();
        let saved = match serde_json::to_value(state) {
            Ok(json) => {
                self.call(
                    "incident.save_state",
                    self.ports.incidents.save_state(&state.key, epoch, &json),
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "incident ledger checkpoint failed");
        }
    }

    async fn execute(&self, a: &Action, state: &IncidentState, pass: &mut ActPhase<'_>) -> Done {
        let r = match a {
            Action::PruneContext { task_id, .. } => {
                let r = self.prune(a, pass).await;
                if let Ok(Done::Outcome(o)) | Err(Done::Outcome(o)) = &r {
                    pass.prunes.push((task_id.clone(), o.clone()));
                }
                r
            }
            Action::SetEnv { .. } => self.set_env(a, state, pass).await,
            Action::Rollback { .. } => self.rollback(a, state, pass).await,
            Action::VerifyRollout { deployment } => self.verify(deployment, state, pass).await,
            Action::Page { .. } | Action::Notify { .. } => self.deliver(a, state, pass).await,
            Action::RetryTask { .. } => Ok(Done::Nothing),
        };
        r.unwrap_or_else(|done| done)
    }

    /// Applies and records one outcome. Returns `true` when the action panicked.
    fn finish(
        &self,
        a: &Action,
        done: Done,
        state: &mut IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> bool {
        match done {
            Done::Nothing => false,
            Done::Stale => {
                pass.stale = true;
                false
            }
            Done::Deferred => {
                let skip = Skip::new(
                    a.kind(),
                    subject(a),
                    "action rate limit: deferred to the next pass",
                );
                lock(&self.inner).report.skips(pass.now, &[skip]);
                pass.deferred += 1;
                false
            }
            Done::Outcome(o) => {
                apply_outcome(state, a, &o, &self.policy, pass.now);
                self.record_action(a, &o, pass);
                let panicked = matches!(o, ActionOutcome::Unknown { .. });
                if panicked {
                    tracing::error!(incident = %state.key, kind = a.kind().as_str(), "action panicked; contained");
                    escalate_after_panic(state, pass.now);
                    pass.panicked = true;
                }
                panicked
            }
        }
    }

    fn record_action(&self, a: &Action, o: &ActionOutcome, pass: &mut ActPhase<'_>) {
        let Some((fields, outcome, detail)) = crate::report::rendered(a, o) else {
            return;
        };
        if let ActionOutcome::Refused { reason } = o
            && pass.fence.paused.as_ref() == Some(reason)
        {
            // Paused, the same refusals come pass after pass: record each once per pause.
            let key = serde_json::to_string(&fields).unwrap_or_default();
            if !lock(&self.inner).paused_seen.insert(key) {
                return;
            }
        }
        if self.shadow && outcome == crate::report::Outcome::DryRun {
            // A shadow run decides the same actions pass after pass: record each once.
            let key = serde_json::to_string(&fields).unwrap_or_default();
            if !lock(&self.inner).shadow_seen.insert(key) {
                return;
            }
        }
        if outcome != crate::report::Outcome::DryRun {
            tracing::info!(action = a.kind().as_str(), outcome = ?outcome, "action");
        }
        pass.entries.push(TimelineEntry::new(
            pass.now,
            "action",
            serde_json::json!({"action": &fields, "outcome": outcome, "detail": &detail}),
        ));
        lock(&self.inner)
            .report
            .action(pass.now, fields, outcome, detail);
    }

    async fn prune(&self, a: &Action, pass: &mut ActPhase<'_>) -> std::result::Result<Done, Done> {
        let Action::PruneContext {
            task_id, max_bytes, ..
        } = a
        else {
            return Ok(Done::Nothing);
        };
        let gate = self
            .guarded(
                pass.fence,
                "prune_context",
                Budget::Limited,
                pass.now,
                || {
                    self.ports.bundles.prune_context(
                        task_id,
                        ByteSize::new(*max_bytes),
                        self.policy.max_bundle_size,
                        &self.prune_options,
                    )
                },
            )
            .await;
        Ok(Done::Outcome(match stopped(gate)? {
            Ok(PruneContextOutcome::Pruned {
                from_bytes,
                to_bytes,
                archive_checksum,
                ..
            }) => ActionOutcome::Applied(Applied::Pruned {
                from_bytes,
                to_bytes,
                archive_checksum,
            }),
            Ok(PruneContextOutcome::AlreadySmall { bytes }) => {
                ActionOutcome::Applied(Applied::AlreadySmall { bytes })
            }
            Err(e) => {
                let final_for_incident = e.kind() != ErrorKind::Conflict && !e.is_transient();
                failed(e.to_string(), final_for_incident)
            }
        }))
    }

    async fn set_env(
        &self,
        a: &Action,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> std::result::Result<Done, Done> {
        let Action::SetEnv {
            deployment,
            name,
            value,
            purpose,
        } = a
        else {
            return Ok(Done::Nothing);
        };
        let cause = ChangeCause::for_incident(&state.key, purpose);
        let change = match value {
            Some(v) => EnvChange::set(name.clone(), v.clone()),
            None => EnvChange::unset(name.clone()),
        };
        let previous = pass
            .obs
            .deployment
            .as_ref()
            .and_then(|d| d.env.get(name).cloned());
        // Never a blind write: without this pass's read of the Deployment there is no
        // precondition, so no call.
        let Some(pre) = pass
            .obs
            .deployment
            .as_ref()
            .map(|d| d.resource_version.clone())
        else {
            return Ok(Done::Outcome(refused(
                "deployment state unread: no env change without a precondition",
            )));
        };
        let pre = Some(pre);
        let ahead = written_ahead(state, name, value, &previous, pass.now);
        let epoch = pass.epoch;
        let gate = self
            .guarded(
                pass.fence,
                "deployment.set_env",
                Budget::Limited,
                pass.now,
                || async {
                    let Some(epoch) = epoch else {
                        return Err(crate::Error::refused("no ledger claim for this pass"));
                    };
                    let ahead = ahead.map_err(crate::Error::from)?;
                    self.ports
                        .incidents
                        .save_state(&state.key, epoch, &ahead)
                        .await?;
                    Ok(self
                        .ports
                        .deployment
                        .set_env(deployment, std::slice::from_ref(&change), pre, &cause)
                        .await)
                },
            )
            .await;
        let r = match gate {
            Gate::Ran(Err(e)) => {
                return Ok(Done::Outcome(failed(
                    format!("could not record the env change ahead of it: {e}"),
                    false,
                )));
            }
            Gate::Ran(Ok(r)) => r,
            Gate::TimedOut(e) => Err(e),
            other => return Err(stopped(other).err().unwrap_or(Done::Nothing)),
        };
        let r = match r {
            // A lost reply? Look before reporting failure.
            Err(e) if e.kind() != ErrorKind::Conflict => {
                match self.state_after_lost_reply(deployment).await {
                    Some(s) if s.env.get(name) == value.as_ref() => Ok(s),
                    _ => Err(e),
                }
            }
            r => r,
        };
        Ok(Done::Outcome(match r {
            Ok(s) => ActionOutcome::Applied(Applied::EnvSet {
                resource_version: s.resource_version,
                previous,
            }),
            Err(e) => failed(e.to_string(), false),
        }))
    }

    /// The Deployment after a mutation whose reply was lost (it may have applied): read up to
    /// three times, since reporting a change that landed as failed would leave the record
    /// short of what was done. `None` when it could not be read.
    async fn state_after_lost_reply(&self, deployment: &str) -> Option<DeploymentState> {
        for _ in 0..3 {
            if let Ok(s) = self
                .call("deployment.state", self.ports.deployment.state(deployment))
                .await
            {
                return Some(s);
            }
        }
        None
    }

    /// Reserved in the ledger first (at most once per incident across replicas), then applied
    /// only if the resourceVersion is unchanged; a failure is final for the incident.
    async fn rollback(
        &self,
        a: &Action,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> std::result::Result<Done, Done> {
        let Action::Rollback {
            deployment,
            from_revision,
            to_revision,
            expected_resource_version,
        } = a
        else {
            return Ok(Done::Nothing);
        };
        let cause = ChangeCause::for_incident(
            &state.key,
            &format!("widespread failures after the deploy of revision {from_revision}"),
        );
        let epoch = pass.epoch;
        let gate = self
            .guarded(
                pass.fence,
                "deployment.rollback",
                Budget::Limited,
                pass.now,
                || async {
                    // Mutations run only under a ledger claim; without one, nothing is reserved.
                    let Some(epoch) = epoch else {
                        return Err(crate::Error::refused("no ledger claim for this pass"));
                    };
                    match self
                        .call(
                            "incident.reserve_effect",
                            self.ports.incidents.reserve_effect(
                                &state.key,
                                epoch,
                                crate::decide::effects::ROLLBACK,
                            ),
                        )
                        .await
                    {
                        Ok(true) => Ok(Some(
                            self.ports
                                .deployment
                                .rollback(
                                    deployment,
                                    *to_revision,
                                    expected_resource_version,
                                    &cause,
                                )
                                .await,
                        )),
                        Ok(false) => Ok(None),
                        Err(e) => Err(e),
                    }
                },
            )
            .await;
        let r: Result<DeploymentState> = match gate {
            Gate::Ran(Ok(Some(r))) => r,
            Gate::Ran(Ok(None)) => {
                return Ok(Done::Outcome(ActionOutcome::DoneElsewhere {
                    reason: "rollback already reserved for this incident (another responder or an earlier pass)".into(),
                }));
            }
            Gate::Ran(Err(e)) => {
                return Ok(Done::Outcome(failed(
                    format!("could not reserve the rollback: {e}"),
                    false,
                )));
            }
            Gate::TimedOut(e) => Err(e),
            other => return Err(stopped(other).err().unwrap_or(Done::Nothing)),
        };
        let r = match r {
            Err(e) if e.is_transient() => match self.state_after_lost_reply(deployment).await {
                Some(s)
                    if s.revision != *from_revision
                        && !s.history.iter().any(|h| h.revision == *to_revision) =>
                {
                    Ok(s)
                }
                _ => Err(e),
            },
            r => r,
        };
        Ok(Done::Outcome(match r {
            Ok(s) => ActionOutcome::Applied(Applied::RolledBack {
                resource_version: s.resource_version,
            }),
            Err(e) => failed(e.to_string(), true),
        }))
    }

    async fn verify(
        &self,
        deployment: &str,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> std::result::Result<Done, Done> {
        let Some(rb) = &state.rollback else {
            return Ok(Done::Nothing);
        };
        let gate = self
            .guarded(
                pass.fence,
                "deployment.rollout_status",
                Budget::Exempt,
                pass.now,
                || {
                    self.read("deployment.rollout_status", || {
                        self.ports.deployment.rollout_status(deployment)
                    })
                },
            )
            .await;
        let status = match gate {
            Gate::DryRun | Gate::Paused(_) => return Ok(Done::Nothing),
            Gate::TimedOut(e) => Err(e),
            other => stopped(other)?,
        };
        let timeout = TimeDelta::seconds(
            i64::try_from(self.policy.rollout_timeout_s).unwrap_or(i64::MAX / 1000),
        );
        let verdict = match status {
            Ok(RolloutStatus::Complete) => RolloutVerdict::Complete,
            Ok(RolloutStatus::Failed { message }) => RolloutVerdict::Failed(message),
            Ok(_) | Err(_) if pass.now - rb.at > timeout => RolloutVerdict::Timeout,
            _ => return Ok(Done::Nothing),
        };
        Ok(Done::Outcome(ActionOutcome::Applied(
            Applied::RolloutVerdict { verdict },
        )))
    }

    /// Pages and notifications: never held back by the rate limit; deduplicated by key.
    async fn deliver(
        &self,
        a: &Action,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> std::result::Result<Done, Done> {
        let key = a.effect_key().unwrap_or_default();
        let dk = dedup_key(&state.key, &key);
        let gate = match a {
            Action::Page {
                target,
                reason,
                summary,
                details,
            } => {
                let mut body = serde_json::json!({
                    "incident": state.key,
                    "reason": reason,
                    "classification": state.classification_at_detection,
                    "alert": state.alert_at_detection,
                });
                if !details.is_null() {
                    body["evidence"] = details.clone();
                }
                let page = Page::new(target.clone(), dk, summary.clone(), body);
                let budget = if reason == crate::control::PAUSED_NOTICE_REASON {
                    Budget::PauseNotice
                } else {
                    Budget::Exempt
                };
                self.guarded(pass.fence, "pager.page", budget, pass.now, || {
                    self.read("pager.page", || self.ports.pager.page(&page))
                })
                .await
            }
            Action::Notify {
                audience, message, ..
            } => {
                let n = Notification::new(audience.clone(), dk, message.clone());
                self.guarded(
                    pass.fence,
                    "notifier.notify",
                    Budget::Exempt,
                    pass.now,
                    || self.read("notifier.notify", || self.ports.notifier.notify(&n)),
                )
                .await
            }
            _ => return Ok(Done::Nothing),
        };
        Ok(Done::Outcome(match stopped(gate)? {
            Ok(d) => ActionOutcome::Applied(Applied::Delivered {
                deduplicated: d == crate::ports::Delivery::Deduplicated,
            }),
            Err(e) => failed(e.to_string(), false),
        }))
    }

    /// Pages on-call about flowfail's own trouble, as [`escalation`] decides (once per
    /// incident), through the guard like every page.
    async fn escalate(&self, trouble: Trouble, state: &mut IncidentState, pass: &mut ActPhase<'_>) {
        let Some(a) = escalation(trouble, state, &self.policy) else {
            return;
        };
        let done = self.execute(&a, state, pass).await;
        self.finish(&a, done, state, pass);
    }

    async fn retry_batch(
        &self,
        batch: &[Action],
        state: &mut IncidentState,
        pass: &mut ActPhase<'_>,
    ) {
        let mut requests = Vec::new();
        let mut sent: Vec<&Action> = Vec::new();
        for a in batch {
            let Action::RetryTask {
                task_id,
                expected_attempts,
                after_prune,
                ..
            } = a
            else {
                continue;
            };
            if *after_prune {
                let prune = pass.prunes.iter().rev().find(|(t, _)| t == task_id);
                if let Err(why) = retry_after_prune(prune.map(|(_, o)| o)) {
                    self.finish(a, Done::Outcome(refused(why)), state, pass);
                    continue;
                }
            }
            requests.push(RetryRequest::new(
                task_id.clone(),
                *expected_attempts,
                pass.now,
            ));
            sent.push(a);
        }
        if requests.is_empty() {
            return;
        }
        let gate = self
            .guarded(
                pass.fence,
                "task.schedule_retries",
                Budget::Limited,
                pass.now,
                || self.ports.tasks.schedule_retries(&requests),
            )
            .await;
        let outcomes = match stopped(gate) {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(e)) => {
                for a in sent {
                    let o = self.retry_after_error(a, &e).await;
                    self.finish(a, Done::Outcome(o), state, pass);
                }
                return;
            }
            Err(done) => {
                let panicked = matches!(done, Done::Outcome(ActionOutcome::Unknown { .. }));
                for a in &sent {
                    let d = match &done {
                        Done::Outcome(o) => Done::Outcome(o.clone()),
                        Done::Deferred => Done::Deferred,
                        Done::Nothing => Done::Nothing,
                        Done::Stale => Done::Stale,
                    };
                    self.finish(a, d, state, pass);
                }
                if panicked {
                    let trouble = Trouble::ActionPanicked(ActionKind::RetryTask);
                    self.escalate(trouble, state, pass).await;
                }
                return;
            }
        };
        for (a, o) in sent.into_iter().zip(outcomes) {
            let o = match o {
                RetryOutcome::Scheduled { attempts } => {
                    ActionOutcome::Applied(Applied::Retried { attempts })
                }
                RetryOutcome::Conflict { current_attempts } => ActionOutcome::DoneElsewhere {
                    reason: format!("attempt count is now {current_attempts}: retried elsewhere"),
                },
                RetryOutcome::NotRetryable { status } => refused(format!("task is {status:?}")),
                RetryOutcome::NotFound => failed("task not found".into(), false),
            };
            self.finish(a, Done::Outcome(o), state, pass);
        }
    }
}

impl Responder {
    /// A retry whose batch call failed: after a transient error (a lost reply) the task is read
    /// back, and a retry whose attempt count moved one past the fence is recorded as applied —
    /// the record says what happened; otherwise it failed and is decided again.
    async fn retry_after_error(&self, a: &Action, e: &crate::Error) -> ActionOutcome {
        if let Action::RetryTask {
            task_id,
            expected_attempts,
            ..
        } = a
            && e.is_transient()
            && let Ok(t) = self.call("task.get", self.ports.tasks.get(task_id)).await
            && t.attempts == expected_attempts + 1
        {
            return ActionOutcome::Applied(Applied::Retried {
                attempts: t.attempts,
            });
        }
        failed(e.to_string(), false)
    }
}

fn subject(a: &Action) -> String {
    match a {
        Action::PruneContext { task_id, .. } | Action::RetryTask { task_id, .. } => {
            task_id.to_string()
        }
        Action::SetEnv { name, .. } => name.clone(),
        Action::Rollback { to_revision, .. } => format!("revision {to_revision}"),
        Action::VerifyRollout { deployment } => deployment.clone(),
        Action::Page { target, .. } => target.clone(),
        Action::Notify { audience, .. } => audience.clone(),
    }
}
