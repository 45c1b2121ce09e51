//! The incident ledger: epochs, timeline entries, records and the [`IncidentStore`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Timestamp;
use crate::operator::{Approval, Pause};

/// Fencing token of an incident: every write carries the epoch its writer claimed; a write with
/// an older epoch than the incident's is rejected as stale.
pub type Epoch = u64;

/// One entry of an incident's append-only timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimelineEntry {
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: TimelineKind,
    /// Details.
    pub detail: serde_json::Value,
}

impl TimelineEntry {
    /// An entry.
    pub fn new(at: Timestamp, kind: impl Into<TimelineKind>, detail: serde_json::Value) -> Self {
        TimelineEntry {
            at,
            kind: kind.into(),
            detail,
        }
    }
}

/// What a timeline entry records. Stored as its name (`action`, `finding`, …); a name this
/// version does not know (written by a newer one) is kept as [`TimelineKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[non_exhaustive]
pub enum TimelineKind {
    /// An action and what came of it (`detail`: `action`, `outcome`, `detail`).
    Action,
    /// A finding (`detail`: the finding).
    Finding,
    /// An operator paused automation (`detail`: who, why).
    Paused,
    /// An operator resumed automation.
    Resumed,
    /// An action waits for an operator's approval (`detail`: the proposal).
    Proposed,
    /// An operator approved a proposed action (`detail`: the approval).
    Approved,
    /// An operator denied a proposed action (`detail`: the denial: gate, who, why).
    Denied,
    /// A pass's decision, written when it differs from the last one recorded (`detail`: a
    /// [`crate::report::DecisionRecord`]).
    Decision,
    /// The alert's numbers of a pass whose decision did not change, at most one a minute
    /// (`detail`: the alert), so the incident's failure rate can be drawn over its course.
    Sample,
    /// A kind this version does not know.
    Other(String),
}

impl TimelineKind {
    /// Its stored name.
    pub fn as_str(&self) -> &str {
        match self {
            TimelineKind::Action => "action",
            TimelineKind::Finding => "finding",
            TimelineKind::Paused => "paused",
            TimelineKind::Resumed => "resumed",
            TimelineKind::Proposed => "proposed",
            TimelineKind::Approved => "approved",
            TimelineKind::Denied => "denied",
            TimelineKind::Decision => "decision",
            TimelineKind::Sample => "sample",
            TimelineKind::Other(s) => s,
        }
    }
}

impl From<&str> for TimelineKind {
    fn from(s: &str) -> Self {
        match s {
            "action" => TimelineKind::Action,
            "finding" => TimelineKind::Finding,
            "paused" => TimelineKind::Paused,
            "resumed" => TimelineKind::Resumed,
            "proposed" => TimelineKind::Proposed,
            "approved" => TimelineKind::Approved,
            "denied" => TimelineKind::Denied,
            "decision" => TimelineKind::Decision,
            "sample" => TimelineKind::Sample,
            other => TimelineKind::Other(other.to_owned()),
        }
    }
}

impl From<String> for TimelineKind {
    fn from(s: String) -> Self {
        TimelineKind::from(s.as_str())
    }
}

impl From<TimelineKind> for String {
    fn from(k: TimelineKind) -> Self {
        k.as_str().to_owned()
    }
}

impl std::fmt::Display for TimelineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for TimelineKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An incident as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IncidentRecord {
    /// Deterministic incident key.
    pub key: String,
    /// The scope it belongs to (the Deployment name): one open incident per scope.
    pub scope: String,
    /// Current epoch.
    pub epoch: Epoch,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// The responder's state (opaque JSON, written by [`IncidentStore::save_state`]).
    pub state: serde_json::Value,
    /// Effects reserved so far (see [`IncidentStore::reserve_effect`]).
    pub effects: Vec<String>,
    /// The timeline, in append order.
    pub timeline: Vec<TimelineEntry>,
    /// When it was closed, if it was.
    pub closed_at: Option<Timestamp>,
    /// The post-incident record, once closed.
    pub post_incident: Option<serde_json::Value>,
}

impl IncidentRecord {
    /// A new open incident at epoch 0 with no effects and an empty timeline (adapters fill in
    /// the rest from their storage).
    pub fn new(
        key: impl Into<String>,
        scope: impl Into<String>,
        opened_at: Timestamp,
        state: serde_json::Value,
    ) -> Self {
        IncidentRecord {
            key: key.into(),
            scope: scope.into(),
            epoch: 0,
            opened_at,
            state,
            effects: Vec::new(),
            timeline: Vec::new(),
            closed_at: None,
            post_incident: None,
        }
    }
}

