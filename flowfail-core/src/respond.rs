//! The responder: observe → decide → act → verify → record, until resolved or escalated.
//!
//! A [`Responder`] holds the ports as `Arc<dyn …>`, a [`Policy`] and a [`Clock`]. Each
//! [`Responder::pass`] is level-triggered: it re-reads the world and the incident's state from
//! the ledger, asks [`decide`] what to do, carries it out, and writes the new state back. Nothing
//! important lives only in memory, so a restarted responder, or another replica, converges.
//!
//! Safety, in the order it is applied to every mutation:
//!
//! - **kill switch** ([`KillSwitch`]): when on, no mutation reaches any port (the ledger
//!   included); the pass still reports what it would have done, and the run halts;
//! - **dry run**: nothing is mutated; one pass reports what would be done;
//! - **action rate limit**: at most `max_actions_per_minute` mutations per responder; the rest
//!   wait for the next pass (pages and notifications are never held back);
//! - **preconditions**: retries are fenced on the attempt count, bundles on their version, env
//!   changes and the rollback on the Deployment's resourceVersion, ledger writes on the epoch;
//! - **at most once**: the rollback is reserved in the ledger before it is attempted;
//!   pages and notifications carry dedup keys derived from the incident key;
//! - **per-step deadlines**: every port call has `step_timeout_s`; transient read errors are
//!   retried twice with jittered backoff (`backon`) — the only retry loop; adapters must not
//!   retry on their own.
//!
//! ```
//! use flowfail_core::respond::{Responder, World};
//! use flowfail_core::{Clock, Policy};
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let clock = Clock::tokio_anchored(chrono::Utc::now());
//! let world = World::new(&Policy::default(), clock.clone());
//! let responder = Responder::builder().ports(world.ports()).clock(clock).build().unwrap();
//! let report = responder.run(std::time::Duration::from_secs(600)).await.unwrap();
//! assert!(!report.alert.firing); // an empty world has no incident
//! # });
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::TimeDelta;
use futures_util::FutureExt;
use sha2::{Digest, Sha256};

use crate::classify::{Classification, classify};
use crate::clock::Clock;
use crate::decide::{
    Action, BundleObs, Decision, IncidentState, Observation, ObservedTask, PruneRecord,
    RetryRecord, RollbackRecord, SchemaObs, Settle, classification, decide,
};
use crate::error::{Error, ErrorKind, Result};
use crate::memory::{
    MemoryBundleStore, MemoryDeployment, MemoryIncidentStore, MemoryLogSource, MemoryNotifier,
    MemoryPager, MemoryQuota, MemoryStatusPage, MemoryTaskStore,
};
use crate::model::{ByteSize, EnvChange, Quota, RolloutStatus, TaskId, Timestamp};
use crate::policy::Policy;
use crate::ports::{
    BundleStore, DeploymentController, IncidentStore, LogQuery, LogSource, Notification, Notifier,
    Page, Pager, QuotaChecker, RetryOutcome, RetryRequest, StatusPage, TaskStore, TimelineEntry,
};
use crate::prune::{Manifest, PruneOptions, prune};
use crate::report::{ActionFields, Outcome, Report, ReportBuilder};
use crate::schema::SchemaSet;

/// Every port the responder uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ports {
    /// Error logs.
    pub logs: Arc<dyn LogSource>,
    /// The TaskDB.
    pub tasks: Arc<dyn TaskStore>,
    /// Context bundles.
    pub bundles: Arc<dyn BundleStore>,
    /// Vendor quota.
    pub quota: Arc<dyn QuotaChecker>,
    /// The Deployment.
    pub deployment: Arc<dyn DeploymentController>,
    /// Vendor status pages.
    pub status: Arc<dyn StatusPage>,
    /// The pager.
    pub pager: Arc<dyn Pager>,
    /// Stakeholder notifications.
    pub notifier: Arc<dyn Notifier>,
    /// The incident ledger.
    pub incidents: Arc<dyn IncidentStore>,
}

/// A world of in-memory backends, one per port, sharing a clock: for replays, examples and
/// tests. Keep the `World` to seed it and to inspect what the responder did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct World {
    /// Logs.
    pub logs: MemoryLogSource,
    /// TaskDB.
    pub tasks: MemoryTaskStore,
    /// Bundles.
    pub bundles: MemoryBundleStore,
    /// Quota.
    pub quota: MemoryQuota,
    /// Deployment.
    pub deployment: MemoryDeployment,
    /// Status pages.
    pub status: MemoryStatusPage,
    /// Pager.
    pub pager: MemoryPager,
    /// Notifier.
    pub notifier: MemoryNotifier,
    /// Ledger.
    pub incidents: MemoryIncidentStore,
}

impl World {
    /// An empty world: the policy's Deployment at revision 1 with no history, no tasks, no
    /// vendors.
    pub fn new(policy: &Policy, clock: Clock) -> Self {
        World {
            logs: MemoryLogSource::new(),
            tasks: MemoryTaskStore::new(),
            bundles: MemoryBundleStore::new(),
            quota: MemoryQuota::new(),
            deployment: MemoryDeployment::new(
                &policy.deployment,
                1,
                None,
                BTreeMap::new(),
                Vec::new(),
                clock,
            ),
            status: MemoryStatusPage::new(),
            pager: MemoryPager::new(policy.page_targets.iter().cloned()),
            notifier: MemoryNotifier::new(),
            incidents: MemoryIncidentStore::new(),
        }
    }

