//! The runbook's nouns: task ids, tasks, log events, sizes, failure kinds, quota, vendor health
//! and deployment state.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Wall-clock time used throughout flowfail.
pub type Timestamp = DateTime<Utc>;

/// The longest task id accepted.
pub const TASK_ID_MAX_LEN: usize = 64;

/// A FlowEngine task id, validated against `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`.
///
/// This is the only way an id reaches an S3 key, a SQL parameter, a pager payload or a log line:
/// ids read from logs, databases or users are parsed into a `TaskId` first, and anything that does
/// not match is rejected (path separators, `%2F`, quotes, NUL, newlines, ANSI escapes, the empty
/// string, and anything longer than 64 bytes).
///
/// ```
/// use flowfail_core::TaskId;
/// assert!(TaskId::parse("t-00042").is_ok());
/// assert!(TaskId::parse("../etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// Validates `s` as a task id.
    pub fn parse(s: &str) -> Result<Self> {
        if Self::is_valid(s) {
            Ok(TaskId(s.to_owned()))
        } else {
            Err(Error::invalid_input(format!(
                "invalid task id {}: must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$",
                describe_untrusted(s)
            )))
        }
    }

    /// Whether `s` is a valid task id.
    pub fn is_valid(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= TASK_ID_MAX_LEN
            && b[0].is_ascii_alphanumeric()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    }

    /// The id as a string slice (always ASCII, safe for keys, parameters and logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A short, printable description of untrusted text for an error message: at most 32
/// characters, control characters escaped, and the total length. For adapters that must
/// mention an id they could not validate.
pub fn describe_untrusted_pub(s: &str) -> String {
    describe_untrusted(s)
}

pub(crate) fn describe_untrusted(s: &str) -> String {
    let shown: String = s.chars().take(32).flat_map(char::escape_default).collect();
    if s.chars().count() > 32 {
        format!("\"{shown}…\" ({} bytes)", s.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// A connection URL (or libpq `key=value` string) with any password replaced by `***`
/// (`scheme://user:***@host`, `password=***`): safe for errors, logs and `--help`.
///
/// ```
/// use flowfail_core::model::redact_url;
/// assert_eq!(redact_url("postgres://ff:s3cret@db:5432/x"), "postgres://ff:***@db:5432/x");
/// assert_eq!(redact_url("host=db password=s3cret user=x"), "host=db password=*** user=x");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            out = format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
        }
    }
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

/// Outside text made safe to show a human: at most `max` bytes (cut on a character boundary,
/// marked with `…`), control characters (newlines, ANSI escapes, NUL) escaped.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 3);
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskId::parse(s)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The flow a task runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlowType {
    /// Planning.
    Plan,
    /// Implementation.
    Impl,
    /// Review.
    Review,
    /// Documentation.
    Docs,
}

/// A task's status in the TaskDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting to run (including a scheduled retry).
    Pending,
    /// Running now.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error; may be retried.
    Failed,
    /// Failed for good: flowfail (or a human) decided it will not be retried.
    FailedFinal,
}

impl TaskStatus {
    /// Whether the task has finished (counts towards the failure rate).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::FailedFinal
        )
    }

    /// Whether the task finished with a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::FailedFinal)
    }
}

/// A task as the TaskDB reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Task {
    /// The task id.
    pub task_id: TaskId,
    /// The flow it runs through.
    pub flow_type: FlowType,
    /// Its status.
    pub status: TaskStatus,
    /// The error message of its last failure, if any.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The HTTP status of its last failure, when the failure was an HTTP response.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last finished (defaults to `created_at` when the store does not know).
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// How many retries it has had.
    #[serde(default)]
    pub attempts: u32,
}

impl Task {
    /// A task with the given id, flow, status and creation time; no error, no attempts.
    pub fn new(
        task_id: TaskId,
        flow_type: FlowType,
        status: TaskStatus,
        created_at: Timestamp,
    ) -> Self {
        Task {
            task_id,
            flow_type,
            status,
            error_message: None,
            http_status: None,
            created_at,
            finished_at: None,
            attempts: 0,
        }
    }

