//! The report builder: what a run records pass by pass, and the report it builds at the end.

use std::collections::BTreeMap;

use super::action::describe;
use super::{
    ActionFields, ActionRecord, DecisionRecord, FindingRecord, Outcome, PostIncident, Report,
    SkipRecord, TimelineLine,
};
use crate::decide::{Finding, IncidentState, Skip};
use crate::detect::AlertState;
use crate::model::{FailureKind, Timestamp};
use crate::ports::{TimelineEntry, TimelineKind};
use crate::templates::FailureTemplate;

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
    /// The reasons for not acting recorded in the ledger's decisions (by any process) are
    /// merged into this builder's.
    pub fn with_ledger_timeline(&self, entries: &[TimelineEntry]) -> ReportBuilder {
        let mut b = self.ledger_actions(entries);
        for e in entries.iter().filter(|e| e.kind == TimelineKind::Decision) {
            if let Ok(d) = serde_json::from_value::<DecisionRecord>(e.detail.clone()) {
                b.skips(e.at, &d.skipped);
                for g in &d.gaps {
                    b.gap(e.at, g.clone());
                }
            }
        }
        b
    }

    /// This builder with its actions and findings from the ledger's entries, when the ledger
    /// holds more actions than this process saw.
    fn ledger_actions(&self, entries: &[TimelineEntry]) -> ReportBuilder {
        let ledger_actions = entries
            .iter()
            .filter(|e| e.kind == TimelineKind::Action)
            .count();
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
            match e.kind {
                TimelineKind::Action => {
                    let fields = serde_json::from_value::<ActionFields>(e.detail["action"].clone());
                    let outcome = serde_json::from_value::<Outcome>(e.detail["outcome"].clone());
                    if let (Ok(f), Ok(o)) = (fields, outcome) {
                        let detail = e.detail["detail"].as_str().map(str::to_owned);
                        b.action(e.at, f, o, detail);
                    }
                }
                TimelineKind::Finding => {
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
        let status = self.status(state);
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
        let summary = self.actions_summary();
        let (new_failure_modes, failure_templates) = new_failure_modes(&self.findings);
        let left_in_place = left_in_place(state);
        let follow_ups = self.follow_ups(status, &new_failure_modes, &failure_templates);
        let timeline = self.closing_timeline(status, state, resolved_at, ended_at);
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
                not_taken: self.not_taken.clone(),
                follow_ups,
                woken_by: state.and_then(|s| s.woken_by.clone()),
            },
        }
    }

    /// The record's status: `dry_run`, `halted`, `not_firing`, `resolved`, `escalated` or
    /// `unresolved`.
    fn status(&self, state: Option<&IncidentState>) -> &'static str {
        let resolved = state.and_then(|s| s.resolved_at).is_some();
        let escalated = state.and_then(|s| s.escalated_at).is_some();
        if self.dry_run {
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
        }
    }

    /// How many actions of each kind ended with each outcome.
    fn actions_summary(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
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
        summary
    }

    /// The follow-ups the record asks of humans.
    fn follow_ups(
        &self,
        status: &str,
        new_failure_modes: &[String],
        failure_templates: &[FailureTemplate],
    ) -> Vec<String> {
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
        if self
            .findings
            .iter()
            .any(|f| f.finding.kind == "detection_gap")
        {
            follow_ups.push(
                "Add monitoring/alerting: a detection gap was identified (detection_gap finding): failures the logs show never reached the TaskDB".to_owned(),
            );
        }
        if status == "escalated" || status == "unresolved" {
            follow_ups
                .push("Human follow-up needed: automation did not resolve the incident".to_owned());
        }
        follow_ups
    }

    /// The timeline, with the line that closes it (resolved, escalated or stopped), in time order.
    fn closing_timeline(
        &self,
        status: &str,
        state: Option<&IncidentState>,
        resolved_at: Option<Timestamp>,
        ended_at: Timestamp,
    ) -> Vec<TimelineLine> {
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
        timeline
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

/// The env changes flowfail made and left in place, each with the value it replaced.
fn left_in_place(state: Option<&IncidentState>) -> Vec<String> {
    state
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
        .unwrap_or_default()
}
