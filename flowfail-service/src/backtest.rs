//! `flowfail backtest`: what flowfail would have done over a period of real history, read from
//! this config's TaskDB (one streaming read), bundle store, log group and Deployment — every
//! read read-only — and replayed in virtual time (see [`flowfail_core::backtest`]).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::TimeDelta;
use flowfail_core::backtest::{
    Assumptions, BacktestIncident, BacktestReport, DeploymentAt, History, IncidentSpan, MAX_REPLAY,
    Scan,
};
use flowfail_core::model::{DeploymentState, FailureKind, Timestamp};
use flowfail_core::ports::LogQuery;
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail_core::{Error, ErrorKind, Result};

use crate::wire::Live;

/// The longest period one backtest reads.
pub const MAX_PERIOD: TimeDelta = TimeDelta::days(400);
/// Bundle sizes read per incident (the timeouts' bundles, newest first).
const MAX_BUNDLE_HEADS: usize = 200;
/// The largest bundle a replay synthesises, and their total: a bigger one is replayed at this
/// size (still oversized: the decision is the same), and the report says so.
const MAX_REPLAY_BUNDLE: u64 = 16 << 20;
const MAX_REPLAY_BUNDLES: u64 = 128 << 20;
/// Log events read per incident.
const MAX_LOG_EVENTS: usize = 1000;

/// What a backtest reads and how.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BacktestOptions {
    /// The period's start.
    pub from: Option<Timestamp>,
    /// The period's end.
    pub to: Option<Timestamp>,
    /// What stands in for quota and status pages (history keeps neither).
    pub assume: Assumptions,
    /// Where each incident is written as a scenario file.
    pub export: Option<PathBuf>,
    /// Told how far the read is, 0–1, every 50 000 tasks.
    pub progress: Option<Arc<dyn Fn(f64) + Send + Sync>>,
}

impl std::fmt::Debug for BacktestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BacktestOptions")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("assume", &self.assume)
            .field("export", &self.export)
            .finish_non_exhaustive()
    }
}

impl BacktestOptions {
    /// The period `[from, to)`.
    pub fn period(from: Timestamp, to: Timestamp) -> Self {
        BacktestOptions {
            from: Some(from),
            to: Some(to),
            ..BacktestOptions::default()
        }
    }
}

impl Live {
    /// Backtests this Deployment over the period of `o`: nothing is written anywhere but the
    /// export directory. A period that is empty, reversed or longer than [`MAX_PERIOD`] is
    /// [`flowfail_core::ErrorKind::InvalidInput`]; a TaskDB that cannot be read fails the
    /// backtest; every other read that fails is a gap in the incident it concerns.
    pub async fn backtest(&self, o: &BacktestOptions) -> Result<BacktestReport> {
        let (from, to) = match (o.from, o.to) {
            (Some(f), Some(t)) if f < t && t - f <= MAX_PERIOD => (f, t),
            _ => {
                return Err(Error::invalid_input(
                    "a backtest needs a period: from before to, at most 400 days",
                ));
            }
        };
        let policy = &self.config.policy;
        let mut scan = Scan::new(policy, from, to);
        let mut every = 0u64;
        let read = self
            .tasks
            .outcomes(scan.history_from(), to, |at, failed| {
                scan.record(at, failed);
                every += 1;
                if every.is_multiple_of(50_000)
                    && let Some(p) = &o.progress
                {
                    p(scan.progress(from));
                }
            })
            .await?;
        let skipped = scan.out_of_order();
        let spans = scan.finish();
        if let Some(p) = &o.progress {
            p(1.0);
        }
        let state = self
            .ports
            .deployment
            .state(&self.config.kubernetes.deployment)
            .await;
        let mut incidents: Vec<BacktestIncident> = Vec::with_capacity(spans.len());
        for span in &spans {
            let mut i = self.replay_span(span, &state, o).await?;
            if span.opened_at <= from {
                i.gaps.push("the alert was already firing when the period starts: live, this may have been an incident already in progress".into());
            }
            if span.closed_at.is_none() {
                i.gaps.push("still firing at the period's end".into());
            }
            if span
                .closed_at
                .is_some_and(|c| c - span.opened_at > MAX_REPLAY)
            {
                i.gaps.push(format!(
                    "replayed over its first {} hours only",
                    MAX_REPLAY.num_hours()
                ));
            }
            // Live, the supervisor opens nothing while an incident is open: an alert that fires
            // again before the last one settled is that incident's.
            match incidents.last_mut() {
                Some(last) if last.open_at(span.opened_at) => last.absorb(&i),
                _ => incidents.push(i),
            }
        }
        let mut gaps = vec![
            "task rows hold their state now: a task that failed then and was retried since counts as its retry ended".to_owned(),
        ];
        if o.assume.quota.is_none() {
            gaps.push(
                "quota at the time is not kept: unreadable in every replay (--assume quota=R)"
                    .into(),
            );
        }
        if o.assume.vendors.is_empty() {
            gaps.push("vendors' status pages at the time are not kept: unknown in every replay (--assume status.VENDOR=STATUS)".into());
        }
        if skipped > 0 {
            gaps.push(format!(
                "{skipped} outcomes came out of time order and were left out"
            ));
        }
        if let Err(e) = &state {
            gaps.push(format!("the Deployment could not be read: {e}"));
        }
        let mut assumptions = o.assume.describe();
        assumptions.push("a retried task succeeds (the replay's default)".into());
        assumptions.push(
            "the Deployment's environment then was today's (only the variables the runbook reads)"
                .into(),
        );
        if !self.config.rules.is_empty() {
            assumptions.push("classified with the config's rule files: an exported scenario replays the same with `flowfail respond --rules FILE`".into());
        }
        Ok(BacktestReport::new(
            &self.config.kubernetes.scope(),
            (from, to),
            read,
            incidents,
            gaps,
            assumptions,
        ))
    }

