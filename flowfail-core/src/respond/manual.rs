//! A task retry asked for by a human (`flowfail retry`): judged by the responder's gates
//! ([`decide::manual_retry`](crate::decide::manual_retry): the task's kind and attempts, the
//! open incident's breaker and outage hold) and carried out through the responder's guard (the
//! kill switch, the operator's pause, a claim on the open incident fenced right before the
//! write, the step deadline). The CLI only prints what this returns.

use crate::decide::actions;
use crate::ports::Op;
use std::sync::Arc;
use std::time::Duration;

use super::KillSwitch;
use super::control::PauseState;
use super::guard::{Held, admit, bounded, fence_on};
use crate::classify::RuleSet;
use crate::decide::{Action, IncidentState, ObservedTask, manual_retry};
use crate::error::{ErrorKind, Result};
use crate::model::{TaskId, Timestamp};
use crate::policy::Policy;
use crate::ports::{IncidentStore, RetryOutcome, RetryRequest, TaskStore};

/// What became of a manual retry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ManualOutcome {
    /// A gate refused it: why.
    Refused(String),
    /// The kill switch is on: nothing written.
    Halted,
    /// Automation is paused (or its pause flag could not be read): nothing written; why.
    Paused(String),
    /// A responder claimed the incident between this retry's claim and its write: nothing
    /// written.
    Stale,
    /// Dry run: every gate passed; this attempt would be scheduled at `not_before`.
    WouldSchedule {
        /// The attempt it would be.
        attempt: u32,
        /// When it may run (its backoff).
        not_before: Timestamp,
    },
    /// The write was made; the TaskDB's answer (the write is fenced on the attempt count read).
    Ran {
        /// The attempt scheduled.
        attempt: u32,
        /// When it may run.
        not_before: Timestamp,
        /// What the TaskDB did.
        outcome: Option<RetryOutcome>,
    },
}

/// The result of [`ManualRetry::run`]: the outcome, the task's attempts and status as read,
/// and notes on what could not be read (evidence missing, never a silent default).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ManualRetryReport {
    /// What became of it.
    pub outcome: ManualOutcome,
    /// The task as read before deciding.
    pub task: crate::model::Task,
    /// What could not be read.
    pub notes: Vec<String>,
}

/// A manual retry: the stores, the rules, the policy and the guard's switches.
pub struct ManualRetry<'a> {
    tasks: &'a dyn TaskStore,
    ledger: Option<&'a dyn IncidentStore>,
    rules: Arc<RuleSet>,
    policy: &'a Policy,
    kill: KillSwitch,
    dry_run: bool,
}

impl<'a> ManualRetry<'a> {
    /// A manual retry on `tasks` under `policy`: the built-in rules, no ledger (the task's own
    /// gates only), the kill switch off, not a dry run.
    pub fn new(tasks: &'a dyn TaskStore, policy: &'a Policy) -> Self {
        ManualRetry {
            tasks,
            ledger: None,
            rules: RuleSet::shared_builtin(),
            policy,
            kill: KillSwitch::new(),
            dry_run: false,
        }
    }

