//! What one pass did, in numbers: the feed of metrics ([`super::SupervisorBuilder::on_pass`]).
//!
//! The supervisor hands a [`PassStats`] to its `on_pass` callback after every pass, idle or
//! incident. It is built from what the pass already knows (no extra reads): the reads it made
//! and whether each answered, the actions it recorded with their outcomes, the failure rate it
//! observed, the breaker it left.

use std::time::Duration;

use crate::breaker::Breaker;
use crate::model::Timestamp;
use crate::ports::Op;

use super::{Responder, lock};

/// Which kind of pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PassKind {
    /// No incident: the one count read of the alert.
    Idle,
    /// A pass of an incident's responder.
    Incident,
}

impl PassKind {
    /// `idle` or `incident`.
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Idle => "idle",
            PassKind::Incident => "incident",
        }
    }
}

/// One read of a port in a pass, and whether it answered (after the read loop's retries).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadStat {
    /// The port: `tasks`, `logs`, `deployment`, `bundles`, `quota` or `status`.
    pub port: &'static str,
    /// Whether it answered; `false` is a data gap.
    pub ok: bool,
}

/// One action a pass recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActionStat {
    /// The action's kind (`retry`, `set_env`, `rollback`, `page`, …).
    pub kind: &'static str,
    /// Its outcome: `applied`, `skipped`, `failed` or `dry_run`.
    pub outcome: &'static str,
}

/// What one pass did. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PassStats {
    /// Idle or incident.
    pub kind: PassKind,
    /// When the pass started (the clock's time).
    pub at: Timestamp,
    /// How long it took.
    pub duration: Duration,
    /// The failure rate it observed in the alert window, when the counts answered.
    pub failure_rate: Option<f64>,
    /// The open incident's key after the pass.
    pub incident: Option<String>,
    /// Whether flowfail's breaker for rate-limited retries is open (or half-open) after the
    /// pass; `None` outside an incident.
    pub breaker_open: Option<bool>,
    /// The reads it made.
    pub reads: Vec<ReadStat>,
    /// The actions it recorded.
    pub actions: Vec<ActionStat>,
    /// Failed task rows its triage read left out because they cannot be read (a flow type
    /// not known, an id that is not a task id); `None` when it read no failed tasks.
    pub unreadable_tasks: Option<u64>,
    /// Tasks that finished in the alert window with a status the TaskDB's store does not read
    /// (in no count, nor in the failure rate); `None` when the counts did not answer.
    pub unknown_status_tasks: Option<u64>,
    /// Whether the pass ran to its end: `false` when it ended with an error (a panic in it,
    /// contained, is one). A service's health check counts completed passes only.
    pub completed: bool,
}

impl ReadStat {
    /// A read of `port` that answered (`ok`) or not.
    pub fn new(port: &'static str, ok: bool) -> Self {
        ReadStat { port, ok }
    }
}

impl ActionStat {
    /// An action of `kind` with `outcome`.
    pub fn new(kind: &'static str, outcome: &'static str) -> Self {
        ActionStat { kind, outcome }
    }
}

impl PassStats {
    /// A pass with nothing read and nothing done yet (fill in the public fields).
    pub fn new(kind: PassKind, at: Timestamp, duration: Duration) -> Self {
        PassStats {
            kind,
            at,
            duration,
            failure_rate: None,
            incident: None,
            breaker_open: None,
            reads: Vec::new(),
            actions: Vec::new(),
            unreadable_tasks: None,
            unknown_status_tasks: None,
            completed: true,
        }
    }

    /// An idle pass's numbers.
    pub(super) fn idle(at: Timestamp, duration: Duration, failure_rate: Option<f64>) -> Self {
        PassStats {
            kind: PassKind::Idle,
            at,
            duration,
            failure_rate,
            incident: None,
            breaker_open: None,
            reads: vec![ReadStat {
                port: "tasks",
                ok: failure_rate.is_some(),
            }],
            actions: Vec::new(),
            unreadable_tasks: None,
            unknown_status_tasks: None,
            completed: true,
        }
    }
}

/// Where a pass started in the responder's records, to tell what it added.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    actions: usize,
    ledger: (u64, u64),
}

