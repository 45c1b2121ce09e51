//! The metrics `flowfail run` serves on `GET /metrics` (Prometheus / OpenMetrics text).
//!
//! Every metric of one watched Deployment carries its `deployment` label: its ledger scope,
//! `[CLUSTER.]NAMESPACE.DEPLOYMENT` (one process may watch several, `[[deployment]]`). The
//! listener's and the config's metrics are the process's own.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `flowfail_passes_total` | counter | `deployment`, `kind` (idle, incident) |
//! | `flowfail_pass_duration_seconds` | histogram | `deployment`, `kind` |
//! | `flowfail_actions_total` | counter | `deployment`, `kind` (retry_task, set_env, …), `outcome` |
//! | `flowfail_data_gaps_total` | counter | `deployment`, `port` (tasks, logs, deployment, bundles, quota, status, ledger, tracker) |
//! | `flowfail_port_reads_total` | counter | `deployment`, `kind` (idle, incident), `port`: reads a pass made of a port (a read an adapter answers from its cache counts) |
//! | `flowfail_last_successful_read_timestamp_seconds` | gauge | `deployment`, `port` |
//! | `flowfail_incidents_open` | gauge | `deployment` |
//! | `flowfail_breaker_open` | gauge | `deployment` |
//! | `flowfail_failure_rate` | gauge | `deployment` (the last observed, 0–1) |
//! | `flowfail_tasks_unreadable` | gauge | `deployment` (failed task rows the last triage read left out) |
//! | `flowfail_tasks_unknown_status` | gauge | `deployment` (tasks of the alert window with a status flowfail does not read: in no count) |
//! | `flowfail_paused` | gauge | `deployment` (1 while its automation is paused) |
//! | `flowfail_tracker_issues_total` | counter | `deployment`, `what` (filed, settled): incident tracker writes |
//! | `flowfail_mode` | gauge | `mode` (shadow, act): 1 for the running mode |
//! | `flowfail_alerts_received_total` | counter | `source` (grafana, alertmanager), `status` |
//! | `flowfail_requests_refused_total` | counter | `path`, `reason` |
//! | `flowfail_config_reloads_total` | counter | `result` (applied, refused): `SIGHUP` / `POST /reload` |
//! | `flowfail_config_last_reload_successful` | gauge | (1 when the last reload, or the start, took the file; 0 when it was refused and an older config runs) |

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use flowfail_core::respond::PassStats;

use crate::mode::Mode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabel {
    deployment: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    deployment: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    deployment: Arc<str>,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    deployment: Arc<str>,
    kind: &'static str,
    port: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabel {
    deployment: Arc<str>,
    port: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    source: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    deployment: Arc<str>,
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    path: &'static str,
    reason: &'static str,
}

type DurationFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// A family registered under `name`.
fn registered<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<L, M>::default();
    registry.register(name, help, f.clone());
    f
}

/// The registry and every metric. See the [module docs](self). Cheap to share (`Arc`); each
/// watched Deployment observes through its [`DeploymentMetrics`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    passes: Family<KindLabel, Counter>,
    pass_duration: DurationFamily,
    actions: Family<ActionLabels, Counter>,
    gaps: Family<PortLabel, Counter>,
    reads: Family<ReadLabels, Counter>,
    last_read: Family<PortLabel, Gauge<f64, AtomicU64>>,
    incidents_open: Family<DeploymentLabel, Gauge>,
    breaker_open: Family<DeploymentLabel, Gauge>,
    failure_rate: Family<DeploymentLabel, Gauge<f64, AtomicU64>>,
    unreadable: Family<DeploymentLabel, Gauge>,
    unknown_status: Family<DeploymentLabel, Gauge>,
    paused: Family<DeploymentLabel, Gauge>,
    alerts: Family<AlertLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    tracker: Family<WhatLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    reload_ok: Gauge,
}

