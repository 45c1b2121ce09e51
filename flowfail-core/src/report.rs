//! The incident report and the post-incident record.
//!
//! The [`Report`] is what `flowfail respond --json` prints: the alert, the classification, every
//! action in execution order with its outcome, every finding, every action *not* taken with the
//! reason, and the post-incident record (root cause, timeline, MTTR, new failure modes), which
//! also renders as Markdown for the incident tracker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::decide::{Action, ActionOutcome, Applied, Finding, IncidentState, Skip};
use crate::detect::AlertState;
use crate::model::{FailureKind, Timestamp};
use crate::templates::FailureTemplate;

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

/// One action in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ActionRecord {
    /// When (virtual time in a replay).
    pub at: Timestamp,
    /// The action, flattened: `kind` and its fields.
    #[serde(flatten)]
    pub action: ActionFields,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it was skipped or failed, or what it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The report's fields of an action (per the scenario format: `prune_context` has `task_id`,
/// `from_bytes`, `to_bytes`; `set_env` has `deployment`, `name`, `value`; …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionFields {
    /// See [`Action::PruneContext`].
    PruneContext {
        /// Task.
        task_id: String,
        /// Size before.
        from_bytes: u64,
        /// Size after (the budget when not applied).
        to_bytes: u64,
    },
    /// See [`Action::SetEnv`].
    SetEnv {
        /// Deployment.
        deployment: String,
        /// Variable.
        name: String,
        /// Value (null: unset).
        value: Option<String>,
        /// Why.
        purpose: String,
    },
    /// See [`Action::RetryTask`].
    RetryTask {
        /// Task.
        task_id: String,
        /// Attempt, 1-based.
        attempt: u32,
        /// Failure retried.
        failure_kind: FailureKind,
        /// Half-open probe.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        probe: bool,
    },
    /// See [`Action::Rollback`].
    Rollback {
        /// Deployment.
        deployment: String,
        /// From.
        from_revision: u64,
        /// To.
        to_revision: u64,
    },
    /// The rollout verdict after a rollback.
    VerifyRollout {
        /// Deployment.
        deployment: String,
        /// `complete`, `failed` or `timeout`.
        status: String,
    },
    /// See [`Action::Page`].
    Page {
        /// Target.
        target: String,
        /// Reason.
        reason: String,
        /// Summary.
        summary: String,
    },
    /// See [`Action::Notify`].
    Notify {
        /// Audience.
        audience: String,
        /// Message.
        message: String,
    },
}

impl ActionFields {
    /// The report fields of a decided action (`to_bytes` = the budget until known).
    pub fn from_action(a: &Action) -> Self {
        match a.clone() {
            Action::PruneContext {
                task_id,
                from_bytes,
                max_bytes,
            } => ActionFields::PruneContext {
                task_id: task_id.to_string(),
                from_bytes,
                to_bytes: max_bytes,
            },
            Action::SetEnv {
                deployment,
                name,
                value,
                purpose,
            } => ActionFields::SetEnv {
                deployment,
                name,
                value,
                purpose,
            },
            Action::RetryTask {
                task_id,
                attempt,
                failure_kind,
                probe,
                ..
            } => ActionFields::RetryTask {
                task_id: task_id.to_string(),
                attempt,
                failure_kind,
                probe,
            },
            Action::Rollback {
                deployment,
                from_revision,
                to_revision,
                ..
            } => ActionFields::Rollback {
                deployment,
                from_revision,
                to_revision,
            },
            Action::VerifyRollout { deployment } => ActionFields::VerifyRollout {
                deployment,
                status: "unknown".into(),
            },
            Action::Page {
                target,
                reason,
                summary,
                ..
            } => ActionFields::Page {
                target,
                reason,
                summary,
            },
            Action::Notify {
                audience, message, ..
            } => ActionFields::Notify { audience, message },
        }
    }

    /// The `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionFields::PruneContext { .. } => "prune_context",
            ActionFields::SetEnv { .. } => "set_env",
            ActionFields::RetryTask { .. } => "retry_task",
            ActionFields::Rollback { .. } => "rollback",
            ActionFields::VerifyRollout { .. } => "verify_rollout",
            ActionFields::Page { .. } => "page",
            ActionFields::Notify { .. } => "notify",
        }
    }
}

