//! The responder: observe → decide → act → verify → record, until resolved or escalated.
//!
//! A [`Responder`] holds the ports as `Arc<dyn …>`, a [`Policy`] and a [`Clock`]. Each
//! [`Responder::pass`] is level-triggered: it re-reads the world and the incident's state from
//! the ledger, asks [`decide`] what to do, carries it out, and writes the new state back. Nothing
//! important lives only in memory, so a restarted responder, or another replica, converges.
//!
//! The data path of one pass, each step in its own file:
//!
//! ```text
//! observe (observe.rs) → decide (crate::decide) → guard (guard.rs) → act (act.rs)
//!     → apply outcome (crate::decide::apply_outcome) → record (the ledger and the report)
//! ```
//!
//! Safety, in the order the one [guard](guard) applies it to every mutation:
//!
//! - **kill switch** ([`KillSwitch`]): re-read right before each call; when on, no mutation
//!   reaches any port (the ledger included); the pass still reports what it would have done,
//!   and the run halts;
//! - **dry run**: nothing is mutated; one pass reports what would be done;
//! - **pause** ([`crate::control`]): an operator's flag in the ledger, read each pass before
//!   any mutation; paused, every mutation is refused and recorded, and on-call gets one
//!   "automation paused" page per incident; actions the policy holds for approval wait for one;
//! - **action rate limit**: at most `max_actions_per_minute` mutating calls per responder (a
//!   retry batch is one call); the rest wait for the next pass (pages and notifications are
//!   never held back);
//! - **preconditions**: retries are fenced on the attempt count, bundles on their version, env
//!   changes and the rollback on the Deployment's resourceVersion, ledger writes on the epoch;
//! - **at most once**: the rollback is reserved in the ledger before it is attempted;
//!   pages and notifications carry dedup keys derived from the incident key;
//! - **per-step deadlines**: every port call has `step_timeout_s`; transient read errors are
//!   retried twice with jittered backoff (`backon`), honouring a backend's `Retry-After` — the
//!   only retry loop; adapters make one attempt per call;
//! - **panic containment**: a panicking call is contained, recorded, and the incident is
//!   handed to on-call.
//!
//! ```
//! use flowfail_core::memory::World;
//! use flowfail_core::respond::Responder;
//! use flowfail_core::{Clock, Policy};
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let clock = Clock::tokio_anchored(chrono::Utc::now());
//! let world = World::new(&Policy::default(), clock.clone());
//! let responder = Responder::builder().ports(world.ports()).clock(clock).build().unwrap();
//! let report = responder.run(std::time::Duration::from_secs(600)).await.unwrap();
//! assert!(!report.alert.firing); // an empty world has no incident
//! # });
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;

use crate::classify::{Classification, RuleSet};
use crate::clock::Clock;
use crate::decide::{IncidentState, Observation, Settle, classification};
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::policy::Policy;
use crate::ports::Op;
use crate::ports::{Epoch, IncidentRecord, Ports, TimelineEntry, TimelineKind};
use crate::prune::PruneOptions;
use crate::report::{Report, ReportBuilder};
use crate::schema::SchemaSet;

mod act;
mod builder;
mod control;
mod guard;
mod manual;
mod observe;
mod pass;
mod stats;
mod supervisor;
mod support;

pub use support::dedup_key;
use support::{contain, not_yet_recorded, recorded_actions};

pub use builder::ResponderBuilder;
pub use manual::{ManualOutcome, ManualRetry, ManualRetryReport};
pub use stats::{ActionStat, PassKind, PassStats, ReadStat};
pub use supervisor::{AlertTrigger, COOLDOWN_OVER, Supervisor, SupervisorBuilder, Wake};

