//! The backtest's report: each incident flowfail would have opened, what it would have done and
//! not done, and why, and a summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::IncidentSpan;
use crate::model::Timestamp;
use crate::report::{ActionRecord, Outcome, Report, SkipRecord};

/// Kinds that tell people, not mitigate: left out of the time to mitigation.
const TELLING: [&str; 2] = ["page", "notify"];

/// One incident flowfail would have opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BacktestIncident {
    /// Its name (the exported scenario's file name without `.json`).
    pub name: String,
    /// The poll that would have opened it.
    pub opened_at: Timestamp,
    /// The poll whose alert cleared (`None`: still firing at the period's end).
    pub closed_at: Option<Timestamp>,
    /// The failure rate at the opening poll, and its highest.
    pub rate_at_open: f64,
    /// The highest failure rate of its polls.
    pub peak_rate: f64,
    /// Finished tasks in the window at the opening poll.
    pub window_tasks: u64,
    /// The replay's classification of the window's failures, by kind.
    pub classification: BTreeMap<String, u64>,
    /// The replay's root cause.
    pub root_cause: String,
    /// What it would have done, in order, with each outcome and reason.
    pub actions: Vec<ActionRecord>,
    /// What it would not have done, and why.
    pub not_taken: Vec<SkipRecord>,
    /// What the replay could not read (history does not keep it) or found missing.
    pub gaps: Vec<String>,
    /// From the opening poll to its first mitigating action (not a page or a notice).
    pub time_to_mitigation_s: Option<i64>,
    /// From the opening poll to the last failure while the incident was open: when the
    /// failures actually stopped.
    pub failures_stopped_after_s: Option<i64>,
    /// Whether the replay resolved it, and whether it escalated.
    pub resolved: bool,
    /// Whether the replay escalated it.
    pub escalated: bool,
    /// When the replay resolved it (virtual time: the incident's own clock).
    pub resolved_at: Option<Timestamp>,
    /// Later alert spans that opened before this incident settled: live, they were this
    /// incident (their opening times).
    pub absorbed: Vec<Timestamp>,
}

impl BacktestIncident {
    /// The incident of `span`, with what its replay decided.
    pub fn from_replay(
        name: &str,
        span: &IncidentSpan,
        report: &Report,
        history_gaps: &[String],
    ) -> Self {
        let open = span.opened_at;
        let first_mitigation = report
            .actions
            .iter()
            .filter(|a| a.outcome == Outcome::Applied && !TELLING.contains(&a.action.kind()))
            .map(|a| a.at)
            .min();
        let mut gaps: Vec<String> = history_gaps.to_vec();
        for g in &report.data_gaps {
            if !gaps.contains(g) {
                gaps.push(g.clone());
            }
        }
        BacktestIncident {
            name: name.to_owned(),
            opened_at: open,
            closed_at: span.closed_at,
            rate_at_open: span.alert.failure_rate,
            peak_rate: span.peak_rate,
            window_tasks: span.alert.window_tasks,
            classification: report
                .classification
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            root_cause: report.post_incident.root_cause.clone(),
            actions: report.actions.clone(),
            not_taken: report.not_taken.clone(),
            gaps,
            time_to_mitigation_s: first_mitigation.map(|at| (at - open).num_seconds()),
            failures_stopped_after_s: span.last_failure_at.map(|at| (at - open).num_seconds()),
            resolved: report.resolved,
            escalated: report.escalated,
            resolved_at: report.resolved_at,
            absorbed: Vec::new(),
        }
    }

    /// An incident whose replay could not run: its span, and why.
    pub fn unreplayed(name: &str, span: &IncidentSpan, why: &str, gaps: &[String]) -> Self {
        let mut gaps = gaps.to_vec();
        gaps.push(format!("not replayed: {why}"));
        BacktestIncident {
            name: name.to_owned(),
            opened_at: span.opened_at,
            closed_at: span.closed_at,
            rate_at_open: span.alert.failure_rate,
            peak_rate: span.peak_rate,
            window_tasks: span.alert.window_tasks,
            classification: BTreeMap::new(),
            root_cause: String::new(),
            actions: Vec::new(),
            not_taken: Vec::new(),
            gaps,
            time_to_mitigation_s: None,
            failures_stopped_after_s: span
                .last_failure_at
                .map(|at| (at - span.opened_at).num_seconds()),
            resolved: false,
            escalated: false,
            resolved_at: None,
            absorbed: Vec::new(),
        }
    }

