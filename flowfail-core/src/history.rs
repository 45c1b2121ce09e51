//! What flowfail did and would have done, read back from the incident ledger: the listing of
//! `flowfail incidents` ([`IncidentLine`]) and the record of `flowfail incident KEY`
//! ([`IncidentView`]), rendered as `flowfail respond` renders a replay.
//!
//! A shadow run keeps its incidents in the scope `<deployment>:shadow`: each entry of its
//! timeline reads as "would have"; an acting run's, in the scope `<deployment>`, as "did".
//!
//! ```
//! use flowfail_core::history::IncidentView;
//! use flowfail_core::ports::{IncidentRecord, TimelineEntry, TimelineKind};
//!
//! let at = chrono::Utc::now();
//! let mut rec = IncidentRecord::new("flowengine-20261207T1400Z", "flowengine", at, serde_json::json!({}));
//! rec.timeline.push(TimelineEntry::new(at, TimelineKind::Decision, serde_json::json!({
//!     "mode": "act", "acted": false,
//!     "skipped": [{"action": "rollback", "reason": "no earlier revision", "count": 1, "examples": []}],
//! })));
//! let view = IncidentView::from_record(&rec, &[], at);
//! assert_eq!(view.status, "open");
//! assert!(view.to_text(false).contains("no earlier revision"));
//! ```

use std::fmt::Write as _;

use serde::Serialize;

use crate::decide::IncidentState;
use crate::detect::AlertState;
use crate::model::Timestamp;
use crate::operator::Approval;
use crate::ports::{IncidentListing, IncidentRecord, TimelineEntry, TimelineKind};
use crate::report::{
    ActionFields, Conduct, DecisionRecord, Outcome, Report, ReportBuilder, md_escape,
};
use crate::text::clean_text;

/// The suffix of a shadow run's ledger scope (`<deployment>:shadow`).
pub const SHADOW_SUFFIX: &str = ":shadow";

/// Whether a ledger scope is a shadow run's.
pub fn is_shadow_scope(scope: &str) -> bool {
    scope.ends_with(SHADOW_SUFFIX)
}

/// The mode of an incident's scope: [`Conduct::Shadow`] or [`Conduct::Act`].
fn scope_mode(scope: &str) -> Conduct {
    if is_shadow_scope(scope) {
        Conduct::Shadow
    } else {
        Conduct::Act
    }
}

/// One line of `flowfail incidents`: an incident with its status, mode, MTTR, root cause and
/// its actions by what came of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IncidentLine {
    /// The incident key.
    pub key: String,
    /// Its ledger scope.
    pub scope: String,
    /// `shadow` (decided, nothing changed) or `act`.
    pub mode: Conduct,
    /// When it opened.
    pub opened_at: Timestamp,
    /// When it closed, if it did.
    pub closed_at: Option<Timestamp>,
    /// `open`, or the record's status (`resolved`, `escalated`, …).
    pub status: String,
    /// Time to resolve, seconds (resolved incidents).
    pub mttr_seconds: Option<i64>,
    /// The record's root cause (closed incidents).
    pub root_cause: Option<String>,
    /// Actions applied.
    pub applied: u64,
    /// Actions tried that failed.
    pub failed: u64,
    /// Actions only decided (shadow, dry run, paused, superseded).
    pub decided: u64,
}

impl IncidentLine {
    /// The line of a listing.
    pub fn of(l: &IncidentListing) -> Self {
        let r = &l.record;
        let post = r.post_incident.as_ref();
        let status = match (r.closed_at, post.and_then(|p| p["status"].as_str())) {
            (None, _) => "open".to_owned(),
            (Some(_), Some(s)) => s.to_owned(),
            (Some(_), None) => "closed".to_owned(),
        };
        IncidentLine {
            key: r.key.clone(),
            scope: r.scope.clone(),
            mode: scope_mode(&r.scope),
            opened_at: r.opened_at,
            closed_at: r.closed_at,
            status,
            mttr_seconds: post.and_then(|p| p["mttr_seconds"].as_i64()),
            root_cause: post.and_then(|p| p["root_cause"].as_str().map(str::to_owned)),
            applied: l.applied,
            failed: l.failed,
            decided: l.decided,
        }
    }

    /// The line for people (text from the ledger cleaned of control characters).
    pub fn to_text(&self) -> String {
        format!(
            "{}  {:<6}  {:<10}  {}  MTTR {:>6}  applied {} failed {} decided {}  {}",
            clean_text(&self.key),
            self.mode.as_str(),
            clean_text(&self.status),
            self.opened_at.format("%Y-%m-%d %H:%M"),
            self.mttr_seconds
                .map(|m| format!("{m} s"))
                .unwrap_or_else(|| "-".into()),
            self.applied,
            self.failed,
            self.decided,
            clean_text(self.root_cause.as_deref().unwrap_or("-")),
        )
    }
}

