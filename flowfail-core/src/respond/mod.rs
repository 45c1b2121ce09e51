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
//! - **kill switch** ([`KillSwitch`]: in the process, or a file): re-read right before each
//!   call; when on, no mutation reaches the world. A pass that starts with it on writes nothing
//!   anywhere, the ledger included, and reports what it would have done; pulled mid-pass, every
//!   later call is refused and the pass still writes its record (what it did before, what it
//!   refused after) so the ledger stays true. A [`Responder::run`] halts; a supervisor keeps
//!   watching and acts again once the switch is released;
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
use crate::ports::{IncidentRecord, Ports, TimelineEntry};
use crate::prune::PruneOptions;
use crate::report::{Report, ReportBuilder};
use crate::schema::SchemaSet;

mod act;
mod builder;
mod control;
mod guard;
mod lambda;
mod log;
mod manual;
mod observe;
mod pass;
mod record;
mod stats;
mod supervisor;

pub use builder::ResponderBuilder;
pub use manual::{ManualOutcome, ManualRetry, ManualRetryReport};
pub use stats::{ActionStat, PassKind, PassStats, ReadStat};
pub use supervisor::{AlertTrigger, COOLDOWN_OVER, Reload, Supervisor, SupervisorBuilder, Wake};

/// Stops every mutation when on. Cheap to clone; clones share the switch.
///
/// Pulled in the process ([`KillSwitch::set`]) or, for a switch made with
/// [`KillSwitch::watching`], by creating its file: an operator's `touch` (or a mounted
/// ConfigMap key) stops a running service without a restart. The guard reads the switch right
/// before every mutation; a file that cannot be checked (anything but "not found") counts as on.
///
/// ```
/// use flowfail_core::respond::KillSwitch;
/// let dir = std::env::temp_dir().join(format!("ff-kill-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let k = KillSwitch::watching(dir.join("kill"));
/// assert!(!k.is_on());
/// std::fs::write(dir.join("kill"), "").unwrap();
/// assert!(k.is_on());
/// std::fs::remove_dir_all(&dir).unwrap();
/// assert!(!k.is_on());
/// ```
#[derive(Debug, Clone, Default)]
pub struct KillSwitch {
    on: Arc<AtomicBool>,
    file: Option<Arc<std::path::PathBuf>>,
}

impl KillSwitch {
    /// A switch, off.
    pub fn new() -> Self {
        Self::default()
    }
    /// A switch that is also on while `file` exists.
    pub fn watching(file: impl Into<std::path::PathBuf>) -> Self {
        KillSwitch {
            on: Arc::default(),
            file: Some(Arc::new(file.into())),
        }
    }
    /// Turns it on (or off). A watched file, while it exists, keeps the switch on.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }
    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
            || self
                .file
                .as_deref()
                .is_some_and(|p| match std::fs::symlink_metadata(p) {
                    Ok(_) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::NotFound,
                })
    }
    /// The file it watches, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref().map(|p| p.as_path())
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
    /// Bundle sizes already read this incident, by task and its attempts when read: a retried
    /// task's bundle (a new attempt) and one flowfail pruned are read again.
    bundle_sizes: HashMap<crate::model::TaskId, (u32, u64)>,
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
    /// The decision last noted in an incident's timeline ([`Responder::note_decision`]).
    last_decision: Option<LastDecision>,
    /// The alert window's error log events read so far ([`lambda`]).
    log_window: lambda::LogWindow,
}

/// The decision last noted in an incident's timeline: its incident, its signature
/// ([`crate::report::DecisionRecord::signature`]) and when its numbers were last written.
#[derive(Debug)]
struct LastDecision {
    key: String,
    signature: String,
    sampled_at: Timestamp,
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
    /// Failed task rows its triage read left out as unreadable (see
    /// [`crate::ports::FailedRead`]); `None` when it read no failed tasks.
    pub unreadable_tasks: Option<u64>,
    /// Tasks of the alert window whose status the TaskDB's store does not read (see
    /// [`crate::StatusCounts::unknown_status`]); `None` when the counts did not answer.
    pub unknown_status_tasks: Option<u64>,
}

/// Carries out the runbook. See the [module docs](self).
#[derive(Debug)]
pub struct Responder {
    /// The ledger scope of its incidents: the base scope, or `<base>:shadow` in shadow mode.
    scope: String,
    /// The scope of the pause that holds it (the acting scope, also in shadow mode).
    base_scope: String,
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
    /// Ledger calls through [`Responder::call`] that answered, and that failed (an error or no
    /// answer within the step deadline): counters for the passes' numbers.
    ledger_calls: stats::LedgerCalls,
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

    /// The ledger scope its incidents are kept under: the Deployment's name (or the scope the
    /// builder was given), or `<scope>:shadow` in shadow mode (a shadow run never touches the
    /// acting scope).
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
            match self
                .call(Op::IncidentGet, self.ports.incidents.get(&s.key))
                .await
            {
                Ok(rec) => {
                    let mut state = self.parse_state(rec.state.clone(), obs.now).unwrap_or(s);
                    if rec.closed_at.is_some() {
                        // Closed by another responder (or by this one, its reply lost): the
                        // incident is over; nothing is done under its key any more.
                        return Ok(Some(Found::Closed(state)));
                    }
                    let found = self.reconcile(&mut state, &rec, obs);
                    return Ok(Some(Found::Open(state, found)));
                }
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                    // Never written (opened while the kill switch was on) or gone from the
                    // ledger: looked for, or opened, afresh.
                    lock(&self.inner).incident = None;
                }
                Err(e) => {
                    self.note_gap(format!("incident ledger: {e}"));
                    return Ok(Some(Found::Open(s, None)));
                }
            }
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

/// Runs `fut`, containing a panic: `Err` carries the panic's message (sanitized).
async fn contain<T>(fut: impl std::future::Future<Output = T>) -> std::result::Result<T, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("contained a panic: {}", crate::model::sanitize(&what, 200));
            crate::model::sanitize(&what, 200)
        })
}

/// The pager dedup key of an effect: `<incident key>:<effect>`, at most 255 bytes (cut at a
/// character boundary).
pub fn dedup_key(incident: &str, effect: &str) -> String {
    let mut k = format!("{incident}:{effect}");
    if k.len() > 255 {
        let mut cut = 255;
        while !k.is_char_boundary(cut) {
            cut -= 1;
        }
        k.truncate(cut);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::dedup_key;

    #[test]
    fn dedup_key_is_cut_at_a_character_boundary() {
        let incident = "é".repeat(200);
        let k = dedup_key(&incident, "page:on_call:x");
        assert!(k.len() <= 255);
        assert!(k.starts_with('é'));
        assert_eq!(dedup_key("inc", "page:x"), "inc:page:x");
    }
}
