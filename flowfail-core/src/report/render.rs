//! The human-readable timeline of a report (`flowfail respond` without `--json`).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use super::action::describe;
use super::{ActionFields, ActionRecord, Outcome, Report};
use crate::model::{FailureKind, Timestamp};
use crate::templates::FailureTemplate;
use crate::text::clean_text;

/// What a run of actions at the same time is grouped by in the human timeline: per-task
/// actions of the same kind, outcome, attempt and failure kind (and the same reason, when one
/// was given). Pages, env changes and the rollback are never grouped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupKey<'a> {
    pub(crate) kind: &'static str,
    pub(crate) outcome: Outcome,
    pub(crate) attempt: u32,
    pub(crate) failure_kind: Option<FailureKind>,
    pub(crate) detail: Option<&'a str>,
}

pub(crate) fn group_key(a: &ActionRecord) -> Option<GroupKey<'_>> {
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

/// The task ids of a group of per-task actions, and the bytes its prunes went from and to.
pub(crate) fn group_totals<'a>(
    members: impl Iterator<Item = &'a ActionRecord>,
) -> (Vec<&'a str>, u64, u64) {
    let mut ids = Vec::new();
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
    (ids, from, to)
}

/// One line for a group of two or more actions with the same key.
fn describe_group(key: &GroupKey<'_>, members: &[&ActionRecord]) -> String {
    let (ids, from, to) = group_totals(members.iter().copied());
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
pub(crate) fn collapse_ids(ids: &[&str]) -> String {
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

    /// The timeline as people read it: per-task actions of the same kind, outcome and attempt
    /// at the same time on one line (unless `verbose`), each line with its time. The text is
    /// as recorded (from outside, in part): escape it for where it goes.
    pub fn timeline_lines(&self, verbose: bool) -> Vec<(Timestamp, String)> {
        self.text_timeline(verbose)
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
        self.write_text_header(&mut s);
        let _ = writeln!(s, "\ntimeline:");
        for (at, event) in self.text_timeline(verbose) {
            let _ = writeln!(
                s,
                "  {}  {}",
                at.format("%Y-%m-%d %H:%M:%S"),
                clean_text(&event)
            );
        }
        self.write_not_taken(&mut s);
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
        write_templates(&p.failure_templates, &mut s);
        s
    }

    /// The first lines of the human timeline: the incident and its status, the alert, the
    /// classification.
    fn write_text_header(&self, s: &mut String) {
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
        if self.shadow {
            let _ = writeln!(
                s,
                "mode: shadow — what flowfail would have done (nothing was changed)"
            );
        }
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
    }

    /// The human timeline's section of what was not done, and why.
    fn write_not_taken(&self, s: &mut String) {
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
                    clean_text(r.skip.action.as_str()),
                    r.skip.count,
                    clean_text(&r.skip.reason),
                    ex
                );
            }
        }
    }
}

/// The human timeline's section of the new failure modes: each template with its example and
/// proposed rule.
fn write_templates(templates: &[FailureTemplate], s: &mut String) {
    if templates.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nnew failure modes (message templates, with a proposed rule):"
    );
    for t in templates {
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
                let _ = writeln!(s, "    rule: none proposed (too generic to match safely)");
            }
        }
    }
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