    /// Sets the failure message and HTTP status.
    pub fn with_error(mut self, message: impl Into<String>, http_status: Option<u16>) -> Self {
        self.error_message = Some(message.into());
        self.http_status = http_status;
        self
    }

    /// Sets the number of retries already made.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// When the task finished, or was created when that is unknown.
    pub fn finished_or_created(&self) -> Timestamp {
        self.finished_at.unwrap_or(self.created_at)
    }
}

/// Counts of finished tasks in a window, as the failure-rate alert sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusCounts {
    /// Tasks that succeeded in the window.
    pub succeeded: u64,
    /// Tasks that failed in the window (retryable or final).
    pub failed: u64,
    /// Tasks running or pending now.
    pub in_flight: u64,
}

impl StatusCounts {
    /// Counts with the given numbers of succeeded and failed tasks.
    pub fn new(succeeded: u64, failed: u64) -> Self {
        StatusCounts {
            succeeded,
            failed,
            in_flight: 0,
        }
    }

    /// Finished tasks: succeeded + failed.
    pub fn finished(&self) -> u64 {
        self.succeeded.saturating_add(self.failed)
    }

    /// Failure rate among finished tasks (0 when none finished).
    pub fn failure_rate(&self) -> f64 {
        let n = self.finished();
        if n == 0 {
            0.0
        } else {
            self.failed as f64 / n as f64
        }
    }
}

/// One error log event (a CloudWatch Logs event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogEvent {
    /// When it was logged.
    pub timestamp: Timestamp,
    /// The raw message (outside data: never used as a key or a target).
    pub message: String,
    /// The task id found in the message, if a valid one was found.
    #[serde(default)]
    pub task_id: Option<TaskId>,
}

impl LogEvent {
    /// An event; the task id is extracted from the message with [`extract_task_id`].
    pub fn new(timestamp: Timestamp, message: impl Into<String>) -> Self {
        let message = message.into();
        let task_id = extract_task_id(&message);
        LogEvent {
            timestamp,
            message,
            task_id,
        }
    }
}