/// Ledger calls that answered and that failed, since the responder was built.
#[derive(Debug, Default)]
pub(super) struct LedgerCalls {
    ok: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl LedgerCalls {
    pub(super) fn count(&self, ok: bool) {
        let c = if ok { &self.ok } else { &self.failed };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn now(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.ok.load(Relaxed), self.failed.load(Relaxed))
    }
    /// The ledger's reads since `mark`, as the pass's numbers carry them: one answered (when
    /// any did) and one per failed call.
    fn since(&self, mark: (u64, u64)) -> Vec<ReadStat> {
        let (ok, failed) = self.now();
        let answered = (ok > mark.0).then_some(ReadStat::new("ledger", true));
        let failed = (mark.1..failed).map(|_| ReadStat::new("ledger", false));
        answered.into_iter().chain(failed).collect()
    }
}

/// What a pass notes about itself as it goes, for its numbers: the reads it made and whether
/// each answered, the failure rate it observed. One per pass, owned by [`Responder::pass`] and
/// handed back in its [`super::PassOutcome`]; never shared between passes.
#[derive(Debug, Default)]
pub(super) struct PassLog {
    reads: std::sync::Mutex<Vec<ReadStat>>,
    failure_rate: std::sync::Mutex<Option<f64>>,
    unreadable: std::sync::Mutex<Option<u64>>,
    unknown_status: std::sync::Mutex<Option<u64>>,
}

impl PassLog {
    /// Notes one read of a port and whether it answered.
    pub(super) fn note_read(&self, op: Op, ok: bool) {
        if let Some(port) = op.read_port() {
            lock(&self.reads).push(ReadStat { port, ok });
        }
    }

    /// Notes the failure rate the pass observed.
    pub(super) fn note_failure_rate(&self, rate: f64) {
        *lock(&self.failure_rate) = Some(rate);
    }

    /// Notes how many failed task rows the triage read left out.
    pub(super) fn note_unreadable(&self, n: u64) {
        *lock(&self.unreadable) = Some(n);
    }

    /// Notes how many tasks of the alert window have a status the store does not read.
    pub(super) fn note_unknown_status(&self, n: u64) {
        *lock(&self.unknown_status) = Some(n);
    }

    /// Hands what the pass noted to its outcome.
    pub(super) fn into_outcome(self, out: &mut super::PassOutcome) {
        out.unreadable_tasks = self
            .unreadable
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        out.unknown_status_tasks = self
            .unknown_status
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        out.reads = self.reads.into_inner().unwrap_or_else(|p| p.into_inner());
        out.failure_rate = self
            .failure_rate
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
    }
}

impl Responder {
    /// Marks the start of a pass, to tell the actions it records.
    pub(super) fn mark(&self) -> Mark {
        let inner = lock(&self.inner);
        Mark {
            actions: inner.report.actions.len(),
            ledger: self.ledger_calls.now(),
        }
    }

    /// The numbers of the pass that started at `mark` and ended with `out` (`None` when it
    /// failed: what it read is not known).
    pub(super) fn stats_since(
        &self,
        mark: Mark,
        out: Option<&super::PassOutcome>,
        at: Timestamp,
        duration: Duration,
    ) -> PassStats {
        let inner = lock(&self.inner);
        let actions = inner
            .report
            .actions
            .get(mark.actions..)
            .unwrap_or_default()
            .iter()
            .map(|a| ActionStat {
                kind: a.action.kind(),
                outcome: a.outcome.as_str(),
            })
            .collect();
        let failure_rate = out.and_then(|o| o.failure_rate);
        PassStats {
            kind: PassKind::Incident,
            at,
            duration,
            failure_rate,
            incident: inner.incident.as_ref().map(|s| s.key.clone()),
            breaker_open: inner
                .incident
                .as_ref()
                .map(|s| !matches!(s.breaker, Breaker::Closed)),
            reads: out
                .map(|o| o.reads.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(self.ledger_calls.since(mark.ledger))
                .collect(),
            actions,
            unreadable_tasks: out.and_then(|o| o.unreadable_tasks),
            unknown_status_tasks: out.and_then(|o| o.unknown_status_tasks),
            completed: out.is_some(),
        }
    }
}
