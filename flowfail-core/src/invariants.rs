//! "Nothing lost", as code: N1–N7 checked on an in-memory [`World`] after a run, from its raw
//! call logs ([`crate::memory::CallLog`], with [`crate::memory::Call::applied`]) and its stores,
//! never from flowfail's own report (N7 checks that report, and the ledger's record, against
//! the raw calls).
//!
//! | id | invariant | checked from |
//! |---|---|---|
//! | N1 | every task accounted for: attempts never past the policy; none flowfail retried left `running`; every task still `failed` that failed during an incident now closed was retried, marked final, or reported (named in a ledger row or a report, covered by an escalated incident, or counted among a report's retries not taken) | the TaskDB before and after, applied `task.schedule_retries`, the ledger, the reports handed in |
//! | N2 | every bundle flowfail replaced has its original recoverable from an archive whose checksum verifies | applied `bundle.put_if_version` calls, the archives, the bundles before |
//! | N3 | every incident closed, with its own post-incident record (its key, a final status) | the ledger |
//! | N4 | at most one effect per incident and action: per incident a change cause names, one applied rollback and each env change (name and value) once (changes naming no incident count as one more incident); a bundle replaced at most once per incident whose record lists its prune (at least one) | applied raw calls, their change causes, the ledger's records |
//! | N5 | pages and notifications deduplicated by key: one target per key; per key, deliveries (every one the in-memory pager or notifier received) at most one plus the earlier applied calls of that key whose reply was lost or whose pass was declared killed or superseded | the pager's and the notifier's deliveries, their call logs (`applied`, `reply_lost`) |
//! | N6 | no secret canary anywhere flowfail writes: ledger rows, every raw call, pages, notifications, and the outputs handed in (report, Markdown, logs, errors, `--help`) | all of those, as text |
//! | N7 | the record says what happened: every action the record lists as applied has an applied raw call, and every applied raw call is in the record | each incident's ledger timeline (what its post-incident record is built from), the stored post-incident records' counts, the reports handed in ([`Invariants::report`]); applied `deployment.rollback` / `set_env`, `bundle.put_if_version`, `task.schedule_retries` (the retries that took effect), `pager.page`, `notifier.notify` |
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

mod effects;
use crate::model::{TaskId, TaskStatus};
use crate::policy::Policy;
use crate::report::{ActionFields, Outcome, Report};
use effects::{Effect, applied_effects, applied_entries, calls_of_kind, effect_of, recorded};

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// `N1` … `N7`.
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
    /// Applied raw calls a killed or superseded pass made that no record holds (N7).
    unrecorded_allowed: BTreeSet<(&'static str, usize)>,
    /// The pager's and the notifier's call-log ranges of passes declared killed or superseded
    /// (N5: a page or notification they made may be sent again).
    resend_windows: Vec<[(usize, usize); 2]>,
    /// Applied actions of the reports handed in (N7).
    reported: Vec<(Option<String>, ActionFields)>,
    /// The reports handed in, as JSON (N1: a task they name is reported).
    reported_text: Vec<String>,
}

/// How many calls each backend had received at some point: see
/// [`Invariants::unrecorded_allowed_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallMark {
    deployment: usize,
    bundles: usize,
    tasks: usize,
    pager: usize,
    notifier: usize,
}

impl CallMark {
    /// The call counts of `world`'s backends now.
    pub fn now(world: &World) -> Self {
        CallMark {
            deployment: world.deployment.calls().calls().len(),
            bundles: world.bundles.calls().calls().len(),
            tasks: world.tasks.calls().calls().len(),
            pager: world.pager.calls().calls().len(),
            notifier: world.notifier.calls().calls().len(),
        }
    }

