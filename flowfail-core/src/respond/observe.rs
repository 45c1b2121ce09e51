//! Observe: one read of everything the runbook looks at. A read that fails after the retry
//! loop becomes a *gap*, never a default that looks healthy.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;

use super::guard::timeout_error;
use super::stats::PassLog;
use super::{Responder, lock};
use crate::classify::Classification;
use crate::decide::{BundleObs, IncidentState, Observation, ObservedTask, SchemaObs};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{FailureKind, Quota, Task, TaskId, Timestamp};
use crate::ports::Op;

/// At most this many retried tasks are read back in one call.
const RETRIED_READ_CHUNK: usize = 1000;
/// Bundle sizes one pass reads at once.
const BUNDLE_READS_AT_ONCE: usize = 16;

impl Responder {
    /// A read with the step deadline; transient errors are retried twice with jittered
    /// backoff, waiting at least what the backend asked for (`Retry-After`, capped at the
    /// deadline). This is flowfail's only retry loop: adapters make one attempt per call.
    pub(super) async fn read<T, F, Fut>(&self, op: Op, f: F) -> Result<T>
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
                    .unwrap_or_else(|_| Err(timeout_error(op, deadline)))
            }
        };
        call.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_times(2)
                .with_jitter(),
        )
        .when(|e: &Error| e.is_transient())
        .adjust(move |e: &Error, delay| {
            delay.map(|d| e.retry_after().map_or(d, |ra| d.max(ra.min(deadline))))
        })
        .await
    }

    /// A [`read`](Self::read) noted in the pass's log with whether the port answered (even
    /// when with "no such thing").
    pub(super) async fn read_noted<T, F, Fut>(&self, log: &PassLog, op: Op, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let out = self.read(op, f).await;
        let answered = out
            .as_ref()
            .map_or_else(|e| e.kind() == crate::ErrorKind::NotFound, |_| true);
        log.note_read(op, answered);
        out
    }

    pub(super) async fn observe(&self, now: Timestamp, log: &PassLog) -> Observation {
        let p = &self.policy;
        let mut obs = Observation::new(now);
        let (since, until) = p.alert_window_at(now);
        match self
            // The alert window, as the supervisor's idle pass reads it: a store that tallies
            // it reads only what changed.
            .read_noted(log, Op::TaskCounts, || {
                self.ports.tasks.window_counts(since, until)
            })
            .await
        {
            Ok(c) => {
                log.note_unknown_status(c.unknown_status);
                if c.unknown_status > 0 {
                    obs.gaps.push(format!(
                        "TaskDB counts: {} tasks of the alert window have a status flowfail does not read; they are in no count and not in the failure rate",
                        c.unknown_status
                    ));
                }
                obs.counts = Some(c);
            }
            Err(e) => obs.gaps.push(format!("TaskDB counts: {e}")),
        }
        // Failures count from the alert window before detection: a long incident keeps its
        // early failures; a task that failed long before is not this incident's.
        let detected = lock(&self.inner).incident.as_ref().map(|s| s.detected_at);
        let failed_since = detected
            .and_then(|d| d.checked_sub_signed(p.alert_window()))
            .map_or(since, |d| d.min(since));
        self.observe_failed(&mut obs, failed_since, log).await;
        self.observe_logs(&mut obs, since, until, log).await;
        self.observe_vendors(&mut obs, log).await;
        match self
            .read_noted(log, Op::DeploymentState, || {
                self.ports.deployment.state(&p.deployment)
            })
            .await
        {
            Ok(d) => obs.deployment = Some(d),
            Err(e) => obs.gaps.push(format!("deployment: {e}")),
        }
        // The failure mix before a deploy inside the window: a rollback weighs validation
        // failures only when they began with the deploy.
        if let Some(at) = obs.deployment.as_ref().and_then(|d| d.deployed_at)
            && at > since
            && at < until
        {
            match self
                .read_noted(log, Op::TaskCounts, || self.ports.tasks.counts(since, at))
                .await
            {
                Ok(c) => obs.before_deploy = Some(c),
                Err(e) => obs
                    .gaps
                    .push(format!("TaskDB counts before the deploy: {e}")),
            }
        }
        let probe = lock(&self.inner)
            .incident
            .as_ref()
            .and_then(|s| s.breaker.probe().cloned());
        if let Some(id) = probe
            && let Ok(t) = self
                .read_noted(log, Op::TaskGet, || self.ports.tasks.get(&id))
                .await
        {
            obs.watched.insert(id, t);
        }
        obs
    }

    /// The tasks `state`'s incident retried and has not yet seen finish, read back by id into
    /// `obs.retried` (the incident does not resolve before they finish). Called once the
    /// incident's state is read from the ledger, so a restarted responder reads them too.
    /// Bounded: those ids only, in chunks of [`RETRIED_READ_CHUNK`], each with the step
    /// deadline; a read that fails (or panics) is a gap, and its tasks count as unfinished.
    pub(super) async fn observe_retried(
        &self,
        obs: &mut Observation,
        state: &IncidentState,
        log: &PassLog,
    ) {
        let ids: Vec<TaskId> = state
            .retries
            .iter()
            .filter(|(_, r)| r.finished.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for chunk in ids.chunks(RETRIED_READ_CHUNK) {
            let read = super::contain(
                self.read_noted(log, Op::TaskGetMany, || self.ports.tasks.get_many(chunk)),
            )
            .await
            .unwrap_or_else(|what| {
                Err(Error::new(
                    ErrorKind::Unexpected,
                    format!("panicked (contained): {what}"),
                ))
            });
            match read {
                Ok(tasks) => {
                    // Only the ids asked for are taken (a store's extra row is ignored).
                    let mut found: BTreeMap<TaskId, Task> =
                        tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect();
                    for id in chunk {
                        obs.retried.insert(id.clone(), found.remove(id));
                    }
                }
                Err(e) => {
                    let gap = format!("TaskDB retried tasks ({} of them): {e}", chunk.len());
                    self.note_gap(gap.clone());
                    obs.gaps.push(gap);
                }
            }
        }
    }

    /// The failures of an incident this process met only after it observed (a restarted
    /// process, a replica joining): the observation read the alert window alone, and the
    /// incident covers the window before its detection too. Read again from there, so a
    /// failure of the incident's early minutes is handled or named, never missed because the
    /// window moved on while no process ran.
    pub(super) async fn observe_incident_failures(
        &self,
        obs: &mut Observation,
        state: &IncidentState,
        log: &PassLog,
    ) {
        let (since, _) = self.policy.alert_window_at(obs.now);
        let from = state
            .detected_at
            .checked_sub_signed(self.policy.alert_window());
        if let Some(from) = from.filter(|f| *f < since)
            && obs.failed.is_some()
        {
            // Read again whole, or not at all: a list of the alert window alone must not be
            // decided on (the incident would resolve without its early failures).
            obs.failed = None;
            self.observe_failed(obs, from, log).await;
        }
    }

    /// The runbook's failed-task query, classified, with evidence per task: bundle sizes for
    /// timeouts, TaskObjects for validation failures. Only failures inside the alert window
    /// count: a task that failed long ago is not this incident's to retry.
    async fn observe_failed(&self, obs: &mut Observation, since: Timestamp, log: &PassLog) {
        let limit = self.policy.triage_limit;
        let read = match self
            .read_noted(log, Op::TaskRecentFailed, || {
                self.ports.tasks.recent_failed_read(limit)
            })
            .await
        {
            Ok(read) => read,
            Err(e) => {
                obs.gaps.push(format!("TaskDB failed tasks: {e}"));
                return;
            }
        };
        // Rows the store could not read count in the alert but cannot be triaged: a gap.
        log.note_unreadable(read.unreadable_total());
        for (why, n) in &read.unreadable {
            obs.gaps.push(format!(
                "TaskDB failed tasks: {n} left out of triage ({why}); they count in the failure rate"
            ));
        }
        let unreadable = usize::try_from(read.unreadable_total()).unwrap_or(usize::MAX);
        let tasks = read.tasks;
        obs.failed_truncated = tasks.len().saturating_add(unreadable) >= limit;
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks
            .into_iter()
            .filter(|t| t.finished_or_created() >= since)
        {
            let class =
                self.classify_cached(t.error_message.as_deref().unwrap_or(""), t.http_status);
            out.push(ObservedTask::from_parts(t, class));
        }
        // Bundle sizes a few at a time (500 timeouts are 500 round trips to the bundle
        // store); TaskObjects one at a time, so that a pass never holds more than one of the
        // TaskDB pool's connections for them.
        let mut bundles = Vec::new();
        let mut objects = Vec::new();
        for (i, t) in out.iter_mut().enumerate() {
            match t.class.kind {
                FailureKind::Timeout => {
                    // A bundle already measured for this attempt is not read again.
                    let attempts = t.task.attempts;
                    let known = lock(&self.inner)
                        .bundle_sizes
                        .get(&t.task.task_id)
                        .filter(|(a, _)| *a == attempts)
                        .map(|(_, n)| *n);
                    match known {
                        Some(bytes) => t.bundle = BundleObs::Size { bytes },
                        None => bundles.push((i, t.task.task_id.clone(), attempts)),
                    }
                }
                FailureKind::Validation => objects.push((i, t.task.task_id.clone())),
                _ => {}
            }
        }
        let sized: Vec<(usize, BundleObs)> = futures_util::stream::iter(bundles)
            .map(|(i, id, attempts)| async move { (i, self.bundle_size(&id, attempts, log).await) })
            .buffered(BUNDLE_READS_AT_ONCE)
            .collect()
            .await;
        for (i, b) in sized {
            out[i].bundle = b;
        }
        for (i, id) in objects {
            out[i].schema = Some(self.task_schema(&id, log).await);
        }
        obs.failed = Some(out);
    }

    /// A timeout's bundle size (remembered for this attempt of its task), as observed.
    async fn bundle_size(&self, id: &TaskId, attempts: u32, log: &PassLog) -> BundleObs {
        match self
            .read_noted(log, Op::BundleHead, || self.ports.bundles.head(id))
            .await
        {
            Ok(m) => {
                let mut inner = lock(&self.inner);
                if inner.bundle_sizes.len() >= 100_000 {
                    inner.bundle_sizes.clear();
                }
                inner.bundle_sizes.insert(id.clone(), (attempts, m.size));
                BundleObs::Size { bytes: m.size }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => BundleObs::Missing,
            Err(e) => BundleObs::Unreadable {
                reason: e.to_string(),
            },
        }
    }

    /// A validation failure's TaskObject checked against the schemas, as observed.
    async fn task_schema(&self, id: &TaskId, log: &PassLog) -> SchemaObs {
        let read = self
            .read_noted(log, Op::TaskObject, || self.ports.tasks.task_object(id))
            .await;
        match read {
            Ok(Some(v)) => SchemaObs::Checked(self.schemas.validate(&v)),
            Ok(None) => SchemaObs::Missing,
            Err(e) => SchemaObs::Unreadable {
                reason: e.to_string(),
            },
        }
    }

    /// The primary vendor's quota; the status page of every vendor the policy names (the
    /// primary and its fallback first; a vendor the status port does not know is left out).
    async fn observe_vendors(&self, obs: &mut Observation, log: &PassLog) {
        let p = &self.policy;
        obs.quota = match self
            .read_noted(log, Op::Quota, || self.ports.quota.quota(&p.primary_vendor))
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
        for (from, f) in &p.fallbacks {
            for v in [from, &f.vendor] {
                if !vendors.contains(v) {
                    vendors.push(v.clone());
                }
            }
        }
        for v in vendors {
            match self
                .read_noted(log, Op::StatusHealth, || self.ports.status.health(&v))
                .await
            {
                Ok(s) => {
                    obs.vendors.insert(v, s);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => obs.gaps.push(format!("status page {v}: {e}")),
            }
        }
    }

    fn classify_cached(&self, message: &str, status: Option<u16>) -> Classification {
        let mut inner = lock(&self.inner);
        let key = (message.to_owned(), status);
        if let Some(c) = inner.class_cache.get(&key) {
            return *c;
        }
        let c = self.rules.classify(message, status);
        if inner.class_cache.len() < 100_000 {
            inner.class_cache.insert(key, c);
        }
        c
    }
}