/// Stops every mutation when on. Cheap to clone; clones share the switch.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// A switch, off.
    pub fn new() -> Self {
        Self::default()
    }
    /// Turns it on (or off).
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the responder carries from one pass to the next: the incident and its report, the
/// rate limit's tokens, the classification cache, what was already recorded once (shadow,
/// paused and proposed actions), the last wait logged, the pause as last read, and entries no
/// pass could write yet. Nothing of one pass alone lives here: that is the pass's own
/// [`pass::Pass`] value, its [`guard::Fence`] and its [`stats::PassLog`].
#[derive(Debug)]
struct Inner {
    /// The incident this responder works on, and its last known state.
    incident: Option<IncidentState>,
    report: ReportBuilder,
    /// Times of recent mutations (action rate limit).
    spent: Vec<Timestamp>,
    class_cache: HashMap<(String, Option<u16>), Classification>,
    /// Shadow mode: the actions already recorded (a repeated decision is recorded once).
    shadow_seen: HashSet<String>,
    /// What the open incident waited for at the last pass (logged when it changes).
    last_waiting: Vec<String>,
    /// The pause flag as the last pass read it (a change is noted in the report and the
    /// timeline; the guard reads the pass's own [`guard::Fence`]).
    pause: control::PauseState,
    /// Actions refused because automation is paused, recorded once each until resumed.
    paused_seen: HashSet<String>,
    /// Proposals and approvals already noted.
    proposed_seen: HashSet<String>,
    /// Timeline entries of an incident that a pass could not write to the ledger (a ledger
    /// error, or another replica's claim during the pass): the next pass with a claim writes
    /// them, so the record keeps what this process did.
    unrecorded: Option<(String, Vec<TimelineEntry>)>,
}

/// What a pass found of a rollback a stopped process reserved without recording its outcome:
/// recorded under the pass's claim ([`Responder::record_pending`]).
#[derive(Debug)]
struct Reconciled {
    fields: crate::report::ActionFields,
    outcome: crate::report::Outcome,
    detail: String,
}

/// The incident a pass found in the ledger.
#[derive(Debug)]
enum Found {
    /// Open: its state, and what reconciling it found.
    Open(IncidentState, Option<Reconciled>),
    /// Closed since this responder last saw it.
    Closed(IncidentState),
}

/// What one pass ended with.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PassOutcome {
    /// Resolved or escalated, when the incident settled.
    pub settled: Option<Settle>,
    /// Whether an incident is open.
    pub incident_open: bool,
    /// When something becomes due (the next pass should not be later).
    pub wake_at: Option<Timestamp>,
    /// The run should stop (kill switch, dry run, settled).
    pub stop: bool,
    /// The failure rate the pass observed (`None` when the counts could not be read).
    pub failure_rate: Option<f64>,
    /// The reads the pass made, and whether each answered.
    pub reads: Vec<ReadStat>,
}