/// How the report shows an action and what came of it: its fields (with what the action
/// returned: a pruned size, a rollout verdict), the outcome and the detail. `None` for what the
/// report does not show (a rollout check in a dry run, a rollout still in progress).
pub fn rendered(
    action: &Action,
    outcome: &ActionOutcome,
) -> Option<(ActionFields, Outcome, Option<String>)> {
    let fields = ActionFields::from_action(action);
    Some(match outcome {
        ActionOutcome::Applied(applied) => return rendered_applied(action, fields, applied),
        ActionOutcome::DryRun if matches!(action, Action::VerifyRollout { .. }) => return None,
        ActionOutcome::DryRun => (fields, Outcome::DryRun, None),
        ActionOutcome::Refused { reason } | ActionOutcome::DoneElsewhere { reason } => {
            (fields, Outcome::Skipped, Some(reason.clone()))
        }
        ActionOutcome::Failed { reason, .. } | ActionOutcome::Unknown { reason } => {
            (fields, Outcome::Failed, Some(reason.clone()))
        }
    })
}

fn rendered_applied(
    action: &Action,
    fields: ActionFields,
    applied: &Applied,
) -> Option<(ActionFields, Outcome, Option<String>)> {
    Some(match (action, applied) {
        (
            Action::PruneContext { task_id, .. },
            Applied::Pruned {
                from_bytes,
                to_bytes,
                archive_checksum,
            },
        ) => (
            ActionFields::PruneContext {
                task_id: task_id.to_string(),
                from_bytes: *from_bytes,
                to_bytes: *to_bytes,
            },
            Outcome::Applied,
            Some(format!(
                "original archived as sha256 {}",
                archive_checksum.get(..16).unwrap_or(archive_checksum)
            )),
        ),
        (
            Action::PruneContext {
                task_id,
                from_bytes,
                ..
            },
            Applied::AlreadySmall { bytes },
        ) => (
            ActionFields::PruneContext {
                task_id: task_id.to_string(),
                from_bytes: *from_bytes,
                to_bytes: *bytes,
            },
            Outcome::Skipped,
            Some("bundle already within budget".into()),
        ),
        (Action::VerifyRollout { deployment }, Applied::RolloutVerdict { verdict }) => (
            ActionFields::VerifyRollout {
                deployment: deployment.clone(),
                status: verdict.clone(),
            },
            if verdict == "complete" {
                Outcome::Applied
            } else {
                Outcome::Failed
            },
            None,
        ),
        (_, Applied::RolloutPending) => return None,
        (Action::Page { .. }, Applied::Delivered { deduplicated: true }) => (
            fields,
            Outcome::Applied,
            Some("deduplicated by the pager".into()),
        ),
        _ => (fields, Outcome::Applied, None),
    })
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

/// Accumulates a report across passes.
#[derive(Debug, Clone, Default)]
pub struct ReportBuilder {
    /// Name.
    pub name: Option<String>,
    /// Dry run.
    pub dry_run: bool,
    /// Shadow mode.
    pub shadow: bool,
    /// Last alert.
    pub last_alert: Option<AlertState>,
    /// Actions.
    pub actions: Vec<ActionRecord>,
    /// Findings.
    pub findings: Vec<FindingRecord>,
    /// Reasons for not acting.
    pub not_taken: Vec<SkipRecord>,
    /// Gaps.
    pub gaps: Vec<String>,
    /// Timeline.
    pub timeline: Vec<TimelineLine>,
    /// Passes.
    pub passes: u64,
    /// Halted by the kill switch.
    pub halted: bool,
}

impl ReportBuilder {
    /// Records an action outcome.
    pub fn action(
        &mut self,
        at: Timestamp,
        action: ActionFields,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        let line = describe(&action, outcome, detail.as_deref());
        self.timeline.push(TimelineLine { at, event: line });
        self.actions.push(ActionRecord {
            at,
            action,
            outcome,
            detail,
        });
    }

    /// Records skips of one pass, merging repeats.
    pub fn skips(&mut self, at: Timestamp, skips: &[Skip]) {
        for s in skips {
            if let Some(r) = self
                .not_taken
                .iter_mut()
                .find(|r| r.skip.action == s.action && r.skip.reason == s.reason)
            {
                r.last_at = at;
                if s.count > r.skip.count {
                    r.skip.count = s.count;
                    r.skip.examples = s.examples.clone();
                }
            } else {
                self.not_taken.push(SkipRecord {
                    first_at: at,
                    last_at: at,
                    skip: s.clone(),
                });
            }
        }
    }

    /// Records a finding.
    pub fn finding(&mut self, at: Timestamp, f: Finding) {
        self.timeline.push(TimelineLine {
            at,
            event: format!("finding ({}): {}", f.kind, f.summary),
        });
        self.findings.push(FindingRecord { at, finding: f });
    }

    /// Records a data gap.
    pub fn gap(&mut self, at: Timestamp, what: String) {
        if !self.gaps.contains(&what) {
            self.timeline.push(TimelineLine {
                at,
                event: format!("data gap: {what}"),
            });
            self.gaps.push(what);
        }
    }

    /// Adds a timeline line.
    pub fn note(&mut self, at: Timestamp, event: String) {
        self.timeline.push(TimelineLine { at, event });
    }

    /// This builder with its actions and findings taken from the incident ledger's timeline,
    /// when the ledger holds more of them than this process saw (it restarted mid-incident):
    /// the post-incident record is then the whole incident's, not this process's.
    pub fn with_ledger_timeline(&self, entries: &[crate::ports::TimelineEntry]) -> ReportBuilder {
        let ledger_actions = entries.iter().filter(|e| e.kind == "action").count();
        if ledger_actions <= self.actions.len() {
            return self.clone();
        }
        let mut b = ReportBuilder {
            name: self.name.clone(),
            dry_run: self.dry_run,
            shadow: self.shadow,
            last_alert: self.last_alert,
            not_taken: self.not_taken.clone(),
            passes: self.passes,
            halted: self.halted,
            ..ReportBuilder::default()
        };
        for g in &self.gaps {
            b.gaps.push(g.clone());
        }
        for e in entries {
            match e.kind.as_str() {
                "action" => {
                    let fields = serde_json::from_value::<ActionFields>(e.detail["action"].clone());
                    let outcome = serde_json::from_value::<Outcome>(e.detail["outcome"].clone());
                    if let (Ok(f), Ok(o)) = (fields, outcome) {
                        let detail = e.detail["detail"].as_str().map(str::to_owned);
                        b.action(e.at, f, o, detail);
                    }
                }
                "finding" => {
                    if let Ok(f) = serde_json::from_value::<Finding>(e.detail.clone()) {
                        b.finding(e.at, f);
                    }
                }
                _ => {}
            }
        }
        b
    }

    /// Builds the report from the incident state (if an incident opened).
    pub fn build(&self, state: Option<&IncidentState>, ended_at: Timestamp) -> Report {
        let resolved = state.and_then(|s| s.resolved_at).is_some();
        let escalated = state.and_then(|s| s.escalated_at).is_some();
        let status = if self.dry_run {
            "dry_run"
        } else if self.halted {
            "halted"
        } else if state.is_none() {
            "not_firing"
        } else if resolved {
            "resolved"
        } else if escalated {
            "escalated"
        } else {
            "unresolved"
        };
        let alert = state
            .map(|s| s.alert_at_detection)
            .or(self.last_alert)
            .unwrap_or(AlertState {
                firing: false,
                failure_rate: 0.0,
                window_tasks: 0,
                failed: 0,
            });
        let classification = state
            .map(|s| s.classification_at_detection.clone())
            .unwrap_or_else(|| FailureKind::ALL.iter().map(|k| (*k, 0)).collect());
        let detected_at = state.map(|s| s.detected_at);
        let resolved_at = state.and_then(|s| s.resolved_at);
        let mut summary: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for a in &self.actions {
            let o = serde_json::to_value(a.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *summary
                .entry(a.action.kind().to_owned())
                .or_default()
                .entry(o)
                .or_default() += 1;
        }
        let (new_failure_modes, failure_templates) = new_failure_modes(&self.findings);
        let left_in_place: Vec<String> = state
            .map(|s| {
                s.env_changes
                    .iter()
                    .map(|(k, r)| match &r.value {
                        Some(v) => {
                            format!("{k}={v} (was {})", r.previous.as_deref().unwrap_or("unset"))
                        }
                        None => format!(
                            "{k} unset (was {})",
                            r.previous.as_deref().unwrap_or("unset")
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut follow_ups = Vec::new();
        if !new_failure_modes.is_empty() {
            follow_ups
                .push("Update the runbook: a failure mode it does not cover was seen".to_owned());
        }
        if failure_templates.iter().any(|t| t.proposed_rule.is_some()) {
            follow_ups.push(
                "Review the proposed rules of the new failure modes, set each rule's kind, and add them to a rules file".to_owned(),
            );
        }
        if self
            .findings
            .iter()
            .any(|f| f.finding.kind == "retry_failed_again")
        {
            follow_ups.push(
                "Look at the retried tasks that failed again (retry_failed_again findings): the retry did not recover them".to_owned(),
            );
        }
        if !self.gaps.is_empty() {
            follow_ups
                .push("Add monitoring: some data could not be read during the incident".to_owned());
        }
        if status == "escalated" || status == "unresolved" {
            follow_ups
                .push("Human follow-up needed: automation did not resolve the incident".to_owned());
        }
        let mut timeline = self.timeline.clone();
        match (status, resolved_at) {
            ("resolved", Some(t)) => timeline.push(TimelineLine {
                at: t,
                event: "resolved: failure rate back under the alert threshold".into(),
            }),
            ("escalated", _) => timeline.push(TimelineLine {
                at: state.and_then(|s| s.escalated_at).unwrap_or(ended_at),
                event: "escalated: no automated step remains".into(),
            }),
            ("unresolved", _) => timeline.push(TimelineLine {
                at: ended_at,
                event: "stopped: incident still open".into(),
            }),
            _ => {}
        }
        timeline.sort_by_key(|l| l.at);
        Report {
            name: self.name.clone(),
            dry_run: self.dry_run,
            shadow: self.shadow,
            alert,
            classification: classification.clone(),
            actions: self.actions.clone(),
            findings: self.findings.clone(),
            not_taken: self.not_taken.clone(),
            data_gaps: self.gaps.clone(),
            resolved,
            escalated,
            detected_at,
            resolved_at,
            passes: self.passes,
            post_incident: PostIncident {
                incident_key: state.map(|s| s.key.clone()),
                root_cause: root_cause(state, &classification, &self.actions),
                status: status.into(),
                detected_at,
                resolved_at,
                mttr_seconds: detected_at
                    .zip(resolved_at)
                    .map(|(d, r)| (r - d).num_seconds()),
                timeline,
                actions_summary: summary,
                new_failure_modes,
                failure_templates,
                left_in_place,
                follow_ups,
                woken_by: state.and_then(|s| s.woken_by.clone()),
            },
        }
    }
}

/// The new failure modes of the record, from the `new_failure_mode` findings: the templates of
/// the last finding that has them (the latest evidence), and one line per template; a finding
/// written before templates existed (details: an array of `{error}` samples) gives its samples.
fn new_failure_modes(findings: &[FindingRecord]) -> (Vec<String>, Vec<FailureTemplate>) {
    let mut lines: Vec<String> = Vec::new();
    let mut templates: Vec<FailureTemplate> = Vec::new();
    for f in findings
        .iter()
        .filter(|f| f.finding.kind == "new_failure_mode")
    {
        let d = &f.finding.details;
        if let Some(ts) = d.get("templates") {
            if let Ok(ts) = serde_json::from_value::<Vec<FailureTemplate>>(ts.clone()) {
                templates = ts;
            }
            continue;
        }
        for e in d.as_array().into_iter().flatten() {
            if let Some(e) = e.get("error").and_then(|e| e.as_str())
                && !lines.iter().any(|l| l == e)
                && lines.len() < 10
            {
                lines.push(e.to_owned());
            }
        }
    }
    if !templates.is_empty() {
        lines = templates
            .iter()
            .take(10)
            .map(|t| format!("{}× {}", t.count, t.template))
            .collect();
    }
    (lines, templates)
}

fn root_cause(
    state: Option<&IncidentState>,
    classes: &BTreeMap<FailureKind, u64>,
    actions: &[ActionRecord],
) -> String {
    let Some(_) = state else {
        return "no incident: the failure-rate alert did not fire".into();
    };
    let rolled_back = actions.iter().find_map(|a| match &a.action {
        ActionFields::Rollback {
            from_revision,
            to_revision,
            ..
        } if a.outcome == Outcome::Applied => Some((*from_revision, *to_revision)),
        _ => None,
    });
    let dominant = classes
        .iter()
        .filter(|(_, n)| **n > 0)
        .max_by_key(|(k, n)| (**n, k.is_external()))
        .map(|(k, n)| (*k, *n));
    let base = match dominant {
        None => "failure rate above the alert threshold with no classified failures".to_owned(),
        Some((FailureKind::Timeout, n)) => format!(
            "{n} timeouts: context bundles too large for the model call deadline (runbook: Timeout Failures)"
        ),
        Some((FailureKind::RateLimit, n)) => format!(
            "{n} rate-limit failures: model API quota exceeded (runbook: Rate Limit Failures)"
        ),
        Some((FailureKind::Validation, n)) => format!(
            "{n} validation failures: TaskObject schema mismatch (runbook: Validation Errors)"
        ),
        Some((FailureKind::ModelApi5xx, n)) => {
            format!("{n} model API 5xx failures: vendor outage (runbook: Model API Outages)")
        }
        Some((_, n)) => format!("{n} failures of an unknown type (new failure mode)"),
    };
    match rolled_back {
        Some((f, t)) => format!(
            "{base}; widespread after revision {f} was deployed: rolled back to revision {t}"
        ),
        None => base,
    }
}

fn describe(a: &ActionFields, outcome: Outcome, detail: Option<&str>) -> String {
    let what = match a {
        ActionFields::PruneContext {
            task_id,
            from_bytes,
            to_bytes,
        } => format!("prune_context {task_id}: {from_bytes} -> {to_bytes} bytes"),
        ActionFields::SetEnv {
            deployment,
            name,
            value,
            ..
        } => match value {
            Some(v) => format!("set_env {deployment} {name}={v}"),
            None => format!("set_env {deployment} {name} (unset)"),
        },
        ActionFields::RetryTask {
            task_id,
            attempt,
            failure_kind,
            probe,
        } => format!(
            "retry_task {task_id} attempt {attempt} ({failure_kind}{})",
            if *probe { ", half-open probe" } else { "" }
        ),
        ActionFields::Rollback {
            deployment,
            from_revision,
            to_revision,
        } => format!("rollback {deployment} revision {from_revision} -> {to_revision}"),
        ActionFields::VerifyRollout { deployment, status } => {
            format!("rollout status {deployment}: {status}")
        }
        ActionFields::Page {
            target, summary, ..
        } => format!("page {target}: {summary}"),
        ActionFields::Notify { audience, message } => format!("notify {audience}: {message}"),
    };
    let o = match outcome {
        Outcome::Applied => "applied",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "FAILED",
        Outcome::DryRun => "dry run",
    };
    match detail {
        Some(d) => format!("{what} [{o}: {d}]"),
        None => format!("{what} [{o}]"),
    }
}

pub use crate::text::clean_text;

/// Text from outside made inert in Markdown (CommonMark, GFM tables, Slack-style `<!channel>`):
/// [`clean_text`] first (so nothing can start a new line: no heading, list or quote injection),
/// then `&`, `<`, `>` as entities (no HTML, no autolink, no `<!channel>`) and every other
/// character with a meaning inline (`` ` ``, `*`, `_`, `[`, `]`, `(`, `)`, `#`, `|`, `!`, `~`,
/// `\`, …) behind a backslash; a leading `-`, `+`, `=` or `1.` cannot start a block either.
pub fn md_escape(s: &str) -> String {
    let clean = clean_text(s);
    let mut out = String::with_capacity(clean.len() + 8);
    let digits = clean.chars().take_while(char::is_ascii_digit).count();
    for (i, c) in clean.chars().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' | '{' | '}'
            | '$' | '^' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '.' if i == digits && digits > 0 => out.push_str("\\."),
            _ => out.push(c),
        }
    }
    out
}

/// Text made inert in Slack's mrkdwn (the `text` of a chat webhook): [`clean_text`] first (no
/// control, format or line-separator characters), then `&`, `<` and `>` as the entities Slack
/// documents, so no `<!channel>`, `<!here>`, `<@U…>` mention, `<url|label>` link or
/// `<#C…>` channel reference can be formed; the plain-word mentions `@channel`, `@here` and
/// `@everyone` get a full-width at sign (`＠channel`), which Slack never expands.
///
/// ```
/// use flowfail_core::report::mrkdwn_escape;
/// assert_eq!(
///     mrkdwn_escape("<!channel> a&b <http://x|y> @Here\u{202E}\nok"),
///     "&lt;!channel&gt; a&amp;b &lt;http://x|y&gt; ＠Here ok"
/// );
/// ```
pub fn mrkdwn_escape(s: &str) -> String {
    let clean = clean_text(s);
    let mut out = String::with_capacity(clean.len() + 8);
    let mut rest = clean.as_str();
    while let Some(c) = rest.chars().next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' if ["channel", "here", "everyone"].iter().any(|w| {
                rest[1..]
                    .get(..w.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(w))
            }) =>
            {
                out.push('\u{FF20}');
            }
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What a run of actions at the same time is grouped by in the human timeline: per-task
/// actions of the same kind, outcome, attempt and failure kind (and the same reason, when one
/// was given). Pages, env changes and the rollback are never grouped.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GroupKey<'a> {
    kind: &'static str,
    outcome: Outcome,
    attempt: u32,
    failure_kind: Option<FailureKind>,
    detail: Option<&'a str>,
}

fn group_key(a: &ActionRecord) -> Option<GroupKey<'_>> {
    match &a.action {
        ActionFields::RetryTask {
            attempt,
            failure_kind,
            probe: false,
            ..
        } => Some(GroupKey {
            kind: "retry_task",
            outcome: a.outcome,
            attempt: *attempt,
            failure_kind: Some(*failure_kind),
            detail: a.detail.as_deref(),
        }),
        ActionFields::PruneContext { .. } => Some(GroupKey {
            kind: "prune_context",
            outcome: a.outcome,
            attempt: 0,
            failure_kind: None,
            // Applied prunes differ only in their archive checksums (in the JSON report).
            detail: if a.outcome == Outcome::Applied {
                None
            } else {
                a.detail.as_deref()
            },
        }),
        _ => None,
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Applied => "applied",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "FAILED",
        Outcome::DryRun => "dry run",
    }
}

/// One line for a group of two or more actions with the same key.
fn describe_group(key: &GroupKey<'_>, members: &[&ActionRecord]) -> String {
    let mut ids = Vec::with_capacity(members.len());
    let (mut from, mut to) = (0u64, 0u64);
    for m in members {
        match &m.action {
            ActionFields::RetryTask { task_id, .. } => ids.push(task_id.as_str()),
            ActionFields::PruneContext {
                task_id,
                from_bytes,
                to_bytes,
            } => {
                ids.push(task_id.as_str());
                from = from.saturating_add(*from_bytes);
                to = to.saturating_add(*to_bytes);
            }
            _ => {}
        }
    }
    let n = members.len();
    let what = match key.failure_kind {
        Some(k) => format!("{} {n} tasks ({k}), attempt {}", key.kind, key.attempt),
        None => format!("{} {n} tasks: {from} -> {to} bytes", key.kind),
    };
    let outcome = match (key.detail, key.kind, key.outcome) {
        (Some(d), _, o) => format!("{} ({d})", outcome_word(o)),
        (None, "prune_context", Outcome::Applied) => "applied, originals archived".to_owned(),
        (None, _, o) => outcome_word(o).to_owned(),
    };
    format!("{what} — {outcome}: {}", collapse_ids(&ids))
}

/// A task id split into a prefix and its trailing number (with the number's digits).
#[derive(Debug, Clone, Copy)]
struct NumberedId<'a> {
    id: &'a str,
    prefix: &'a str,
    number: Option<u64>,
    digits: &'a str,
}

impl<'a> NumberedId<'a> {
    fn new(id: &'a str) -> Self {
        let start = id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, digits) = id.split_at(start);
        NumberedId {
            id,
            prefix,
            number: digits.parse::<u64>().ok(),
            digits,
        }
    }

    /// Whether `self` is numbered right after `prev` (`t-00009` → `t-00010`, `t-9` → `t-10`).
    fn follows(&self, prev: &NumberedId<'_>) -> bool {
        match (prev.number, self.number) {
            (Some(p), Some(n)) => {
                self.prefix == prev.prefix
                    && p.checked_add(1) == Some(n)
                    && (self.digits.len() == prev.digits.len() || !self.digits.starts_with('0'))
            }
            _ => false,
        }
    }
}

