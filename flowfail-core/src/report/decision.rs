//! A pass's decision as the ledger records it: what it would do, what it holds back and why
//! not, what it waits for, and whether any of it reached the world.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::{Action, Decision, Settle, Skip};
use crate::detect::AlertState;
use crate::model::FailureKind;

/// How a pass stood toward the world: whether what it decided was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Conduct {
    /// Acting: the decided actions were carried out (each action entry has its outcome).
    Act,
    /// Shadow mode: decided and recorded, nothing changed in the world ("would have").
    Shadow,
    /// A dry run: decided, nothing changed, nothing recorded in the ledger.
    DryRun,
    /// Automation paused by an operator: decided, every mutation refused.
    Paused,
    /// Every action decided waits for an operator's approval.
    AwaitingApproval,
    /// The kill switch was on.
    Halted,
}

impl Conduct {
    /// Its name, as stored: `act`, `shadow`, `dry_run`, `paused`, `awaiting_approval`, `halted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Conduct::Act => "act",
            Conduct::Shadow => "shadow",
            Conduct::DryRun => "dry_run",
            Conduct::Paused => "paused",
            Conduct::AwaitingApproval => "awaiting_approval",
            Conduct::Halted => "halted",
        }
    }

    /// Whether what was decided was carried out (only [`Conduct::Act`]).
    pub fn acted(self) -> bool {
        self == Conduct::Act
    }

    /// How a reader says what was decided: `decided` when acting (each action's entry says
    /// what came of it), `would have done` in shadow mode or a dry run, and what held it back
    /// otherwise.
    pub fn verb(self) -> &'static str {
        match self {
            Conduct::Act => "decided",
            Conduct::Shadow | Conduct::DryRun => "would have done",
            Conduct::Paused => "decided, held back (paused)",
            Conduct::AwaitingApproval => "decided, held for approval",
            Conduct::Halted => "decided, held back (kill switch)",
        }
    }
}

impl std::fmt::Display for Conduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Actions of one kind a pass decided, with how many and the first few subjects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Planned {
    /// The action's kind (`retry_task`, `set_env`, `rollback`, …).
    pub kind: String,
    /// How many.
    pub count: usize,
    /// Up to 10 subjects (task ids, env names, revisions).
    #[serde(default)]
    pub subjects: Vec<String>,
}

/// A pass's decision as recorded in the incident's timeline (kind `decision`): appended when
/// it differs from the last one recorded ([`DecisionRecord::signature`]), so a steady incident
/// does not write the same decision every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DecisionRecord {
    /// How the pass stood toward the world.
    pub mode: Conduct,
    /// Whether the decided actions were carried out (`mode == act` and something to do).
    pub acted: bool,
    /// The alert this pass (None when the counts could not be read).
    #[serde(default)]
    pub alert: Option<AlertState>,
    /// Failed tasks by kind, this pass.
    #[serde(default)]
    pub classification: BTreeMap<FailureKind, u64>,
    /// What it decided to do, by kind.
    #[serde(default)]
    pub planned: Vec<Planned>,
    /// The gated actions held back for an operator's approval (their gate names).
    #[serde(default)]
    pub awaiting_approval: Vec<String>,
    /// What it considered and did not do, with the reasons (why not).
    #[serde(default)]
    pub skipped: Vec<Skip>,
    /// The kinds of the findings it made.
    #[serde(default)]
    pub findings: Vec<String>,
    /// What the incident waits for.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// Resolved or escalated, when it settled.
    #[serde(default)]
    pub settle: Option<Settle>,
    /// What the pass could not read (data gaps): it decided without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

