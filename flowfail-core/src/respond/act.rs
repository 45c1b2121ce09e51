//! Act: carry out a decision's actions, each through the [guard](super::guard), and report one
//! [`ActionOutcome`] per action. An action is dispatched by its kind in one place
//! ([`Responder::step`]); each handler takes its own struct and returns the outcome. The
//! outcome enters the incident state only through [`apply_outcome`], and the report and the
//! ledger's timeline only through [`crate::report::rendered`].

use chrono::TimeDelta;

use super::guard::{Budget, Fence};
use super::stats::PassLog;
use super::{Responder, dedup_key, lock};
use crate::bundle::{BundleStoreExt, PruneContextOutcome};
use crate::decide::actions::{
    self, Notify, PruneContext, RetryTask, Rollback, SetEnv, VerifyRollout,
};
use crate::decide::{
    Action, ActionKind, ActionOutcome, Applied, Decision, EnvRecord, IncidentState, Observation,
    RolloutVerdict, Skip, Trouble, apply_outcome, effects, escalate_after_panic, escalation,
    retry_after_prune,
};
use crate::error::{ErrorKind, Result};
use crate::model::{
    ByteSize, ChangeCause, DeploymentState, EnvChange, RolloutStatus, TaskId, Timestamp,
};
use crate::ports::Op;
use crate::ports::{
    self, Delivery, Epoch, Notification, RetryOutcome, RetryRequest, TimelineEntry, TimelineKind,
};
use crate::report::Conduct;

/// What acting on one decision produced.
pub(super) struct Acted {
    /// Timeline entries for the ledger.
    pub(super) entries: Vec<TimelineEntry>,
    /// An action panicked (contained): the incident goes to humans.
    pub(super) panicked: bool,
    /// Another responder claimed the incident mid-pass: this pass stopped acting.
    pub(super) stale: bool,
}

/// The state of one act phase.
struct ActPhase<'a> {
    obs: &'a Observation,
    /// The pass's claim and pause: what the guard checks every mutation against.
    fence: &'a Fence,
    /// The pass's reads.
    log: &'a PassLog,
    epoch: Option<Epoch>,
    now: Timestamp,
    entries: Vec<TimelineEntry>,
    /// What became of this pass's prunes, by task: the retries that follow them are judged by
    /// [`retry_after_prune`].
    prunes: Vec<(TaskId, ActionOutcome)>,
    deferred: usize,
    panicked: bool,
    stale: bool,
    /// The actions recorded this pass, for the log ([`super::log::log_actions`]).
    done: Vec<crate::report::ActionRecord>,
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

/// A mutation written down in the ledger first (the env change's intent, the rollback's
/// reservation): what the ledger step came to, and the call's result when it ran.
enum Staged<T> {
    /// The ledger step held and the call ran: what it returned.
    Ran(T),
    /// The ledger step failed: the call was not made.
    NotRecorded(crate::Error),
}