    /// The ports, sharing this world's state.
    pub fn ports(&self) -> Ports {
        Ports {
            logs: Arc::new(self.logs.clone()),
            tasks: Arc::new(self.tasks.clone()),
            bundles: Arc::new(self.bundles.clone()),
            quota: Arc::new(self.quota.clone()),
            deployment: Arc::new(self.deployment.clone()),
            status: Arc::new(self.status.clone()),
            pager: Arc::new(self.pager.clone()),
            notifier: Arc::new(self.notifier.clone()),
            incidents: Arc::new(self.incidents.clone()),
        }
    }

    /// Every mutating call any backend received, in backend order.
    pub fn mutations(&self) -> Vec<crate::memory::Call> {
        [
            self.logs.calls().mutations(),
            self.tasks.calls().mutations(),
            self.bundles.calls().mutations(),
            self.quota.calls().mutations(),
            self.deployment.calls().mutations(),
            self.status.calls().mutations(),
            self.pager.calls().mutations(),
            self.notifier.calls().mutations(),
            self.incidents.calls().mutations(),
        ]
        .concat()
    }
}

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

/// Builds a [`Responder`].
#[derive(Debug, Default)]
pub struct ResponderBuilder {
    ports: Option<Ports>,
    policy: Option<Policy>,
    clock: Option<Clock>,
    schemas: Option<Arc<SchemaSet>>,
    dry_run: bool,
    kill: Option<KillSwitch>,
    name: Option<String>,
    prune_options: Option<PruneOptions>,
}

impl ResponderBuilder {
    /// The ports (required).
    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = Some(ports);
        self
    }
    /// The policy (default: the runbook's).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// The TaskObject schemas (default: the built-in v1 and v2).
    pub fn schemas(mut self, schemas: Arc<SchemaSet>) -> Self {
        self.schemas = Some(schemas);
        self
    }
    /// Dry run: decide and report, mutate nothing.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
    /// A kill switch shared with whoever may pull it.
    pub fn kill_switch(mut self, k: KillSwitch) -> Self {
        self.kill = Some(k);
        self
    }
    /// A name for the report.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Pruning options for prune-context.
    pub fn prune_options(mut self, o: PruneOptions) -> Self {
        self.prune_options = Some(o);
        self
    }
    /// Builds the responder; the policy is validated.
    pub fn build(self) -> Result<Responder> {
        let ports = self
            .ports
            .ok_or_else(|| Error::invalid_input("responder needs ports"))?;
        let policy = self.policy.unwrap_or_default();
        policy.validate()?;
        let report = ReportBuilder {
            name: self.name,
            dry_run: self.dry_run,
            ..ReportBuilder::default()
        };
        Ok(Responder {
            ports,
            clock: self.clock.unwrap_or_else(Clock::system),
            schemas: self
                .schemas
                .unwrap_or_else(|| Arc::new(SchemaSet::builtin())),
            dry_run: self.dry_run,
            kill: self.kill.unwrap_or_default(),
            prune_options: self.prune_options.unwrap_or_default(),
            inner: Mutex::new(Inner {
                incident: None,
                report,
                spent: Vec::new(),
                class_cache: HashMap::new(),
            }),
            pass_lock: tokio::sync::Mutex::new(()),
            policy,
        })
    }
}

#[derive(Debug)]
struct Inner {
    /// The incident this responder works on, and its last known state.
    incident: Option<IncidentState>,
    report: ReportBuilder,
    /// Times of recent mutations (action rate limit).
    spent: Vec<Timestamp>,
    class_cache: HashMap<(String, Option<u16>), Classification>,
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
}

