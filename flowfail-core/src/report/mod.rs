//! The incident report and the post-incident record.
//!
//! The [`Report`] is what `flowfail respond --json` prints: the alert, the classification, every
//! action in execution order with its outcome, every finding, every action *not* taken with the
//! reason, and the post-incident record (root cause, timeline, MTTR, new failure modes), which
//! also renders as Markdown for the incident tracker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::{Finding, Skip};
use crate::detect::AlertState;
use crate::model::{FailureKind, Timestamp};
use crate::templates::FailureTemplate;

mod action;
mod build;
mod decision;
mod escape;
mod markdown;
mod render;

pub(crate) use render::{GroupKey, collapse_ids, group_key, group_totals};

pub use crate::text::clean_text;
pub use action::{ActionFields, ActionRecord, rendered};
pub use build::ReportBuilder;
pub use decision::{Conduct, DecisionRecord, Planned};
pub use escape::{md_escape, mrkdwn_escape};

/// What happened to an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Done (or found already done: idempotent).
    Applied,
    /// Not done, on purpose (precondition, kill switch, rate limit, another replica did it).
    Skipped,
    /// Tried and failed.
    Failed,
    /// Dry run: would have been done.
    DryRun,
}

impl Outcome {
    /// `applied`, `skipped`, `failed` or `dry_run` (as in the report's JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
        }
    }
}
/// A finding with the time it was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FindingRecord {
    /// When.
    pub at: Timestamp,
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
}

/// A reason for not acting, with when it was first and last given.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SkipRecord {
    /// First given.
    pub first_at: Timestamp,
    /// Last given.
    pub last_at: Timestamp,
    /// The skip (count is the largest seen in one pass).
    #[serde(flatten)]
    pub skip: Skip,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TimelineLine {
    /// When.
    pub at: Timestamp,
    /// What.
    pub event: String,
}

/// The post-incident record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PostIncident {
    /// Incident key (also the pager's dedup key prefix).
    pub incident_key: Option<String>,
    /// Root cause, in the runbook's words.
    pub root_cause: String,
    /// Status: `resolved`, `escalated`, `unresolved`, `dry_run`, `halted`, `not_firing`.
    pub status: String,
    /// When detected.
    pub detected_at: Option<Timestamp>,
    /// When resolved.
    pub resolved_at: Option<Timestamp>,
    /// Time to resolve, seconds.
    pub mttr_seconds: Option<i64>,
    /// The timeline.
    pub timeline: Vec<TimelineLine>,
    /// Actions by kind and outcome.
    pub actions_summary: BTreeMap<String, BTreeMap<String, u64>>,
    /// Failure modes the runbook does not know: one line per message template (its count and
    /// text), or distinct error samples from a record made before templates.
    pub new_failure_modes: Vec<String>,
    /// The same failure modes in full: each message template with its count, one example and
    /// the rule proposed for it in the rule-file format ([`crate::templates`]).
    pub failure_templates: Vec<FailureTemplate>,
    /// Changes flowfail left in place when it stopped.
    pub left_in_place: Vec<String>,
    /// Actions considered and not taken, with the reasons (as the report's `not_taken`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_taken: Vec<SkipRecord>,
    /// Suggested follow-ups (runbook updates, monitoring gaps).
    pub follow_ups: Vec<String>,
    /// The alert that woke flowfail (a webhook), when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub woken_by: Option<String>,
}

/// The incident report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Scenario or run name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether this was a shadow run: decided and recorded, nothing changed in the world.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// The alert at detection (or at the last pass when it never fired).
    pub alert: AlertState,
    /// Failed tasks by kind at detection.
    pub classification: BTreeMap<FailureKind, u64>,
    /// Actions in execution order.
    pub actions: Vec<ActionRecord>,
    /// Findings.
    pub findings: Vec<FindingRecord>,
    /// Actions considered and not taken, with reasons.
    pub not_taken: Vec<SkipRecord>,
    /// Reads that failed during the run.
    pub data_gaps: Vec<String>,
    /// Whether the incident resolved.
    pub resolved: bool,
    /// Whether it was escalated to humans.
    pub escalated: bool,
    /// When detected.
    pub detected_at: Option<Timestamp>,
    /// When resolved.
    pub resolved_at: Option<Timestamp>,
    /// Passes run.
    pub passes: u64,
    /// The post-incident record.
    pub post_incident: PostIncident,
}