    /// One incident: its history read, written as a scenario (exported when asked), replayed.
    async fn replay_span(
        &self,
        span: &IncidentSpan,
        state: &Result<DeploymentState>,
        o: &BacktestOptions,
    ) -> Result<BacktestIncident> {
        let policy = &self.config.policy;
        let history = self.history_at(span, state).await?;
        let name = format!(
            "{}-backtest-{}",
            self.config.kubernetes.scope(),
            span.opened_at.format("%Y%m%dT%H%M%SZ")
        );
        let json = history.scenario(&name, span, policy, &o.assume);
        if let Some(dir) = &o.export {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::invalid_input(format!("--export-scenario {}: {e}", dir.display()))
            })?;
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| Error::invalid_input(format!("scenario {name}: {e}")))?;
            std::fs::write(dir.join(format!("{name}.json")), text + "\n").map_err(|e| {
                Error::invalid_input(format!("--export-scenario {}: {e}", dir.display()))
            })?;
        }
        let replayed = match Scenario::from_json(&json.to_string()) {
            Ok(scenario) => {
                let opts = ReplayOptions::default().rules(self.rules.clone());
                tokio::task::spawn_blocking(move || replay_blocking(&scenario, &opts))
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Unexpected, format!("replay of {name}: {e}"))
                    })?
            }
            Err(e) => Err(e),
        };
        Ok(match replayed {
            Ok((report, _)) => BacktestIncident::from_replay(&name, span, &report, &history.gaps),
            // One incident that cannot be replayed is a gap in the report, not the end of it.
            Err(e) => BacktestIncident::unreplayed(&name, span, &e.to_string(), &history.gaps),
        })
    }

    /// What history holds of the world when `span` opened: the window's failed tasks (as triage
    /// reads them), their timeouts' bundle sizes, the window's error log events, the
    /// Deployment's revision then.
    async fn history_at(
        &self,
        span: &IncidentSpan,
        state: &Result<DeploymentState>,
    ) -> Result<History> {
        let policy = &self.config.policy;
        let open = span.opened_at;
        let window = TimeDelta::seconds(i64::try_from(policy.alert_window_s).unwrap_or(3600));
        let mut h = History::default();
        // The live window: `[poll - window, poll + 1 ms)`.
        let (tasks, unreadable) = self
            .tasks
            .failed_between(
                open - window,
                open + TimeDelta::milliseconds(1),
                policy.triage_limit,
            )
            .await?;
        if unreadable > 0 {
            h.gaps.push(format!(
                "{unreadable} failed tasks of the window flowfail cannot read"
            ));
        }
        let timeouts: Vec<_> = tasks
            .iter()
            .filter(|t| {
                self.rules
                    .classify(t.error_message.as_deref().unwrap_or(""), t.http_status)
                    .kind
                    == FailureKind::Timeout
            })
            .map(|t| t.task_id.clone())
            .collect();
        if timeouts.len() > MAX_BUNDLE_HEADS {
            h.gaps.push(format!(
                "bundle sizes read for the newest {MAX_BUNDLE_HEADS} of {} timeouts",
                timeouts.len()
            ));
        }
        let (mut missing, mut unreadable_bundles, mut clamped, mut total) = (0, 0, 0, 0u64);
        for id in timeouts.iter().take(MAX_BUNDLE_HEADS) {
            match self.ports.bundles.head(id).await {
                Ok(meta) => {
                    let size = meta.size.min(MAX_REPLAY_BUNDLE);
                    if size < meta.size || total + size > MAX_REPLAY_BUNDLES {
                        clamped += 1;
                    }
                    if total + size <= MAX_REPLAY_BUNDLES {
                        total += size;
                        h.bundles.insert(id.clone(), size);
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => missing += 1,
                Err(_) => unreadable_bundles += 1,
            }
        }
        if missing + unreadable_bundles > 0 {
            h.gaps.push(format!(
                "bundles of {missing} timeouts no longer exist, {unreadable_bundles} could not be read: their sizes are unknown"
            ));
        }
        if clamped > 0 {
            h.gaps.push(format!(
                "{clamped} bundles replayed smaller than they are, or left out: a replay synthesises at most {} MiB each, {} MiB in all",
                MAX_REPLAY_BUNDLE >> 20,
                MAX_REPLAY_BUNDLES >> 20
            ));
        }
        h.tasks = tasks;
        let q = LogQuery::errors(open - window, open + TimeDelta::milliseconds(1))
            .max_events(MAX_LOG_EVENTS);
        match self.ports.logs.errors(&q).await {
            Ok(batch) => {
                if batch.truncated {
                    h.gaps.push(format!(
                        "log events: the first {MAX_LOG_EVENTS} of the window read"
                    ));
                }
                h.logs = batch.events;
            }
            Err(e) => h.gaps.push(format!("log events could not be read: {e}")),
        }
        match state {
            Ok(s) => {
                h.deployment = DeploymentAt::at(s, open);
                if h.deployment.is_none() {
                    h.gaps.push(format!(
                        "the cluster keeps no revision deployed by {}: rollback not considered",
                        open.format("%Y-%m-%d %H:%M")
                    ));
                }
            }
            Err(_) => h
                .gaps
                .push("the Deployment could not be read: rollback not considered".into()),
        }
        h.vendors = self.config.vendors.vendors.keys().cloned().collect();
        Ok(h)
    }
}