/// Task ids, sorted, as ranges where they are numbered consecutively (`t-00000…t-00249`), or
/// the first few and a count (`t-1, t-7, t-9 and 247 more`).
fn collapse_ids(ids: &[&str]) -> String {
    let mut sorted: Vec<NumberedId<'_>> = ids.iter().map(|id| NumberedId::new(id)).collect();
    sorted.sort_by(|a, b| (a.prefix, a.number, a.id).cmp(&(b.prefix, b.number, b.id)));
    sorted.dedup_by(|a, b| a.id == b.id);
    // Runs of consecutive numbers: (first id, last id, length).
    let mut runs: Vec<(&str, &str, usize)> = Vec::new();
    let mut prev: Option<NumberedId<'_>> = None;
    for n in &sorted {
        match runs.last_mut() {
            Some(run) if prev.is_some_and(|p| n.follows(&p)) => {
                run.1 = n.id;
                run.2 += 1;
            }
            _ => runs.push((n.id, n.id, 1)),
        }
        prev = Some(*n);
    }
    let show = |r: &(&str, &str, usize)| match r.2 {
        1 => r.0.to_owned(),
        2 => format!("{}, {}", r.0, r.1),
        _ => format!("{}…{}", r.0, r.1),
    };
    const SHOWN: usize = 3;
    if runs.len() <= SHOWN {
        return runs.iter().map(show).collect::<Vec<_>>().join(", ");
    }
    let shown: Vec<String> = runs.iter().take(SHOWN).map(show).collect();
    let rest: usize = runs.iter().skip(SHOWN).map(|r| r.2).sum();
    format!("{} and {rest} more", shown.join(", "))
}