/// Which incidents [`IncidentStore::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IncidentQuery {
    /// Only these scopes (none: every scope).
    pub scopes: Vec<String>,
    /// Only open incidents.
    pub open_only: bool,
    /// Only incidents opened at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

impl IncidentQuery {
    /// Every incident of these scopes, newest first.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        IncidentQuery {
            scopes: scopes.into_iter().map(Into::into).collect(),
            ..IncidentQuery::default()
        }
    }
    /// Only the open ones.
    pub fn open_only(mut self, yes: bool) -> Self {
        self.open_only = yes;
        self
    }
    /// Only those opened at or after `t`.
    pub fn since(mut self, t: Option<Timestamp>) -> Self {
        self.since = t;
        self
    }
    /// At most `n` (0: no limit).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }
    /// Whether `r` is one of them (the limit aside).
    pub fn matches(&self, r: &IncidentRecord) -> bool {
        (self.scopes.is_empty() || self.scopes.contains(&r.scope))
            && (!self.open_only || r.closed_at.is_none())
            && self.since.is_none_or(|t| r.opened_at >= t)
    }
}

/// One incident of [`IncidentStore::list`]: its record without the timeline, and how many of
/// its timeline's actions changed the world and how many were only decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IncidentListing {
    /// The record; its `timeline` is empty.
    pub record: IncidentRecord,
    /// Actions recorded as `applied`.
    pub applied: u64,
    /// Actions recorded as `failed` (tried, and the world said no).
    pub failed: u64,
    /// Actions only decided: `dry_run` (shadow, dry run) or `skipped` (paused, superseded, a
    /// precondition).
    pub decided: u64,
}

impl IncidentListing {
    /// The listing of `record`, counting the actions of its timeline (which it then drops).
    pub fn of(mut record: IncidentRecord) -> Self {
        let (mut applied, mut failed, mut decided) = (0, 0, 0);
        for e in record
            .timeline
            .iter()
            .filter(|e| e.kind == TimelineKind::Action)
        {
            match e.detail["outcome"].as_str() {
                Some("applied") => applied += 1,
                Some("failed") => failed += 1,
                Some("dry_run" | "skipped") => decided += 1,
                _ => {}
            }
        }
        record.timeline = Vec::new();
        IncidentListing {
            record,
            applied,
            failed,
            decided,
        }
    }
}