/// A decision of the timeline with its time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DecisionAt {
    /// When it was decided.
    pub at: Timestamp,
    /// The decision.
    #[serde(flatten)]
    pub decision: DecisionRecord,
}

/// The alert's numbers at one pass (from a decision or a sample): a point of the failure-rate
/// chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RatePoint {
    /// When.
    pub at: Timestamp,
    /// The alert.
    #[serde(flatten)]
    pub alert: AlertState,
}

/// A gated action that waits for an operator: proposed, neither approved nor denied since.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PendingApproval {
    /// When it was first proposed.
    pub at: Timestamp,
    /// The gate (`rollback`, `fallback_model`, …): what `flowfail approve` names.
    pub gate: String,
    /// The action, described.
    pub action: String,
    /// Why it was decided.
    pub reason: String,
}

/// One incident as the ledger holds it, rendered for people: the report a replay would give
/// (grouped timeline, why not, root cause, what is left in place), its decisions, the
/// failure rate over its course, and what waits for an operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IncidentView {
    /// The incident key.
    pub key: String,
    /// Its ledger scope.
    pub scope: String,
    /// `shadow` (what it would have done) or `act` (what it did).
    pub mode: Conduct,
    /// When it opened.
    pub opened_at: Timestamp,
    /// When it closed, if it did.
    pub closed_at: Option<Timestamp>,
    /// `open`, or the record's status.
    pub status: String,
    /// The report, from the ledger's timeline and state.
    pub report: Report,
    /// The decisions recorded, oldest first.
    pub decisions: Vec<DecisionAt>,
    /// The failure rate over the incident, from its decisions and samples.
    pub rates: Vec<RatePoint>,
    /// Approvals and denials recorded.
    pub approvals: Vec<Approval>,
    /// Gated actions waiting for an operator (open incidents).
    pub pending: Vec<PendingApproval>,
}

impl IncidentView {
    /// The view of `rec` (with its timeline) and its `approvals`, as of `now`.
    pub fn from_record(rec: &IncidentRecord, approvals: &[Approval], now: Timestamp) -> Self {
        let mode = scope_mode(&rec.scope);
        let state: Option<IncidentState> = serde_json::from_value(rec.state.clone()).ok();
        let mut b = ReportBuilder {
            shadow: mode == Conduct::Shadow,
            ..ReportBuilder::default()
        };
        if let Some(s) = &state {
            let a = s.alert_at_detection;
            b.note(
                rec.opened_at,
                format!(
                    "incident opened: {:.2}% failures over {} tasks",
                    a.failure_rate * 100.0,
                    a.window_tasks
                ),
            );
        }
        let mut decisions = Vec::new();
        let mut rates = Vec::new();
        let mut pending: Vec<PendingApproval> = Vec::new();
        // A pass checkpoints its actions as it goes and writes its decision at its end: read
        // each pass's decision (and the operator's controls) ahead of its actions.
        let mut entries: Vec<&TimelineEntry> = rec.timeline.iter().collect();
        entries.sort_by_key(|e| (e.at, !before_actions(&e.kind)));
        for e in entries {
            read_entry(e, &mut b, &mut decisions, &mut rates, &mut pending);
        }
        // Answered since it was proposed (the pass that reads the answer has not run yet).
        pending.retain(|p| !approvals.iter().any(|a| a.action == p.gate && a.at >= p.at));
        b.passes = decisions.len() as u64;
        let mut report = b.build(state.as_ref(), rec.closed_at.unwrap_or(now));
        let status = if rec.closed_at.is_none() {
            // Still open: not "stopped", whatever the builder says of an unsettled incident.
            report
                .post_incident
                .timeline
                .retain(|l| l.event != "stopped: incident still open");
            report.post_incident.status = "open".into();
            "open".to_owned()
        } else {
            pending.clear();
            rec.post_incident
                .as_ref()
                .and_then(|p| p["status"].as_str())
                .unwrap_or(&report.post_incident.status)
                .to_owned()
        };
        report.post_incident.status.clone_from(&status);
        IncidentView {
            key: rec.key.clone(),
            scope: rec.scope.clone(),
            mode,
            opened_at: rec.opened_at,
            closed_at: rec.closed_at,
            status,
            report,
            decisions,
            rates,
            approvals: approvals.to_vec(),
            pending,
        }
    }

    /// The record for people (`flowfail incident KEY`): the mode, the report's text (grouped
    /// unless `verbose`), then what waits for an operator.
    pub fn to_text(&self, verbose: bool) -> String {
        let mut s = String::new();
        // A shadow report says so itself.
        if self.mode != Conduct::Shadow {
            let _ = writeln!(s, "mode: {}", self.mode_line());
        }
        s.push_str(&if verbose {
            self.report.to_text_verbose()
        } else {
            self.report.to_text()
        });
        if !self.pending.is_empty() {
            let _ = writeln!(s, "\nwaiting for approval:");
            for p in &self.pending {
                let _ = writeln!(
                    s,
                    "  {}  {} ({}): flowfail approve {} {}",
                    p.at.format("%Y-%m-%d %H:%M:%S"),
                    clean_text(&p.action),
                    clean_text(&p.reason),
                    clean_text(&self.key),
                    clean_text(&p.gate)
                );
            }
        }
        s
    }

