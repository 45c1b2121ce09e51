//! "Nothing lost", as code: N1–N6 checked on an in-memory [`World`] after a run, from its raw
//! call logs ([`crate::memory::CallLog`], with [`crate::memory::Call::applied`]) and its stores,
//! never from flowfail's own report.
//!
//! | id | invariant | checked from |
//! |---|---|---|
//! | N1 | every task is accounted for: none lost, none left `running` by flowfail (the in-memory TaskDB has no claims), attempts never go down nor past the policy | the TaskDB before and after |
//! | N2 | every bundle flowfail replaced has its original recoverable from an archive whose checksum verifies | applied `bundle.put_if_version` calls, the archives, the bundles before |
//! | N3 | every incident is terminal in the ledger (closed) with its post-incident record | the ledger |
//! | N4 | at most one effect per incident and action: applied rollbacks, env changes (per name and value) and prunes (per task) at most once per incident | applied raw calls |
//! | N5 | pages and notifications deduplicated by key: one target per key, at most one applied call per key | applied `pager.page` / `notifier.notify` calls |
//! | N6 | no secret canary anywhere flowfail writes: ledger rows, every raw call, pages, notifications, and the outputs handed in (report, Markdown, logs, errors, `--help`) | all of those, as text |
//!
//! Take a snapshot before the run, check after it:
//!
//! ```
//! use flowfail_core::invariants::Invariants;
//! use flowfail_core::memory::World;
//! use flowfail_core::respond::Responder;
//! use flowfail_core::{Clock, Policy};
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let clock = Clock::tokio_anchored(chrono::Utc::now());
//! let policy = Policy::default();
//! let world = World::new(&policy, clock.clone());
//! let inv = Invariants::before(&world).canary("sk-canary-0000");
//! let r = Responder::builder().ports(world.ports()).clock(clock).build().unwrap();
//! let report = r.run(std::time::Duration::from_secs(60)).await.unwrap();
//! let inv = inv.output(serde_json::to_string(&report).unwrap());
//! inv.check(&world, &policy).unwrap();
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};

use crate::memory::{Call, World};
use crate::model::{TaskId, TaskStatus};
use crate::policy::Policy;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// `N1` … `N6`.
    pub invariant: &'static str,
    /// What broke it.
    pub detail: String,
}