impl Report {
    /// The human-readable timeline (`flowfail respond` without `--json`): per-task actions of
    /// the same kind, outcome and attempt at the same time on one line each (pages never).
    pub fn to_text(&self) -> String {
        self.render_text(false)
    }

    /// The human-readable timeline with every action on a line of its own
    /// (`flowfail respond --verbose`).
    pub fn to_text_verbose(&self) -> String {
        self.render_text(true)
    }

    /// The timeline's lines for the human timeline, grouped unless `verbose`; not yet cleaned.
    fn text_timeline(&self, verbose: bool) -> Vec<(Timestamp, String)> {
        let p = &self.post_incident;
        let mut out = Vec::with_capacity(p.timeline.len());
        if verbose {
            out.extend(p.timeline.iter().map(|l| (l.at, l.event.clone())));
            return out;
        }
        // Which timeline lines are actions: the line an action wrote (same time, same text).
        let described: Vec<String> = self
            .actions
            .iter()
            .map(|a| describe(&a.action, a.outcome, a.detail.as_deref()))
            .collect();
        let mut by_line: HashMap<(Timestamp, &str), VecDeque<usize>> = HashMap::new();
        for (i, (a, d)) in self.actions.iter().zip(&described).enumerate() {
            by_line.entry((a.at, d.as_str())).or_default().push_back(i);
        }
        let mut block: Vec<&ActionRecord> = Vec::new();
        for l in &p.timeline {
            let action = by_line
                .get_mut(&(l.at, l.event.as_str()))
                .and_then(VecDeque::pop_front)
                .and_then(|i| self.actions.get(i));
            match action {
                Some(a) if group_key(a).is_some() => {
                    if block.first().is_some_and(|b| b.at != a.at) {
                        flush_block(&mut block, &mut out);
                    }
                    block.push(a);
                }
                _ => {
                    flush_block(&mut block, &mut out);
                    out.push((l.at, l.event.clone()));
                }
            }
        }
        flush_block(&mut block, &mut out);
        out
    }