/// Finds a FlowEngine task id (`t-<digits>` style, or `task_id=...`/`task ...` forms) in a log
/// message. Returns only ids that pass [`TaskId`] validation.
pub fn extract_task_id(message: &str) -> Option<TaskId> {
    // Explicit `task_id=X`, `task_id: X`, `"task_id":"X"` forms first.
    for marker in ["task_id", "task-id", "taskId"] {
        if let Some(pos) = message.find(marker) {
            let rest = &message[pos + marker.len()..];
            let rest = rest.trim_start_matches(['"', '\'', ' ', '=', ':']);
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            if let Ok(id) = TaskId::parse(&rest[..end]) {
                return Some(id);
            }
        }
    }
    // Then a FlowEngine-style `t-123` token.
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .find(|tok| {
            tok.len() > 2 && tok.starts_with("t-") && tok[2..].bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|tok| TaskId::parse(tok).ok())
}

/// A size in bytes that parses `180KB` (1000-based), `180KiB` (1024-based), `5MB`, `2MiB`,
/// `512B` and plain numbers.
///
/// ```
/// use flowfail_core::ByteSize;
/// assert_eq!("180KB".parse::<ByteSize>().unwrap().bytes(), 180_000);
/// assert_eq!("180KiB".parse::<ByteSize>().unwrap().bytes(), 184_320);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        ByteSize(bytes)
    }
    /// `n` kilobytes (1000 bytes each).
    pub const fn kb(n: u64) -> Self {
        ByteSize(n * 1000)
    }
    /// `n` megabytes (1,000,000 bytes each).
    pub const fn mb(n: u64) -> Self {
        ByteSize(n * 1_000_000)
    }
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let mult: u64 = match unit {
            "" | "B" | "b" => 1,
            "KB" | "kB" | "kb" | "K" | "k" => 1000,
            "KiB" | "kiB" | "Ki" => 1024,
            "MB" | "mb" | "M" => 1_000_000,
            "MiB" | "Mi" => 1 << 20,
            "GB" | "gb" | "G" => 1_000_000_000,
            "GiB" | "Gi" => 1 << 30,
            _ => {
                return Err(Error::invalid_input(format!(
                    "invalid size {}: unknown unit (use B, KB, KiB, MB, MiB, GB or GiB)",
                    describe_untrusted(s)
                )));
            }
        };
        let bad = || {
            Error::invalid_input(format!(
                "invalid size {}: expected a number and a unit such as 180KB",
                describe_untrusted(s)
            ))
        };
        if num.is_empty() {
            return Err(bad());
        }
        let bytes = if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| bad())?;
            let b = v * mult as f64;
            if !b.is_finite() || b < 0.0 || b > u64::MAX as f64 {
                return Err(bad());
            }
            b.round() as u64
        } else {
            let v: u64 = num.parse().map_err(|_| bad())?;
            v.checked_mul(mult).ok_or_else(bad)?
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1_000_000 && b.is_multiple_of(1_000_000) {
            write!(f, "{}MB", b / 1_000_000)
        } else if b >= 1000 && b.is_multiple_of(1000) {
            write!(f, "{}KB", b / 1000)
        } else if b >= 1024 && b.is_multiple_of(1024) {
            write!(f, "{}KiB", b / 1024)
        } else {
            write!(f, "{b}B")
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The runbook's failure types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// Timeout (45 s+): usually a context bundle that is too large.
    Timeout,
    /// Rate limit: model API quota exceeded.
    RateLimit,
    /// Validation error: invalid TaskObject schema.
    Validation,
    /// Model API 5xx: vendor outage.
    #[serde(rename = "model_api_5xx")]
    ModelApi5xx,
    /// Anything else: no automated fix.
    Unknown,
}

impl FailureKind {
    /// All kinds, in the runbook's order.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Timeout,
        FailureKind::RateLimit,
        FailureKind::Validation,
        FailureKind::ModelApi5xx,
        FailureKind::Unknown,
    ];

    /// The snake_case name used in reports and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimit => "rate_limit",
            FailureKind::Validation => "validation",
            FailureKind::ModelApi5xx => "model_api_5xx",
            FailureKind::Unknown => "unknown",
        }
    }

    /// Whether the cause lies outside FlowEngine (vendor quota or vendor outage): such failures
    /// are never a reason to roll FlowEngine back.
    pub fn is_external(self) -> bool {
        matches!(self, FailureKind::RateLimit | FailureKind::ModelApi5xx)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vendor's quota usage as read from its API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuotaUsage {
    /// Share of the quota used, 0.0..=1.0.
    pub used_ratio: f64,
    /// The limit, in the vendor's unit, when known.
    #[serde(default)]
    pub limit: Option<u64>,
    /// What remains, when known.
    #[serde(default)]
    pub remaining: Option<u64>,
    /// When the quota resets, when known.
    #[serde(default)]
    pub reset_at: Option<Timestamp>,
}

impl QuotaUsage {
    /// Usage with only the ratio known; the ratio is clamped to 0..=1 (NaN becomes 1.0, the safe side).
    pub fn from_ratio(used_ratio: f64) -> Self {
        let r = if used_ratio.is_nan() {
            1.0
        } else {
            used_ratio.clamp(0.0, 1.0)
        };
        QuotaUsage {
            used_ratio: r,
            limit: None,
            remaining: None,
            reset_at: None,
        }
    }
}

/// Quota as a check reports it: known, or unknown with the reason. Unknown is never 0 % or 100 %.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Quota {
    /// The vendor reported usage.
    Known(QuotaUsage),
    /// The usage could not be read.
    Unknown {
        /// Why not.
        reason: String,
    },
}

