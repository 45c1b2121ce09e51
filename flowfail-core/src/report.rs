//! The incident report and the post-incident record.
//!
//! The [`Report`] is what `flowfail respond --json` prints: the alert, the classification, every
//! action in execution order with its outcome, every finding, every action *not* taken with the
//! reason, and the post-incident record (root cause, timeline, MTTR, new failure modes), which
//! also renders as Markdown for the incident tracker.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::decide::{Action, ActionOutcome, Applied, Finding, IncidentState, Skip};
use crate::detect::AlertState;
use crate::model::{FailureKind, Timestamp};

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
            } => ActionFields::Page {
                target,
                reason,
                summary,
            },
            Action::Notify { audience, message } => ActionFields::Notify { audience, message },
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
    /// Failure modes the runbook does not know (distinct error samples).
    pub new_failure_modes: Vec<String>,
    /// Changes flowfail left in place when it stopped.
    pub left_in_place: Vec<String>,
    /// Suggested follow-ups (runbook updates, monitoring gaps).
    pub follow_ups: Vec<String>,
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
        let new_failure_modes: Vec<String> = self
            .findings
            .iter()
            .filter(|f| f.finding.kind == "new_failure_mode")
            .flat_map(|f| {
                f.finding
                    .details
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|d| d.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            })
            .fold(Vec::new(), |mut v, e| {
                if !v.contains(&e) && v.len() < 10 {
                    v.push(e);
                }
                v
            });
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
                left_in_place,
                follow_ups,
            },
        }
    }
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

impl Report {
    /// The human-readable timeline (`flowfail respond` without `--json`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let p = &self.post_incident;
        let _ = writeln!(
            s,
            "{}incident {} — {}",
            self.name
                .as_deref()
                .map(|n| format!("[{n}] "))
                .unwrap_or_default(),
            p.incident_key.as_deref().unwrap_or("(none)"),
            p.status
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
        for l in &p.timeline {
            let _ = writeln!(s, "  {}  {}", l.at.format("%Y-%m-%d %H:%M:%S"), l.event);
        }
        if !self.not_taken.is_empty() {
            let _ = writeln!(s, "\nnot done, and why:");
            for r in &self.not_taken {
                let ex = if r.skip.examples.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (e.g. {})",
                        r.skip
                            .examples
                            .iter()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let _ = writeln!(
                    s,
                    "  {} x{}: {}{}",
                    r.skip.action, r.skip.count, r.skip.reason, ex
                );
            }
        }
        let _ = writeln!(s, "\nroot cause: {}", p.root_cause);
        match p.mttr_seconds {
            Some(m) => {
                let _ = writeln!(s, "MTTR: {m} s");
            }
            None => {
                let _ = writeln!(s, "MTTR: - (not resolved)");
            }
        }
        for l in &p.left_in_place {
            let _ = writeln!(s, "left in place: {l}");
        }
        s
    }

    /// The post-incident record as Markdown, for the incident tracker.
    pub fn to_markdown(&self) -> String {
        let p = &self.post_incident;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Post-incident review: {}\n",
            p.incident_key.as_deref().unwrap_or("no incident")
        );
        let _ = writeln!(s, "- **Status:** {}", p.status);
        let _ = writeln!(s, "- **Root cause:** {}", p.root_cause);
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
            let _ = writeln!(
                s,
                "| {} | {} |",
                l.at.format("%H:%M:%S"),
                l.event.replace('|', "\\|")
            );
        }
        let _ = writeln!(s, "\n## Actions\n");
        let _ = writeln!(s, "| action | outcome | count |\n|---|---|---|");
        for (k, m) in &p.actions_summary {
            for (o, n) in m {
                let _ = writeln!(s, "| {k} | {o} | {n} |");
            }
        }
        if !p.new_failure_modes.is_empty() {
            let _ = writeln!(s, "\n## New failure modes\n");
            for f in &p.new_failure_modes {
                let _ = writeln!(s, "- `{}`", f.replace('`', "'"));
            }
        }
        if !p.left_in_place.is_empty() {
            let _ = writeln!(s, "\n## Left in place\n");
            for l in &p.left_in_place {
                let _ = writeln!(s, "- {l}");
            }
        }
        if !p.follow_ups.is_empty() {
            let _ = writeln!(s, "\n## Follow-ups\n");
            for f in &p.follow_ups {
                let _ = writeln!(s, "- {f}");
            }
        }
        s
    }
}