impl DecisionRecord {
    /// The record of `d`, decided in `mode`, with the gated actions `awaiting` held back.
    pub fn of(d: &Decision, mode: Conduct, awaiting: Vec<String>) -> Self {
        let mode = if mode == Conduct::Act && d.actions.is_empty() && !awaiting.is_empty() {
            Conduct::AwaitingApproval
        } else {
            mode
        };
        DecisionRecord {
            mode,
            acted: mode.acted() && !d.actions.is_empty(),
            alert: d.alert,
            classification: d.classification.clone(),
            planned: planned(&d.actions),
            awaiting_approval: awaiting,
            skipped: d.skipped.clone(),
            findings: d.findings.iter().map(|f| f.kind.clone()).collect(),
            waiting: d.waiting.clone(),
            settle: d.settle,
            gaps: Vec::new(),
        }
    }

    /// The same, decided without what these data gaps left unread.
    pub fn with_gaps(mut self, gaps: &[String]) -> Self {
        self.gaps = gaps.to_vec();
        self
    }

    /// What makes two decisions the same for the ledger: the mode, what is planned (kinds and
    /// counts), held back, skipped (action and reason) and waited for, the settlement and
    /// whether the alert fires, and what the data gaps left unread. The alert's numbers,
    /// the counts of skipped subjects and their examples move every pass, and findings are
    /// entries of their own: they are left out.
    pub fn signature(&self) -> String {
        // A gap by what could not be read (the text before its first colon), not by its
        // wording: an error's text that changes every pass is not a new decision.
        let gaps: std::collections::BTreeSet<&str> = self
            .gaps
            .iter()
            .map(|g| g.split(':').next().unwrap_or(g.as_str()))
            .collect();
        let skipped: Vec<(&str, &str)> = self
            .skipped
            .iter()
            .map(|s| (s.action.as_str(), s.reason.as_str()))
            .collect();
        let planned: Vec<(&str, usize)> = self
            .planned
            .iter()
            .map(|p| (p.kind.as_str(), p.count))
            .collect();
        serde_json::json!([
            self.mode,
            planned,
            self.awaiting_approval,
            skipped,
            self.waiting,
            self.settle,
            self.alert.map(|a| a.firing),
            gaps,
        ])
        .to_string()
    }

    /// One line for people: `act: decided retry_task ×12, set_env ×1; held for approval:
    /// rollback; waiting: …`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.planned.is_empty() {
            parts.push(format!("{}: nothing to do", self.mode));
        } else {
            let what: Vec<String> = self
                .planned
                .iter()
                .map(|p| format!("{} ×{}", p.kind, p.count))
                .collect();
            parts.push(format!(
                "{}: {} {}",
                self.mode,
                self.mode.verb(),
                what.join(", ")
            ));
        }
        if !self.awaiting_approval.is_empty() {
            parts.push(format!(
                "held for approval: {}",
                self.awaiting_approval.join(", ")
            ));
        }
        if !self.skipped.is_empty() {
            parts.push(format!("{} not done (why not below)", self.skipped.len()));
        }
        if !self.waiting.is_empty() {
            parts.push(format!("waiting: {}", self.waiting.join("; ")));
        }
        if let Some(s) = self.settle {
            parts.push(format!("settled: {}", settle_word(s)));
        }
        if !self.gaps.is_empty() {
            parts.push(format!("{} data gap(s)", self.gaps.len()));
        }
        parts.join("; ")
    }
}

fn settle_word(s: Settle) -> &'static str {
    match s {
        Settle::Resolved => "resolved",
        Settle::Escalated => "escalated",
    }
}

/// The decided actions by kind, in the order first decided.
fn planned(actions: &[Action]) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    for a in actions {
        let kind = a.kind().as_str();
        let subject = a.subject();
        let i = match out.iter().position(|p| p.kind == kind) {
            Some(i) => i,
            None => {
                out.push(Planned {
                    kind: kind.to_owned(),
                    count: 0,
                    subjects: Vec::new(),
                });
                out.len() - 1
            }
        };
        let p = &mut out[i];
        p.count += 1;
        if p.subjects.len() < 10 && !subject.is_empty() {
            p.subjects.push(subject);
        }
    }
    out
}
