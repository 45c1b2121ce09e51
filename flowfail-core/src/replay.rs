//! Scenario replay: an incident from a JSON file, replayed on the in-memory backends in
//! virtual time.
//!
//! The format is `testdata/scenarios/FORMAT.md` in the repository: the world at the start
//! (Deployment, tasks, background volume, logs, bundle sizes, quota, vendor status) and changes
//! over virtual time (`events`). [`replay_blocking`] seeds a [`World`], runs the [`Responder`]
//! on a paused tokio clock until the incident settles or `max_virtual_s` passes, and returns
//! the report. Hours of incident replay in milliseconds.
//!
//! ```
//! use flowfail_core::replay::{Scenario, replay_blocking, ReplayOptions};
//! let json = r#"{"name": "quiet", "now": "2025-11-13T10:00:00Z",
//!   "deployment": {"revision": 3, "deployed_at": "2025-11-10T00:00:00Z"},
//!   "volume": {"succeeded": 500}}"#;
//! let scenario = Scenario::from_json(json).unwrap();
//! let (report, _world) = replay_blocking(&scenario, &ReplayOptions::default()).unwrap();
//! assert!(!report.alert.firing);
//! assert!(report.actions.is_empty());
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::memory::World;
use crate::memory::{MemoryDeployment, synthesize_bundle};
use crate::model::{
    FlowType, LogEvent, Quota, QuotaUsage, RevisionInfo, Task, TaskId, TaskStatus, Timestamp,
    VendorHealth, VendorStatus,
};
use crate::policy::Policy;
use crate::report::Report;
use crate::respond::{KillSwitch, Responder};
use crate::schema::SchemaSet;

/// The largest bundle a scenario may ask the fake store to synthesise.
pub const MAX_SCENARIO_BUNDLE: u64 = 256 * 1024 * 1024;

/// The most a scenario's bundles may add up to (each is synthesised in memory): 512 MiB.
pub const MAX_SCENARIO_BUNDLES_TOTAL: u64 = 512 * 1024 * 1024;

fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn default_max() -> u64 {
    7200
}
fn default_name() -> String {
    "flowengine".into()
}
fn default_vendor() -> String {
    "anthropic".into()
}
fn default_on_retry() -> Vec<RetryOutcomeSpec> {
    vec![RetryOutcomeSpec::Succeeded]
}

/// A scenario (format v1).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Scenario {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Virtual wall-clock time at which the replay starts.
    pub now: Timestamp,
    /// Give up after this much virtual time.
    #[serde(default = "default_max")]
    pub max_virtual_s: u64,
    /// Policy overrides.
    #[serde(default)]
    pub policy: Option<Value>,
    /// The Deployment.
    pub deployment: ScenarioDeployment,
    /// Tasks.
    #[serde(default)]
    pub tasks: Vec<ScenarioTask>,
    /// Unlisted finished tasks in the window.
    #[serde(default)]
    pub volume: Volume,
    /// Error log events.
    #[serde(default)]
    pub logs: Vec<ScenarioLog>,
    /// Bundle sizes by task id.
    #[serde(default)]
    pub bundles: BTreeMap<String, BundleSpec>,
    /// Quota (`null` or absent: unreadable).
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// Vendor statuses.
    #[serde(default)]
    pub vendors: BTreeMap<String, String>,
    /// The primary model's vendor.
    #[serde(default = "default_vendor")]
    pub primary_vendor: String,
    /// TaskObject schemas by version, paths relative to the scenario file.
    #[serde(default)]
    pub schemas: BTreeMap<String, String>,
    /// Changes over virtual time.
    #[serde(default)]
    pub events: Vec<ScenarioEvent>,
}

/// The scenario's Deployment.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ScenarioDeployment {
    /// Name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Current revision.
    pub revision: u64,
    /// When it was deployed.
    #[serde(default)]
    pub deployed_at: Option<Timestamp>,
    /// Env of the main container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Older revisions.
    #[serde(default)]
    pub history: Vec<RevisionInfo>,
}

/// Outcome of a scripted retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryOutcomeSpec {
    /// The retry succeeds.
    Succeeded,
    /// The retry fails.
    Failed,
}