/// Every broken invariant of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} invariant violation(s):", self.0.len())?;
        for v in &self.0 {
            writeln!(f, "  {}: {}", v.invariant, v.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// A snapshot of a world before a run, and what to check after it. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Invariants {
    tasks: BTreeMap<TaskId, (TaskStatus, u32)>,
    bundles: BTreeMap<TaskId, Vec<u8>>,
    canaries: Vec<String>,
    outputs: Vec<String>,
    open_allowed: bool,
    redelivery_allowed: bool,
}

impl Invariants {
    /// Takes the snapshot N1 and N2 compare against.
    pub fn before(world: &World) -> Self {
        Invariants {
            tasks: world
                .tasks
                .tasks()
                .into_iter()
                .map(|t| (t.task_id.clone(), (t.status, t.attempts)))
                .collect(),
            bundles: world
                .bundles
                .ids()
                .into_iter()
                .filter_map(|id| world.bundles.bytes(&id).map(|b| (id, b)))
                .collect(),
            canaries: Vec::new(),
            outputs: Vec::new(),
            open_allowed: false,
            redelivery_allowed: false,
        }
    }

    /// A secret that must appear in no output (N6).
    pub fn canary(mut self, secret: impl Into<String>) -> Self {
        self.canaries.push(secret.into());
        self
    }

    /// Text flowfail produced (a report, Markdown, logs, an error, `--help`): checked for
    /// canaries (N6).
    pub fn output(mut self, text: impl Into<String>) -> Self {
        self.outputs.push(text.into());
        self
    }

    /// The run is expected to end with an incident still open (a run cut short on purpose):
    /// N3 is not checked.
    pub fn open_incidents_allowed(mut self) -> Self {
        self.open_allowed = true;
        self
    }

    /// Pages and notifications may be applied more than once per key, because the test loses
    /// their replies on purpose (the sender cannot know they landed): N5 then checks that the
    /// pager's delivered view has one page per key and that a key never names two targets.
    pub fn redelivery_allowed(mut self) -> Self {
        self.redelivery_allowed = true;
        self
    }

    /// Checks N1–N6 on `world` after the run.
    pub fn check(&self, world: &World, policy: &Policy) -> Result<(), Violations> {
        let mut v = Vec::new();
        self.n1(world, policy, &mut v);
        self.n2(world, &mut v);
        if !self.open_allowed {
            n3(world, &mut v);
        }
        n4(world, &mut v);
        self.n5(world, &mut v);
        self.n6(world, &mut v);
        if v.is_empty() {
            Ok(())
        } else {
            Err(Violations(v))
        }
    }

    fn n1(&self, world: &World, policy: &Policy, v: &mut Vec<Violation>) {
        let after: BTreeMap<TaskId, (TaskStatus, u32)> = world
            .tasks
            .tasks()
            .into_iter()
            .map(|t| (t.task_id.clone(), (t.status, t.attempts)))
            .collect();
        for (id, (status, attempts)) in &self.tasks {
            let Some((now_status, now_attempts)) = after.get(id) else {
                v.push(violation("N1", format!("task {id} is gone")));
                continue;
            };
            if now_attempts < attempts {
                v.push(violation(
                    "N1",
                    format!("task {id}: attempts went down from {attempts} to {now_attempts}"),
                ));
            }
            if *now_attempts > (*attempts).max(policy.max_attempts) {
                v.push(violation(
                    "N1",
                    format!(
                        "task {id}: {now_attempts} attempts, over the policy's {}",
                        policy.max_attempts
                    ),
                ));
            }
            if *now_status == TaskStatus::Running && *status != TaskStatus::Running {
                v.push(violation(
                    "N1",
                    format!("task {id} left running without a claim"),
                ));
            }
        }
    }

    fn n2(&self, world: &World, v: &mut Vec<Violation>) {
        let replaced: BTreeSet<String> =
            applied(world.bundles.calls().calls(), "bundle.put_if_version")
                .iter()
                .filter_map(|c| c.detail.split(' ').next().map(str::to_owned))
                .collect();
        for id in &replaced {
            let Ok(task) = TaskId::parse(id) else {
                v.push(violation("N2", format!("a prune of an invalid id {id:?}")));
                continue;
            };
            let archives = world.bundles.archives(&task);
            for (checksum, bytes) in &archives {
                if hex(&Sha256::digest(bytes)) != *checksum {
                    v.push(violation(
                        "N2",
                        format!("archive {checksum} of {id} does not verify"),
                    ));
                }
            }
            if let Some(original) = self.bundles.get(&task)
                && !archives.iter().any(|(_, b)| b == original)
            {
                v.push(violation(
                    "N2",
                    format!("the original bundle of {id} is in no archive"),
                ));
            }
        }
    }

    fn n5(&self, world: &World, v: &mut Vec<Violation>) {
        for (op, calls) in [
            ("pager.page", world.pager.calls().calls()),
            ("notifier.notify", world.notifier.calls().calls()),
        ] {
            // Details are "<target> <dedup key>".
            let mut by_key: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
            for c in calls.iter().filter(|c| c.op == op) {
                let (target, key) = c.detail.split_once(' ').unwrap_or(("", c.detail.as_str()));
                let e = by_key.entry(key.to_owned()).or_default();
                e.0.insert(target.to_owned());
                e.1 += usize::from(c.applied);
            }
            for (key, (targets, applied)) in by_key {
                if targets.len() > 1 {
                    v.push(violation(
                        "N5",
                        format!("{op}: key {key} used for {targets:?}"),
                    ));
                }
                if applied > 1 && !self.redelivery_allowed {
                    v.push(violation(
                        "N5",
                        format!("{op}: key {key} applied {applied} times"),
                    ));
                }
            }
        }
        let mut delivered: Vec<String> = world
            .pager
            .pages()
            .iter()
            .map(|p| p.dedup_key.clone())
            .collect();
        let n = delivered.len();
        delivered.sort();
        delivered.dedup();
        if delivered.len() != n {
            v.push(violation("N5", "the pager delivered one key twice".into()));
        }
    }

    fn n6(&self, world: &World, v: &mut Vec<Violation>) {
        if self.canaries.is_empty() {
            return;
        }
        let mut texts: Vec<(String, String)> = Vec::new();
        for r in world.incidents.incidents() {
            texts.push((
                format!("ledger row {}", r.key),
                serde_json::to_string(&r).unwrap_or_default(),
            ));
        }
        for c in world.mutations().into_iter().chain(all_reads(world)) {
            texts.push((format!("raw call {}", c.op), c.detail));
        }
        texts.push((
            "pages".into(),
            serde_json::to_string(&world.pager.pages()).unwrap_or_default(),
        ));
        texts.push((
            "notifications".into(),
            serde_json::to_string(&world.notifier.sent()).unwrap_or_default(),
        ));
        for (i, o) in self.outputs.iter().enumerate() {
            texts.push((format!("output #{i}"), o.clone()));
        }
        for canary in &self.canaries {
            for (where_, text) in &texts {
                if text.contains(canary.as_str()) {
                    v.push(violation("N6", format!("a canary appears in {where_}")));
                }
            }
        }
    }
}

fn n3(world: &World, v: &mut Vec<Violation>) {
    for r in world.incidents.incidents() {
        if r.closed_at.is_none() {
            v.push(violation("N3", format!("incident {} is still open", r.key)));
        } else if r.post_incident.is_none() {
            v.push(violation(
                "N3",
                format!("incident {} closed without a record", r.key),
            ));
        }
    }
}

fn n4(world: &World, v: &mut Vec<Violation>) {
    let incidents = world.incidents.incidents().len().max(1);
    let rollbacks = applied(world.deployment.calls().calls(), "deployment.rollback").len();
    if rollbacks > incidents {
        v.push(violation(
            "N4",
            format!("{rollbacks} rollbacks applied for {incidents} incident(s)"),
        ));
    }
    // Details are "<deployment> NAME=value NAME- … if rv=…".
    let mut env: BTreeMap<String, usize> = BTreeMap::new();
    for c in applied(world.deployment.calls().calls(), "deployment.set_env") {
        for change in c.detail.split(' ').skip(1).take_while(|w| *w != "if") {
            *env.entry(change.to_owned()).or_default() += 1;
        }
    }
    for (change, n) in env {
        if n > incidents {
            v.push(violation(
                "N4",
                format!("env change {change} applied {n} times for {incidents} incident(s)"),
            ));
        }
    }
    let mut prunes: BTreeMap<String, usize> = BTreeMap::new();
    for c in applied(world.bundles.calls().calls(), "bundle.put_if_version") {
        let id = c.detail.split(' ').next().unwrap_or_default().to_owned();
        *prunes.entry(id).or_default() += 1;
    }
    for (id, n) in prunes {
        if n > incidents {
            v.push(violation(
                "N4",
                format!("bundle {id} replaced {n} times for {incidents} incident(s)"),
            ));
        }
    }
}

fn all_reads(world: &World) -> Vec<Call> {
    [
        world.logs.calls().calls(),
        world.tasks.calls().calls(),
        world.bundles.calls().calls(),
        world.quota.calls().calls(),
        world.deployment.calls().calls(),
        world.status.calls().calls(),
        world.pager.calls().calls(),
        world.notifier.calls().calls(),
        world.incidents.calls().calls(),
    ]
    .concat()
    .into_iter()
    .filter(|c| !c.mutation)
    .collect()
}

fn applied(calls: Vec<Call>, op: &str) -> Vec<Call> {
    calls
        .into_iter()
        .filter(|c| c.op == op && c.applied)
        .collect()
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
