//! One pass, as a value: observe → load the incident → claim it → decide → the operator's
//! controls → act → record. [`Responder::pass`] reads as that list; each step is a method here.

use super::act::Acted;
use super::guard::Fence;
use super::stats::PassLog;
use super::{Found, PassOutcome, Reconciled, Responder, contain, lock};
use crate::decide::{Decision, IncidentState, Observation, Settle, decide};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Timestamp;
use crate::ports::Op;
use crate::ports::{Epoch, TimelineEntry};

/// What one pass works with: when it runs, whether the kill switch was on at its start, what it
/// observed, the incident and the claim it holds, the decision, and the timeline entries it
/// records at its end.
struct Pass {
    now: Timestamp,
    halted: bool,
    obs: Observation,
    state: IncidentState,
    /// The claim and the pause the guard checks this pass's mutations against.
    fence: Fence,
    /// What reconciliation found of a rollback a stopped process reserved: recorded under the
    /// pass's claim.
    reconciled: Option<Reconciled>,
    decision: Decision,
    entries: Vec<TimelineEntry>,
}

/// The incident a pass found to work on.
enum Loaded {
    /// An open incident (from the ledger, or opened now), with what reconciling it found.
    Open(Box<IncidentState>, Option<Reconciled>),
    /// No incident and no alert.
    Quiet,
    /// The incident was closed in the ledger since the last pass (by another responder).
    Closed(Box<IncidentState>),
    /// The alert fires but the incident could not be read or opened: the next pass tries again.
    Unreadable,
}

impl Responder {
    /// Runs one observe → decide → act → record pass. Passes never overlap: a pass started
    /// while another runs is refused.
    pub async fn pass(&self) -> Result<PassOutcome> {
        let _guard = self
            .pass_lock
            .try_lock()
            .map_err(|_| Error::refused("a pass is already running"))?;
        let log = PassLog::default();
        // A panic anywhere in the pass (a claim, the pause read, deciding, rendering) ends this
        // pass with an error, never the process: the next pass starts from the ledger.
        let mut out = contain(self.pass_steps(&log))
            .await
            .unwrap_or_else(|what| {
                self.note_gap(format!("the pass panicked (contained): {what}"));
                Err(Error::new(
                    ErrorKind::Unexpected,
                    format!("the pass panicked (contained): {what}"),
                ))
            })?;
        log.into_outcome(&mut out);
        Ok(out)
    }

    /// The steps of one pass, noting its reads in `log`.
    async fn pass_steps(&self, log: &PassLog) -> Result<PassOutcome> {
        let (now, halted) = self.begin_pass();
        let known = lock(&self.inner).incident.as_ref().map(|s| s.detected_at);
        let mut obs = self.observe_contained(now, log).await;
        let (state, reconciled) = match self.load_incident(&obs, halted).await {
            Loaded::Open(state, reconciled) => (*state, reconciled),
            Loaded::Quiet => return Ok(self.quiet(&obs, halted)),
            Loaded::Closed(state) => return Ok(self.closed_elsewhere(*state, halted).await),
            Loaded::Unreadable => return Ok(self.outcome(None, true, None, halted)),
        };
        let Ok(claim) = self.claim_incident(&state, halted).await else {
            return Ok(self.outcome(None, true, None, false));
        };
        // The tasks this incident retried, read back by id now that its state is known; and its
        // failures from the start, when this process met the incident only now.
        self.observe_retried(&mut obs, &state, log).await;
        if known != Some(state.detected_at) {
            self.observe_incident_failures(&mut obs, &state, log).await;
        }
        let decision = decide(&obs, &state, &self.policy);
        self.log_waiting(&state.key, &decision);
        let mut pass = Pass {
            now,
            halted,
            obs,
            fence: Fence {
                claim: claim.map(|e| (state.key.clone(), e)),
                paused: None,
            },
            state,
            reconciled,
            decision,
            entries: Vec::new(),
        };
        self.controls(&mut pass).await;
        let mut next = pass
            .decision
            .state
            .clone()
            .unwrap_or_else(|| pass.state.clone());
        let acted = self
            .act(&pass.decision, &pass.obs, &mut next, &pass.fence, log)
            .await;
        self.record_pass(pass, next, acted).await
    }

    /// The start of a pass: its time and the kill switch as it stands.
    fn begin_pass(&self) -> (Timestamp, bool) {
        (self.clock.now(), self.kill.is_on())
    }

    /// The incident to work on; a ledger read that fails (or panics, contained) is a gap.
    async fn load_incident(&self, obs: &Observation, halted: bool) -> Loaded {
        let read = contain(self.incident_state(obs, halted))
            .await
            .unwrap_or_else(|what| {
                Err(Error::new(
                    ErrorKind::Unexpected,
                    format!("the incident ledger read panicked (contained): {what}"),
                ))
            });
        match read {
            Ok(Some(Found::Open(state, found))) => Loaded::Open(Box::new(state), found),
            Ok(Some(Found::Closed(state))) => Loaded::Closed(Box::new(state)),
            Ok(None) => Loaded::Quiet,
            Err(e) => {
                // The alert fires but the incident could not be opened: try again next pass,
                // never end the run over it.
                self.note_gap(format!("incident ledger: could not open the incident: {e}"));
                Loaded::Unreadable
            }
        }
    }