    fn render_text(&self, verbose: bool) -> String {
        let mut s = String::new();
        let p = &self.post_incident;
        let _ = writeln!(
            s,
            "{}incident {} — {}",
            self.name
                .as_deref()
                .map(|n| format!("[{}] ", clean_text(n)))
                .unwrap_or_default(),
            clean_text(p.incident_key.as_deref().unwrap_or("(none)")),
            clean_text(&p.status)
        );
        let _ = writeln!(
            s,
            "alert: {} — failure rate {:.2}% over {} tasks",
            if self.alert.firing {
                "FIRING"
            } else {
                "not firing"
            },
            self.alert.failure_rate * 100.0,
            self.alert.window_tasks
        );
        let classes: Vec<String> = self
            .classification
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = writeln!(
            s,
            "classification: {}",
            if classes.is_empty() {
                "-".into()
            } else {
                classes.join(" ")
            }
        );
        let _ = writeln!(s, "\ntimeline:");
        for (at, event) in self.text_timeline(verbose) {
            let _ = writeln!(
                s,
                "  {}  {}",
                at.format("%Y-%m-%d %H:%M:%S"),
                clean_text(&event)
            );
        }
        if !self.not_taken.is_empty() {
            let _ = writeln!(s, "\nnot done, and why:");
            for r in &self.not_taken {
                let ex = if r.skip.examples.is_empty() {
                    String::new()
                } else {
                    let ex: Vec<&str> =
                        r.skip.examples.iter().take(3).map(String::as_str).collect();
                    format!(" (e.g. {})", clean_text(&ex.join(", ")))
                };
                let _ = writeln!(
                    s,
                    "  {} x{}: {}{}",
                    clean_text(&r.skip.action),
                    r.skip.count,
                    clean_text(&r.skip.reason),
                    ex
                );
            }
        }
        let _ = writeln!(s, "\nroot cause: {}", clean_text(&p.root_cause));
        match p.mttr_seconds {
            Some(m) => {
                let _ = writeln!(s, "MTTR: {m} s");
            }
            None => {
                let _ = writeln!(s, "MTTR: - (not resolved)");
            }
        }
        for l in &p.left_in_place {
            let _ = writeln!(s, "left in place: {}", clean_text(l));
        }
        if !p.failure_templates.is_empty() {
            let _ = writeln!(
                s,
                "\nnew failure modes (message templates, with a proposed rule):"
            );
            for t in &p.failure_templates {
                let _ = writeln!(s, "  {}× {}", t.count, clean_text(&t.template));
                let _ = writeln!(s, "    e.g. {}", clean_text(&t.example));
                match &t.proposed_rule {
                    Some(r) => {
                        let _ = writeln!(
                            s,
                            "    rule: name = {:?}, kind = {}, pattern = {}",
                            clean_text(&r.name),
                            r.kind,
                            clean_text(&r.pattern)
                        );
                    }
                    None => {
                        let _ =
                            writeln!(s, "    rule: none proposed (too generic to match safely)");
                    }
                }
            }
        }
        s
    }