/// A vendor's health from its status page. `Unknown` (page unreadable) is neither healthy nor an
/// outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VendorHealth {
    /// All good.
    Operational,
    /// Slower than usual.
    DegradedPerformance,
    /// Some requests fail.
    PartialOutage,
    /// Most requests fail.
    MajorOutage,
    /// Planned maintenance.
    UnderMaintenance,
    /// The status could not be read or understood.
    Unknown,
}

impl VendorHealth {
    /// Parses a Statuspage (or incident.io) component status; anything unrecognised is `Unknown`.
    pub fn from_status(s: &str) -> Self {
        match s {
            "operational" => VendorHealth::Operational,
            "degraded_performance" => VendorHealth::DegradedPerformance,
            "partial_outage" => VendorHealth::PartialOutage,
            "major_outage" | "full_outage" => VendorHealth::MajorOutage,
            "under_maintenance" => VendorHealth::UnderMaintenance,
            _ => VendorHealth::Unknown,
        }
    }

    /// Whether the vendor is known to be failing requests (degraded, partial or major outage).
    pub fn is_degraded(self) -> bool {
        matches!(
            self,
            VendorHealth::DegradedPerformance
                | VendorHealth::PartialOutage
                | VendorHealth::MajorOutage
                | VendorHealth::UnderMaintenance
        )
    }

    /// Whether the vendor is known to be healthy. `Unknown` is not.
    pub fn is_operational(self) -> bool {
        self == VendorHealth::Operational
    }
}

/// A vendor's health and, during an outage, when the open incident started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VendorStatus {
    /// Health of the components flowfail depends on.
    pub health: VendorHealth,
    /// Start of the open incident, when the page gives one.
    #[serde(default)]
    pub since: Option<Timestamp>,
}

impl VendorStatus {
    /// A status with no known start.
    pub fn new(health: VendorHealth) -> Self {
        VendorStatus {
            health,
            since: None,
        }
    }
    /// Sets the incident start.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }
}

/// One revision of a Deployment that can be rolled back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RevisionInfo {
    /// The revision number (`deployment.kubernetes.io/revision`).
    pub revision: u64,
    /// When it was deployed, when known.
    #[serde(default)]
    pub deployed_at: Option<Timestamp>,
}

impl RevisionInfo {
    /// A revision deployed at a known time.
    pub fn new(revision: u64, deployed_at: Option<Timestamp>) -> Self {
        RevisionInfo {
            revision,
            deployed_at,
        }
    }
}

/// The state of the FlowEngine Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeploymentState {
    /// Deployment name.
    pub name: String,
    /// Current revision.
    pub revision: u64,
    /// When the current revision was deployed, when known.
    #[serde(default)]
    pub deployed_at: Option<Timestamp>,
    /// Opaque version of the object (Kubernetes resourceVersion); changes on every write.
    pub resource_version: String,
    /// The main container's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Whether rollouts are paused.
    #[serde(default)]
    pub paused: bool,
    /// Older revisions still available for rollback, any order.
    #[serde(default)]
    pub history: Vec<RevisionInfo>,
}

impl DeploymentState {
    /// A Deployment at `revision` with `resource_version`; no env, not paused, no history
    /// (adapters fill in the rest).
    pub fn new(
        name: impl Into<String>,
        revision: u64,
        resource_version: impl Into<String>,
    ) -> Self {
        DeploymentState {
            name: name.into(),
            revision,
            deployed_at: None,
            resource_version: resource_version.into(),
            env: BTreeMap::new(),
            paused: false,
            history: Vec::new(),
        }
    }

    /// The newest revision older than the current one, if any.
    pub fn previous_revision(&self) -> Option<u64> {
        self.history
            .iter()
            .map(|r| r.revision)
            .filter(|r| *r < self.revision)
            .max()
    }
}

