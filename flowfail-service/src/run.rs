//! The service itself: the supervisor, and the listener when `[server]` is set, until a
//! shutdown signal. What `flowfail run` runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flowfail_core::respond::{Reload, Supervisor, Wake};
use flowfail_core::{Error, ErrorKind, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ServerConfig;
use crate::fleet::Fleet;
use crate::metrics::{DeploymentMetrics, Metrics};
use crate::mode::Mode;
use crate::reload::Reloader;
use crate::serve::{self, Control, Health, Wakes};
use crate::wire::Live;

/// How long a pass in progress gets after the shutdown signal (the supervisor itself gives it
/// 3 s), and how long the listener gets after that.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(4);
const LISTENER_GRACE: Duration = Duration::from_secs(1);

/// How long `/healthz` tolerates no completed pass: four poll intervals, plus two step
/// deadlines for a slow incident pass.
fn health_tolerance(policy: &flowfail_core::Policy) -> Duration {
    let s = policy
        .poll_interval_s
        .max(1)
        .saturating_mul(4)
        .saturating_add(policy.step_timeout_s.saturating_mul(2));
    Duration::from_secs(s)
}

/// Runs the service until `shutdown` resolves: a supervisor per Deployment of `fleet` (a
/// [`Live`] is a fleet of one) in the config's mode (shadow when `force_shadow`), with their
/// metrics, the tracker loop when `[tracker]` is set, and the listener of `[server]` if the
/// config has one.
///
/// The fleet must be [prepared](Fleet::prepare). A supervisor that cannot be built (a policy
/// the builder refuses) is an [`ErrorKind::InvalidInput`] error; a listen address that cannot
/// be bound is an [`ErrorKind::Unavailable`] error naming the address. Errors of a supervisor
/// after it started are logged, not returned: the service stops as asked.
pub async fn run(
    fleet: impl Into<Fleet>,
    force_shadow: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let fleet: Fleet = fleet.into();
    let Some(first) = fleet.members.first() else {
        return Err(Error::invalid_input("no Deployment to watch"));
    };
    let config = first.config.clone();
    let shadow = force_shadow || config.mode == Mode::Shadow;
    let metrics = Arc::new(Metrics::new(if shadow { Mode::Shadow } else { Mode::Act }));
    let health = Health::new(health_tolerance(&config.policy));
    let mut started = Vec::with_capacity(fleet.members.len());
    for (i, live) in fleet.members.iter().enumerate() {
        let passed = if i == 0 {
            health.clone()
        } else {
            health.another()
        };
        started.push(Started::build(live, force_shadow, &metrics, passed)?);
    }
    if let Some(f) = first.kill.file() {
        tracing::info!(file = %f.display(), on = first.kill.is_on(), "kill switch: watching its file (create it to stop every mutation)");
    }
    if first.kill.is_on() {
        tracing::warn!("kill switch is on: nothing will be changed");
    }
    tracing::info!(
        mode = if shadow { "shadow" } else { "act" },
        deployments = %fleet.scopes().join(", "),
        "flowfail running"
    );
    let stop = CancellationToken::new();
    // With a config file, SIGHUP and POST /reload read it again; the listener's control calls
    // then see the config in force.
    let reloads = started.iter().map(|s| s.reload.clone()).collect();
    let (control, hangup): (Arc<dyn Control>, _) = match &fleet.source {
        Some(path) => {
            let r = Arc::new(Reloader::new(
                fleet.clone(),
                path.clone(),
                force_shadow,
                reloads,
                Arc::clone(&metrics),
            ));
            (r.clone() as Arc<dyn Control>, on_hangup(r, &stop))
        }
        None => (Arc::new(fleet.clone()) as Arc<dyn Control>, None),
    };
    let wakes = Wakes::named(
        started
            .iter()
            .zip(&fleet.members)
            .map(|(s, m)| {
                let k = &m.config.kubernetes;
                (k.namespace.clone(), k.deployment.clone(), s.wake.clone())
            })
            .collect(),
    );
    let trackers = track(&fleet, &started, &stop)?;
    let listener = match &config.server {
        Some(server) => match listen(server, control, wakes, &metrics, health, &stop).await {
            Ok(l) => Some(l),
            Err(e) => {
                stop.cancel();
                return Err(e);
            }
        },
        None => None,
    };
    let supervisors: Vec<_> = started.into_iter().map(|s| s.spawn(&stop)).collect();
    shutdown.await;
    tracing::info!("shutdown requested");
    stop.cancel();
    let deadline = tokio::time::Instant::now() + SUPERVISOR_GRACE;
    for (scope, task) in supervisors {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(deployment = %scope, error = %e, "supervisor ended with an error")
            }
            Ok(Err(e)) => {
                tracing::error!(deployment = %scope, error = %e, "supervisor task failed")
            }
            Err(_) => {
                tracing::warn!(deployment = %scope, "supervisor did not stop in time; exiting")
            }
        }
    }
    for t in trackers.into_iter().chain(listener).chain(hangup) {
        let _ = tokio::time::timeout(LISTENER_GRACE, t).await;
    }
    Ok(())
}

