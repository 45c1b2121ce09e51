//! The one guard every mutation passes through.
//!
//! In this order: the kill switch, re-read right before the call → dry run (and shadow mode) →
//! the operator's pause (read from the ledger at the start of the pass) → the claim fence (the
//! ledger is asked whether this pass's epoch is still the incident's: a replica another one
//! superseded mutates nothing) → the action rate limit → the step deadline → panic
//! containment. Prunes, env changes, the rollback, retry
//! batches, pages, notifications and page resolutions all go through [`Responder::guarded`];
//! nothing reaches a port's mutating method any other way. A retry asked for by a human
//! (`flowfail retry`, [`super::manual`]) passes the same checks: [`admit`] and [`fence_on`].

use std::future::Future;
use std::time::Duration;

use chrono::TimeDelta;

use super::{Responder, lock};
use crate::decide::ActionOutcome;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Timestamp;
use crate::ports::Op;
use crate::ports::{Epoch, IncidentStore};

/// Whether a mutation counts against the action rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// Counts: one token per call (a retry batch is one call).
    Limited,
    /// Never held back: pages, notifications, page resolutions, rollout checks.
    Exempt,
    /// The one "automation paused" notice: exempt, and let through while paused.
    PauseNotice,
}

/// What the guard checks one pass's mutations against: the claim the pass holds on its
/// incident (none without an incident in the ledger) and the operator's pause as the pass read
/// it (`Some(why)` when paused or unreadable). Part of the pass, never shared between passes.
#[derive(Debug, Clone, Default)]
pub(super) struct Fence {
    /// The incident and epoch this pass claimed.
    pub(super) claim: Option<(String, Epoch)>,
    /// Why mutations are refused, while the operator's pause holds.
    pub(super) paused: Option<String>,
}

impl Fence {
    /// The epoch of the pass's claim.
    pub(super) fn epoch(&self) -> Option<Epoch> {
        self.claim.as_ref().map(|(_, e)| *e)
    }
}

/// Why the guard held a call back before asking the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Held {
    /// The kill switch is on.
    Halted,
    /// Dry run or shadow mode.
    DryRun,
    /// The operator's pause (or a pause flag that could not be read), with the reason.
    Paused(String),
}

/// The guard's first checks, in their order: the kill switch → dry run (and shadow mode) → the
/// operator's pause.
pub(super) fn admit(kill_on: bool, dry_run: bool, paused: Option<String>) -> Result<(), Held> {
    if kill_on {
        return Err(Held::Halted);
    }
    if dry_run {
        return Err(Held::DryRun);
    }
    match paused {
        Some(why) => Err(Held::Paused(why)),
        None => Ok(()),
    }
}

/// One port call within `deadline`, a panic contained: the timeout is a transient
/// [`ErrorKind::Timeout`] error, the panic an [`ErrorKind::Unexpected`] one, both naming `op`.
/// Every bounded port call outside the guard's mutation path comes through here.
pub(super) async fn bounded<T>(
    op: Op,
    deadline: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match super::contain(tokio::time::timeout(deadline, fut)).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(timeout_error(op, deadline)),
        Err(what) => Err(Error::new(
            ErrorKind::Unexpected,
            format!("{op} panicked (contained): {what}"),
        )
        .with_operation(op.as_str())),
    }
}

/// Asks the ledger whether `epoch` is still the incident's claim, within `deadline`, panics
/// contained: `Ok` when it is, a [`ErrorKind::Conflict`] error when another claim superseded
/// it, another error when the ledger could not say.
pub(super) async fn fence_on(
    ledger: &dyn IncidentStore,
    key: &str,
    epoch: Epoch,
    deadline: Duration,
    op: Op,
) -> Result<()> {
    let check = ledger.check_epoch(key, epoch);
    bounded(Op::IncidentCheckEpoch, deadline, check)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Unexpected => Error::new(
                ErrorKind::Unexpected,
                format!("the claim check before {op}: {}", e.message()),
            ),
            _ => e,
        })
}