    fn of(&self, op: &str) -> usize {
        match op.split('.').next() {
            Some("deployment") => self.deployment,
            Some("bundle") => self.bundles,
            Some("task") => self.tasks,
            Some("pager") => self.pager,
            Some("notifier") => self.notifier,
            _ => 0,
        }
    }
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
            unrecorded_allowed: BTreeSet::new(),
            resend_windows: Vec::new(),
            reported: Vec::new(),
            reported_text: Vec::new(),
        }
    }

    /// A report flowfail produced: every action it lists as applied must have an applied raw
    /// call (N7).
    pub fn report(mut self, report: &Report) -> Self {
        let key = report.post_incident.incident_key.clone();
        self.reported_text
            .push(serde_json::to_string(report).unwrap_or_default());
        for a in report
            .actions
            .iter()
            .filter(|a| a.outcome == Outcome::Applied)
        {
            self.reported.push((key.clone(), a.action.clone()));
        }
        self
    }

    /// A pass that started at `mark` was killed (its future dropped), or superseded by another
    /// replica's claim, so the ledger refused its record: the applied raw calls it made that no
    /// record holds *now* may stay unrecorded (N7). What the ledger holds is what a process
    /// killed mid-pass keeps: everything up to its last ledger write. Call it right after the
    /// pass ends.
    /// Its pages and notifications may also be sent again, once each, by a later pass (N5).
    pub fn unrecorded_allowed_since(mut self, world: &World, mark: CallMark) -> Self {
        let now = CallMark::now(world);
        self.resend_windows
            .push([(mark.pager, now.pager), (mark.notifier, now.notifier)]);
        let recorded = recorded(world);
        for (op, i, key) in applied_effects(world, &self.tasks) {
            if i >= mark.of(op) && !recorded.contains(&key) {
                self.unrecorded_allowed.insert((op, i));
            }
        }
        self
    }

    /// How many applied raw calls a killed or superseded pass left unrecorded (and N7 allows).
    pub fn unrecorded_allowed(&self) -> usize {
        self.unrecorded_allowed.len()
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

    /// Pages and notifications may be delivered any number of times per key, because passes
    /// ran at the same time that the test cannot declare one by one (two replicas may both
    /// decide a page): N5 then checks only that a key never names two targets. Lost replies
    /// and passes declared killed ([`Invariants::unrecorded_allowed_since`]) need no such
    /// allowance: N5 counts them.
    pub fn redelivery_allowed(mut self) -> Self {
        self.redelivery_allowed = true;
        self
    }

    /// Checks N1–N7 on `world` after the run.
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
        self.n7(world, &mut v);
        if v.is_empty() {
            Ok(())
        } else {
            Err(Violations(v))
        }
    }

    /// N1: attempts never past the policy; no task flowfail retried left `running`; every
    /// task that failed while an incident was open is accounted for.
    fn n1(&self, world: &World, policy: &Policy, v: &mut Vec<Violation>) {
        let retried: BTreeSet<String> =
            applied(world.tasks.calls().calls(), "task.schedule_retries")
                .iter()
                .flat_map(|c| {
                    c.detail
                        .split(',')
                        .filter_map(|r| r.split_once('@').map(|(id, _)| id.to_owned()))
                        .collect::<Vec<_>>()
                })
                .collect();
        let incidents = world.incidents.incidents();
        let mut texts: Vec<String> = incidents
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect();
        texts.extend(self.reported_text.iter().cloned());
        let mut lost = Vec::new();
        for t in world.tasks.tasks() {
            let id = t.task_id.to_string();
            let (status0, attempts0) = self
                .tasks
                .get(&t.task_id)
                .copied()
                .unwrap_or((TaskStatus::Pending, 0));
            if t.attempts > attempts0.max(policy.max_attempts) {
                v.push(violation(
                    "N1",
                    format!(
                        "task {id}: {} attempts, over the policy's {}",
                        t.attempts, policy.max_attempts
                    ),
                ));
            }
            if t.status == TaskStatus::Running
                && status0 != TaskStatus::Running
                && retried.contains(&id)
            {
                v.push(violation(
                    "N1",
                    format!("task {id} retried by flowfail and left running"),
                ));
            }
            // Failed while an incident that is over was open (or within the alert's window before).
            let at = t.finished_at.unwrap_or(t.created_at);
            let window = chrono::TimeDelta::seconds(policy.alert_window_s as i64);
            // Over: an incident still open (a run cut short) has not finished its work yet.
            let during = |r: &&crate::ports::IncidentRecord| {
                at >= r.opened_at - window && r.closed_at.is_some_and(|c| at <= c)
            };
            let in_incident = incidents.iter().any(|r| during(&r));
            // An escalated incident hands every failure it covers to on-call.
            let handed_over = incidents.iter().filter(during).any(escalated);
            // (A task marked final is not `failed`: never lost.)
            let accounted =
                t.attempts > attempts0 || handed_over || texts.iter().any(|x| mentions(x, &id));
            if t.status == TaskStatus::Failed && in_incident && !accounted {
                lost.push(id);
            }
        }
        // A report may count the retries it held back (`not_taken`) rather than name each:
        // the reports handed in cover at most as many tasks as they count together.
        let held: usize = self.reported_text.iter().map(|r| held_retries(r)).sum();
        if lost.len() > held {
            for id in lost {
                v.push(violation(
                    "N1",
                    format!(
                        "task {id} failed during an incident and was neither retried, marked final nor reported"
                    ),
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

    /// N5: one target per key; per key, the deliveries that reached the pager (the notifier)
    /// are one, plus one for each earlier applied call of that key the sender could not know
    /// landed: its reply was lost, or its pass was declared killed or superseded.
    fn n5(&self, world: &World, v: &mut Vec<Violation>) {
        let pages: Vec<String> = world
            .pager
            .deliveries()
            .into_iter()
            .map(|p| p.dedup_key)
            .collect();
        let notes: Vec<String> = world
            .notifier
            .deliveries()
            .into_iter()
            .map(|n| n.dedup_key)
            .collect();
        for (op, calls, delivered, window) in [
            ("pager.page", world.pager.calls().calls(), pages, 0),
            ("notifier.notify", world.notifier.calls().calls(), notes, 1),
        ] {
            // Details are "<target> <dedup key>".
            let mut targets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut explained: BTreeMap<String, usize> = BTreeMap::new();
            for (i, c) in calls.iter().enumerate().filter(|(_, c)| c.op == op) {
                let (target, key) = c.detail.split_once(' ').unwrap_or(("", c.detail.as_str()));
                targets
                    .entry(key.to_owned())
                    .or_default()
                    .insert(target.to_owned());
                let killed = self
                    .resend_windows
                    .iter()
                    .any(|w| (w[window].0..w[window].1).contains(&i));
                if c.applied && (c.reply_lost || killed) {
                    *explained.entry(key.to_owned()).or_default() += 1;
                }
            }
            for (key, t) in &targets {
                if t.len() > 1 {
                    v.push(violation("N5", format!("{op}: key {key} used for {t:?}")));
                }
            }
            let mut count: BTreeMap<String, usize> = BTreeMap::new();
            for key in delivered {
                *count.entry(key).or_default() += 1;
            }
            for (key, n) in count {
                let allowed = 1 + explained.get(&key).copied().unwrap_or(0);
                if n > allowed && !self.redelivery_allowed {
                    v.push(violation(
                        "N5",
                        format!(
                            "{op}: key {key} delivered {n} times, {} of them unexplained by a lost reply or a killed pass",
                            n - allowed
                        ),
                    ));
                }
            }
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

impl Invariants {
    /// N7: the record says what happened.
    fn n7(&self, world: &World, v: &mut Vec<Violation>) {
        let calls = applied_effects(world, &self.tasks);
        let called: BTreeSet<&Effect> = calls.iter().map(|(_, _, k)| k).collect();
        let rolled_back = called.iter().any(|k| matches!(k, Effect::Rollback(_)));
        let has_call = |k: &Effect| match k {
            Effect::Notify(incident, audience) => called
                .iter()
                .any(|c| matches!(c, Effect::Notify(i, a) if i == incident && a == audience)),
            Effect::RolloutVerified => rolled_back,
            k => called.contains(k),
        };
        // Every action recorded as applied has an applied raw call.
        let mut ledger: Vec<(String, Effect)> = Vec::new();
        for r in world.incidents.incidents() {
            for (fields, _) in applied_entries(&r) {
                if let Some(k) = effect_of(Some(&r.key), &fields) {
                    ledger.push((format!("incident {}'s record", r.key), k));
                }
            }
        }
        let reported = self.reported.iter().filter_map(|(key, fields)| {
            effect_of(key.as_deref(), fields).map(|k| ("a report".to_owned(), k))
        });
        for (whose, k) in ledger.iter().cloned().chain(reported) {
            if !has_call(&k) {
                v.push(violation(
                    "N7",
                    format!("{whose} lists {k} as applied, with no applied raw call"),
                ));
            }
        }
        // The stored post-incident records count no more applied actions than there were calls.
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for r in world.incidents.incidents() {
            let Some(summary) = r
                .post_incident
                .as_ref()
                .and_then(|p| p.get("actions_summary"))
                .and_then(|s| s.as_object())
            else {
                continue;
            };
            for (kind, outcomes) in summary {
                *counted.entry(kind.clone()).or_default() += outcomes
                    .get("applied")
                    .and_then(|n| n.as_u64())
                    .unwrap_or(0);
            }
        }
        for (kind, n) in counted {
            let calls = calls_of_kind(&calls, &kind);
            if n > calls {
                v.push(violation(
                    "N7",
                    format!(
                        "the post-incident records count {n} applied {kind} action(s), with {calls} applied raw call(s)"
                    ),
                ));
            }
        }
        // Every applied raw call is in the record.
        let recorded: BTreeSet<Effect> = ledger.into_iter().map(|(_, k)| k).collect();
        for (op, i, k) in &calls {
            if !recorded.contains(k) && !self.unrecorded_allowed.contains(&(*op, *i)) {
                v.push(violation(
                    "N7",
                    format!("applied raw call {op} #{i} ({k}) is in no incident's record"),
                ));
            }
        }
    }
}

/// N3: every incident closed, with its own post-incident record: an object naming the
/// incident's key and a final status.
fn n3(world: &World, v: &mut Vec<Violation>) {
    for r in world.incidents.incidents() {
        if r.closed_at.is_none() {
            v.push(violation("N3", format!("incident {} is still open", r.key)));
            continue;
        }
        let post = r.post_incident.as_ref();
        let key = post
            .and_then(|p| p.get("incident_key"))
            .and_then(|k| k.as_str());
        let status = post.and_then(|p| p.get("status")).and_then(|s| s.as_str());
        if key != Some(r.key.as_str()) {
            v.push(violation(
                "N3",
                format!(
                    "incident {} closed with a post-incident record of {key:?}",
                    r.key
                ),
            ));
        }
        if !matches!(
            status,
            Some("resolved" | "escalated" | "unresolved" | "not_firing" | "halted" | "dry_run")
        ) {
            v.push(violation(
                "N3",
                format!("incident {} closed with status {status:?}", r.key),
            ));
        }
    }
}

/// N4, per incident: a rollback and each env change (name and value) at most once under each
/// incident the change cause names (changes that name none count as one more incident); a
/// bundle replaced at most once per incident whose record lists its prune (at least once).
fn n4(world: &World, v: &mut Vec<Violation>) {
    let of = |c: &Call| {
        c.cause
            .as_ref()
            .and_then(|c| c.incident())
            .unwrap_or("(none)")
            .to_owned()
    };
    let mut rollbacks: BTreeMap<String, usize> = BTreeMap::new();
    for c in applied(world.deployment.calls().calls(), "deployment.rollback") {
        *rollbacks.entry(of(&c)).or_default() += 1;
    }
    for (incident, n) in rollbacks.into_iter().filter(|(_, n)| *n > 1) {
        v.push(violation(
            "N4",
            format!("{n} rollbacks applied for incident {incident}"),
        ));
    }
    // Details are "<deployment> NAME=value NAME- … if rv=…".
    let mut env: BTreeMap<(String, String), usize> = BTreeMap::new();
    for c in applied(world.deployment.calls().calls(), "deployment.set_env") {
        for change in c.detail.split(' ').skip(1).take_while(|w| *w != "if") {
            *env.entry((of(&c), change.to_owned())).or_default() += 1;
        }
    }
    for ((incident, change), n) in env.into_iter().filter(|(_, n)| *n > 1) {
        v.push(violation(
            "N4",
            format!("env change {change} applied {n} times for incident {incident}"),
        ));
    }
    // A prune names no incident: each incident whose record lists it allows one.
    let mut recorded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in world.incidents.incidents() {
        for (fields, _) in applied_entries(&r) {
            if let ActionFields::PruneContext { task_id, .. } = fields {
                recorded.entry(task_id).or_default().insert(r.key.clone());
            }
        }
    }
    let mut prunes: BTreeMap<String, usize> = BTreeMap::new();
    for c in applied(world.bundles.calls().calls(), "bundle.put_if_version") {
        let id = c.detail.split(' ').next().unwrap_or_default().to_owned();
        *prunes.entry(id).or_default() += 1;
    }
    for (id, n) in prunes {
        let allowed = recorded.get(&id).map_or(1, |k| k.len().max(1));
        if n > allowed {
            v.push(violation(
                "N4",
                format!(
                    "bundle {id} replaced {n} times for {allowed} incident(s) recording its prune"
                ),
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

/// How many retries a report (as JSON) lists as not taken.
fn held_retries(report: &str) -> usize {
    let r: serde_json::Value = serde_json::from_str(report).unwrap_or_default();
    r["not_taken"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["action"] == "retry_task")
        .filter_map(|s| s["count"].as_u64())
        .sum::<u64>() as usize
}

/// Whether an incident's post-incident record says it was handed to on-call.
fn escalated(r: &crate::ports::IncidentRecord) -> bool {
    let status = r.post_incident.as_ref().and_then(|p| p.get("status"));
    matches!(
        status.and_then(|s| s.as_str()),
        Some("escalated" | "unresolved")
    )
}

/// Whether `text` names task `id` as a whole word (`t-1` is not in `t-10`).
fn mentions(text: &str, id: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    text.match_indices(id).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(word)
            && !text[i + id.len()..].chars().next().is_some_and(word)
    })
}
