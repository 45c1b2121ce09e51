//! The supervisor: flowfail running for real, across incidents, until told to stop.
//!
//! A [`Supervisor`] watches the failure rate with one cheap read per poll (the TaskDB's window
//! counts — no logs, quota or status pages) and, when the alert fires, hands the incident to a
//! *fresh* [`Responder`] built from the same settings; when the incident settles it goes back to
//! watching. After an escalation it waits for the alert to clear (with the policy's hysteresis)
//! before it opens another incident, so a persisting failure is one incident, not one a poll.
//! The cool-down is in the ledger, not in memory: the incident of the scope closed last escalated
//! and has no [`COOLDOWN_OVER`] effect yet. A restarted process, or another replica, reads it
//! there before it opens an incident; whoever sees the alert clear records the end. At start it
//! picks up an incident a previous process left open in the ledger.
//!
//! Shutdown is cooperative: cancel the [`CancellationToken`] passed to [`Supervisor::run`]. A
//! pass in progress gets a grace period (3 s by default) to finish and record; past it the pass
//! is abandoned (every effect is fenced or idempotent, so the next process converges), and
//! `run` returns.
//!
//! ```no_run
//! use flowfail_core::memory::World;
//! use flowfail_core::respond::{Responder, Supervisor};
//! use flowfail_core::{Clock, Policy};
//! use tokio_util::sync::CancellationToken;
//! # async fn f() -> flowfail_core::Result<()> {
//! let world = World::new(&Policy::default(), Clock::system()); // real adapters in production
//! let supervisor = Supervisor::builder()
//!     .responder(Responder::builder().ports(world.ports()).shadow(true))
//!     .on_settled(|report| println!("{}", report.to_text()))
//!     .build()?;
//! let stop = CancellationToken::new();
//! let task = tokio::spawn({
//!     let stop = stop.clone();
//!     async move { supervisor.run(stop).await }
//! });
//! // … on SIGTERM:
//! stop.cancel();
//! task.await.ok();
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::stats::PassStats;
use super::{Responder, ResponderBuilder, lock};
use crate::clock::Clock;
use crate::decide::Settle;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::ports::Op;
use crate::ports::Ports;
use crate::report::Report;

type OnSettled = Arc<dyn Fn(&Report) + Send + Sync>;

/// The effect reserved on an escalated incident (in the ledger) once its alert has cleared: the
/// cool-down after it is over, and a new incident may open.
pub const COOLDOWN_OVER: &str = "cooldown_over";

/// The least time between the start of one pass and a pass an alert woke.
const MIN_WOKEN_GAP: Duration = Duration::from_secs(1);
type OnPass = Arc<dyn Fn(&PassStats) + Send + Sync>;

/// An alert from outside (a Grafana or Alertmanager webhook) that should wake the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertTrigger {
    /// Where it came from: `grafana` or `alertmanager`.
    pub source: String,
    /// The alert's name (its `alertname` label).
    pub name: String,
    /// The alert's fingerprint, when the sender gave one.
    pub fingerprint: Option<String>,
}

impl AlertTrigger {
    /// A trigger; `name` and `fingerprint` are sanitized (they come from outside).
    pub fn new(source: &str, name: &str, fingerprint: Option<&str>) -> Self {
        AlertTrigger {
            source: crate::model::sanitize(source, 40),
            name: crate::model::sanitize(name, 120),
            fingerprint: fingerprint.map(|f| crate::model::sanitize(f, 64)),
        }
    }

    /// How the record names it: `grafana alert "FlowFailureRate" (fingerprint 1a2b)`.
    pub fn describe(&self) -> String {
        match &self.fingerprint {
            Some(f) => format!("{} alert \"{}\" (fingerprint {f})", self.source, self.name),
            None => format!("{} alert \"{}\"", self.source, self.name),
        }
    }
}

/// Wakes a [`Supervisor`] between polls: a firing alert makes it look at once. Cheap to clone;
/// clones wake the same supervisor. Wakes that arrive while a pass runs are kept (the next
/// wait returns at once), and many wakes before the supervisor looks are one wake.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<WakeInner>);

#[derive(Debug, Default)]
struct WakeInner {
    notify: Notify,
    pending: Mutex<Option<AlertTrigger>>,
}

impl Wake {
    /// A wake handle, to pass to [`SupervisorBuilder::wake`].
    pub fn new() -> Self {
        Wake::default()
    }