    /// Whether the live incident would still have been open at `at`: not yet resolved in its
    /// replay, or never settled in it. (An escalated incident cools down until its alert
    /// clears, which is where its span ends.)
    pub fn open_at(&self, at: Timestamp) -> bool {
        if self.escalated {
            return false;
        }
        match self.resolved_at {
            Some(r) => at < r,
            None => !self.resolved && self.closed_at.is_some(),
        }
    }

    /// Takes in a later span that opened while this incident was still open: live, it was the
    /// same incident.
    pub fn absorb(&mut self, later: &BacktestIncident) {
        self.absorbed.push(later.opened_at);
        self.closed_at = later.closed_at;
        self.peak_rate = self.peak_rate.max(later.peak_rate);
        if let (Some(a), Some(b)) = (
            self.failures_stopped_after_s,
            later.failures_stopped_after_s,
        ) {
            self.failures_stopped_after_s =
                Some(a.max(b + (later.opened_at - self.opened_at).num_seconds()));
        }
    }

    /// The dominant failure kind of the replay's classification.
    pub fn main_kind(&self) -> Option<&str> {
        self.classification
            .iter()
            .filter(|(_, n)| **n > 0)
            .max_by_key(|(k, n)| (**n, std::cmp::Reverse(k.as_str())))
            .map(|(k, _)| k.as_str())
    }
}

/// Totals over the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BacktestSummary {
    /// Incidents it would have opened.
    pub incidents: usize,
    /// Actions it would have applied, by kind.
    pub actions_by_kind: BTreeMap<String, u64>,
    /// Actions it would have held back or skipped, by kind.
    pub skipped_by_kind: BTreeMap<String, u64>,
    /// Actions whose replay failed, by kind.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// What it would not have done, by kind (each reason once per incident).
    pub not_taken_by_kind: BTreeMap<String, u64>,
    /// The median time to mitigation over the incidents with one, seconds.
    pub median_time_to_mitigation_s: Option<i64>,
    /// The median time until the failures actually stopped, seconds.
    pub median_failures_stopped_after_s: Option<i64>,
}

/// A backtest over a period: every incident flowfail would have opened and what it would have
/// done, with the gaps and assumptions that shaped it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BacktestReport {
    /// The Deployment (ledger scope).
    pub deployment: String,
    /// The period's start.
    pub from: Timestamp,
    /// The period's end.
    pub to: Timestamp,
    /// Finished tasks read.
    pub tasks_read: u64,
    /// The incidents, oldest first.
    pub incidents: Vec<BacktestIncident>,
    /// Totals.
    pub summary: BacktestSummary,
    /// What history cannot tell, for the whole period.
    pub gaps: Vec<String>,
    /// What was assumed in their place (`--assume`), and what the replay assumes.
    pub assumptions: Vec<String>,
}

fn median(mut v: Vec<i64>) -> Option<i64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

impl BacktestReport {
    /// The report of these incidents.
    pub fn new(
        deployment: &str,
        (from, to): (Timestamp, Timestamp),
        tasks_read: u64,
        incidents: Vec<BacktestIncident>,
        gaps: Vec<String>,
        assumptions: Vec<String>,
    ) -> Self {
        let mut summary = BacktestSummary {
            incidents: incidents.len(),
            ..BacktestSummary::default()
        };
        for i in &incidents {
            for a in &i.actions {
                let by = match a.outcome {
                    Outcome::Applied => &mut summary.actions_by_kind,
                    Outcome::Failed => &mut summary.failed_by_kind,
                    _ => &mut summary.skipped_by_kind,
                };
                *by.entry(a.action.kind().to_owned()).or_default() += 1;
            }
            for k in &i.not_taken {
                *summary
                    .not_taken_by_kind
                    .entry(k.skip.action.to_string())
                    .or_default() += 1;
            }
        }
        summary.median_time_to_mitigation_s = median(
            incidents
                .iter()
                .filter_map(|i| i.time_to_mitigation_s)
                .collect(),
        );
        summary.median_failures_stopped_after_s = median(
            incidents
                .iter()
                .filter_map(|i| i.failures_stopped_after_s)
                .collect(),
        );
        BacktestReport {
            deployment: deployment.to_owned(),
            from,
            to,
            tasks_read,
            incidents,
            summary,
            gaps,
            assumptions,
        }
    }