/// One Deployment's supervisor, built, with the handles the listener and reloads reach it by.
struct Started {
    scope: String,
    supervisor: Supervisor,
    wake: Wake,
    reload: Reload,
    metrics: DeploymentMetrics,
}

impl Started {
    fn build(
        live: &Live,
        force_shadow: bool,
        metrics: &Arc<Metrics>,
        health: Health,
    ) -> Result<Started> {
        let scope = live.config.kubernetes.scope();
        let (wake, reload) = (Wake::new(), Reload::new());
        let dm = metrics.deployment(&scope);
        let on_pass = dm.clone();
        let supervisor = live
            .supervisor_builder(force_shadow)
            .wake(wake.clone())
            .reload(reload.clone())
            .on_pass(move |s| {
                on_pass.observe_pass(s);
                if s.completed {
                    health.pass_done();
                }
            })
            .on_settled(|r| {
                tracing::info!(
                    incident = r.post_incident.incident_key.as_deref().unwrap_or(""),
                    status = %r.post_incident.status,
                    mttr_seconds = r.post_incident.mttr_seconds,
                    actions = r.actions.len(),
                    "incident settled"
                );
            })
            .build()?;
        Ok(Started {
            scope,
            supervisor,
            wake,
            reload,
            metrics: dm,
        })
    }

    /// Runs the supervisor until `stop`, its log lines in a span naming its Deployment.
    fn spawn(self, stop: &CancellationToken) -> (String, JoinHandle<Result<()>>) {
        let stop = stop.clone();
        let span = tracing::info_span!("deployment", scope = %self.scope);
        let supervisor = self.supervisor;
        let task = tokio::spawn(async move { supervisor.run(stop).await }.instrument(span));
        (self.scope, task)
    }
}

/// The tracker loops of `[tracker]`: one per Deployment, sharing the tracker.
fn track(
    fleet: &Fleet,
    started: &[Started],
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let Some(first) = fleet.members.first() else {
        return Ok(Vec::new());
    };
    let Some(t) = &first.config.tracker else {
        return Ok(Vec::new());
    };
    let tracker = t.build()?;
    let every = Duration::from_secs(first.config.policy.poll_interval_s.max(1));
    tracing::info!(file_when = ?t.file_when, "tracker: filing an issue per incident");
    Ok(fleet
        .members
        .iter()
        .zip(started)
        .map(|(live, s)| {
            let span = tracing::info_span!("deployment", scope = %s.scope);
            tokio::spawn(
                crate::tracker_sync::keep_in_step(
                    Arc::clone(&tracker),
                    live.controls(),
                    t.file_when,
                    every,
                    s.metrics.clone(),
                    stop.clone(),
                )
                .instrument(span),
            )
        })
        .collect())
}

/// Reads the config file again on every `SIGHUP`, until `stop` (`None`: no signals here).
fn on_hangup(r: Arc<Reloader>, stop: &CancellationToken) -> Option<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be watched: reload with POST /reload");
                return None;
            }
        };
        let stop = stop.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        let _ = r.reload("SIGHUP").await;
                    }
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = (r, stop);
        None
    }
}

/// Binds the listener of `[server]` and serves it until `stop`.
async fn listen(
    server: &ServerConfig,
    control: Arc<dyn Control>,
    wake: Wakes,
    metrics: &Arc<Metrics>,
    health: Health,
    stop: &CancellationToken,
) -> Result<JoinHandle<()>> {
    let options = server.options()?;
    let tls = server.tls()?;
    let tcp = tokio::net::TcpListener::bind(&server.listen)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("listening on {}", server.listen),
            )
            .with_source(e)
        })?;
    let addr = tcp
        .local_addr()
        .map_or_else(|_| server.listen.clone(), |a| a.to_string());
    tracing::info!(listen = %addr, "listening: /hooks/grafana, /hooks/alertmanager, /metrics, /healthz, /readyz, /pause, /resume, /approve, /deny, /reload, the console at /");
    let router = serve::router(options, wake, Arc::clone(metrics), control, health);
    let (stop, metrics) = (stop.clone(), Arc::clone(metrics));
    Ok(tokio::spawn(async move {
        if let Err(e) = serve::serve(tcp, router, stop.cancelled_owned(), tls, metrics).await {
            tracing::error!(error = %e, "listener stopped");
        }
    }))
}