/// A scenario task.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ScenarioTask {
    /// Id.
    pub task_id: TaskId,
    /// Flow.
    pub flow_type: FlowType,
    /// Status: failed, succeeded, running.
    pub status: TaskStatus,
    /// Error.
    #[serde(default)]
    pub error_message: Option<String>,
    /// HTTP status.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Created.
    pub created_at: Timestamp,
    /// Finished (default: none; the alert window counts the task by its creation time then).
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// Retries so far.
    #[serde(default)]
    pub attempts: u32,
    /// Outcomes of successive retries.
    #[serde(default = "default_on_retry")]
    pub on_retry: Vec<RetryOutcomeSpec>,
    /// The TaskObject.
    #[serde(default)]
    pub task_object: Option<Value>,
}

/// Background volume.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[non_exhaustive]
pub struct Volume {
    /// Succeeded.
    #[serde(default)]
    pub succeeded: u64,
    /// Failed (unlisted, no message).
    #[serde(default)]
    pub failed: u64,
}

/// A log event.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ScenarioLog {
    /// When.
    pub timestamp: Timestamp,
    /// Message.
    pub message: String,
}

/// A bundle.
#[derive(Debug, Clone, Copy, Deserialize)]
#[non_exhaustive]
pub struct BundleSpec {
    /// Size.
    pub size_bytes: u64,
}

/// Quota.
#[derive(Debug, Clone, Copy, Deserialize)]
#[non_exhaustive]
pub struct QuotaSpec {
    /// Used ratio.
    pub used_ratio: f64,
}

/// A change of the world at `after_s`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ScenarioEvent {
    /// Seconds after the start.
    pub after_s: u64,
    /// New quota (`null`: unreadable).
    #[serde(default, deserialize_with = "double")]
    pub quota: Option<Option<QuotaSpec>>,
    /// New vendor statuses.
    #[serde(default)]
    pub vendors: Option<BTreeMap<String, String>>,
    /// New background totals.
    #[serde(default)]
    pub volume: Option<Volume>,
    /// Partial Deployment change: `revision`, `deployed_at`, `env`, `paused`.
    #[serde(default)]
    pub deployment: Option<Value>,
}

/// The longest a scenario may span in virtual time: ten years.
pub const MAX_SCENARIO_SPAN_S: u64 = 10 * 365 * 24 * 3600;

impl Scenario {
    /// Parses a scenario.
    pub fn from_json(s: &str) -> Result<Self> {
        let sc: Scenario = serde_json::from_str(s)
            .map_err(|e| Error::invalid_input(format!("invalid scenario: {e}")))?;
        let mut total: u64 = 0;
        for (id, b) in &sc.bundles {
            TaskId::parse(id)?;
            if b.size_bytes > MAX_SCENARIO_BUNDLE {
                return Err(Error::invalid_input(format!(
                    "bundle {id}: {} bytes is over the scenario limit of {MAX_SCENARIO_BUNDLE}",
                    b.size_bytes
                )));
            }
            total = total.saturating_add(b.size_bytes);
            if total > MAX_SCENARIO_BUNDLES_TOTAL {
                return Err(Error::invalid_input(format!(
                    "bundles: with bundle {id} they add up to {total} bytes, over the scenario \
                     limit of {MAX_SCENARIO_BUNDLES_TOTAL} for all bundles together"
                )));
            }
        }
        for v in sc.vendors.values() {
            check_status(v)?;
        }
        // Virtual time is bounded: a scenario spans at most ten years, so no time ever added
        // to `now` can overflow.
        if sc.max_virtual_s > MAX_SCENARIO_SPAN_S {
            return Err(Error::invalid_input(format!(
                "max_virtual_s {} is over the limit of {MAX_SCENARIO_SPAN_S} s (ten years)",
                sc.max_virtual_s
            )));
        }
        if let Some(e) = sc.events.iter().find(|e| e.after_s > MAX_SCENARIO_SPAN_S) {
            return Err(Error::invalid_input(format!(
                "an event's after_s {} is over the limit of {MAX_SCENARIO_SPAN_S} s (ten years)",
                e.after_s
            )));
        }
        Ok(sc)
    }

    /// The policy: defaults, the scenario's deployment and primary vendor, then its overrides.
    pub fn policy(&self) -> Result<Policy> {
        let p = Policy {
            deployment: self.deployment.name.clone(),
            primary_vendor: self.primary_vendor.clone(),
            ..Policy::default()
        };
        match &self.policy {
            Some(o) => {
                let (known, _) = self.split_overrides(&p, o)?;
                p.with_overrides(&known)
            }
            None => {
                p.validate()?;
                Ok(p)
            }
        }
    }

