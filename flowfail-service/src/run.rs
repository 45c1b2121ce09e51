//! The service itself: the supervisor, and the listener when `[server]` is set, until a
//! shutdown signal. What `flowfail run` runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flowfail_core::respond::{Reload, Wake};
use flowfail_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::mode::Mode;
use crate::reload::Reloader;
use crate::serve::{self, Control, Health};
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

/// Runs the service until `shutdown` resolves: the supervisor in the config's mode (shadow when
/// `force_shadow`), with its metrics, and the listener of `[server]` if the config has one.
///
/// `live` must be [prepared](Live::prepare). A supervisor that cannot be built (a policy the
/// builder refuses) is an [`ErrorKind::InvalidInput`] error; a listen address that cannot be
/// bound is an [`ErrorKind::Unavailable`] error naming the address. Errors of the supervisor
/// after it started are logged, not returned: the service stops as asked.
pub async fn run(live: Live, force_shadow: bool, shutdown: impl Future<Output = ()>) -> Result<()> {
    let shadow = force_shadow || live.config.mode == Mode::Shadow;
    let metrics = Arc::new(Metrics::new(if shadow { Mode::Shadow } else { Mode::Act }));
    let wake = Wake::new();
    let health = Health::new(health_tolerance(&live.config.policy));
    let (on_pass, passed) = (Arc::clone(&metrics), health.clone());
    let reload = Reload::new();
    let supervisor = live
        .supervisor_builder(force_shadow)
        .wake(wake.clone())
        .reload(reload.clone())
        .on_pass(move |s| {
            on_pass.observe_pass(s);
            if s.completed {
                passed.pass_done();
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
    if let Some(f) = live.kill.file() {
        tracing::info!(file = %f.display(), on = live.kill.is_on(), "kill switch: watching its file (create it to stop every mutation)");
    }
    if live.kill.is_on() {
        tracing::warn!("kill switch is on: nothing will be changed");
    }
    tracing::info!(
        mode = if shadow { "shadow" } else { "act" },
        deployment = %live.config.kubernetes.deployment,
        "flowfail running"
    );
    let stop = CancellationToken::new();
    // With a config file, SIGHUP and POST /reload read it again; the listener's control calls
    // then see the config in force.
    let (control, hangup): (Arc<dyn Control>, _) = match &live.source {
        Some(path) => {
            let r = Arc::new(Reloader::new(
                live.clone(),
                path.clone(),
                force_shadow,
                reload,
                Arc::clone(&metrics),
            ));
            (r.clone() as Arc<dyn Control>, on_hangup(r, &stop))
        }
        None => (Arc::new(live.clone()) as Arc<dyn Control>, None),
    };
    let listener = match &live.config.server {
        Some(server) => Some(listen(server, control, wake, &metrics, health, &stop).await?),
        None => None,
    };
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { supervisor.run(stop).await }
    });
    let tracker = match &live.config.tracker {
        Some(t) => {
            let every = Duration::from_secs(live.config.policy.poll_interval_s.max(1));
            tracing::info!(file_when = ?t.file_when, "tracker: filing an issue per incident");
            Some(tokio::spawn(crate::tracker_sync::keep_in_step(
                t.build()?,
                live.controls(),
                t.file_when,
                every,
                Arc::clone(&metrics),
                stop.clone(),
            )))
        }
        None => None,
    };
    shutdown.await;
    tracing::info!("shutdown requested");
    stop.cancel();
    match tokio::time::timeout(SUPERVISOR_GRACE, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "supervisor ended with an error"),
        Ok(Err(e)) => tracing::error!(error = %e, "supervisor task failed"),
        Err(_) => tracing::warn!("supervisor did not stop in time; exiting"),
    }
    for t in [listener, tracker, hangup].into_iter().flatten() {
        let _ = tokio::time::timeout(LISTENER_GRACE, t).await;
    }
    Ok(())
}

/// Reads the config file again on every `SIGHUP`, until `stop` (`None`: no signals here).
fn on_hangup(r: Arc<Reloader>, stop: &CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
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
    wake: Wake,
    metrics: &Arc<Metrics>,
    health: Health,
    stop: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
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