impl Responder {
    /// Runs `call` if every safeguard lets it through. See the [module docs](self).
    ///
    /// `Ok` holds what the call returned, a call abandoned at the step deadline being a
    /// transient [`ErrorKind::Timeout`] error like any other. `Err` is what the action came to
    /// without that: refused (the kill switch, the pause), a dry run, deferred by the rate limit,
    /// superseded by another claim, failed (the claim could not be confirmed), or unknown (the
    /// call panicked; contained). Either way the action ends as one [`ActionOutcome`].
    pub(super) async fn guarded<T, Fut>(
        &self,
        fence: &Fence,
        op: Op,
        budget: Budget,
        now: Timestamp,
        call: impl FnOnce() -> Fut,
    ) -> std::result::Result<Result<T>, ActionOutcome>
    where
        Fut: Future<Output = Result<T>>,
    {
        let paused = match budget {
            Budget::PauseNotice => None,
            _ => fence.paused.clone(),
        };
        match admit(self.kill.is_on(), self.dry_run || self.shadow, paused) {
            Ok(()) => {}
            Err(Held::Halted) => return Err(ActionOutcome::refused("kill switch is on")),
            Err(Held::DryRun) => return Err(ActionOutcome::DryRun),
            Err(Held::Paused(why)) => return Err(ActionOutcome::refused(why)),
        }
        match self.fence(fence, op).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {
                tracing::warn!(op = op.as_str(), error = %e, "claim superseded: not mutating");
                return Err(ActionOutcome::Superseded);
            }
            Err(e) => {
                return Err(ActionOutcome::failed(
                    format!("the ledger could not confirm this pass's claim: {e}"),
                    false,
                ));
            }
        }
        if budget == Budget::Limited && !self.take_token(now) {
            return Err(ActionOutcome::Deferred);
        }
        let deadline = Duration::from_secs(self.policy.step_timeout_s);
        let run = super::contain(async move { tokio::time::timeout(deadline, call()).await }).await;
        match run {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Ok(Err(timeout_error(op, deadline))),
            Err(what) => {
                tracing::error!(op = op.as_str(), "mutation panicked; contained");
                Err(ActionOutcome::Unknown {
                    reason: format!("panicked: {what}"),
                })
            }
        }
    }

    /// Asks the ledger whether this pass's claim still holds, right before a mutation. A pass
    /// without a claim (no incident in the ledger) has nothing to fence.
    async fn fence(&self, fence: &Fence, op: Op) -> Result<()> {
        let Some((key, epoch)) = &fence.claim else {
            return Ok(());
        };
        let deadline = Duration::from_secs(self.policy.step_timeout_s);
        fence_on(&*self.ports.incidents, key, *epoch, deadline, op).await
    }

    /// Whether the action rate limit lets one more mutation through.
    fn take_token(&self, now: Timestamp) -> bool {
        let mut inner = lock(&self.inner);
        let minute_ago = now - TimeDelta::seconds(60);
        inner.spent.retain(|t| *t > minute_ago);
        if inner.spent.len() >= self.policy.max_actions_per_minute as usize {
            return false;
        }
        inner.spent.push(now);
        true
    }
}

impl Responder {
    /// One port call with the step deadline, a panic contained. Reads retried on transient
    /// errors go through [`Responder::read`], mutations through [`Responder::guarded`]; every
    /// other port call (the ledger's claim, records and read-backs, a read after a lost reply)
    /// goes through here.
    pub(super) async fn call<T>(&self, op: Op, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let out = bounded(op, Duration::from_secs(self.policy.step_timeout_s), fut).await;
        if op.as_str().starts_with("incident.") {
            self.ledger_calls.count(out.is_ok());
        }
        out
    }
}

/// The error of a call abandoned at the step deadline.
pub(super) fn timeout_error(op: Op, deadline: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("no answer within {}s", deadline.as_secs()),
    )
    .transient()
    .with_operation(op.as_str())
}
