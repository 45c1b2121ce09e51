//! Reload without a restart: `SIGHUP` or `POST /reload` reads the config file again, checks it
//! as at start, and hands the supervisor its new policy, rules, vendors, pager, notifier and
//! schemas for its next pass. What needs new connections stays as it runs and is named.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use flowfail_core::Result;
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::operator::Pause;
use flowfail_core::ports::Ports;
use flowfail_core::respond::Reload;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::serve::Control;
use crate::wire::Live;

/// The sections a reload cannot change in a running process (they hold connections, the
/// listener, the Deployment and ledger scope, or what the process was started as), each with
/// the `Debug` of its value in `c`.
fn cold(c: &Config) -> [(&'static str, String); 7] {
    [
        ("postgres", format!("{:?}", c.postgres)),
        ("aws", format!("{:?}", c.aws)),
        ("kubernetes", format!("{:?}", c.kubernetes)),
        ("server", format!("{:?}", c.server)),
        ("mode", format!("{:?}", c.mode)),
        ("kill_switch_file", format!("{:?}", c.kill_switch_file)),
        ("tracker", format!("{:?}", c.tracker)),
    ]
}

impl Live {
    /// Where [`crate::run`] reads the config again on `SIGHUP` and `POST /reload`.
    pub fn reload_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(path.into());
        self
    }

    /// This process with `new`'s hot settings (policy, rules, vendors, pager, notifier,
    /// schemas) over the same connections, and the sections of `new` that differ but need a
    /// restart (they keep their running values).
    pub fn reloaded(&self, new: Config) -> Result<(Live, Vec<&'static str>)> {
        let old = &self.config;
        let mut cfg = new;
        let needs_restart: Vec<&'static str> = cold(old)
            .into_iter()
            .zip(cold(&cfg))
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect();
        cfg.postgres = old.postgres.clone();
        cfg.aws = old.aws.clone();
        cfg.kubernetes = old.kubernetes.clone();
        cfg.server = old.server.clone();
        cfg.mode = old.mode;
        cfg.kill_switch_file = old.kill_switch_file.clone();
        cfg.tracker = old.tracker.clone();
        cfg.policy.deployment = old.policy.deployment.clone();
        cfg.name_shared = old.name_shared;
        cfg.policy.validate()?;
        let http = cfg.http_ports()?;
        let (schema_set, schema_sources) = cfg.schemas.load()?;
        let p = &self.ports;
        let ports = Ports::builder()
            .logs(p.logs.clone())
            .tasks(p.tasks.clone())
            .bundles(p.bundles.clone())
            .deployment(p.deployment.clone())
            .incidents(p.incidents.clone())
            .quota(http.quota)
            .status(http.status.clone())
            .pager(http.pager)
            .notifier(http.notifier)
            .build()?;
        let mut next = self.clone();
        next.rules = cfg.rules_in_force()?;
        next.ports = ports;
        next.status = http.status;
        next.schemas = (Arc::new(schema_set), schema_sources);
        next.config = cfg;
        Ok((next, needs_restart))
    }
}

/// The running config and the way to a new one: reloads are taken one at a time; the
/// listener's control calls read the config in force.
pub(crate) struct Reloader {
    path: PathBuf,
    shadow: bool,
    current: Mutex<Fleet>,
    /// Each Deployment's supervisor, in the fleet's order.
    handles: Vec<Reload>,
    metrics: Arc<Metrics>,
    one: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        fleet: Fleet,
        path: PathBuf,
        shadow: bool,
        handles: Vec<Reload>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            path,
            shadow,
            current: Mutex::new(fleet),
            handles,
            metrics,
            one: tokio::sync::Mutex::new(()),
        }
    }

    /// The config in force.
    pub(crate) fn fleet(&self) -> Fleet {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again; on success each supervisor runs its next pass with it. A config
    /// that does not load or check is refused with its error (logged, counted), and the running
    /// one stays.
    pub(crate) async fn reload(&self, by: &str) -> Result<String> {
        let _one = self.one.lock().await;
        let outcome = self.try_reload();
        match &outcome {
            Ok(said) => {
                self.metrics.reloaded(true);
                tracing::info!(by, path = %self.path.display(), "config reloaded: {said}");
            }
            Err(e) => {
                self.metrics.reloaded(false);
                tracing::error!(by, path = %self.path.display(), error = %e, "config reload refused: the running config stays");
            }
        }
        outcome
    }

    /// Every Deployment's new settings are built and checked before any supervisor is offered
    /// one: a file that one Deployment refuses changes none.
    fn try_reload(&self) -> Result<String> {
        let new = Config::load(&self.path)?;
        let fleet = self.fleet();
        let wanted = new.members();
        let mut needs_restart: BTreeSet<&'static str> = BTreeSet::new();
        let mut scopes: Vec<String> = wanted.iter().map(|c| c.kubernetes.scope()).collect();
        let mut running = fleet.scopes();
        scopes.sort();
        running.sort();
        if scopes != running {
            // Supervisors are started with the process: one added, removed or renamed needs a
            // restart; every running one takes the new shared settings.
            needs_restart.insert("deployment");
        }
        let mut next = fleet.clone();
        let mut offers = Vec::new();
        for (i, live) in fleet.members.iter().enumerate() {
            let scope = live.config.kubernetes.scope();
            // A Deployment no longer in the file (by its scope) keeps its own sections and
            // takes the shared ones, as after any change that needs a restart.
            let Some(cfg) = wanted
                .iter()
                .find(|c| c.kubernetes.scope() == scope)
                .or(wanted.first())
            else {
                continue;
            };
            let (reloaded, cold) = live.reloaded(cfg.clone())?;
            needs_restart.extend(cold);
            let settings = reloaded.responder(self.shadow);
            settings.clone().build()?;
            offers.push((i, settings));
            next.members[i] = reloaded;
        }
        for (i, settings) in offers {
            if let Some(h) = self.handles.get(i) {
                h.offer(settings);
            }
        }
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(if needs_restart.is_empty() {
            "in force from the next pass".to_owned()
        } else {
            format!(
                "in force from the next pass; changed but kept until a restart (new connections): {}",
                needs_restart.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

#[async_trait::async_trait]
impl Control for Reloader {
    async fn ready(&self) -> Result<()> {
        self.fleet().ready().await
    }
    fn deployments(&self) -> Vec<String> {
        self.fleet().scopes()
    }
    async fn pause(&self, deployment: Option<&str>, reason: &str, by: &str) -> Result<String> {
        self.fleet().pause(deployment, reason, by).await
    }
    async fn resume(&self, deployment: Option<&str>, by: &str) -> Result<String> {
        self.fleet().resume(deployment, by).await
    }
    async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<String> {
        self.fleet().approve(incident, action, by).await
    }
    async fn deny(&self, incident: &str, action: &str, reason: &str, by: &str) -> Result<String> {
        self.fleet().deny(incident, action, reason, by).await
    }
    async fn incidents(&self, open_only: bool, limit: usize) -> Result<Vec<IncidentLine>> {
        self.fleet().incidents(open_only, limit).await
    }
    async fn incident(&self, key: &str) -> Result<IncidentView> {
        self.fleet().incident(key).await
    }
    async fn pauses(&self) -> Result<Vec<(String, Option<Pause>)>> {
        self.fleet().pauses().await
    }
    async fn reload(&self, by: &str) -> Result<String> {
        Reloader::reload(self, by).await
    }
}