    /// For a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "backtest of {} from {} to {}: {} tasks read, {} incident{} flowfail would have opened",
            text(&self.deployment),
            self.from.format("%Y-%m-%d %H:%M"),
            self.to.format("%Y-%m-%d %H:%M"),
            self.tasks_read,
            self.incidents.len(),
            if self.incidents.len() == 1 { "" } else { "s" }
        );
        for (n, i) in self.incidents.iter().enumerate() {
            incident_text(n + 1, i, &mut s);
        }
        let sm = &self.summary;
        let _ = writeln!(
            s,
            "\nsummary: {} incidents; would apply {}; would hold or skip {}; would not do {}",
            sm.incidents,
            counts(&sm.actions_by_kind),
            counts(&sm.skipped_by_kind),
            counts(&sm.not_taken_by_kind)
        );
        let _ = writeln!(
            s,
            "median time to mitigation {} (failures actually stopped after {})",
            secs(sm.median_time_to_mitigation_s),
            secs(sm.median_failures_stopped_after_s)
        );
        for g in &self.gaps {
            let _ = writeln!(s, "gap: {}", text(g));
        }
        for a in &self.assumptions {
            let _ = writeln!(s, "assumed: {}", text(a));
        }
        s
    }

    /// For an incident tracker or a review document.
    pub fn to_markdown(&self) -> String {
        let md = crate::report::md_escape;
        let mut s = format!(
            "# Backtest of {} — {} to {}\n\n{} tasks read; **{} incidents** flowfail would have opened.\n\n",
            md(&self.deployment),
            self.from.format("%Y-%m-%d %H:%M UTC"),
            self.to.format("%Y-%m-%d %H:%M UTC"),
            self.tasks_read,
            self.incidents.len()
        );
        s.push_str("| # | opened | closed | peak rate | main kind | root cause | time to mitigation | failures stopped after |\n|---|---|---|---|---|---|---|---|\n");
        for (n, i) in self.incidents.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} % | {} | {} | {} | {} |",
                n + 1,
                i.opened_at.format("%Y-%m-%d %H:%M:%S"),
                i.closed_at.map_or_else(
                    || "open".into(),
                    |c| c.format("%Y-%m-%d %H:%M:%S").to_string()
                ),
                i.peak_rate * 100.0,
                i.main_kind().unwrap_or("-"),
                md(&i.root_cause),
                secs(i.time_to_mitigation_s),
                secs(i.failures_stopped_after_s)
            );
        }
        for (n, i) in self.incidents.iter().enumerate() {
            let _ = write!(s, "\n## {} — {}\n\n", n + 1, md(&i.name));
            for line in grouped(&i.actions) {
                let _ = writeln!(s, "- {}", md(&line));
            }
            for k in &i.not_taken {
                let _ = writeln!(s, "- not done: {}", md(&skip_line(k)));
            }
            for g in &i.gaps {
                let _ = writeln!(s, "- gap: {}", md(g));
            }
        }
        let sm = &self.summary;
        let _ = write!(
            s,
            "\n## Summary\n\n- would apply: {}\n- would hold or skip: {}\n",
            counts(&sm.actions_by_kind),
            counts(&sm.skipped_by_kind)
        );
        for a in &self.assumptions {
            let _ = writeln!(s, "- assumed: {}", md(a));
        }
        for g in &self.gaps {
            let _ = writeln!(s, "- gap: {}", md(g));
        }
        s
    }
}