/// Carries out the runbook. See the [module docs](self).
#[derive(Debug)]
pub struct Responder {
    ports: Ports,
    policy: Policy,
    clock: Clock,
    schemas: Arc<SchemaSet>,
    dry_run: bool,
    kill: KillSwitch,
    prune_options: PruneOptions,
    inner: Mutex<Inner>,
    pass_lock: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`prune_context`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PruneContextOutcome {
    /// Pruned: the original is archived (and verified) under `archive_checksum`.
    Pruned {
        /// Size before.
        from_bytes: u64,
        /// Size after.
        to_bytes: u64,
        /// SHA-256 of the original (the archive's name).
        archive_checksum: String,
        /// What pruning removed.
        manifest: Box<Manifest>,
    },
    /// Already within the budget: nothing done.
    AlreadySmall {
        /// Its size.
        bytes: u64,
    },
}

/// The safe prune-context operation: size check → get → archive the original create-only and
/// verify its checksum → write the pruned bundle only if the stored version is still the one
/// read. A version conflict re-reads and decides again (at most 3 times); a failed archive
/// means no prune. The original is never lost.
pub async fn prune_context(
    bundles: &dyn BundleStore,
    task_id: &TaskId,
    max_size: ByteSize,
    max_read: ByteSize,
    options: &PruneOptions,
) -> Result<PruneContextOutcome> {
    let mut last_conflict = None;
    for _ in 0..3 {
        let meta = bundles.head(task_id).await?;
        if meta.size <= max_size.bytes() {
            return Ok(PruneContextOutcome::AlreadySmall { bytes: meta.size });
        }
        let bundle = bundles.get(task_id, max_read.bytes()).await?;
        let pruned = prune(&bundle.bytes, max_size.bytes(), options)?;
        let checksum = hex(&Sha256::digest(&bundle.bytes));
        match bundles.put_archive(task_id, &checksum, &bundle.bytes).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {} // verified below
            Err(e) => {
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "archive of {task_id} failed, bundle not pruned: {}",
                        e.message()
                    ),
                )
                .with_operation("prune_context")
                .with_source(e));
            }
        }
        let archived = bundles
            .get_archive(task_id, &checksum, max_read.bytes())
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("archive of {task_id} could not be read back, bundle not pruned"),
                )
                .with_operation("prune_context")
                .with_source(e)
            })?;
        if hex(&Sha256::digest(&archived)) != checksum {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("archive of {task_id} does not match its checksum, bundle not pruned"),
            )
            .with_operation("prune_context"));
        }
        match bundles
            .put_if_version(task_id, &pruned.bytes, &bundle.version)
            .await
        {
            Ok(_) => {
                return Ok(PruneContextOutcome::Pruned {
                    from_bytes: bundle.bytes.len() as u64,
                    to_bytes: pruned.bytes.len() as u64,
                    archive_checksum: checksum,
                    manifest: Box::new(pruned.manifest),
                });
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                last_conflict = Some(e);
                continue; // someone wrote the bundle: re-read and decide again
            }
            Err(e) => {
                // A lost reply: the write may have applied. Look before reporting failure.
                if let Ok(now) = bundles.get(task_id, max_read.bytes()).await
                    && now.bytes == pruned.bytes
                {
                    return Ok(PruneContextOutcome::Pruned {
                        from_bytes: bundle.bytes.len() as u64,
                        to_bytes: pruned.bytes.len() as u64,
                        archive_checksum: checksum,
                        manifest: Box::new(pruned.manifest),
                    });
                }
                return Err(e);
            }
        }
    }
    Err(
        Error::conflict(format!("bundle {task_id} kept changing while being pruned"))
            .with_operation("prune_context")
            .with_source(last_conflict.unwrap_or_else(|| Error::conflict("conflict"))),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
        let end = start + TimeDelta::from_std(max).unwrap_or(TimeDelta::MAX);
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
            if now >= end {
                break;
            }
            let mut wake = now + TimeDelta::seconds(self.policy.poll_interval_s as i64);
            if let Some(w) = out.wake_at.filter(|w| *w > now) {
                wake = wake.min(w);
            }
            if let Some(e) = next_event.filter(|e| *e > now) {
                wake = wake.min(e);
            }
            // Passes are at least a second apart, whatever falls due in between.
            wake = wake.max(now + TimeDelta::seconds(1)).min(end);
            let d = (wake - now).to_std().unwrap_or(Duration::from_millis(1));
            tokio::time::sleep(d.max(Duration::from_millis(1))).await;
        }
        Ok(self.report())
    }

    /// Runs one observe → decide → act → record pass. Passes never overlap: a pass started
    /// while another runs is refused.
    pub async fn pass(&self) -> Result<PassOutcome> {
        let _guard = self
            .pass_lock
            .try_lock()
            .map_err(|_| Error::refused("a pass is already running"))?;
        let now = self.clock.now();
        let halted = self.kill.is_on();
        let obs = self.observe(now).await;
        {
            let mut inner = lock(&self.inner);
            inner.report.passes += 1;
            for g in &obs.gaps {
                inner.report.gap(now, g.clone());
            }
        }
        // Find or open the incident.
        let Some(state) = self.incident_state(&obs, halted).await? else {
            let mut inner = lock(&self.inner);
            if let Some(c) = &obs.counts {
                inner.report.last_alert = Some(crate::decide::alert(c, false, &self.policy));
            }
            return Ok(PassOutcome {
                settled: None,
                incident_open: false,
                wake_at: None,
                stop: halted || self.dry_run,
            });
        };
        let epoch = if self.mutating(halted) {
            match self.ports.incidents.claim(&state.key).await {
                Ok(e) => Some(e),
                Err(e) => {
                    lock(&self.inner)
                        .report
                        .gap(now, format!("incident ledger: {e}"));
                    return Ok(PassOutcome {
                        settled: None,
                        incident_open: true,
                        wake_at: None,
                        stop: false,
                    });
                }
            }
        } else {
            None
        };
        let decision = decide(&obs, &state, &self.policy);
        let span = tracing::info_span!("incident_pass", incident = %state.key, epoch = ?epoch);
        let _e = span.enter();
        tracing::debug!(actions = decision.actions.len(), "decided");
        drop(_e);
        let mut next = decision.state.clone().unwrap_or_else(|| state.clone());
        let (entries, panicked) = self
            .act(&decision, &obs, &mut next, epoch, now, halted)
            .await;
        {
            let mut inner = lock(&self.inner);
            inner.report.skips(now, &decision.skipped);
            for f in &decision.findings {
                inner.report.finding(now, f.clone());
            }
            if halted {
                inner.report.halted = true;
            }
        }
        // A panic in the remediator is an incident of its own: stop automating this one.
        let settled = if panicked && decision.settle.is_none() {
            next.escalated_at = Some(now);
            Some(Settle::Escalated)
        } else {
            decision.settle
        };
        if let Some(epoch) = epoch {
            let state_json = serde_json::to_value(&next).unwrap_or_default();
            let write = async {
                self.ports
                    .incidents
                    .append(&next.key, epoch, &entries)
                    .await?;
                self.ports
                    .incidents
                    .save_state(&next.key, epoch, &state_json)
                    .await?;
                if settled.is_some() {
                    let report = lock(&self.inner).report.build(Some(&next), now);
                    let post = serde_json::to_value(&report.post_incident).unwrap_or_default();
                    self.ports
                        .incidents
                        .close(&next.key, epoch, now, &post)
                        .await?;
                }
                Ok::<(), Error>(())
            };
            if let Err(e) = write.await {
                // A stale epoch means another replica took over this pass: re-read next time.
                lock(&self.inner)
                    .report
                    .gap(now, format!("incident ledger write: {e}"));
            }
        }
        if settled == Some(Settle::Resolved) && self.mutating(halted) {
            for k in next.effects.iter().filter(|k| k.starts_with("page:")) {
                let dk = dedup_key(&next.key, k);
                let _ = self
                    .step("pager.resolve", || self.ports.pager.resolve(&dk))
                    .await;
            }
        }
        lock(&self.inner).incident = Some(next);
        Ok(PassOutcome {
            settled,
            incident_open: true,
            wake_at: decision.wake_at,
            stop: settled.is_some() || halted || self.dry_run,
        })
    }

    fn mutating(&self, halted: bool) -> bool {
        !self.dry_run && !halted
    }

    /// The incident's current state: from the ledger when one is open, a new one when the alert
    /// fires, none otherwise.
    async fn incident_state(
        &self,
        obs: &Observation,
        halted: bool,
    ) -> Result<Option<IncidentState>> {
        let known = lock(&self.inner).incident.clone();
        if let Some(s) = known {
            if !self.mutating(halted) {
                return Ok(Some(s));
            }
            // Level-triggered: the ledger is the truth (another replica may have moved it on).
            return match self.ports.incidents.get(&s.key).await {
                Ok(rec) => Ok(Some(serde_json::from_value(rec.state).unwrap_or(s))),
                Err(e) => {
                    lock(&self.inner)
                        .report
                        .gap(obs.now, format!("incident ledger: {e}"));
                    Ok(Some(s))
                }
            };
        }
        if self.mutating(halted) {
            // A restarted responder (or another replica) carries on with the open incident.
            match self
                .ports
                .incidents
                .find_open(&self.policy.deployment)
                .await
            {
                Ok(Some(rec)) => {
                    if let Ok(state) = serde_json::from_value::<IncidentState>(rec.state) {
                        return Ok(Some(state));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    lock(&self.inner)
                        .report
                        .gap(obs.now, format!("incident ledger: {e}"));
                    return Ok(None);
                }
            }
        }
        let (Some(counts), Some(failed)) = (&obs.counts, &obs.failed) else {
            return Ok(None);
        };
        let alert = crate::decide::alert(counts, false, &self.policy);
        if !alert.firing {
            return Ok(None);
        }
        let key = format!(
            "{}-{}",
            self.policy.deployment,
            obs.now.format("%Y%m%dT%H%MZ")
        );
        let state = IncidentState::open(
            key.clone(),
            obs.now,
            alert,
            classification(failed),
            obs.deployment.as_ref(),
        );
        {
            let mut inner = lock(&self.inner);
            inner.report.note(
                obs.now,
                format!(
                    "alert FlowFailureRate firing: {:.2}% failures over {} tasks (threshold {:.2}%, min sample {})",
                    alert.failure_rate * 100.0,
                    alert.window_tasks,
                    self.policy.alert_failure_rate * 100.0,
                    self.policy.min_sample
                ),
            );
        }
        if !self.mutating(halted) {
            return Ok(Some(state));
        }
        let json = serde_json::to_value(&state).unwrap_or_default();
        let (rec, created) = self
            .ports
            .incidents
            .open(&self.policy.deployment, &key, obs.now, &json)
            .await?;
        if created {
            return Ok(Some(state));
        }
        // Another replica opened it first: join it.
        Ok(Some(serde_json::from_value(rec.state).unwrap_or(state)))
    }

    /// A port call with the step deadline; transient errors of reads are retried twice.
    async fn step<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Duration::from_secs(self.policy.step_timeout_s);
        let mut f = f;
        let call = || {
            let fut = f();
            async move {
                tokio::time::timeout(deadline, fut)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::new(
                            ErrorKind::Timeout,
                            format!("no answer within {}s", deadline.as_secs()),
                        )
                        .transient()
                        .with_operation(op))
                    })
            }
        };
        call.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_times(2)
                .with_jitter(),
        )
        .when(|e: &Error| e.is_transient())
        .await
    }

    /// A mutation with the step deadline and no retry (mutations are re-decided next pass).
    async fn mutate<T>(&self, op: &'static str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let deadline = Duration::from_secs(self.policy.step_timeout_s);
        tokio::time::timeout(deadline, fut)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {}s", deadline.as_secs()),
                )
                .transient()
                .with_operation(op))
            })
    }

    async fn observe(&self, now: Timestamp) -> Observation {
        let p = &self.policy;
        let mut obs = Observation::new(now);
        let window = TimeDelta::seconds(p.alert_window_s as i64);
        let until = now + TimeDelta::milliseconds(1);
        match self
            .step("task.counts", || {
                self.ports.tasks.counts(now - window, until)
            })
            .await
        {
            Ok(c) => obs.counts = Some(c),
            Err(e) => obs.gaps.push(format!("TaskDB counts: {e}")),
        }
        match self
            .step("task.recent_failed", || {
                self.ports.tasks.recent_failed(p.triage_limit)
            })
            .await
        {
            Ok(tasks) => {
                obs.failed_truncated = tasks.len() >= p.triage_limit;
                let mut out = Vec::with_capacity(tasks.len());
                for t in tasks {
                    let class = self
                        .classify_cached(t.error_message.as_deref().unwrap_or(""), t.http_status);
                    out.push(ObservedTask {
                        task: t,
                        class,
                        bundle: BundleObs::NotChecked,
                        schema: None,
                    });
                }
                obs.failed = Some(out);
            }
            Err(e) => obs.gaps.push(format!("TaskDB failed tasks: {e}")),
        }
        // Evidence per task: bundle sizes for timeouts, TaskObjects for validation failures.
        if let Some(failed) = &mut obs.failed {
            for t in failed.iter_mut() {
                let id = t.task.task_id.clone();
                match t.class.kind {
                    crate::FailureKind::Timeout => {
                        t.bundle = match self
                            .step("bundle.head", || self.ports.bundles.head(&id))
                            .await
                        {
                            Ok(m) => BundleObs::Size { bytes: m.size },
                            Err(e) if e.kind() == ErrorKind::NotFound => BundleObs::Missing,
                            Err(e) => BundleObs::Unreadable {
                                reason: e.to_string(),
                            },
                        };
                    }
                    crate::FailureKind::Validation => {
                        t.schema = Some(
                            match self
                                .step("task.task_object", || self.ports.tasks.task_object(&id))
                                .await
                            {
                                Ok(Some(v)) => SchemaObs::Checked(self.schemas.validate(&v)),
                                Ok(None) => SchemaObs::Missing,
                                Err(e) => SchemaObs::Unreadable {
                                    reason: e.to_string(),
                                },
                            },
                        );
                    }
                    _ => {}
                }
            }
        }
        let q = LogQuery::errors(now - window, until).max_events(10_000);
        match self
            .step("logs.errors", || self.ports.logs.errors(&q))
            .await
        {
            Ok(b) => obs.log_events = Some((b.events.len(), b.truncated)),
            Err(e) => obs.gaps.push(format!("error logs: {e}")),
        }
        obs.quota = match self
            .step("quota.quota", || self.ports.quota.quota(&p.primary_vendor))
            .await
        {
            Ok(q) => q,
            Err(e) => {
                obs.gaps.push(format!("quota: {e}"));
                Quota::Unknown {
                    reason: e.to_string(),
                }
            }
        };
        let mut vendors = vec![p.primary_vendor.clone()];
        if let Some(f) = p.fallbacks.get(&p.primary_vendor) {
            vendors.push(f.vendor.clone());
        }
        for v in vendors {
            match self
                .step("status.health", || self.ports.status.health(&v))
                .await
            {
                Ok(s) => {
                    obs.vendors.insert(v, s);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => obs.gaps.push(format!("status page {v}: {e}")),
            }
        }
        match self
            .step("deployment.state", || {
                self.ports.deployment.state(&p.deployment)
            })
            .await
        {
            Ok(d) => obs.deployment = Some(d),
            Err(e) => obs.gaps.push(format!("deployment: {e}")),
        }
        let probe = lock(&self.inner)
            .incident
            .as_ref()
            .and_then(|s| s.breaker.probe().cloned());
        if let Some(id) = probe
            && let Ok(t) = self.step("task.get", || self.ports.tasks.get(&id)).await
        {
            obs.watched.insert(id, t);
        }
        obs
    }

    fn classify_cached(&self, message: &str, status: Option<u16>) -> Classification {
        let mut inner = lock(&self.inner);
        let key = (message.to_owned(), status);
        if let Some(c) = inner.class_cache.get(&key) {
            return *c;
        }
        let c = classify(message, status);
        if inner.class_cache.len() < 100_000 {
            inner.class_cache.insert(key, c);
        }
        c
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

    async fn act(
        &self,
        d: &Decision,
        obs: &Observation,
        next: &mut IncidentState,
        epoch: Option<u64>,
        now: Timestamp,
        halted: bool,
    ) -> (Vec<TimelineEntry>, bool) {
        let mut panicked = false;
        let mut deferred = 0usize;
        let mut entries = Vec::new();
        let mut pruned_now: Vec<TaskId> = Vec::new();
        let record = |fields: ActionFields,
                      outcome: Outcome,
                      detail: Option<String>,
                      entries: &mut Vec<TimelineEntry>| {
            entries.push(TimelineEntry::new(
                now,
                "action",
                serde_json::json!({"action": &fields, "outcome": outcome, "detail": &detail}),
            ));
            lock(&self.inner)
                .report
                .action(now, fields, outcome, detail);
        };
        let mut i = 0;
        while i < d.actions.len() {
            let a = &d.actions[i];
            let fields = ActionFields::from_action(a);
            // Consecutive retries go to the store as one batch.
            if let Action::RetryTask { .. } = a {
                let mut batch = Vec::new();
                while let Some(r @ Action::RetryTask { .. }) = d.actions.get(i) {
                    batch.push(r.clone());
                    i += 1;
                }
                self.retry_batch(&batch, &pruned_now, next, now, halted, &mut |f, o, det| {
                    record(f, o, det, &mut entries)
                })
                .await;
                continue;
            }
            i += 1;
            if halted {
                record(
                    fields,
                    Outcome::Skipped,
                    Some("kill switch is on".into()),
                    &mut entries,
                );
                continue;
            }
            if self.dry_run {
                if !matches!(a, Action::VerifyRollout { .. }) {
                    record(fields, Outcome::DryRun, None, &mut entries);
                }
                continue;
            }
            let exempt = matches!(
                a,
                Action::Page { .. } | Action::Notify { .. } | Action::VerifyRollout { .. }
            );
            if !exempt && !self.take_token(now) {
                // Deferred, not dropped: the next pass decides it again.
                let skip = crate::decide::Skip::new(
                    a.kind(),
                    subject(a),
                    "action rate limit: deferred to the next pass",
                );
                lock(&self.inner).report.skips(now, &[skip]);
                deferred += 1;
                continue;
            }
            let mut recs: Vec<(ActionFields, Outcome, Option<String>)> = Vec::new();
            let fields_if_panic = fields.clone();
            let run = std::panic::AssertUnwindSafe(async {
            match a {
                Action::PruneContext {
                    task_id,
                    from_bytes,
                    max_bytes,
                } => {
                    let r = self
                        .mutate(
                            "prune_context",
                            prune_context(
                                self.ports.bundles.as_ref(),
                                task_id,
                                ByteSize::new(*max_bytes),
                                self.policy.max_bundle_size,
                                &self.prune_options,
                            ),
                        )
                        .await;
                    match r {
                        Ok(PruneContextOutcome::Pruned {
                            from_bytes: f,
                            to_bytes,
                            archive_checksum,
                            ..
                        }) => {
                            next.pruned.insert(
                                task_id.clone(),
                                PruneRecord {
                                    at: now,
                                    from_bytes: f,
                                    to_bytes,
                                },
                            );
                            pruned_now.push(task_id.clone());
                            recs.push((ActionFields::PruneContext {
                                    task_id: task_id.to_string(),
                                    from_bytes: f,
                                    to_bytes,
                                },
                                Outcome::Applied,
                                Some(format!(
                                    "original archived as sha256 {}",
                                    &archive_checksum[..16]
                                ))));
                        }
                        Ok(PruneContextOutcome::AlreadySmall { bytes }) => {
                            pruned_now.push(task_id.clone());
                            recs.push((ActionFields::PruneContext {
                                    task_id: task_id.to_string(),
                                    from_bytes: *from_bytes,
                                    to_bytes: bytes,
                                },
                                Outcome::Skipped,
                                Some("bundle already within budget".into())));
                        }
                        Err(e) => {
                            if e.kind() != ErrorKind::Conflict && !e.is_transient() {
                                next.prune_failed.insert(task_id.clone(), e.to_string());
                            }
                            recs.push((fields, Outcome::Failed, Some(e.to_string())));
                        }
                    }
                }
                Action::SetEnv {
                    deployment,
                    name,
                    value,
                    ..
                } => {
                    let change = match value {
                        Some(v) => EnvChange::set(name.clone(), v.clone()),
                        None => EnvChange::unset(name.clone()),
                    };
                    let previous = obs
                        .deployment
                        .as_ref()
                        .and_then(|d| d.env.get(name).cloned());
                    let pre = obs.deployment.as_ref().map(|d| d.resource_version.clone());
                    let r = self
                        .mutate(
                            "deployment.set_env",
                            self.ports.deployment.set_env(
                                deployment,
                                std::slice::from_ref(&change),
                                pre,
                            ),
                        )
                        .await;
                    let r = match r {
                        Err(e) if e.kind() != ErrorKind::Conflict => {
                            // Lost reply? Look before reporting failure.
                            match self.ports.deployment.state(deployment).await {
                                Ok(s) if s.env.get(name) == value.as_ref() => Ok(s),
                                _ => Err(e),
                            }
                        }
                        r => r,
                    };
                    match r {
                        Ok(s) => {
                            next.known_resource_version = Some(s.resource_version.clone());
                            match next.env_changes.get(name) {
                                // Restoring what flowfail found: the change is undone.
                                Some(rec) if rec.previous == *value => {
                                    next.env_changes.remove(name);
                                }
                                Some(_) => {}
                                None => {
                                    next.env_changes.insert(
                                        name.clone(),
                                        crate::decide::EnvRecord {
                                            value: value.clone(),
                                            previous,
                                            at: now,
                                        },
                                    );
                                }
                            }
                            if name == &self.policy.breaker_env && value.as_deref() != Some("true")
                            {
                                next.breaker_enabled_at = None;
                            }
                            recs.push((fields, Outcome::Applied, None));
                        }
                        Err(e) => {
                            if name == &self.policy.breaker_env && value.as_deref() == Some("true")
                            {
                                next.breaker_enabled_at = None;
                                next.breaker = crate::breaker::Breaker::Closed;
                            }
                            recs.push((fields, Outcome::Failed, Some(e.to_string())));
                        }
                    }
                }
                Action::Rollback {
                    deployment,
                    from_revision,
                    to_revision,
                    expected_resource_version,
                } => {
                    let Some(epoch) = epoch else { return };
                    match self
                        .ports
                        .incidents
                        .reserve_effect(&next.key, epoch, "rollback")
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            recs.push((fields, Outcome::Skipped, Some("rollback already reserved for this incident (another responder or an earlier pass)".into())));
                            if next.rollback.is_none() {
                                next.rollback = Some(RollbackRecord {
                                    at: now,
                                    from_revision: *from_revision,
                                    to_revision: *to_revision,
                                    rollout: Some(
                                        "unknown: reserved but outcome not recorded".into(),
                                    ),
                                    verified_at: Some(now),
                                });
                            }
                            return;
                        }
                        Err(e) => {
                            recs.push((fields,
                                Outcome::Failed,
                                Some(format!("could not reserve the rollback: {e}"))));
                            return;
                        }
                    }
                    let r = self
                        .mutate(
                            "deployment.rollback",
                            self.ports.deployment.rollback(
                                deployment,
                                *to_revision,
                                expected_resource_version,
                            ),
                        )
                        .await;
                    let r = match r {
                        Err(e) if e.is_transient() => {
                            match self.ports.deployment.state(deployment).await {
                                Ok(s)
                                    if s.revision != *from_revision
                                        && !s
                                            .history
                                            .iter()
                                            .any(|h| h.revision == *to_revision) =>
                                {
                                    Ok(s)
                                }
                                _ => Err(e),
                            }
                        }
                        r => r,
                    };
                    match r {
                        Ok(s) => {
                            next.known_resource_version = Some(s.resource_version.clone());
                            next.rollback = Some(RollbackRecord {
                                at: now,
                                from_revision: *from_revision,
                                to_revision: *to_revision,
                                rollout: None,
                                verified_at: None,
                            });
                            recs.push((fields, Outcome::Applied, None));
                        }
                        Err(e) => {
                            // Reserved and not applied: never attempted again in this incident.
                            next.rollback = Some(RollbackRecord {
                                at: now,
                                from_revision: *from_revision,
                                to_revision: *to_revision,
                                rollout: Some(format!("rollback failed: {}", e.message())),
                                verified_at: Some(now),
                            });
                            recs.push((fields, Outcome::Failed, Some(e.to_string())));
                        }
                    }
                }
                Action::VerifyRollout { deployment } => {
                    let Some(rb) = next.rollback.clone() else {
                        return;
                    };
                    let status = self
                        .step("deployment.rollout_status", || {
                            self.ports.deployment.rollout_status(deployment)
                        })
                        .await;
                    let verdict = match status {
                        Ok(RolloutStatus::Complete) => Some("complete".to_owned()),
                        Ok(RolloutStatus::Failed { message }) => Some(format!("failed: {message}")),
                        Ok(_) | Err(_)
                            if now - rb.at
                                > TimeDelta::seconds(self.policy.rollout_timeout_s as i64) =>
                        {
                            Some("timeout".to_owned())
                        }
                        _ => None,
                    };
                    if let Some(v) = verdict {
                        let ok = v == "complete";
                        recs.push((ActionFields::VerifyRollout {
                                deployment: deployment.clone(),
                                status: v.clone(),
                            },
                            if ok {
                                Outcome::Applied
                            } else {
                                Outcome::Failed
                            },
                            None));
                        next.rollback = Some(RollbackRecord {
                            rollout: Some(if ok { "complete".into() } else { v }),
                            verified_at: Some(now),
                            ..rb
                        });
                    }
                }
                Action::Page {
                    target,
                    reason,
                    summary,
                } => {
                    let key = a.effect_key().unwrap_or_default();
                    let page = Page::new(
                        target.clone(),
                        dedup_key(&next.key, &key),
                        summary.clone(),
                        serde_json::json!({
                            "incident": next.key,
                            "reason": reason,
                            "classification": next.classification_at_detection,
                            "alert": next.alert_at_detection,
                        }),
                    );
                    match self
                        .step("pager.page", || self.ports.pager.page(&page))
                        .await
                    {
                        Ok(d) => {
                            next.effects.insert(key);
                            recs.push((fields,
                                Outcome::Applied,
                                (d == crate::ports::Delivery::Deduplicated)
                                    .then(|| "deduplicated by the pager".into())));
                        }
                        Err(e) => {
                            recs.push((fields, Outcome::Failed, Some(e.to_string())))
                        }
                    }
                }
                Action::Notify { audience, message } => {
                    let key = a.effect_key().unwrap_or_default();
                    let n = Notification::new(
                        audience.clone(),
                        dedup_key(&next.key, &key),
                        message.clone(),
                    );
                    match self
                        .step("notifier.notify", || self.ports.notifier.notify(&n))
                        .await
                    {
                        Ok(_) => {
                            next.effects.insert(key);
                            recs.push((fields, Outcome::Applied, None));
                        }
                        Err(e) => {
                            recs.push((fields, Outcome::Failed, Some(e.to_string())))
                        }
                    }
                }
                Action::RetryTask { .. } => {}
            }
            })
            .catch_unwind()
            .await;
            for (f, o, det) in recs {
                record(f, o, det, &mut entries);
            }
            if let Err(panic) = run {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(incident = %next.key, kind = a.kind(), "action panicked; contained");
                record(
                    fields_if_panic,
                    Outcome::Failed,
                    Some(format!("panicked: {}", crate::model::sanitize(&what, 200))),
                    &mut entries,
                );
                self.escalate_panic(next, a, now, &mut entries).await;
                panicked = true;
            }
        }
        for f in &d.findings {
            entries.push(TimelineEntry::new(
                now,
                "finding",
                serde_json::to_value(f).unwrap_or_default(),
            ));
        }
        if deferred > 0 {
            // Excess is escalated, never dropped: the deferred actions are decided again next pass.
            let summary = format!(
                "flowfail hit its action rate limit ({} a minute): {deferred} action(s) deferred; a human may want to look",
                self.policy.max_actions_per_minute
            );
            self.escalate(next, "action_rate_limited", summary, now, &mut entries)
                .await;
        }
        (entries, panicked)
    }

    /// Pages on-call once per incident when an action panicked (the panic is contained).
    async fn escalate_panic(
        &self,
        next: &mut IncidentState,
        a: &Action,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
    ) {
        let summary = format!(
            "flowfail: a {} action panicked and was contained; a human should look",
            a.kind()
        );
        self.escalate(next, "action_panicked", summary, now, entries)
            .await;
    }

    /// Pages on-call once per incident for `reason`.
    async fn escalate(
        &self,
        next: &mut IncidentState,
        reason: &str,
        summary: String,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
    ) {
        let key = format!("page:{}:{reason}", self.policy.on_call_target);
        if next.effects.contains(&key) || self.dry_run || self.kill.is_on() {
            return;
        }
        let page = Page::new(
            self.policy.on_call_target.clone(),
            dedup_key(&next.key, &key),
            summary,
            serde_json::json!({"incident": next.key, "reason": reason}),
        );
        let outcome = self
            .step("pager.page", || self.ports.pager.page(&page))
            .await;
        let fields = ActionFields::Page {
            target: self.policy.on_call_target.clone(),
            reason: reason.to_owned(),
            summary: page.summary.clone(),
        };
        let (o, det) = match outcome {
            Ok(_) => {
                next.effects.insert(key);
                (Outcome::Applied, None)
            }
            Err(e) => (Outcome::Failed, Some(e.to_string())),
        };
        entries.push(TimelineEntry::new(
            now,
            "action",
            serde_json::json!({"action": &fields, "outcome": o}),
        ));
        lock(&self.inner).report.action(now, fields, o, det);
    }

    async fn retry_batch(
        &self,
        batch: &[Action],
        pruned_now: &[TaskId],
        next: &mut IncidentState,
        now: Timestamp,
        halted: bool,
        record: &mut (dyn FnMut(ActionFields, Outcome, Option<String>) + Send),
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
            let fields = ActionFields::from_action(a);
            if halted {
                record(fields, Outcome::Skipped, Some("kill switch is on".into()));
                continue;
            }
            if *after_prune && !pruned_now.contains(task_id) && !self.dry_run {
                record(
                    fields,
                    Outcome::Skipped,
                    Some("bundle was not pruned: not retrying into the same timeout".into()),
                );
                continue;
            }
            if self.dry_run {
                record(fields, Outcome::DryRun, None);
                continue;
            }
            requests.push(RetryRequest::new(task_id.clone(), *expected_attempts, now));
            sent.push(a);
        }
        if requests.is_empty() {
            return;
        }
        match self
            .mutate(
                "task.schedule_retries",
                self.ports.tasks.schedule_retries(&requests),
            )
            .await
        {
            Ok(outcomes) => {
                for (a, o) in sent.iter().zip(outcomes) {
                    let Action::RetryTask { task_id, .. } = a else {
                        continue;
                    };
                    let fields = ActionFields::from_action(a);
                    match o {
                        RetryOutcome::Scheduled { attempts } => {
                            next.retries.insert(
                                task_id.clone(),
                                RetryRecord {
                                    attempts,
                                    last_at: now,
                                },
                            );
                            record(fields, Outcome::Applied, None);
                        }
                        RetryOutcome::Conflict { current_attempts } => record(
                            fields,
                            Outcome::Skipped,
                            Some(format!(
                                "attempt count is now {current_attempts}: retried elsewhere"
                            )),
                        ),
                        RetryOutcome::NotRetryable { status } => record(
                            fields,
                            Outcome::Skipped,
                            Some(format!("task is {status:?}")),
                        ),
                        RetryOutcome::NotFound => {
                            record(fields, Outcome::Failed, Some("task not found".into()))
                        }
                    }
                }
            }
            Err(e) => {
                for a in sent {
                    record(
                        ActionFields::from_action(a),
                        Outcome::Failed,
                        Some(e.to_string()),
                    );
                }
            }
        }
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

/// The pager dedup key of an effect: `<incident key>:<effect>`, at most 255 bytes.
pub fn dedup_key(incident: &str, effect: &str) -> String {
    let mut k = format!("{incident}:{effect}");
    k.truncate(255);
    k
}