    /// A pass with no incident: the alert as observed goes into the report.
    fn quiet(&self, obs: &Observation, halted: bool) -> PassOutcome {
        if let Some(c) = &obs.counts {
            lock(&self.inner).report.last_alert =
                Some(crate::decide::alert(c, false, &self.policy));
        }
        self.outcome(None, false, None, halted)
    }

    /// The incident was closed in the ledger by another responder: this one settles as the
    /// ledger says (resolved or escalated) and acts no more under its key.
    async fn closed_elsewhere(&self, state: IncidentState, halted: bool) -> PassOutcome {
        let settle = if state.resolved_at.is_some() {
            Settle::Resolved
        } else {
            Settle::Escalated
        };
        tracing::info!(incident = %state.key, "incident closed in the ledger by another responder: stopping");
        self.record_late(&state.key).await;
        {
            let mut inner = lock(&self.inner);
            inner.report.note(
                self.clock.now(),
                format!(
                    "incident {} closed in the ledger by another responder: this one stopped",
                    state.key
                ),
            );
            inner.incident = Some(state);
        }
        self.outcome(Some(settle), false, None, halted)
    }

    /// Claims the incident in the ledger when this pass may mutate (`Ok(None)` when it may
    /// not): the guard fences every mutation on this claim. A claim the ledger refuses is a
    /// gap, and the pass stops there.
    async fn claim_incident(
        &self,
        state: &IncidentState,
        halted: bool,
    ) -> std::result::Result<Option<Epoch>, ()> {
        if !self.mutating(halted) {
            return Ok(None);
        }
        match self
            .call(Op::IncidentClaim, self.ports.incidents.claim(&state.key))
            .await
        {
            Ok(e) => Ok(Some(e)),
            Err(e) => {
                self.note_gap(format!("incident ledger: {e}"));
                Err(())
            }
        }
    }

    /// The operator's controls, before any mutation: what earlier passes could not record,
    /// the pause flag (with its one notice), the approval gates.
    async fn controls(&self, pass: &mut Pass) {
        let Pass {
            now,
            state,
            fence,
            reconciled,
            decision,
            entries,
            obs,
            ..
        } = pass;
        let epoch = fence.epoch();
        if epoch.is_some() {
            let found = reconciled.take();
            self.record_pending(&state.key, *now, entries, found).await;
            if let Some(notice) = self.read_pause(state, epoch, *now, entries).await {
                decision.actions.insert(0, notice);
            }
            fence.paused = self.pause_refusal();
        }
        let held = self.gate(decision, state, epoch, *now, entries).await;
        if epoch.is_some() {
            self.note_decision(
                &state.key,
                decision,
                (held, &obs.gaps),
                fence.paused.is_some(),
                *now,
                entries,
            );
        }
        tracing::debug!(incident = %state.key, epoch = ?epoch, actions = decision.actions.len(), "decided");
    }

    /// After acting: the report's notes, then the record under the pass's claim (a settle the
    /// ledger did not take is not a settle), then the pages of a resolved incident.
    async fn record_pass(
        &self,
        pass: Pass,
        next: IncidentState,
        mut acted: Acted,
    ) -> Result<PassOutcome> {
        let Pass {
            now,
            halted,
            state,
            fence,
            decision,
            mut entries,
            ..
        } = pass;
        let epoch = fence.epoch();
        entries.append(&mut acted.entries);
        {
            let mut inner = lock(&self.inner);
            inner.report.skips(now, &decision.skipped);
            for f in &decision.findings {
                inner.report.finding(now, f.clone());
            }
            // As the switch stands now: a switch released since an earlier pass is not halted.
            inner.report.halted = halted;
        }
        if acted.stale {
            // Another replica claimed the incident mid-pass: it acts and records; this pass's
            // writes would be refused by the ledger anyway. What it did is written next pass.
            self.keep_unrecorded(&state.key, entries);
            self.note_gap(
                "another responder claimed the incident during this pass: this pass stopped acting"
                    .to_owned(),
            );
            return Ok(self.outcome(None, true, decision.wake_at, halted));
        }
        // A panic in the remediator is an incident of its own: stop automating this one.
        let mut settled = if acted.panicked && decision.settle.is_none() {
            Some(Settle::Escalated)
        } else {
            decision.settle
        };
        if let Some(epoch) = epoch
            && !self
                .record(&next, epoch, &entries, settled.is_some(), now)
                .await
            && settled.is_some()
        {
            // Not settled until the ledger says so: the next pass decides and closes again.
            settled = None;
        }
        if settled == Some(Settle::Resolved) {
            self.resolve_pages(&next, &fence, now).await;
        }
        lock(&self.inner).incident = Some(next);
        Ok(self.outcome(settled, true, decision.wake_at, halted))
    }

    /// A pass's outcome; the run stops when the incident settled, the kill switch was on, or
    /// this is a dry run.
    fn outcome(
        &self,
        settled: Option<Settle>,
        incident_open: bool,
        wake_at: Option<Timestamp>,
        halted: bool,
    ) -> PassOutcome {
        PassOutcome {
            settled,
            incident_open,
            wake_at,
            stop: settled.is_some() || halted || self.dry_run,
            failure_rate: None,
            reads: Vec::new(),
            unreadable_tasks: None,
            unknown_status_tasks: None,
        }
    }
}