impl Responder {
    /// Carries out `d`'s actions in order; consecutive retries go to the store as one batch.
    pub(super) async fn act(
        &self,
        d: &Decision,
        obs: &Observation,
        state: &mut IncidentState,
        fence: &Fence,
        log: &PassLog,
    ) -> Acted {
        let now = obs.now;
        let mut pass = ActPhase {
            obs,
            fence,
            log,
            epoch: fence.epoch(),
            now,
            entries: Vec::new(),
            prunes: Vec::new(),
            deferred: 0,
            panicked: false,
            stale: false,
            done: Vec::new(),
        };
        let mut i = 0;
        while i < d.actions.len() && !pass.stale {
            i += self.step(&d.actions[i..], state, &mut pass).await;
            self.checkpoint(state, &mut pass).await;
        }
        super::log::log_actions(&state.key, &pass.done);
        for f in &d.findings {
            pass.entries.push(TimelineEntry::new(
                now,
                TimelineKind::Finding,
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

    /// Carries out the next action, or the next run of retries as one batch: the one place an
    /// action is dispatched by its kind. Returns how many actions it took (at least one).
    async fn step(
        &self,
        next: &[Action],
        state: &mut IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> usize {
        let Some(a) = next.first() else { return 1 };
        let outcome = match a {
            Action::RetryTask(_) => {
                let run = next
                    .iter()
                    .take_while(|a| matches!(a, Action::RetryTask(_)))
                    .count();
                self.retry_batch(&next[..run], state, pass).await;
                return run;
            }
            Action::PruneContext(p) => self.prune(p, pass).await,
            Action::SetEnv(s) => self.set_env(s, state, pass).await,
            Action::Rollback(r) => self.rollback(r, state, pass).await,
            Action::VerifyRollout(v) => self.verify(v, state, pass).await,
            Action::Page(p) => self.page(p, state, pass).await,
            Action::Notify(n) => self.notify(n, state, pass).await,
        };
        if self.finish(a, outcome, state, pass) {
            self.escalate(Trouble::ActionPanicked(a.kind()), state, pass)
                .await;
        }
        1
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
                Op::IncidentAppend,
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
                    Op::IncidentSaveState,
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

    /// Applies and records one outcome. Returns `true` when the action panicked.
    fn finish(
        &self,
        a: &Action,
        outcome: ActionOutcome,
        state: &mut IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> bool {
        match outcome {
            ActionOutcome::Superseded => {
                pass.stale = true;
                false
            }
            ActionOutcome::Deferred => {
                let skip = Skip::new(
                    a.kind(),
                    a.subject(),
                    "action rate limit: deferred to the next pass",
                );
                lock(&self.inner).report.skips(pass.now, &[skip]);
                pass.deferred += 1;
                false
            }
            o => {
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
        let paused = matches!(o, ActionOutcome::Refused { reason } if pass.fence.paused.as_ref() == Some(reason));
        let mode = match outcome {
            crate::report::Outcome::DryRun if self.shadow => Conduct::Shadow,
            crate::report::Outcome::DryRun => Conduct::DryRun,
            _ if paused => Conduct::Paused,
            _ => Conduct::Act,
        };
        pass.entries.push(TimelineEntry::new(
            pass.now,
            TimelineKind::Action,
            serde_json::json!({
                "action": &fields,
                "outcome": outcome,
                "detail": &detail,
                "mode": mode,
                "acted": matches!(outcome, crate::report::Outcome::Applied | crate::report::Outcome::Failed),
            }),
        ));
        pass.done.push(crate::report::ActionRecord {
            at: pass.now,
            action: fields.clone(),
            outcome,
            detail: detail.clone(),
        });
        lock(&self.inner)
            .report
            .action(pass.now, fields, outcome, detail);
    }

    async fn prune(&self, p: &PruneContext, pass: &mut ActPhase<'_>) -> ActionOutcome {
        let pruned = self
            .guarded(
                pass.fence,
                Op::PruneContext,
                Budget::Limited,
                pass.now,
                || {
                    self.ports.bundles.prune_context(
                        &p.task_id,
                        ByteSize::new(p.max_bytes),
                        self.policy.max_bundle_size,
                        &self.prune_options,
                    )
                },
            )
            .await;
        // Whatever came of it, the bundle's size is read again at the next pass.
        lock(&self.inner).bundle_sizes.remove(&p.task_id);
        let outcome = match pruned {
            Ok(Ok(PruneContextOutcome::Pruned {
                from_bytes,
                to_bytes,
                archive_checksum,
                ..
            })) => ActionOutcome::Applied(Applied::Pruned {
                from_bytes,
                to_bytes,
                archive_checksum,
            }),
            Ok(Ok(PruneContextOutcome::AlreadySmall { bytes })) => {
                ActionOutcome::Applied(Applied::AlreadySmall { bytes })
            }
            Ok(Err(e)) => {
                let final_for_incident = e.kind() != ErrorKind::Conflict && !e.is_transient();
                ActionOutcome::failed(e.to_string(), final_for_incident)
            }
            Err(held) => held,
        };
        pass.prunes.push((p.task_id.clone(), outcome.clone()));
        outcome
    }

    async fn set_env(
        &self,
        a: &SetEnv,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> ActionOutcome {
        let SetEnv {
            deployment,
            name,
            value,
            purpose,
        } = a;
        let cause = ChangeCause::for_incident(&state.key, purpose);
        let change = match value {
            Some(v) => EnvChange::set(name.clone(), v.clone()),
            None => EnvChange::unset(name.clone()),
        };
        let seen = pass.obs.deployment.as_ref();
        let previous = seen.and_then(|d| d.env.get(name).cloned());
        // Never a blind write: without this pass's read of the Deployment there is no
        // precondition, so no call.
        let Some(pre) = seen.map(|d| d.resource_version.clone()) else {
            return ActionOutcome::refused(
                "deployment state unread: no env change without a precondition",
            );
        };
        let ahead = written_ahead(state, name, value, &previous, pass.now);
        let epoch = pass.epoch;
        let ran = self
            .guarded(
                pass.fence,
                Op::DeploymentSetEnv,
                Budget::Limited,
                pass.now,
                || async {
                    let recorded = match (epoch, ahead) {
                        (None, _) => Err(crate::Error::refused("no ledger claim for this pass")),
                        (Some(_), Err(e)) => Err(e.into()),
                        (Some(epoch), Ok(ahead)) => {
                            self.ports
                                .incidents
                                .save_state(&state.key, epoch, &ahead)
                                .await
                        }
                    };
                    if let Err(e) = recorded {
                        return Ok(Staged::NotRecorded(e));
                    }
                    let change = std::slice::from_ref(&change);
                    let set = self
                        .ports
                        .deployment
                        .set_env(deployment, change, Some(pre), &cause);
                    set.await.map(Staged::Ran)
                },
            )
            .await;
        let r = match ran {
            Err(held) => return held,
            Ok(Ok(Staged::NotRecorded(e))) => {
                return ActionOutcome::failed(
                    format!("could not record the env change ahead of it: {e}"),
                    false,
                );
            }
            Ok(Ok(Staged::Ran(s))) => Ok(s),
            // A lost reply (or no reply within the deadline)? Look before reporting failure.
            Ok(Err(e)) if e.kind() != ErrorKind::Conflict => {
                match self.state_after_lost_reply(deployment).await {
                    Some(s) if s.env.get(name) == value.as_ref() => Ok(s),
                    _ => Err(e),
                }
            }
            Ok(Err(e)) => Err(e),
        };
        match r {
            Ok(s) => ActionOutcome::Applied(Applied::EnvSet {
                resource_version: s.resource_version,
                previous,
            }),
            Err(e) => ActionOutcome::failed(e.to_string(), false),
        }
    }

    /// The Deployment after a mutation whose reply was lost (it may have applied): read up to
    /// three times, since reporting a change that landed as failed would leave the record
    /// short of what was done. `None` when it could not be read.
    async fn state_after_lost_reply(&self, deployment: &str) -> Option<DeploymentState> {
        for _ in 0..3 {
            if let Ok(s) = self
                .call(Op::DeploymentState, self.ports.deployment.state(deployment))
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
        a: &Rollback,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> ActionOutcome {
        let cause = ChangeCause::for_incident(
            &state.key,
            &format!(
                "widespread failures after the deploy of revision {}",
                a.from_revision
            ),
        );
        let epoch = pass.epoch;
        let ran = self
            .guarded(
                pass.fence,
                Op::DeploymentRollback,
                Budget::Limited,
                pass.now,
                || async {
                    // Mutations run only under a ledger claim; without one, nothing is reserved.
                    let Some(epoch) = epoch else {
                        let e = crate::Error::refused("no ledger claim for this pass");
                        return Ok(Staged::NotRecorded(e));
                    };
                    let reserve =
                        self.ports
                            .incidents
                            .reserve_effect(&state.key, epoch, effects::ROLLBACK);
                    match self.call(Op::IncidentReserveEffect, reserve).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(Staged::Ran(None)),
                        Err(e) => return Ok(Staged::NotRecorded(e)),
                    }
                    let rollback = self.ports.deployment.rollback(
                        &a.deployment,
                        a.to_revision,
                        &a.expected_resource_version,
                        &cause,
                    );
                    rollback.await.map(|s| Staged::Ran(Some(s)))
                },
            )
            .await;
        let r = match ran {
            Err(held) => return held,
            Ok(Ok(Staged::Ran(None))) => {
                return ActionOutcome::DoneElsewhere {
                    reason: "rollback already reserved for this incident (another responder or an earlier pass)".into(),
                };
            }
            Ok(Ok(Staged::NotRecorded(e))) => {
                return ActionOutcome::failed(
                    format!("could not reserve the rollback: {e}"),
                    false,
                );
            }
            Ok(Ok(Staged::Ran(Some(s)))) => Ok(s),
            Ok(Err(e)) if e.is_transient() => {
                match self.state_after_lost_reply(&a.deployment).await {
                    Some(s)
                        if s.revision != a.from_revision
                            && !s.history.iter().any(|h| h.revision == a.to_revision) =>
                    {
                        Ok(s)
                    }
                    _ => Err(e),
                }
            }
            Ok(Err(e)) => Err(e),
        };
        match r {
            Ok(s) => ActionOutcome::Applied(Applied::RolledBack {
                resource_version: s.resource_version,
            }),
            Err(e) => ActionOutcome::failed(e.to_string(), true),
        }
    }

    /// The rollout's verdict after a rollback. A check that the pause held, or a rollout still
    /// in progress, is no verdict this pass.
    async fn verify(
        &self,
        a: &VerifyRollout,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> ActionOutcome {
        let pending = ActionOutcome::Applied(Applied::RolloutPending);
        let Some(rb) = &state.rollback else {
            return pending;
        };
        let read = self
            .guarded(
                pass.fence,
                Op::DeploymentRolloutStatus,
                Budget::Exempt,
                pass.now,
                || {
                    self.read_noted(pass.log, Op::DeploymentRolloutStatus, || {
                        self.ports.deployment.rollout_status(&a.deployment)
                    })
                },
            )
            .await;
        let status = match read {
            Ok(status) => status,
            Err(ActionOutcome::Refused { reason })
                if pass.fence.paused.as_ref() == Some(&reason) =>
            {
                return pending;
            }
            Err(held) => return held,
        };
        let timeout = TimeDelta::seconds(
            i64::try_from(self.policy.rollout_timeout_s).unwrap_or(i64::MAX / 1000),
        );
        let verdict = match status {
            Ok(RolloutStatus::Complete) => RolloutVerdict::Complete,
            Ok(RolloutStatus::Failed { message }) => RolloutVerdict::Failed(message),
            Ok(_) | Err(_) if pass.now - rb.at > timeout => RolloutVerdict::Timeout,
            _ => return pending,
        };
        ActionOutcome::Applied(Applied::RolloutVerdict { verdict })
    }

    /// A page: never held back by the rate limit; deduplicated by its key.
    async fn page(
        &self,
        p: &actions::Page,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> ActionOutcome {
        let dk = dedup_key(&state.key, &effects::page(&p.target, &p.reason));
        let mut body = serde_json::json!({
            "incident": state.key,
            "reason": p.reason,
            "classification": state.classification_at_detection,
            "alert": state.alert_at_detection,
        });
        if !p.details.is_null() {
            body["evidence"] = p.details.clone();
        }
        let page = ports::Page::new(p.target.clone(), dk, p.summary.clone(), body);
        let budget = if p.reason == crate::control::PAUSED_NOTICE_REASON {
            Budget::PauseNotice
        } else {
            Budget::Exempt
        };
        let sent = self
            .guarded(pass.fence, Op::PagerPage, budget, pass.now, || {
                self.read(Op::PagerPage, || self.ports.pager.page(&page))
            })
            .await;
        delivered(sent)
    }

    /// A notification: never held back by the rate limit; deduplicated by its key.
    async fn notify(
        &self,
        n: &Notify,
        state: &IncidentState,
        pass: &mut ActPhase<'_>,
    ) -> ActionOutcome {
        let dk = dedup_key(
            &state.key,
            &effects::notify(&n.audience, n.reason.as_deref()),
        );
        let notice = Notification::new(n.audience.clone(), dk, n.message.clone());
        let sent = self
            .guarded(
                pass.fence,
                Op::NotifierNotify,
                Budget::Exempt,
                pass.now,
                || self.read(Op::NotifierNotify, || self.ports.notifier.notify(&notice)),
            )
            .await;
        delivered(sent)
    }

    /// Pages on-call about flowfail's own trouble, as [`escalation`] decides (once per
    /// incident), through the guard like every page.
    async fn escalate(&self, trouble: Trouble, state: &mut IncidentState, pass: &mut ActPhase<'_>) {
        let Some(page) = escalation(trouble, state, &self.policy) else {
            return;
        };
        let outcome = self.page(&page, state, pass).await;
        self.finish(&Action::Page(page), outcome, state, pass);
    }

    async fn retry_batch(
        &self,
        batch: &[Action],
        state: &mut IncidentState,
        pass: &mut ActPhase<'_>,
    ) {
        let mut requests = Vec::new();
        let mut sent: Vec<(&Action, &RetryTask)> = Vec::new();
        for a in batch {
            let Action::RetryTask(r) = a else { continue };
            if r.after_prune {
                let prune = pass.prunes.iter().rev().find(|(t, _)| *t == r.task_id);
                if let Err(why) = retry_after_prune(prune.map(|(_, o)| o)) {
                    self.finish(a, ActionOutcome::refused(why), state, pass);
                    continue;
                }
            }
            requests.push(RetryRequest::new(
                r.task_id.clone(),
                r.expected_attempts,
                pass.now,
            ));
            sent.push((a, r));
        }
        if requests.is_empty() {
            return;
        }
        let scheduled = self
            .guarded(
                pass.fence,
                Op::TaskScheduleRetries,
                Budget::Limited,
                pass.now,
                || self.ports.tasks.schedule_retries(&requests),
            )
            .await;
        let outcomes = match scheduled {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(e)) => {
                for (a, r) in sent {
                    let o = self.retry_after_error(r, &e).await;
                    self.finish(a, o, state, pass);
                }
                return;
            }
            Err(held) => {
                let panicked = matches!(held, ActionOutcome::Unknown { .. });
                for (a, _) in &sent {
                    self.finish(a, held.clone(), state, pass);
                }
                if panicked {
                    let trouble = Trouble::ActionPanicked(ActionKind::RetryTask);
                    self.escalate(trouble, state, pass).await;
                }
                return;
            }
        };
        for ((a, _), o) in sent.into_iter().zip(outcomes) {
            let o = match o {
                RetryOutcome::Scheduled { attempts } => {
                    ActionOutcome::Applied(Applied::Retried { attempts })
                }
                RetryOutcome::Conflict { current_attempts } => ActionOutcome::DoneElsewhere {
                    reason: format!("attempt count is now {current_attempts}: retried elsewhere"),
                },
                RetryOutcome::NotRetryable { status } => {
                    ActionOutcome::refused(format!("task is {status:?}"))
                }
                RetryOutcome::NotFound => ActionOutcome::failed("task not found", false),
            };
            self.finish(a, o, state, pass);
        }
    }

    /// A retry whose batch call failed: after a transient error (a lost reply) the task is read
    /// back, and a retry whose attempt count moved one past the fence is recorded as applied —
    /// the record says what happened; otherwise it failed and is decided again. A batch that
    /// got no answer within the step deadline is not read back task by task: a store that does
    /// not answer would hold the pass for one deadline per task.
    async fn retry_after_error(&self, r: &RetryTask, e: &crate::Error) -> ActionOutcome {
        if e.is_transient()
            && e.kind() != ErrorKind::Timeout
            && let Ok(t) = self
                .call(Op::TaskGet, self.ports.tasks.get(&r.task_id))
                .await
            && t.attempts == r.expected_attempts + 1
        {
            return ActionOutcome::Applied(Applied::Retried {
                attempts: t.attempts,
            });
        }
        ActionOutcome::failed(e.to_string(), false)
    }
}

/// What a page or a notification came to.
fn delivered(sent: std::result::Result<Result<Delivery>, ActionOutcome>) -> ActionOutcome {
    match sent {
        Ok(Ok(d)) => ActionOutcome::Applied(Applied::Delivered {
            deduplicated: d == Delivery::Deduplicated,
        }),
        Ok(Err(e)) => ActionOutcome::failed(e.to_string(), false),
        Err(held) => held,
    }
}