    /// Policy override keys in the scenario that the policy does not have. A replay ignores
    /// them (and says so in the report) rather than refusing a backtest over a field name;
    /// values of known fields are still validated.
    pub fn unknown_policy_fields(&self) -> Vec<String> {
        match &self.policy {
            Some(o) => self
                .split_overrides(&Policy::default(), o)
                .map(|(_, u)| u)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn split_overrides(&self, base: &Policy, o: &Value) -> Result<(Value, Vec<String>)> {
        let Some(map) = o.as_object() else {
            return Err(Error::invalid_input(
                "scenario policy must be a JSON object",
            ));
        };
        let fields = serde_json::to_value(base)?;
        let mut known = serde_json::Map::new();
        let mut unknown = Vec::new();
        for (k, v) in map {
            if fields.get(k).is_some() {
                known.insert(k.clone(), v.clone());
            } else {
                unknown.push(k.clone());
            }
        }
        Ok((Value::Object(known), unknown))
    }

    /// Applies to `world` the events of `events` (this scenario's, sorted by `after_s`) from
    /// index `next` on that are due at `now`, each at its own time; returns the index of the
    /// first one not yet due. For tests that drive a responder themselves, as
    /// [`replay`] does.
    pub fn apply_events_due(
        &self,
        world: &World,
        events: &[ScenarioEvent],
        mut next: usize,
        now: Timestamp,
    ) -> usize {
        while let Some(e) = events.get(next) {
            let at = self.now + TimeDelta::seconds(e.after_s as i64);
            if at > now {
                break;
            }
            apply_event(world, self, e, at);
            next += 1;
        }
        next
    }

    /// A world seeded from the scenario. Call inside a tokio runtime.
    pub fn world(&self, policy: &Policy, clock: Clock) -> Result<World> {
        let mut w = World::new(policy, clock.clone());
        let d = &self.deployment;
        w.deployment = MemoryDeployment::new(
            &d.name,
            d.revision,
            d.deployed_at,
            d.env.clone(),
            d.history.clone(),
            clock,
        );
        for t in &self.tasks {
            let mut task = Task::new(t.task_id.clone(), t.flow_type, t.status, t.created_at)
                .with_attempts(t.attempts);
            task.finished_at = t.finished_at;
            if let Some(m) = &t.error_message {
                task = task.with_error(m.clone(), t.http_status);
            } else {
                task.http_status = t.http_status;
            }
            w.tasks.insert(task);
            w.tasks.script_retries(
                &t.task_id,
                t.on_retry.iter().map(|o| match o {
                    RetryOutcomeSpec::Succeeded => TaskStatus::Succeeded,
                    RetryOutcomeSpec::Failed => TaskStatus::Failed,
                }),
            );
            if let Some(o) = &t.task_object {
                w.tasks.set_task_object(&t.task_id, o.clone());
            }
        }
        w.tasks
            .set_background(self.volume.succeeded, self.volume.failed);
        for l in &self.logs {
            w.logs.push(LogEvent::new(l.timestamp, l.message.clone()));
        }
        for (id, b) in &self.bundles {
            let id = TaskId::parse(id)?;
            w.bundles.put(&id, synthesize_bundle(&id, b.size_bytes));
        }
        set_quota(&w, &self.primary_vendor, self.quota.as_ref());
        for (v, s) in &self.vendors {
            w.status.set(v, status(s, self.now));
        }
        Ok(w)
    }

    /// The TaskObject schemas named by the scenario (paths relative to `base`), or the built-in
    /// ones.
    pub fn schema_set(&self, base: Option<&Path>) -> Result<SchemaSet> {
        if self.schemas.is_empty() {
            return Ok(SchemaSet::builtin());
        }
        let mut v = Vec::new();
        for (version, path) in &self.schemas {
            let p: PathBuf = base.map_or_else(|| PathBuf::from(path), |b| b.join(path));
            let text = std::fs::read_to_string(&p)
                .map_err(|e| Error::invalid_input(format!("schema v{version} ({path}): {e}")))?;
            let json: Value = serde_json::from_str(&text)
                .map_err(|e| Error::invalid_input(format!("schema v{version} ({path}): {e}")))?;
            v.push((version.clone(), json));
        }
        SchemaSet::new(v)
    }
}

fn check_status(s: &str) -> Result<()> {
    match s {
        "operational"
        | "degraded_performance"
        | "partial_outage"
        | "major_outage"
        | "under_maintenance"
        | "full_outage"
        | "unknown" => Ok(()),
        other => Err(Error::invalid_input(format!(
            "unknown vendor status {}",
            crate::model::describe_untrusted(other)
        ))),
    }
}

fn status(s: &str, since: Timestamp) -> VendorStatus {
    let h = VendorHealth::from_status(s);
    let st = VendorStatus::new(h);
    if h.is_degraded() { st.since(since) } else { st }
}

fn set_quota(w: &World, vendor: &str, q: Option<&QuotaSpec>) {
    w.quota.set(
        vendor,
        match q {
            Some(q) => Quota::Known(QuotaUsage::from_ratio(q.used_ratio)),
            None => Quota::Unknown {
                reason: "quota API unreadable".into(),
            },
        },
    );
}

fn apply_event(w: &World, sc: &Scenario, e: &ScenarioEvent, at: Timestamp) {
    if let Some(q) = &e.quota {
        set_quota(w, &sc.primary_vendor, q.as_ref());
    }
    if let Some(vs) = &e.vendors {
        for (v, s) in vs {
            w.status.set(v, status(s, at));
        }
    }
    if let Some(v) = &e.volume {
        w.tasks.set_background(v.succeeded, v.failed);
    }
    if let Some(d) = &e.deployment {
        if let Some(env) = d.get("env").and_then(Value::as_object) {
            for (k, v) in env {
                if let Some(v) = v.as_str() {
                    w.deployment.human_set_env(k, v);
                }
            }
        }
        if let Some(p) = d.get("paused").and_then(Value::as_bool) {
            w.deployment.set_paused(p);
        }
        if let Some(r) = d.get("revision").and_then(Value::as_u64) {
            let at = d
                .get("deployed_at")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok())
                .unwrap_or(at);
            w.deployment.deploy(r, at);
        }
    }
}

/// Options of a replay.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Decide and report, mutate nothing.
    pub dry_run: bool,
    /// Directory the scenario's relative paths are resolved against.
    pub base_dir: Option<PathBuf>,
    /// The classification rules (default: the built-in ones).
    pub rules: Option<Arc<crate::RuleSet>>,
}

