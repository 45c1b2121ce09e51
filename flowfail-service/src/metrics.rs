//! The metrics `flowfail run` serves on `GET /metrics` (Prometheus / OpenMetrics text).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `flowfail_passes_total` | counter | `kind` (idle, incident) |
//! | `flowfail_pass_duration_seconds` | histogram | `kind` |
//! | `flowfail_actions_total` | counter | `kind` (retry_task, set_env, …), `outcome` |
//! | `flowfail_data_gaps_total` | counter | `port` (tasks, logs, deployment, bundles, quota, status, ledger, tracker) |
//! | `flowfail_last_successful_read_timestamp_seconds` | gauge | `port` |
//! | `flowfail_incidents_open` | gauge | |
//! | `flowfail_breaker_open` | gauge | |
//! | `flowfail_failure_rate` | gauge | (the last observed, 0–1) |
//! | `flowfail_tasks_unreadable` | gauge | (failed task rows the last triage read left out) |
//! | `flowfail_tasks_unknown_status` | gauge | (tasks of the alert window with a status flowfail does not read: in no count) |
//! | `flowfail_mode` | gauge | `mode` (shadow, act): 1 for the running mode |
//! | `flowfail_paused` | gauge | (1 while automation is paused) |
//! | `flowfail_alerts_received_total` | counter | `source` (grafana, alertmanager), `status` |
//! | `flowfail_requests_refused_total` | counter | `path`, `reason` |
//! | `flowfail_tracker_issues_total` | counter | `what` (filed, settled): incident tracker writes |
//! | `flowfail_config_reloads_total` | counter | `result` (applied, refused): `SIGHUP` / `POST /reload` |
//! | `flowfail_config_last_reload_successful` | gauge | (1 when the last reload, or the start, took the file; 0 when it was refused and an older config runs) |

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
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabel {
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

/// A gauge registered under `name`.
fn gauge<G>(registry: &mut Registry, name: &str, help: &str) -> G
where
    G: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let g = G::default();
    registry.register(name, help, g.clone());
    g
}

/// The registry and every metric. See the [module docs](self). Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    passes: Family<KindLabel, Counter>,
    pass_duration: DurationFamily,
    actions: Family<ActionLabels, Counter>,
    gaps: Family<PortLabel, Counter>,
    last_read: Family<PortLabel, Gauge<f64, AtomicU64>>,
    incidents_open: Gauge,
    breaker_open: Gauge,
    failure_rate: Gauge<f64, AtomicU64>,
    unreadable: Gauge,
    unknown_status: Gauge,
    paused: Gauge,
    alerts: Family<AlertLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    tracker: Family<WhatLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    reload_ok: Gauge,
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
        let mode_family: Family<ModeLabel, Gauge> = registered(
            &mut registry,
            "flowfail_mode",
            "The running mode: 1 for the mode in use",
        );
        for (m, name) in [(Mode::Shadow, "shadow"), (Mode::Act, "act")] {
            mode_family
                .get_or_create(&ModeLabel { mode: name })
                .set(i64::from(m == mode));
        }
        let reload_ok = Gauge::default();
        reload_ok.set(1);
        registry.register(
            "flowfail_config_last_reload_successful",
            "1 when the last config reload (or the start) took the file, 0 when it was refused",
            reload_ok.clone(),
        );
        Metrics {
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
            unknown_status: gauge(
                &mut registry,
                "flowfail_tasks_unknown_status",
                "Tasks of the alert window whose status flowfail does not read (map them under [postgres.statuses]): in no count, nor in the failure rate",
            ),
            incidents_open: gauge(
                &mut registry,
                "flowfail_incidents_open",
                "Incidents open (0 or 1 per Deployment)",
            ),
            breaker_open: gauge(
                &mut registry,
                "flowfail_breaker_open",
                "Whether flowfail's breaker for rate-limited retries is open or half-open",
            ),
            failure_rate: gauge(
                &mut registry,
                "flowfail_failure_rate",
                "The failure rate last observed in the alert window (0-1)",
            ),
            unreadable: gauge(
                &mut registry,
                "flowfail_tasks_unreadable",
                "Failed task rows the last triage read left out: a flow type neither known nor mapped, an id that is not a task id (they count in the failure rate)",
            ),
            paused: gauge(
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

    /// Counts one pass (the supervisor's `on_pass`).
    pub fn observe_pass(&self, s: &PassStats) {
        let kind = KindLabel {
            kind: s.kind.as_str(),
        };
        self.passes.get_or_create(&kind).inc();
        self.pass_duration
            .get_or_create(&kind)
            .observe(s.duration.as_secs_f64());
        for a in &s.actions {
            self.actions
                .get_or_create(&ActionLabels {
                    kind: a.kind,
                    outcome: a.outcome,
                })
                .inc();
        }
        let at = s.at.timestamp_millis() as f64 / 1000.0;
        for r in &s.reads {
            let port = PortLabel { port: r.port };
            if r.ok {
                self.last_read.get_or_create(&port).set(at);
            } else {
                self.gaps.get_or_create(&port).inc();
            }
        }
        if let Some(rate) = s.failure_rate {
            self.failure_rate.set(rate);
        }
        if let Some(n) = s.unreadable_tasks {
            self.unreadable.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(n) = s.unknown_status_tasks {
            self.unknown_status
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.incidents_open.set(i64::from(s.incident.is_some()));
        self.breaker_open
            .set(i64::from(s.breaker_open.unwrap_or(false)));
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

    /// Counts a tracker write (`filed`, `settled`).
    pub(crate) fn tracker_wrote(&self, what: &'static str) {
        self.tracker.get_or_create(&WhatLabel { what }).inc();
    }

    /// Counts a tracker call that failed (`flowfail_data_gaps{port="tracker"}`).
    pub(crate) fn tracker_failed(&self) {
        self.gaps
            .get_or_create(&PortLabel { port: "tracker" })
            .inc();
    }

    /// Counts a config reload, applied or refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        let result = if ok { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        self.reload_ok.set(i64::from(ok));
    }

    /// Sets the paused gauge.
    pub fn set_paused(&self, paused: bool) {
        self.paused.set(i64::from(paused));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