/// The incident ledger: where replicas agree on one incident and one effect per action.
#[async_trait]
pub trait IncidentStore: Send + Sync + Debug + 'static {
    /// Opens an incident in `scope` under `key`, unless one is already open in that scope.
    /// Returns the open incident and whether this call created it.
    ///
    /// **Behavior**
    /// 1. At most one open incident per scope: concurrent calls create one, the others get it.
    /// 2. A closed incident never blocks opening a new one with a different key.
    /// 3. Reopening a closed key returns the closed record with `created == false`.
    async fn open(
        &self,
        scope: &str,
        key: &str,
        opened_at: Timestamp,
        state: &serde_json::Value,
    ) -> Result<(IncidentRecord, bool)>;

    /// The open incident in `scope`, if any (how a restarted responder finds its incident).
    ///
    /// **Behavior**
    /// 1. Returns the incident `open` would return for the scope, or `None` when none is open.
    async fn find_open(&self, scope: &str) -> Result<Option<IncidentRecord>>;

    /// The incident of `scope` closed most recently (by close time, then open time, then key),
    /// if any: the supervisor's cool-down after an escalation and the revisions flowfail rolled
    /// away from are read from it. Its timeline need not be included.
    ///
    /// **Behavior**
    /// 1. `None` while no incident of the scope is closed; an open incident is never returned.
    /// 2. Scopes are independent.
    /// 3. A closed incident still takes [`IncidentStore::reserve_effect`] at its current epoch
    ///    (the end of an escalated incident's cool-down is its effect `cooldown_over`).
    async fn latest_closed(&self, scope: &str) -> Result<Option<IncidentRecord>>;

    /// Claims the incident for a pass: increments and returns its epoch.
    ///
    /// **Behavior**
    /// 1. Each call returns a larger epoch than any before it.
    /// 2. An unknown key is `NotFound`.
    async fn claim(&self, key: &str) -> Result<Epoch>;

    /// The incident.
    ///
    /// **Behavior**
    /// 1. An unknown key is `NotFound`.
    async fn get(&self, key: &str) -> Result<IncidentRecord>;

    /// Replaces the responder's state.
    ///
    /// **Behavior**
    /// 1. An epoch older than the incident's is [`crate::ErrorKind::Conflict`], nothing written.
    async fn save_state(&self, key: &str, epoch: Epoch, state: &serde_json::Value) -> Result<()>;

    /// Reserves a named effect (`rollback`, `page:sre:outage`, ...) for this incident.
    /// Returns `true` the first time, `false` when it was already reserved.
    ///
    /// **Behavior**
    /// 1. At most one reservation per (incident, effect) ever succeeds, across all writers.
    /// 2. An epoch older than the incident's is `Conflict`, nothing reserved.
    async fn reserve_effect(&self, key: &str, epoch: Epoch, effect: &str) -> Result<bool>;

    /// Checks that `epoch` is still the incident's: a writer whose claim was superseded by
    /// another replica's gets [`crate::ErrorKind::Conflict`]. The responder asks right before
    /// every mutation of the world (env changes, retries, prunes, pages), which the ledger's own
    /// fencing cannot cover. The default reads the record with [`IncidentStore::get`]; stores
    /// with a cheaper read of the epoch alone override it.
    ///
    /// **Behavior**
    /// 1. An epoch older than the incident's is `Conflict`; the current one (or a newer) is `Ok`.
    /// 2. An unknown key is `NotFound`.
    async fn check_epoch(&self, key: &str, epoch: Epoch) -> Result<()> {
        let current = self.get(key).await?.epoch;
        if epoch < current {
            Err(crate::Error::conflict(format!(
                "stale claim: epoch {epoch} is older than the incident's epoch {current}"
            ))
            .with_operation("incident.check_epoch"))
        } else {
            Ok(())
        }
    }

    /// Appends timeline entries.
    ///
    /// **Behavior**
    /// 1. Entries are kept in append order and never rewritten.
    /// 2. An epoch older than the incident's is `Conflict`, nothing appended.
    async fn append(&self, key: &str, epoch: Epoch, entries: &[TimelineEntry]) -> Result<()>;

    /// Closes the incident with its post-incident record.
    ///
    /// **Behavior**
    /// 1. An epoch older than the incident's is `Conflict`.
    /// 2. Closing a closed incident again succeeds and keeps the first record.
    async fn close(
        &self,
        key: &str,
        epoch: Epoch,
        closed_at: Timestamp,
        post_incident: &serde_json::Value,
    ) -> Result<()>;

    /// Pauses automation in `scope` (`Some`), or lifts the pause (`None`). An operator's
    /// switch, read by every replica each pass (see [`crate::control`]); it carries no epoch.
    ///
    /// **Behavior**
    /// 1. After `Some(p)`, [`IncidentStore::pause_flag`] returns `p` (a second pause replaces the
    ///    first); after `None`, it returns `None`.
    /// 2. Lifting a pause that is not set succeeds and changes nothing.
    /// 3. Scopes are independent.
    async fn set_pause(&self, scope: &str, pause: Option<&Pause>) -> Result<()>;

    /// The pause of `scope`, if automation is paused there.
    ///
    /// **Behavior**
    /// 1. `None` when no pause was set, or the last one was lifted.
    async fn pause_flag(&self, scope: &str) -> Result<Option<Pause>>;

    /// Records a human's approval of a gated action for the incident `key` (see
    /// [`crate::control::approve`]); it carries no epoch.
    ///
    /// **Behavior**
    /// 1. An unknown key is `NotFound`; a closed incident is [`crate::ErrorKind::Refused`];
    ///    either way nothing is written.
    /// 2. Approvals are kept in the order recorded and never rewritten.
    async fn add_approval(&self, key: &str, approval: &Approval) -> Result<()>;

    /// The incidents `query` selects, newest first (by open time, then key), without their
    /// timelines: what `flowfail incidents` and the console's index list. Stores that cannot
    /// list answer [`crate::ErrorKind::Unsupported`] (the default).
    ///
    /// **Behavior**
    /// 1. Newest first; `limit` (when not 0) keeps the newest.
    /// 2. Only the scopes asked for (all when none), only open ones with `open_only`, only
    ///    those opened at or after `since`.
    /// 3. Each listing counts its timeline's actions by outcome as [`IncidentListing::of`] does.
    async fn list(&self, query: &IncidentQuery) -> Result<Vec<IncidentListing>> {
        let _ = query;
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            "this incident ledger cannot list its incidents",
        )
        .with_operation("incident.list"))
    }

    /// The approvals recorded for the incident `key`, oldest first (expired ones included).
    ///
    /// **Behavior**
    /// 1. An unknown key is `NotFound`; an incident without approvals has none (`Ok(vec![])`).
    async fn approvals(&self, key: &str) -> Result<Vec<Approval>>;
}