    /// The post-incident record as Markdown, for the incident tracker. Every piece of text in
    /// it passes [`md_escape`]: error messages, vendor names, env values and summaries come
    /// from outside and render as plain text.
    pub fn to_markdown(&self) -> String {
        let p = &self.post_incident;
        let e = md_escape;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Post-incident review: {}\n",
            e(p.incident_key.as_deref().unwrap_or("no incident"))
        );
        let _ = writeln!(s, "- **Status:** {}", e(&p.status));
        let _ = writeln!(s, "- **Root cause:** {}", e(&p.root_cause));
        if let Some(d) = p.detected_at {
            let _ = writeln!(s, "- **Detected:** {d}");
        }
        if let Some(r) = p.resolved_at {
            let _ = writeln!(s, "- **Resolved:** {r}");
        }
        if let Some(m) = p.mttr_seconds {
            let _ = writeln!(s, "- **MTTR:** {m} s");
        }
        let _ = writeln!(
            s,
            "- **Alert at detection:** {:.2}% failures over {} tasks\n",
            self.alert.failure_rate * 100.0,
            self.alert.window_tasks
        );
        let _ = writeln!(s, "## Timeline\n");
        let _ = writeln!(s, "| time | event |\n|---|---|");
        for l in &p.timeline {
            let _ = writeln!(s, "| {} | {} |", l.at.format("%H:%M:%S"), e(&l.event));
        }
        let _ = writeln!(s, "\n## Actions\n");
        let _ = writeln!(s, "| action | outcome | count |\n|---|---|---|");
        for (k, m) in &p.actions_summary {
            for (o, n) in m {
                let _ = writeln!(s, "| {} | {} | {n} |", e(k), e(o));
            }
        }
        let sections = [
            ("New failure modes", &p.new_failure_modes),
            ("Left in place", &p.left_in_place),
            ("Follow-ups", &p.follow_ups),
        ];
        for (title, items) in sections {
            if !items.is_empty() {
                let _ = writeln!(s, "\n## {title}\n");
                for i in items {
                    let _ = writeln!(s, "- {}", e(i));
                }
            }
        }
        proposed_rules_markdown(&p.failure_templates, &mut s);
        s
    }
}