/// `flowfail_mode`: 1 for the running mode.
fn register_mode(registry: &mut Registry, mode: Mode) {
    let family: Family<ModeLabel, Gauge> = registered(
        registry,
        "flowfail_mode",
        "The running mode: 1 for the mode in use",
    );
    for (m, name) in [(Mode::Shadow, "shadow"), (Mode::Act, "act")] {
        family
            .get_or_create(&ModeLabel { mode: name })
            .set(i64::from(m == mode));
    }
}

impl Metrics {
    /// Every metric registered, the mode set.
    pub fn new(mode: Mode) -> Self {
        let mut registry = Registry::default();
        let passes = registered(&mut registry, "flowfail_passes", "Passes run, by kind");
        let pass_duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "flowfail_pass_duration_seconds",
            "How long a pass took",
            pass_duration.clone(),
        );
        let gaps = registered(
            &mut registry,
            "flowfail_data_gaps",
            "Reads that did not answer (after retries), by port; `ledger`: incident ledger calls that failed or did not answer",
        );
        register_mode(&mut registry, mode);
        let reload_ok = Gauge::default();
        reload_ok.set(1);
        registry.register(
            "flowfail_config_last_reload_successful",
            "1 when the last config reload (or the start) took the file, 0 when it was refused",
            reload_ok.clone(),
        );
        Metrics {
            reads: registered(
                &mut registry,
                "flowfail_port_reads",
                "Reads passes made, by pass kind and port",
            ),
            last_read: registered(
                &mut registry,
                "flowfail_last_successful_read_timestamp_seconds",
                "When each port last answered a read (Unix time)",
            ),
            actions: registered(
                &mut registry,
                "flowfail_actions",
                "Actions recorded, by kind and outcome",
            ),
            unknown_status: registered(
                &mut registry,
                "flowfail_tasks_unknown_status",
                "Tasks of the alert window whose status flowfail does not read (map them under [postgres.statuses]): in no count, nor in the failure rate",
            ),
            incidents_open: registered(
                &mut registry,
                "flowfail_incidents_open",
                "Incidents open (0 or 1 per Deployment)",
            ),
            breaker_open: registered(
                &mut registry,
                "flowfail_breaker_open",
                "Whether flowfail's breaker for rate-limited retries is open or half-open",
            ),
            failure_rate: registered(
                &mut registry,
                "flowfail_failure_rate",
                "The failure rate last observed in the alert window (0-1)",
            ),
            unreadable: registered(
                &mut registry,
                "flowfail_tasks_unreadable",
                "Failed task rows the last triage read left out: a flow type neither known nor mapped, an id that is not a task id (they count in the failure rate)",
            ),
            paused: registered(
                &mut registry,
                "flowfail_paused",
                "1 while automation is paused (pause/resume)",
            ),
            alerts: registered(
                &mut registry,
                "flowfail_alerts_received",
                "Alert webhooks accepted, by source and status",
            ),
            refused: registered(
                &mut registry,
                "flowfail_requests_refused",
                "Requests refused by the listener, by path and reason",
            ),
            reload_ok,
            reloads: registered(
                &mut registry,
                "flowfail_config_reloads",
                "Config reloads (SIGHUP, POST /reload), applied or refused",
            ),
            tracker: registered(
                &mut registry,
                "flowfail_tracker_issues",
                "Incident tracker issues filed, and settled with their record",
            ),
            registry,
            passes,
            pass_duration,
            gaps,
        }
    }

    /// The metrics of the Deployment whose ledger scope is `scope`: its gauges show from now
    /// on (at 0 until its first pass says otherwise).
    pub fn deployment(self: &Arc<Self>, scope: &str) -> DeploymentMetrics {
        let name: Arc<str> = Arc::from(scope);
        let label = DeploymentLabel {
            deployment: name.clone(),
        };
        for g in [
            &self.incidents_open,
            &self.breaker_open,
            &self.paused,
            &self.unreadable,
            &self.unknown_status,
        ] {
            let _ = g.get_or_create(&label);
        }
        DeploymentMetrics {
            metrics: Arc::clone(self),
            name,
        }
    }

    /// Counts an accepted alert webhook.
    pub(super) fn alert(&self, source: &'static str, status: &'static str) {
        self.alerts
            .get_or_create(&AlertLabels { source, status })
            .inc();
    }

    /// Counts a refused request.
    pub(super) fn refused(&self, path: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusedLabels { path, reason })
            .inc();
    }

    /// Counts a config reload, applied or refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        let result = if ok { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        self.reload_ok.set(i64::from(ok));
    }

    /// Sets the paused gauge of the Deployment whose scope is `scope`.
    pub fn set_paused(&self, scope: &str, paused: bool) {
        self.paused
            .get_or_create(&DeploymentLabel {
                deployment: Arc::from(scope),
            })
            .set(i64::from(paused));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The metrics of one watched Deployment ([`Metrics::deployment`]): what its supervisor's
/// passes and its tracker loop count. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeploymentMetrics {
    metrics: Arc<Metrics>,
    name: Arc<str>,
}