    /// A firing alert: the supervisor reads the failure rate now instead of at its next poll.
    pub fn alert(&self, trigger: AlertTrigger) {
        *lock(&self.0.pending) = Some(trigger);
        self.0.notify.notify_one();
    }

    /// The alert waiting to be seen by the supervisor, if any (it is taken by the next pass).
    pub fn pending(&self) -> Option<AlertTrigger> {
        lock(&self.0.pending).clone()
    }

    fn take(&self) -> Option<AlertTrigger> {
        lock(&self.0.pending).take()
    }

    async fn notified(&self) {
        self.0.notify.notified().await;
    }
}

/// New settings for a running [`Supervisor`] (a config reloaded): a responder builder with
/// its ports, policy, rules, … The supervisor takes the last one offered before its next pass,
/// checks it as at start (by building a responder, for the same ledger scope), and runs every
/// pass after with it; an incident in progress goes on under the new settings, as after a
/// restart (its state is in the ledger). Cheap to clone; clones reach the same supervisor.
#[derive(Debug, Clone, Default)]
pub struct Reload(Arc<Mutex<Option<ResponderBuilder>>>);

impl Reload {
    /// A reload handle, to pass to [`SupervisorBuilder::reload`].
    pub fn new() -> Self {
        Reload::default()
    }

    /// Offers new settings; the supervisor takes them before its next pass (a later offer
    /// replaces one not yet taken).
    pub fn offer(&self, settings: ResponderBuilder) {
        *lock(&self.0) = Some(settings);
    }

    /// Whether settings wait to be taken.
    pub fn pending(&self) -> bool {
        lock(&self.0).is_some()
    }

    fn take(&self) -> Option<ResponderBuilder> {
        lock(&self.0).take()
    }
}

/// What a supervisor runs with; replaced as a whole by a [`Reload`].
struct Settings {
    template: ResponderBuilder,
    policy: Arc<Policy>,
}

/// Builds a [`Supervisor`].
#[derive(Default, Clone)]
#[must_use]
pub struct SupervisorBuilder {
    responder: Option<ResponderBuilder>,
    on_settled: Option<OnSettled>,
    on_pass: Option<OnPass>,
    wake: Option<Wake>,
    reload: Option<Reload>,
    grace: Option<Duration>,
}

impl std::fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("responder", &self.responder)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl SupervisorBuilder {
    /// How each incident's responder is built (ports, policy, clock, shadow mode, …): required.
    pub fn responder(mut self, b: ResponderBuilder) -> Self {
        self.responder = Some(b);
        self
    }
    /// Called with the report of every incident when it settles.
    pub fn on_settled(mut self, f: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        self.on_settled = Some(Arc::new(f));
        self
    }
    /// Called after every pass, idle or incident, with what it did (the feed of metrics).
    pub fn on_pass(mut self, f: impl Fn(&PassStats) + Send + Sync + 'static) -> Self {
        self.on_pass = Some(Arc::new(f));
        self
    }
    /// The handle that wakes this supervisor (default: a new one, see [`Supervisor::wake`]).
    pub fn wake(mut self, wake: Wake) -> Self {
        self.wake = Some(wake);
        self
    }
    /// The handle new settings arrive by (default: none; see [`Reload`]).
    pub fn reload(mut self, reload: Reload) -> Self {
        self.reload = Some(reload);
        self
    }
    /// How long a pass in progress may run on after shutdown is asked for (default 3 s).
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = Some(d);
        self
    }
    /// The supervisor; the responder settings are checked by building one responder.
    pub fn build(self) -> Result<Supervisor> {
        let template = self
            .responder
            .ok_or_else(|| Error::invalid_input("supervisor needs a responder builder"))?;
        let probe = template.clone().build()?;
        Ok(Supervisor {
            scope: probe.ledger_scope().to_owned(),
            ports: probe.ports.clone(),
            settings: Mutex::new(Settings {
                policy: Arc::new(probe.policy.clone()),
                template,
            }),
            clock: probe.clock.clone(),
            on_settled: self.on_settled,
            on_pass: self.on_pass,
            wake: self.wake.unwrap_or_default(),
            reload: self.reload.unwrap_or_default(),
            grace: self.grace.unwrap_or(Duration::from_secs(3)),
            cooled: Mutex::new(None),
        })
    }
}