/// The Markdown section of the new failure modes' templates: each with its count and example,
/// then the proposed rules in one TOML block to review and paste into a rules file. The block's
/// fence is longer than any run of backticks in it, so nothing inside can close it.
fn proposed_rules_markdown(templates: &[FailureTemplate], s: &mut String) {
    if templates.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## New failure modes: templates\n");
    let _ = writeln!(s, "| count | template | example |\n|---|---|---|");
    for t in templates {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t.count,
            md_escape(&t.template),
            md_escape(&t.example)
        );
    }
    let rules: Vec<String> = templates
        .iter()
        .filter_map(|t| t.proposed_rule.as_ref())
        .map(|r| {
            r.toml
                .lines()
                .map(clean_text)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    if rules.is_empty() {
        return;
    }
    let body = rules.join("\n\n");
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(
        s,
        "\n## Proposed rules\n\nReview each rule, set its `kind`, and add it to a rules file:\n\n{fence}toml\n{body}\n{fence}"
    );
}

/// Emits a block of groupable actions at one time: one line per group, at its first member's
/// place; a group of one keeps the action's own line.
fn flush_block(block: &mut Vec<&ActionRecord>, out: &mut Vec<(Timestamp, String)>) {
    let mut groups: Vec<(GroupKey<'_>, Vec<&ActionRecord>)> = Vec::new();
    for a in block.iter() {
        let Some(k) = group_key(a) else { continue };
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(a),
            None => groups.push((k, vec![a])),
        }
    }
    for (k, members) in &groups {
        let line = match members.as_slice() {
            [one] => describe(&one.action, one.outcome, one.detail.as_deref()),
            _ => describe_group(k, members),
        };
        if let Some(first) = members.first() {
            out.push((first.at, line));
        }
    }
    block.clear();
}