/// Progress of a rollout, judged as `kubectl rollout status` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RolloutStatus {
    /// All replicas updated and available.
    Complete,
    /// Still rolling out.
    Progressing {
        /// What it is waiting for.
        message: String,
    },
    /// The rollout failed (`ProgressDeadlineExceeded`).
    Failed {
        /// Why.
        message: String,
    },
}

/// One change to the Deployment's environment: set `name` to `value`, or unset it when `value` is
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnvChange {
    /// Variable name.
    pub name: String,
    /// New value, or `None` to unset.
    pub value: Option<String>,
}

impl EnvChange {
    /// Sets `name=value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvChange {
            name: name.into(),
            value: Some(value.into()),
        }
    }
    /// Unsets `name`.
    pub fn unset(name: impl Into<String>) -> Self {
        EnvChange {
            name: name.into(),
            value: None,
        }
    }
}

/// Why flowfail changes the Deployment: the incident it acts for and the action's purpose.
/// Every mutation carries its own ([`crate::DeploymentController::set_env`],
/// [`crate::DeploymentController::rollback`]), and the adapter records it with the change where
/// people look for why (Kubernetes: the `kubernetes.io/change-cause` annotation that
/// `kubectl rollout history` shows).
///
/// The text is cleaned when the value is built (see [`one_line`]): one line, the incident key
/// at most [`ChangeCause::MAX_INCIDENT`] bytes, the purpose at most
/// [`ChangeCause::MAX_PURPOSE`]. Its [`Display`](fmt::Display) is `incident <key>: <purpose>`,
/// or whichever of the two it has.
///
/// ```
/// use flowfail_core::ChangeCause;
/// let c = ChangeCause::for_incident("flowengine-20251113T1000Z", "quota 91% above 85%:\nenable circuit breaker");
/// assert_eq!(c.incident(), Some("flowengine-20251113T1000Z"));
/// assert_eq!(c.to_string(), "incident flowengine-20251113T1000Z: quota 91% above 85%: enable circuit breaker");
/// assert_eq!(ChangeCause::default().to_string(), "");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ChangeCause {
    incident: Option<String>,
    purpose: String,
}

impl ChangeCause {
    /// The longest incident key kept, in bytes.
    pub const MAX_INCIDENT: usize = 128;
    /// The longest purpose kept, in bytes.
    pub const MAX_PURPOSE: usize = 512;

    /// A change made for `purpose`, outside any incident (a test, an operator's tool).
    pub fn new(purpose: &str) -> Self {
        ChangeCause {
            incident: None,
            purpose: one_line(purpose, Self::MAX_PURPOSE),
        }
    }

    /// A change made for `purpose` while responding to incident `key`.
    pub fn for_incident(key: &str, purpose: &str) -> Self {
        let key = one_line(key, Self::MAX_INCIDENT);
        ChangeCause {
            incident: (!key.is_empty()).then_some(key),
            purpose: one_line(purpose, Self::MAX_PURPOSE),
        }
    }

    /// The incident the change is made for.
    pub fn incident(&self) -> Option<&str> {
        self.incident.as_deref()
    }

    /// What the change is for (may be empty).
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// Neither an incident nor a purpose: the change says only what it does.
    pub fn is_empty(&self) -> bool {
        self.incident.is_none() && self.purpose.is_empty()
    }
}

impl fmt::Display for ChangeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.incident, self.purpose.as_str()) {
            (Some(k), "") => write!(f, "incident {k}"),
            (Some(k), p) => write!(f, "incident {k}: {p}"),
            (None, p) => f.write_str(p),
        }
    }
}