/// Carries out the runbook. See the [module docs](self).
#[derive(Debug)]
pub struct Responder {
    /// The ledger scope of its incidents: the Deployment, or `<deployment>:shadow` in shadow
    /// mode.
    scope: String,
    ports: Ports,
    policy: Policy,
    clock: Clock,
    schemas: Arc<SchemaSet>,
    rules: Arc<RuleSet>,
    dry_run: bool,
    shadow: bool,
    kill: KillSwitch,
    prune_options: PruneOptions,
    woken_by: Option<String>,
    inner: Mutex<Inner>,
    pass_lock: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Responder {
    /// A builder.
    pub fn builder() -> ResponderBuilder {
        ResponderBuilder::default()
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The ledger scope its incidents are kept under: the Deployment's name, or
    /// `<deployment>:shadow` in shadow mode (a shadow run never touches the acting scope).
    pub fn ledger_scope(&self) -> &str {
        &self.scope
    }

    /// The kill switch.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.kill
    }

    /// Records a data gap in the report (something that could not be read or used).
    pub fn note_gap(&self, what: String) {
        let now = self.clock.now();
        lock(&self.inner).report.gap(now, what);
    }

    /// The report so far.
    pub fn report(&self) -> Report {
        let inner = lock(&self.inner);
        inner
            .report
            .build(inner.incident.as_ref(), self.clock.now())
    }

    /// Runs passes until the incident settles, the run is stopped, or `max` (clock time) passes.
    pub async fn run(&self, max: Duration) -> Result<Report> {
        self.run_with(max, |_| None).await
    }

    /// Like [`Responder::run`], calling `before_pass(now)` before each pass (a replay applies
    /// its world events there); it returns the next time it wants to be called, if any.
    pub async fn run_with(
        &self,
        max: Duration,
        mut before_pass: impl FnMut(Timestamp) -> Option<Timestamp>,
    ) -> Result<Report> {
        let start = self.clock.now();
        // No end when `max` is beyond what the clock can represent.
        let end = TimeDelta::from_std(max)
            .ok()
            .and_then(|d| start.checked_add_signed(d));
        loop {
            let now = self.clock.now();
            let next_event = before_pass(now);
            let out = self.pass().await?;
            if out.stop {
                break;
            }
            // The first pass that sees no alert and no incident ends a run that never fired.
            if !out.incident_open && out.settled.is_none() {
                break;
            }
            let now = self.clock.now();
            if end.is_some_and(|end| now >= end) {
                break;
            }
            let next = [out.wake_at, next_event].into_iter().flatten().min();
            tokio::time::sleep(self.sleep_before_next_pass(now, next, end)).await;
        }
        Ok(self.report())
    }

    /// How long to sleep before the next pass: until the next poll or the earliest due time,
    /// whichever is sooner, never less than a second, never past `end`. No overflow for any
    /// policy value.
    pub(crate) fn sleep_before_next_pass(
        &self,
        now: Timestamp,
        due: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Duration {
        let poll = Duration::from_secs(self.policy.poll_interval_s.max(1));
        let mut d = poll;
        if let Some(due) = due.filter(|w| *w > now) {
            d = d.min((due - now).to_std().unwrap_or(poll));
        }
        // Passes are at least a second apart, whatever falls due in between.
        d = d.max(Duration::from_secs(1));
        if let Some(end) = end {
            d = d.min((end - now).to_std().unwrap_or(Duration::ZERO));
        }
        d.max(Duration::from_millis(1))
    }

    /// The pass's observation, counted in the report with its gaps. A panic while reading (a
    /// backend's data the adapter did not expect) is contained: the pass decides nothing on an
    /// observation it does not have.
    async fn observe_contained(&self, now: Timestamp, log: &stats::PassLog) -> Observation {
        let obs = match contain(self.observe(now, log)).await {
            Ok(obs) => obs,
            Err(what) => {
                let mut obs = Observation::new(now);
                obs.gaps
                    .push(format!("observe panicked (contained): {what}"));
                obs
            }
        };
        let mut inner = lock(&self.inner);
        inner.report.passes += 1;
        if let Some(c) = &obs.counts {
            log.note_failure_rate(crate::decide::alert(c, false, &self.policy).failure_rate);
        }
        for g in &obs.gaps {
            inner.report.gap(now, g.clone());
        }
        drop(inner);
        obs
    }

    /// Says (at info) what an open incident waits for, each time that changes: "27 retried
    /// tasks not finished yet" explains an incident that stays open with the alert clear.
    fn log_waiting(&self, key: &str, decision: &crate::decide::Decision) {
        let waiting = if decision.settle.is_none() {
            decision.waiting.clone()
        } else {
            Vec::new()
        };
        let mut inner = lock(&self.inner);
        if waiting != inner.last_waiting {
            if !waiting.is_empty() {
                tracing::info!(incident = %key, waiting = %waiting.join("; "), "incident open, waiting");
            }
            inner.last_waiting = waiting;
        }
    }

    /// Writes the pass to the ledger: timeline entries, the state, and — when the incident
    /// settled — the post-incident record. A stale epoch means another replica took over this
    /// pass: the next pass re-reads.
    async fn record(
        &self,
        next: &IncidentState,
        epoch: Epoch,
        entries: &[TimelineEntry],
        settled: bool,
        now: Timestamp,
    ) -> bool {
        let appended = AtomicBool::new(false);
        let write = async {
            let state_json = serde_json::to_value(next)?;
            if let Err(e) = self
                .call(
                    Op::IncidentAppend,
                    self.ports.incidents.append(&next.key, epoch, entries),
                )
                .await
                && !self.appended_anyway(&next.key, entries, &e).await
            {
                return Err(e);
            }
            appended.store(true, Ordering::SeqCst);
            self.call(
                Op::IncidentSaveState,
                self.ports
                    .incidents
                    .save_state(&next.key, epoch, &state_json),
            )
            .await?;
            if settled {
                // The record is the ledger's whole timeline, not only this process's passes.
                let timeline = self
                    .call(Op::IncidentGet, self.ports.incidents.get(&next.key))
                    .await?
                    .timeline;
                let builder = lock(&self.inner).report.with_ledger_timeline(&timeline);
                let report = builder.build(Some(next), now);
                let post = serde_json::to_value(&report.post_incident)?;
                self.call(
                    Op::IncidentClose,
                    self.ports.incidents.close(&next.key, epoch, now, &post),
                )
                .await?;
            }
            Ok::<(), Error>(())
        };
        let write = contain(write).await.unwrap_or_else(|what| {
            Err(Error::new(
                crate::ErrorKind::Unexpected,
                format!("panicked (contained): {what}"),
            ))
        });
        match write {
            Ok(()) => true,
            Err(e) => {
                self.note_gap(format!("incident ledger write: {e}"));
                if !appended.load(Ordering::SeqCst) {
                    self.keep_unrecorded(&next.key, entries.to_vec());
                }
                false
            }
        }
    }

    /// Whether timeline entries whose append failed with `e` are in the ledger all the same
    /// (the reply was lost): the timeline ends with them. Appending them again would record
    /// every action in them twice.
    pub(super) async fn appended_anyway(
        &self,
        key: &str,
        entries: &[TimelineEntry],
        e: &Error,
    ) -> bool {
        if entries.is_empty() || e.kind() == crate::ErrorKind::Conflict {
            return false;
        }
        let Ok(rec) = self
            .call(Op::IncidentGet, self.ports.incidents.get(key))
            .await
        else {
            return false;
        };
        let Some(tail) = rec
            .timeline
            .len()
            .checked_sub(entries.len())
            .map(|from| &rec.timeline[from..])
        else {
            return false;
        };
        // A store may keep timestamps to the microsecond.
        tail.iter().zip(entries).all(|(a, b)| {
            a.kind == b.kind
                && a.detail == b.detail
                && (a.at - b.at)
                    .num_microseconds()
                    .is_some_and(|d| d.abs() < 1000)
        })
    }

    /// Keeps timeline entries the ledger did not take, for the next pass with a claim.
    fn keep_unrecorded(&self, key: &str, entries: Vec<TimelineEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        match &mut inner.unrecorded {
            Some((k, kept)) if k == key => kept.extend(entries),
            other => *other = Some((key.to_owned(), entries)),
        }
    }

    /// The entries kept for `key` by [`Responder::keep_unrecorded`], taken out.
    fn take_unrecorded(&self, key: &str) -> Vec<TimelineEntry> {
        let mut inner = lock(&self.inner);
        match inner.unrecorded.take() {
            Some((k, kept)) if k == key => kept,
            other => {
                inner.unrecorded = other;
                Vec::new()
            }
        }
    }

    /// What an earlier pass of an incident closed since could not write (it was superseded
    /// before its ledger write): appended to the closed incident's timeline under its last
    /// epoch, unless it is there already. Nothing claims a closed incident, so no writer can
    /// race this append; what happened in the world stays in the record.
    async fn record_late(&self, key: &str) {
        let kept = self.take_unrecorded(key);
        if kept.is_empty() {
            return;
        }
        let write = async {
            let rec = self
                .call(Op::IncidentGet, self.ports.incidents.get(key))
                .await?;
            let late = not_yet_recorded(&rec.timeline, kept.clone());
            if late.is_empty() {
                return Ok(());
            }
            self.call(
                Op::IncidentAppend,
                self.ports.incidents.append(key, rec.epoch, &late),
            )
            .await
        };
        if let Err(e) = write.await {
            self.note_gap(format!(
                "incident ledger: could not record {} late entr{} in closed incident {key}: {e}",
                kept.len(),
                if kept.len() == 1 { "y" } else { "ies" }
            ));
        }
    }

    /// Under this pass's claim (so a superseded pass can no longer write after the look): the
    /// entries an earlier pass of this incident could not write, and what reconciliation found
    /// of a reserved rollback, first in this pass's entries — each unless the ledger's timeline
    /// already records the same action with the same outcome (another process did meanwhile).
    async fn record_pending(
        &self,
        key: &str,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
        found: Option<Reconciled>,
    ) {
        use crate::report::Outcome;
        let kept = self.take_unrecorded(key);
        if kept.is_empty() && found.is_none() {
            return;
        }
        // Unreadable, nothing is taken as recorded: an action twice rather than not at all.
        let timeline = match self
            .call(Op::IncidentGet, self.ports.incidents.get(key))
            .await
        {
            Ok(r) => r.timeline,
            Err(_) => Vec::new(),
        };
        let mut out = not_yet_recorded(&timeline, kept);
        let actions = recorded_actions(&timeline);
        if let Some(Reconciled {
            fields,
            outcome,
            detail,
        }) = found
        {
            // A rollback recorded as applied, or a never-reached one recorded at all, is not
            // recorded again.
            let mut rollbacks = actions.iter().filter(|a| a["action"]["kind"] == "rollback");
            let known = match outcome {
                Outcome::Failed => rollbacks.next().is_some(),
                _ => rollbacks.any(|a| a["outcome"] == "applied"),
            };
            if !known {
                out.push(TimelineEntry::new(
                    now,
                    TimelineKind::Action,
                    serde_json::json!({"action": &fields, "outcome": outcome, "detail": &detail}),
                ));
                lock(&self.inner)
                    .report
                    .action(now, fields, outcome, Some(detail));
            }
        }
        out.append(entries);
        *entries = out;
    }

    /// Resolves the pages of a resolved incident, each through the guard.
    async fn resolve_pages(&self, next: &IncidentState, fence: &guard::Fence, now: Timestamp) {
        let pages = next.effects.iter().filter(|k| {
            matches!(
                crate::decide::effects::EffectKey::parse(k),
                crate::decide::effects::EffectKey::Page { .. }
            )
        });
        for k in pages {
            let dk = dedup_key(&next.key, k);
            let _ = self
                .guarded(fence, Op::PagerResolve, guard::Budget::Exempt, now, || {
                    self.read(Op::PagerResolve, || self.ports.pager.resolve(&dk))
                })
                .await;
        }
    }

    fn mutating(&self, halted: bool) -> bool {
        !self.dry_run && !halted
    }

    /// The incident's state from the ledger's JSON; a state that does not parse is a gap, never
    /// a silent reset.
    fn parse_state(&self, json: serde_json::Value, now: Timestamp) -> Option<IncidentState> {
        match serde_json::from_value(json) {
            Ok(s) => Some(s),
            Err(e) => {
                lock(&self.inner)
                    .report
                    .gap(now, format!("incident ledger: state unreadable: {e}"));
                None
            }
        }
    }

    /// The incident's current state: from the ledger when one is open, a new one when the alert
    /// fires, none otherwise.
    async fn incident_state(&self, obs: &Observation, halted: bool) -> Result<Option<Found>> {
        let known = lock(&self.inner).incident.clone();
        if let Some(s) = known {
            if !self.mutating(halted) {
                return Ok(Some(Found::Open(s, None)));
            }
            // Level-triggered: the ledger is the truth (another replica may have moved it on).
            return Ok(Some(
                match self
                    .call(Op::IncidentGet, self.ports.incidents.get(&s.key))
                    .await
                {
                    Ok(rec) => {
                        let mut state = self.parse_state(rec.state.clone(), obs.now).unwrap_or(s);
                        if rec.closed_at.is_some() {
                            // Closed by another responder (or by this one, its reply lost):
                            // the incident is over; nothing is done under its key any more.
                            return Ok(Some(Found::Closed(state)));
                        }
                        let found = self.reconcile(&mut state, &rec, obs);
                        Found::Open(state, found)
                    }
                    Err(e) => {
                        self.note_gap(format!("incident ledger: {e}"));
                        Found::Open(s, None)
                    }
                },
            ));
        }
        if self.mutating(halted) {
            // A restarted responder (or another replica) carries on with the open incident.
            match self
                .call(
                    Op::IncidentFindOpen,
                    self.ports.incidents.find_open(&self.scope),
                )
                .await
            {
                Ok(Some(rec)) => {
                    if let Some(mut state) = self.parse_state(rec.state.clone(), obs.now) {
                        let found = self.reconcile(&mut state, &rec, obs);
                        return Ok(Some(Found::Open(state, found)));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.note_gap(format!("incident ledger: {e}"));
                    return Ok(None);
                }
            }
        }
        Ok(self
            .open_incident(obs, halted)
            .await?
            .map(|s| Found::Open(s, None)))
    }

    /// Reconciles what a stopped process left in the ledger with the Deployment as observed:
    /// a reserved rollback without an outcome ([`crate::decide::reconcile_reserved`]; what it
    /// found is recorded under this pass's claim, see [`Responder::record_pending`]) and env
    /// changes written ahead ([`crate::decide::reconcile_env_intents`]).
    fn reconcile(
        &self,
        state: &mut IncidentState,
        rec: &IncidentRecord,
        obs: &Observation,
    ) -> Option<Reconciled> {
        use crate::decide::ReservedRollback as R;
        use crate::report::{ActionFields, Outcome};
        let found = crate::decide::reconcile_reserved(
            state,
            &rec.effects,
            obs.deployment.as_ref(),
            obs.now,
        );
        crate::decide::reconcile_env_intents(state, obs.deployment.as_ref(), &self.policy);
        let (from_revision, to_revision, outcome, detail) = match found? {
            R::Landed {
                from_revision,
                to_revision,
            } => (
                from_revision,
                to_revision,
                Outcome::Applied,
                "found on the Deployment: the process that reserved it stopped before recording it",
            ),
            R::NeverReached {
                from_revision,
                to_revision,
            } => (
                from_revision,
                to_revision,
                Outcome::Failed,
                "reserved by a process that stopped before the call: it never reached the Deployment; not attempted again in this incident",
            ),
        };
        Some(Reconciled {
            fields: ActionFields::Rollback {
                deployment: self.policy.deployment.clone(),
                from_revision,
                to_revision,
            },
            outcome,
            detail: detail.to_owned(),
        })
    }

    /// Opens an incident when the alert fires (in the ledger unless mutations are off); joins
    /// the one another replica opened first.
    async fn open_incident(
        &self,
        obs: &Observation,
        halted: bool,
    ) -> Result<Option<IncidentState>> {
        let (Some(counts), Some(failed)) = (&obs.counts, &obs.failed) else {
            return Ok(None);
        };
        let alert = crate::decide::alert(counts, false, &self.policy);
        if !alert.firing {
            return Ok(None);
        }
        let key = format!("{}-{}", self.scope, obs.now.format("%Y%m%dT%H%MZ"));
        let mut state = IncidentState::open(
            key.clone(),
            obs.now,
            alert,
            classification(failed),
            obs.deployment.as_ref(),
        );
        state.woken_by.clone_from(&self.woken_by);
        // What the ledger remembers across incidents (the revisions flowfail rolled away from)
        // comes from the incident closed last; unread, no incident opens this pass.
        match self
            .call(
                Op::IncidentLatestClosed,
                self.ports.incidents.latest_closed(&self.scope),
            )
            .await
        {
            Ok(Some(prev)) => state.inherit(&prev.key, &prev.state),
            Ok(None) => {}
            Err(e) if self.mutating(halted) => return Err(e),
            Err(e) => self.note_gap(format!("incident ledger: earlier incidents: {e}")),
        }
        let woken = self
            .woken_by
            .as_deref()
            .map(|w| format!("; woken by {w}"))
            .unwrap_or_default();
        lock(&self.inner).report.note(
            obs.now,
            format!(
                "alert FlowFailureRate firing: {:.2}% failures over {} tasks (threshold {:.2}%, min sample {}){woken}",
                alert.failure_rate * 100.0,
                alert.window_tasks,
                self.policy.alert_failure_rate * 100.0,
                self.policy.min_sample
            ),
        );
        if !self.mutating(halted) {
            return Ok(Some(state));
        }
        // A key is the Deployment and the minute; an incident closed earlier in the same minute
        // keeps its key, and the new one takes the next free suffix.
        for n in 1..=20u32 {
            if n > 1 {
                state.key = format!("{key}-{n}");
            }
            let json = serde_json::to_value(&state)?;
            let (rec, created) = self
                .call(
                    Op::IncidentOpen,
                    self.ports
                        .incidents
                        .open(&self.scope, &state.key, obs.now, &json),
                )
                .await?;
            if created {
                return Ok(Some(state));
            }
            if rec.closed_at.is_none() {
                // Another replica opened it first: join it.
                return Ok(Some(self.parse_state(rec.state, obs.now).unwrap_or(state)));
            }
        }
        Err(Error::conflict(format!(
            "twenty incidents of {} closed within one minute: not opening another",
            self.policy.deployment
        )))
    }
}