impl DeploymentMetrics {
    /// The Deployment's ledger scope (its `deployment` label).
    pub fn scope(&self) -> &str {
        &self.name
    }

    fn label(&self) -> DeploymentLabel {
        DeploymentLabel {
            deployment: self.name.clone(),
        }
    }

    /// Counts one pass (the supervisor's `on_pass`).
    pub fn observe_pass(&self, s: &PassStats) {
        let m = &self.metrics;
        let kind = KindLabel {
            deployment: self.name.clone(),
            kind: s.kind.as_str(),
        };
        m.passes.get_or_create(&kind).inc();
        m.pass_duration
            .get_or_create(&kind)
            .observe(s.duration.as_secs_f64());
        for a in &s.actions {
            m.actions
                .get_or_create(&ActionLabels {
                    deployment: self.name.clone(),
                    kind: a.kind,
                    outcome: a.outcome,
                })
                .inc();
        }
        let at = s.at.timestamp_millis() as f64 / 1000.0;
        for r in &s.reads {
            m.reads
                .get_or_create(&ReadLabels {
                    deployment: self.name.clone(),
                    kind: s.kind.as_str(),
                    port: r.port,
                })
                .inc();
            let port = PortLabel {
                deployment: self.name.clone(),
                port: r.port,
            };
            if r.ok {
                m.last_read.get_or_create(&port).set(at);
            } else {
                m.gaps.get_or_create(&port).inc();
            }
        }
        let label = self.label();
        if let Some(rate) = s.failure_rate {
            m.failure_rate.get_or_create(&label).set(rate);
        }
        if let Some(n) = s.unreadable_tasks {
            m.unreadable
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(n) = s.unknown_status_tasks {
            m.unknown_status
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.incidents_open
            .get_or_create(&label)
            .set(i64::from(s.incident.is_some()));
        m.breaker_open
            .get_or_create(&label)
            .set(i64::from(s.breaker_open.unwrap_or(false)));
    }

    /// Sets this Deployment's paused gauge.
    pub fn set_paused(&self, paused: bool) {
        self.metrics.set_paused(&self.name, paused);
    }

    /// Counts a tracker write (`filed`, `settled`).
    pub(crate) fn tracker_wrote(&self, what: &'static str) {
        self.metrics
            .tracker
            .get_or_create(&WhatLabel {
                deployment: self.name.clone(),
                what,
            })
            .inc();
    }

    /// Counts a tracker call that failed (`flowfail_data_gaps{port="tracker"}`).
    pub(crate) fn tracker_failed(&self) {
        self.metrics
            .gaps
            .get_or_create(&PortLabel {
                deployment: self.name.clone(),
                port: "tracker",
            })
            .inc();
    }
}