impl ReplayOptions {
    /// Sets dry run.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
    /// Sets the directory relative paths resolve against.
    pub fn base_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.base_dir = dir;
        self
    }
    /// Classifies with these rules instead of the built-in ones.
    pub fn rules(mut self, rules: Arc<crate::RuleSet>) -> Self {
        self.rules = Some(rules);
        self
    }
}

/// Replays a scenario. Must run on a tokio runtime with paused time (see [`replay_blocking`]).
pub async fn replay(sc: &Scenario, opts: &ReplayOptions) -> Result<(Report, World)> {
    let policy = sc.policy()?;
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone())?;
    let schemas = Arc::new(sc.schema_set(opts.base_dir.as_deref())?);
    let mut b = Responder::builder()
        .ports(world.ports())
        .policy(policy)
        .clock(clock)
        .schemas(schemas)
        .dry_run(opts.dry_run)
        .kill_switch(KillSwitch::new());
    if let Some(r) = &opts.rules {
        b = b.rules(r.clone());
    }
    if !sc.name.is_empty() {
        b = b.name(sc.name.clone());
    }
    let responder = b.build()?;
    for f in sc.unknown_policy_fields() {
        responder.note_gap(format!(
            "scenario policy field {} is not a policy setting and was ignored",
            crate::model::describe_untrusted(&f)
        ));
    }
    let mut events: Vec<&ScenarioEvent> = sc.events.iter().collect();
    events.sort_by_key(|e| e.after_s);
    let mut next = 0usize;
    let start = sc.now;
    let report = responder
        .run_with(Duration::from_secs(sc.max_virtual_s), |now| {
            while let Some(e) = events.get(next) {
                let at = start + TimeDelta::seconds(e.after_s as i64);
                if at > now {
                    return Some(at);
                }
                apply_event(&world, sc, e, at);
                next += 1;
            }
            None
        })
        .await?;
    Ok((report, world))
}

/// Replays a scenario on a fresh single-threaded runtime with paused (virtual) time.
pub fn replay_blocking(sc: &Scenario, opts: &ReplayOptions) -> Result<(Report, World)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| {
            Error::new(crate::ErrorKind::Unexpected, "could not start a runtime").with_source(e)
        })?;
    rt.block_on(replay(sc, opts))
}