/// Runs the runbook for as long as it is asked to. See the [module docs](self).
pub struct Supervisor {
    /// The ledger scope of its incidents ([`Responder::ledger_scope`]).
    scope: String,
    /// The ledger and the TaskDB the supervisor reads itself (a reload keeps them).
    ports: Ports,
    settings: Mutex<Settings>,
    clock: Clock,
    on_settled: Option<OnSettled>,
    on_pass: Option<OnPass>,
    wake: Wake,
    reload: Reload,
    grace: Duration,
    /// An escalated incident whose alert this process saw clear, when recording that in the
    /// ledger failed.
    cooled: Mutex<Option<String>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("policy", &self.policy())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// What the supervisor is doing between passes.
enum Watch {
    /// No incident: one count read per poll.
    Idle,
    /// An incident, with its own responder.
    Incident(Box<Responder>),
    /// An incident was escalated (its key, when known): wait for the alert to clear before
    /// opening another.
    Cooling(Option<String>),
}

impl Supervisor {
    /// A builder.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::default()
    }

    /// The handle that wakes this supervisor at once (an alert webhook holds a clone).
    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    /// Watches until `shutdown` is cancelled; returns `Ok` then. Errors of single passes are
    /// logged and retried at the next poll, never returned.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let mut watch = super::contain(self.resume()).await.unwrap_or(Watch::Idle);
        while !shutdown.is_cancelled() {
            if let Some(next) = self.reload.take() {
                watch = self.take_settings(next, watch);
            }
            let started = tokio::time::Instant::now();
            // A panic in a step (a callback, a read the adapters did not expect) ends that step,
            // never the supervisor: it starts again idle, and finds an open incident in the
            // ledger at its next pass.
            let sleep = match watch {
                Watch::Incident(responder) => {
                    let step = super::contain(self.incident_pass(*responder, &shutdown)).await;
                    let (next, sleep) = step.unwrap_or_else(|what| {
                        tracing::error!(panic = %what, "incident pass panicked (contained): looking again next poll");
                        (Watch::Idle, self.poll())
                    });
                    watch = next;
                    sleep
                }
                Watch::Idle | Watch::Cooling(_) => {
                    watch = super::contain(self.idle_pass(watch))
                        .await
                        .unwrap_or_else(|what| {
                            tracing::error!(panic = %what, "idle pass panicked (contained): looking again next poll");
                            Watch::Idle
                        });
                    if matches!(watch, Watch::Incident(_)) {
                        continue; // the alert fired: the first incident pass runs now
                    }
                    self.poll()
                }
            };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {
                    // Passes stay at least a second apart, however many alerts arrive.
                    let gap = MIN_WOKEN_GAP.saturating_sub(started.elapsed());
                    tracing::info!(after_ms = gap.as_millis() as u64, "woken by an alert: looking now");
                    tokio::select! {
                        () = tokio::time::sleep(gap) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        tracing::info!("flowfail supervisor stopped");
        Ok(())
    }

    /// The policy in force.
    fn policy(&self) -> Arc<Policy> {
        Arc::clone(&lock(&self.settings).policy)
    }

    /// New settings, checked as at start: the passes after run with them, an incident in
    /// progress with a responder built from them (as after a restart). Settings that do not
    /// build, or that would move the supervisor to another ledger scope, are refused (logged)
    /// and the running ones stay.
    fn take_settings(&self, next: ResponderBuilder, watch: Watch) -> Watch {
        let probe = match next.clone().build() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "new settings refused: they do not build a responder; the running ones stay");
                return watch;
            }
        };
        if probe.ledger_scope() != self.scope {
            tracing::error!(
                scope = %probe.ledger_scope(),
                running = %self.scope,
                "new settings refused: another ledger scope needs a restart; the running ones stay"
            );
            return watch;
        }
        *lock(&self.settings) = Settings {
            policy: Arc::new(probe.policy.clone()),
            template: next,
        };
        tracing::info!("new settings in force from this pass");
        match watch {
            Watch::Incident(_) => self.responder(None).map_or(Watch::Idle, Watch::Incident),
            other => other,
        }
    }

    /// At start: an incident left open in the ledger (by a previous process) is continued.
    async fn resume(&self) -> Watch {
        match self
            .ledger(
                Op::IncidentFindOpen,
                self.ports.incidents.find_open(&self.scope),
            )
            .await
        {
            Ok(Some(rec)) => {
                tracing::info!(incident = %rec.key, "continuing the open incident");
                self.responder(None).map_or(Watch::Idle, Watch::Incident)
            }
            Ok(None) => match self.cooling_in_ledger().await {
                Ok(Some(key)) => {
                    tracing::info!(incident = %key, "the last incident escalated and its alert has not cleared: cooling down");
                    Watch::Cooling(Some(key))
                }
                Ok(None) => Watch::Idle,
                Err(e) => {
                    tracing::warn!(error = %e, "incident ledger unreadable at start");
                    Watch::Idle
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "incident ledger unreadable at start");
                Watch::Idle
            }
        }
    }

    /// A ledger call of the supervisor, with the step deadline (a ledger that never answers
    /// must not hold the supervisor, as it must not hold a pass).
    async fn ledger<T>(
        &self,
        op: Op,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        super::guard::bounded(op, Duration::from_secs(self.policy().step_timeout_s), fut).await
    }

    /// The escalated incident whose cool-down the ledger says is still on: the incident of the
    /// scope closed last escalated, and nobody has seen its alert clear since. `None` while an
    /// incident is open (it is joined, not cooled on).
    async fn cooling_in_ledger(&self) -> Result<Option<String>> {
        let scope = &self.scope;
        let open = self.ports.incidents.find_open(scope);
        if self.ledger(Op::IncidentFindOpen, open).await?.is_some() {
            return Ok(None);
        }
        let closed = self.ports.incidents.latest_closed(scope);
        let Some(last) = self.ledger(Op::IncidentLatestClosed, closed).await? else {
            return Ok(None);
        };
        let set = |field: &str| last.state.get(field).is_some_and(|v| !v.is_null());
        let escalated = set("escalated_at") && !set("resolved_at");
        let over = last.effects.iter().any(|e| e == COOLDOWN_OVER);
        Ok((escalated && !over).then_some(last.key))
    }

    /// Records in the ledger that the alert of the escalated incident `key` has cleared: its
    /// cool-down is over for every replica.
    async fn end_cooldown(&self, key: &str) {
        let ended = async {
            let rec = self.ports.incidents.get(key);
            let epoch = self.ledger(Op::IncidentGet, rec).await?.epoch;
            let reserve = self
                .ports
                .incidents
                .reserve_effect(key, epoch, COOLDOWN_OVER);
            self.ledger(Op::IncidentReserveEffect, reserve).await
        };
        match ended.await {
            Ok(_) => tracing::info!(incident = %key, "alert cleared: cool-down over"),
            Err(e) => {
                tracing::warn!(incident = %key, error = %e, "could not record the end of the cool-down; tried again when the alert fires");
                lock(&self.cooled).replace(key.to_owned());
            }
        }
    }

    fn responder(&self, woken_by: Option<&AlertTrigger>) -> Option<Box<Responder>> {
        let template = lock(&self.settings)
            .template
            .clone()
            .woken_by(woken_by.map(AlertTrigger::describe));
        match template.build() {
            Ok(r) => Some(Box::new(r)),
            Err(e) => {
                tracing::error!(error = %e, "could not build a responder");
                None
            }
        }
    }

    fn poll(&self) -> Duration {
        Duration::from_secs(self.policy().poll_interval_s.max(1))
    }

    /// One count read: does the alert fire (or, cooling, has it cleared)? A firing alert reads
    /// the ledger before an incident opens: still cooling after an escalation, or an incident
    /// another replica opened meanwhile.
    async fn idle_pass(&self, watch: Watch) -> Watch {
        let cooling = matches!(watch, Watch::Cooling(_));
        let now = self.clock.now();
        let started = tokio::time::Instant::now();
        let trigger = self.wake.take();
        let policy = self.policy();
        let (since, until) = policy.alert_window_at(now);
        let deadline = Duration::from_secs(policy.step_timeout_s);
        let read =
            tokio::time::timeout(deadline, self.ports.tasks.window_counts(since, until)).await;
        let counts = match read {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "TaskDB counts unreadable");
                None
            }
            Err(_) => {
                tracing::warn!("TaskDB counts: no answer within the step deadline");
                None
            }
        };
        let alert = counts
            .as_ref()
            .map(|c| crate::decide::alert(c, cooling, &policy));
        if let Some(f) = &self.on_pass {
            let mut stats = PassStats::idle(now, started.elapsed(), alert.map(|a| a.failure_rate));
            stats.unknown_status_tasks = counts.as_ref().map(|c| c.unknown_status);
            f(&stats);
        }
        let Some(alert) = alert else {
            return watch;
        };
        if let Some(t) = &trigger
            && !alert.firing
        {
            tracing::info!(
                alert = %t.describe(),
                failure_rate = alert.failure_rate,
                window_tasks = alert.window_tasks,
                "woken by an alert, but the failure rate does not fire here: not acting"
            );
        }
        tracing::debug!(
            firing = alert.firing,
            failure_rate = alert.failure_rate,
            window_tasks = alert.window_tasks,
            cooling,
            "idle pass"
        );
        match (alert.firing, watch) {
            (true, Watch::Cooling(key)) => {
                // Another replica may have seen the alert clear and opened a new incident.
                match self
                    .ledger(
                        Op::IncidentFindOpen,
                        self.ports.incidents.find_open(&self.scope),
                    )
                    .await
                {
                    Ok(Some(_)) => self
                        .responder(trigger.as_ref())
                        .map_or(Watch::Cooling(key), Watch::Incident),
                    _ => Watch::Cooling(key),
                }
            }
            (true, _) => {
                let cooled_here = lock(&self.cooled).clone();
                match self.cooling_in_ledger().await {
                    Ok(Some(key)) if cooled_here.as_deref() == Some(key.as_str()) => {
                        // This process saw its alert clear but could not record it: again.
                        self.end_cooldown(&key).await;
                        self.incident(alert.failure_rate, trigger.as_ref())
                    }
                    Ok(Some(key)) => {
                        tracing::info!(incident = %key, failure_rate = alert.failure_rate, "alert firing, but the last incident escalated and its alert has not cleared since: cooling down, no new incident");
                        Watch::Cooling(Some(key))
                    }
                    Ok(None) => self.incident(alert.failure_rate, trigger.as_ref()),
                    Err(e) => {
                        tracing::warn!(error = %e, "alert firing, incident ledger unreadable: trying again next poll");
                        Watch::Idle
                    }
                }
            }
            (false, Watch::Cooling(key)) => {
                let key = match key {
                    Some(k) => Some(k),
                    None => self.cooling_in_ledger().await.ok().flatten(),
                };
                if let Some(key) = key {
                    self.end_cooldown(&key).await;
                }
                Watch::Idle
            }
            (false, _) => Watch::Idle,
        }
    }

    fn incident(&self, failure_rate: f64, trigger: Option<&AlertTrigger>) -> Watch {
        tracing::info!(failure_rate, woken_by = ?trigger.map(AlertTrigger::describe), "alert firing: incident");
        self.responder(trigger).map_or(Watch::Idle, Watch::Incident)
    }

    /// One pass of the incident's responder, with a grace period on shutdown.
    async fn incident_pass(
        &self,
        responder: Responder,
        shutdown: &CancellationToken,
    ) -> (Watch, Duration) {
        let mark = responder.mark();
        let started = tokio::time::Instant::now();
        let at = self.clock.now();
        if let Some(t) = self.wake.take() {
            tracing::info!(alert = %t.describe(), "alert received during the incident: passing now");
        }
        let out = {
            let pass = responder.pass();
            tokio::pin!(pass);
            tokio::select! {
                out = &mut pass => Some(out),
                () = shutdown.cancelled() => tokio::time::timeout(self.grace, &mut pass).await.ok(),
            }
        };
        let Some(out) = out else {
            tracing::warn!("shutdown: the pass in progress was abandoned");
            return (Watch::Idle, Duration::ZERO);
        };
        let now = self.clock.now();
        if let Some(f) = &self.on_pass {
            f(&responder.stats_since(mark, out.as_ref().ok(), at, started.elapsed()));
        }
        match out {
            Ok(out) => {
                tracing::debug!(incident_open = out.incident_open, settled = ?out.settled, "incident pass");
                if let Some(settle) = out.settled {
                    let report = responder.report();
                    tracing::info!(status = %report.post_incident.status, incident = ?report.post_incident.incident_key, "incident settled");
                    if let Some(f) = &self.on_settled {
                        f(&report);
                    }
                    let next = if settle == Settle::Escalated {
                        Watch::Cooling(report.post_incident.incident_key.clone())
                    } else {
                        Watch::Idle
                    };
                    return (next, self.poll());
                }
                if !out.incident_open {
                    return (Watch::Idle, self.poll());
                }
                let sleep = responder.sleep_before_next_pass(now, out.wake_at, None);
                (Watch::Incident(Box::new(responder)), sleep)
            }
            Err(e) => {
                tracing::warn!(error = %e, "incident pass failed; trying again next poll");
                (Watch::Incident(Box::new(responder)), self.poll())
            }
        }
    }
}