    /// The record as Markdown, for the incident tracker.
    pub fn to_markdown(&self) -> String {
        let mut s = self.report.to_markdown();
        if self.mode != Conduct::Shadow
            && let Some(i) = s.find("- **Status:**")
        {
            s.insert_str(
                i,
                &format!("- **Mode:** {}\n", md_escape(&self.mode_line())),
            );
        }
        if !self.pending.is_empty() {
            let _ = writeln!(s, "\n## Waiting for approval\n");
            for p in &self.pending {
                let _ = writeln!(
                    s,
                    "- {}: {} ({})",
                    md_escape(&p.gate),
                    md_escape(&p.action),
                    md_escape(&p.reason)
                );
            }
        }
        s
    }

    /// `shadow — what flowfail would have done (nothing was changed)` or `act — what
    /// flowfail did`.
    pub fn mode_line(&self) -> String {
        match self.mode {
            Conduct::Shadow => {
                "shadow — what flowfail would have done (nothing was changed)".to_owned()
            }
            _ => "act — what flowfail did".to_owned(),
        }
    }

    /// Actions applied (changed the world), tried and failed, and only decided.
    pub fn action_counts(&self) -> (usize, usize, usize) {
        let n =
            |f: fn(Outcome) -> bool| self.report.actions.iter().filter(|a| f(a.outcome)).count();
        (
            n(|o| o == Outcome::Applied),
            n(|o| o == Outcome::Failed),
            n(|o| matches!(o, Outcome::DryRun | Outcome::Skipped)),
        )
    }
}

/// Whether entries of this kind read before the actions of the same pass.
fn before_actions(k: &TimelineKind) -> bool {
    matches!(
        k,
        TimelineKind::Decision
            | TimelineKind::Paused
            | TimelineKind::Resumed
            | TimelineKind::Proposed
            | TimelineKind::Approved
            | TimelineKind::Denied
    )
}

/// Reads one timeline entry into the builder and the view's parts.
fn read_entry(
    e: &TimelineEntry,
    b: &mut ReportBuilder,
    decisions: &mut Vec<DecisionAt>,
    rates: &mut Vec<RatePoint>,
    pending: &mut Vec<PendingApproval>,
) {
    let d = &e.detail;
    let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
    match &e.kind {
        TimelineKind::Action => {
            let fields = serde_json::from_value::<ActionFields>(d["action"].clone());
            let outcome = serde_json::from_value::<Outcome>(d["outcome"].clone());
            if let (Ok(f), Ok(o)) = (fields, outcome) {
                b.action(e.at, f, o, d["detail"].as_str().map(str::to_owned));
            }
        }
        TimelineKind::Finding => {
            if let Ok(f) = serde_json::from_value(d.clone()) {
                b.finding(e.at, f);
            }
        }
        TimelineKind::Decision => {
            if let Ok(rec) = serde_json::from_value::<DecisionRecord>(d.clone()) {
                b.skips(e.at, &rec.skipped);
                for g in &rec.gaps {
                    b.gap(e.at, g.clone());
                }
                if let Some(a) = rec.alert {
                    b.last_alert = Some(a);
                    rates.push(RatePoint { at: e.at, alert: a });
                }
                b.note(e.at, format!("decision: {}", rec.summary()));
                decisions.push(DecisionAt {
                    at: e.at,
                    decision: rec,
                });
            }
        }
        TimelineKind::Sample => {
            if let Ok(a) = serde_json::from_value::<AlertState>(d.clone()) {
                rates.push(RatePoint { at: e.at, alert: a });
            }
        }
        TimelineKind::Paused => b.note(
            e.at,
            format!("automation paused by {}: {}", text("by"), text("reason")),
        ),
        TimelineKind::Resumed => b.note(e.at, "automation resumed".to_owned()),
        TimelineKind::Proposed => {
            let gate = text("gate");
            b.note(
                e.at,
                format!(
                    "proposed: {} ({}); waits for approval",
                    text("action"),
                    text("reason")
                ),
            );
            let action = text("action");
            if !pending.iter().any(|p| p.gate == gate && p.action == action) {
                pending.push(PendingApproval {
                    at: e.at,
                    gate,
                    action,
                    reason: text("reason"),
                });
            }
        }
        TimelineKind::Approved | TimelineKind::Denied => {
            let gate = text("gate");
            let verb = if e.kind == TimelineKind::Approved {
                "approved"
            } else {
                "denied"
            };
            let why = match d["reason"].as_str() {
                Some(r) if !r.is_empty() => format!(": {r}"),
                _ => String::new(),
            };
            b.note(e.at, format!("{verb} by {}: {gate}{why}", text("by")));
            pending.retain(|p| p.gate != gate);
        }
        _ => {}
    }
}