fn incident_text(n: usize, i: &BacktestIncident, s: &mut String) {
    let esc = text;
    let _ = writeln!(
        s,
        "\nincident {n}: {} → {}, {:.1} % failing at open (peak {:.1} %, {} tasks in the window), mostly {}",
        i.opened_at.format("%Y-%m-%d %H:%M:%S"),
        i.closed_at.map_or_else(
            || "still open".into(),
            |c| c.format("%Y-%m-%d %H:%M:%S").to_string()
        ),
        i.rate_at_open * 100.0,
        i.peak_rate * 100.0,
        i.window_tasks,
        i.main_kind().unwrap_or("unclassified")
    );
    let _ = writeln!(s, "  root cause: {}", esc(&i.root_cause));
    for at in &i.absorbed {
        let _ = writeln!(
            s,
            "  the alert fired again at {} while it was still open: the same incident",
            at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    for line in grouped(&i.actions) {
        let _ = writeln!(s, "  would: {}", esc(&line));
    }
    for k in &i.not_taken {
        let _ = writeln!(s, "  would not: {}", esc(&skip_line(k)));
    }
    let _ = writeln!(
        s,
        "  time to mitigation {} (failures actually stopped after {}); {}",
        secs(i.time_to_mitigation_s),
        secs(i.failures_stopped_after_s),
        match (i.resolved, i.escalated) {
            (true, _) => "resolved in the replay",
            (_, true) => "escalated in the replay",
            _ => "not settled in the replay",
        }
    );
    for g in &i.gaps {
        let _ = writeln!(s, "  gap: {}", esc(g));
    }
}

/// The actions as lines: per-task actions of one kind, outcome and time share a line
/// (`10:00:05 retry_task ×250 → applied: t-00000, t-00001, t-00002, …`), as the CLI's timeline
/// groups them; every other action has its own.
fn grouped(actions: &[ActionRecord]) -> Vec<String> {
    let task_of = |a: &ActionRecord| {
        serde_json::to_value(&a.action)
            .ok()
            .and_then(|v| v.get("task_id").and_then(|t| t.as_str()).map(str::to_owned))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < actions.len() {
        let a = &actions[i];
        let Some(first) = task_of(a) else {
            out.push(action_line(a));
            i += 1;
            continue;
        };
        let mut ids = vec![first];
        let mut j = i + 1;
        while let Some(b) = actions.get(j) {
            let same = b.at == a.at
                && b.action.kind() == a.action.kind()
                && b.outcome == a.outcome
                && b.detail == a.detail;
            match task_of(b) {
                Some(id) if same => ids.push(id),
                _ => break,
            }
            j += 1;
        }
        if ids.len() == 1 {
            out.push(action_line(a));
        } else {
            let shown: Vec<&str> = ids.iter().take(3).map(String::as_str).collect();
            out.push(format!(
                "{} {} ×{} → {}{}: {}{}",
                a.at.format("%H:%M:%S"),
                a.action.kind(),
                ids.len(),
                a.outcome.as_str(),
                a.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                shown.join(", "),
                if ids.len() > 3 { ", …" } else { "" }
            ));
        }
        i = j;
    }
    out
}

/// `10:00:05 prune_context task_id=t-1 … applied (detail)`.
fn action_line(a: &ActionRecord) -> String {
    let fields = serde_json::to_value(&a.action).unwrap_or_default();
    let mut line = format!("{} {}", a.at.format("%H:%M:%S"), a.action.kind());
    if let Some(map) = fields.as_object() {
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "kind") {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(line, " {k}={v}");
        }
    }
    let _ = write!(line, " → {}", a.outcome.as_str());
    if let Some(d) = &a.detail {
        let _ = write!(line, " ({d})");
    }
    line
}

fn skip_line(k: &SkipRecord) -> String {
    format!("{} ×{}: {}", k.skip.action, k.skip.count, k.skip.reason)
}

/// Text from outside (root causes, reasons, error-derived details) made safe for a terminal:
/// one line, no control or invisible format characters (bidi overrides, zero-width), cut.
fn text(s: &str) -> String {
    let clean = crate::text::clean_text(s);
    match clean.char_indices().nth(600) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "nothing".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn secs(s: Option<i64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) => format!("{} min", s / 60),
    }
}