/// `s` as one line of a change record: line breaks, tabs and other control characters become
/// spaces, invisible format characters (bidi controls, zero-width characters, soft hyphen, BOM)
/// are dropped, runs of spaces collapse, the ends are trimmed, and the text is cut to at most
/// `max` bytes at a character boundary, ending in `…` when cut.
///
/// ```
/// use flowfail_core::model::one_line;
/// assert_eq!(one_line(" a\r\n\tb\u{202E}c ", 64), "a bc");
/// assert_eq!(one_line("abcdef", 5), "ab…");
/// ```
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            c
        };
        if crate::text::is_format_char(c) || (c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_end();
    if out.len() <= max {
        return out.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", out[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_accepts_runbook_ids_and_rejects_hostile_ones() {
        for ok in ["t-00000", "a", "A_b-9", &"x".repeat(64)] {
            assert!(TaskId::parse(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(10_000);
        for bad in [
            "",
            "../x",
            "a/b",
            "%2F",
            "a%2Fb",
            "'",
            "\"q\"",
            "a\0b",
            "a\nb",
            "\u{1b}[31m",
            "-a",
            "_a",
            &"x".repeat(65),
            &long,
            "a b",
            "é",
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
        }
        let e = TaskId::parse(&long).unwrap_err();
        assert!(e.to_string().len() < 200, "error message stays short");
        assert!(
            !TaskId::parse("a\u{1b}[31m")
                .unwrap_err()
                .to_string()
                .contains('\u{1b}')
        );
    }

    proptest::proptest! {
        #[test]
        fn task_id_validation_is_exactly_the_pattern(s in "\\PC{0,70}|[A-Za-z0-9][A-Za-z0-9_-]{0,70}") {
            let re = regex::Regex::new("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$").unwrap();
            proptest::prop_assert_eq!(TaskId::parse(&s).is_ok(), re.is_match(&s));
        }

        #[test]
        fn hostile_fragments_are_always_rejected(
            head in "[A-Za-z0-9]{1,20}",
            bad in proptest::sample::select(vec!["../x", "a/b", "%2F", "'", "\"", "\0", "\n", "\r", "\u{1b}[31m", " ", "\\", ";", "é"]),
            tail in "[A-Za-z0-9]{0,20}",
        ) {
            let candidate = format!("{head}{bad}{tail}");
            proptest::prop_assert!(TaskId::parse(&candidate).is_err(), "{:?}", candidate);
        }
    }

    #[test]
    fn byte_size_units() {
        let p = |s: &str| s.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(p("180KB").unwrap(), 180_000);
        assert_eq!(p("180KiB").unwrap(), 184_320);
        assert_eq!(p("500KB").unwrap(), 500_000);
        assert_eq!(p("5MB").unwrap(), 5_000_000);
        assert_eq!(p("1MiB").unwrap(), 1_048_576);
        assert_eq!(p("1.5KB").unwrap(), 1500);
        assert_eq!(p("42").unwrap(), 42);
        assert!(p("").is_err());
        assert!(p("KB").is_err());
        assert!(p("10XB").is_err());
        assert!(p("99999999999999999999GB").is_err());
        assert_eq!(ByteSize::kb(180).to_string(), "180KB");
        let v: ByteSize = serde_json::from_str("\"180KiB\"").unwrap();
        assert_eq!(v.bytes(), 184_320);
    }

    #[test]
    fn task_ids_are_extracted_from_log_lines() {
        let id = |m: &str| extract_task_id(m).map(|t| t.to_string());
        assert_eq!(
            id("ERROR t-00000 Task timed out").as_deref(),
            Some("t-00000")
        );
        assert_eq!(id("task_id=abc_9 failed").as_deref(), Some("abc_9"));
        assert_eq!(id(r#"{"task_id":"t-7","x":1}"#).as_deref(), Some("t-7"));
        assert_eq!(id("ERROR no id here"), None);
        assert_eq!(id("task_id=../../etc"), None);
    }

    #[test]
    fn vendor_health_parses_statuspage_and_incident_io() {
        assert_eq!(
            VendorHealth::from_status("full_outage"),
            VendorHealth::MajorOutage
        );
        assert_eq!(VendorHealth::from_status("weird"), VendorHealth::Unknown);
        assert!(!VendorHealth::Unknown.is_degraded());
        assert!(!VendorHealth::Unknown.is_operational());
    }
}