    /// The incident ledger: its open incident's gates, its pause flag and its claim apply.
    pub fn ledger(mut self, ledger: &'a dyn IncidentStore) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The classification rules (default: the built-in set).
    pub fn rules(mut self, rules: Arc<RuleSet>) -> Self {
        self.rules = rules;
        self
    }

    /// The kill switch the guard reads right before the write.
    pub fn kill_switch(mut self, kill: KillSwitch) -> Self {
        self.kill = kill;
        self
    }

    /// Judge and report, write nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Reads the task (and the open incident), judges the retry by the responder's gates and,
    /// unless a dry run, writes it through the guard. Errors are the stores' (a task that does
    /// not exist is [`ErrorKind::NotFound`]).
    pub async fn run(&self, task_id: &TaskId, now: Timestamp) -> Result<ManualRetryReport> {
        let task = self.tasks.get(task_id).await?;
        let class = self.rules.classify(
            task.error_message.as_deref().unwrap_or(""),
            task.http_status,
        );
        let mut notes = Vec::new();
        let (ledger, incident) = self.open_incident(&mut notes).await;
        let observed = ObservedTask::from_parts(task.clone(), class);
        let report = |outcome| ManualRetryReport {
            outcome,
            task: task.clone(),
            notes: notes.clone(),
        };
        let (attempt, not_before) =
            match manual_retry(&observed, incident.as_ref(), self.policy, now) {
                Ok((Action::RetryTask(actions::RetryTask { attempt, .. }), not_before)) => {
                    (attempt, not_before)
                }
                Ok(_) => return Ok(report(ManualOutcome::Refused("no retry decided".into()))),
                Err(why) => return Ok(report(ManualOutcome::Refused(why))),
            };
        if self.dry_run {
            return Ok(report(ManualOutcome::WouldSchedule {
                attempt,
                not_before,
            }));
        }
        let outcome = self
            .guarded_write(ledger, &task, incident.as_ref(), attempt, not_before)
            .await?;
        Ok(report(outcome))
    }

    /// The ledger, if it answers, and the open incident of the policy's Deployment, if it has
    /// one. A ledger that does not answer (none beside this TaskDB) is noted and left out: the
    /// task's own gates apply. A state that does not parse is noted likewise.
    async fn open_incident(
        &self,
        notes: &mut Vec<String>,
    ) -> (Option<&'a dyn IncidentStore>, Option<IncidentState>) {
        let Some(ledger) = self.ledger else {
            return (None, None);
        };
        let rec = match ledger.find_open(&self.policy.deployment).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return (Some(ledger), None),
            Err(e) => {
                notes.push(format!(
                    "no incident ledger read, only the task's own gates apply: {e}"
                ));
                return (None, None);
            }
        };
        match serde_json::from_value(rec.state) {
            Ok(state) => (Some(ledger), Some(state)),
            Err(e) => {
                notes.push(format!(
                    "the open incident's state is unreadable, only the task's own gates apply: {e}"
                ));
                (Some(ledger), None)
            }
        }
    }

    /// The guard: kill switch → pause → claim the open incident → fence → the write within the
    /// step deadline.
    async fn guarded_write(
        &self,
        ledger: Option<&dyn IncidentStore>,
        task: &crate::model::Task,
        incident: Option<&IncidentState>,
        attempt: u32,
        not_before: Timestamp,
    ) -> Result<ManualOutcome> {
        let paused = match ledger {
            Some(l) => match l.pause_flag(&self.policy.deployment).await {
                Ok(Some(p)) => PauseState::Paused(p),
                Ok(None) => PauseState::Running,
                Err(e) => PauseState::Unknown(e.to_string()),
            },
            None => PauseState::Running,
        }
        .refusal();
        match admit(self.kill.is_on(), false, paused) {
            Ok(()) => {}
            Err(Held::Paused(why)) => return Ok(ManualOutcome::Paused(why)),
            Err(_) => return Ok(ManualOutcome::Halted),
        }
        let deadline = Duration::from_secs(self.policy.step_timeout_s);
        if let (Some(ledger), Some(state)) = (ledger, incident) {
            let epoch = ledger.claim(&state.key).await?;
            match fence_on(ledger, &state.key, epoch, deadline, OP).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Conflict => return Ok(ManualOutcome::Stale),
                Err(e) => return Err(e),
            }
        }
        let request = RetryRequest::new(task.task_id.clone(), task.attempts, not_before);
        let write = self.tasks.schedule_retries(std::slice::from_ref(&request));
        let answer = bounded(OP, deadline, write).await?;
        Ok(ManualOutcome::Ran {
            attempt,
            not_before,
            outcome: answer.into_iter().next(),
        })
    }
}

const OP: Op = Op::TaskScheduleRetries;
