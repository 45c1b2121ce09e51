//! Model-based property test of "nothing lost" (N1-N7, `flowfail_core::invariants`), in the
//! manner of AWS's ShardStore checks: random worlds (every scenario under `testdata/scenarios`,
//! plus random timeout tasks with oversized bundles, a random quota and a secret canary in the
//! Deployment's env), random fault schedules (injected errors, lost replies, a process killed
//! between any two port calls, two replicas running passes at the same time), then the faults
//! stop and a fresh responder runs to the end. N1-N7 must hold after every case; N7 lets the
//! applied calls of a killed pass, or of a replica's pass another superseded, stay out of the
//! record when no later pass of that process can write them (its process is gone).
//!
//! Cases: 64 by default; `FLOWFAIL_MODEL_CASES=N` runs N.

use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;
use flowfail_core::invariants::{CallMark, Invariants};
use flowfail_core::memory::{Faults, World, synthesize_bundle};
use flowfail_core::replay::Scenario;
use flowfail_core::respond::Responder;
use flowfail_core::{
    Clock, ErrorKind, FlowType, Policy, Quota, QuotaUsage, Task, TaskId, TaskStatus,
};
use proptest::prelude::*;

const CANARY: &str = "pg-password-CANARY-7f3a";

fn scenario_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let mut out = Vec::new();
    for dir in ["scenarios", "scenarios/extra"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Where a fault goes: a backend and one of its operations.
const OPS: &[(&str, &str)] = &[
    ("tasks", "task.counts"),
    ("tasks", "task.recent_failed"),
    ("tasks", "task.schedule_retries"),
    ("bundles", "bundle.get"),
    ("bundles", "bundle.put_archive"),
    ("bundles", "bundle.put_if_version"),
    ("deployment", "deployment.state"),
    ("deployment", "deployment.set_env"),
    ("deployment", "deployment.rollback"),
    ("quota", "quota.quota"),
    ("pager", "pager.page"),
    ("notifier", "notifier.notify"),
    ("incidents", "incident.claim"),
    ("incidents", "incident.save_state"),
    ("incidents", "incident.append"),
    ("incidents", "incident.reserve_effect"),
    ("incidents", "incident.check_epoch"),
    ("incidents", "incident.close"),
];

#[derive(Debug, Clone)]
enum Fault {
    /// Fail the nth call of an op (transient, or permanent).
    Fail {
        op: usize,
        nth: u64,
        transient: bool,
    },
    /// Apply the nth call of an op, lose its reply.
    LoseReply { op: usize, nth: u64 },
}

#[derive(Debug, Clone)]
enum Step {
    /// One pass of the current responder.
    Pass,
    /// The process is killed after this many port calls of its pass (the future dropped), and
    /// a fresh responder takes over.
    Crash { after_calls: u64 },
    /// A second replica runs a pass at the same time as the current one.
    Concurrent,
}

#[derive(Debug, Clone)]
struct Case {
    scenario: usize,
    extra_timeouts: Vec<u64>,
    quota: Option<f64>,
    faults: Vec<Fault>,
    steps: Vec<Step>,
}

fn case() -> impl Strategy<Value = Case> {
    let fault = prop_oneof![
        (0..OPS.len(), 1u64..6, any::<bool>()).prop_map(|(op, nth, transient)| Fault::Fail {
            op,
            nth,
            transient
        }),
        (0..OPS.len(), 1u64..6).prop_map(|(op, nth)| Fault::LoseReply { op, nth }),
    ];
    let step = prop_oneof![
        6 => Just(Step::Pass),
        2 => (1u64..60).prop_map(|after_calls| Step::Crash { after_calls }),
        2 => Just(Step::Concurrent),
    ];
    (
        0usize..64,
        proptest::collection::vec(300_000u64..2_000_000, 0..4),
        proptest::option::of(0.0f64..1.0),
        proptest::collection::vec(fault, 0..8),
        proptest::collection::vec(step, 5..40),
    )
        .prop_map(|(scenario, extra_timeouts, quota, faults, steps)| Case {
            scenario,
            extra_timeouts,
            quota,
            faults,
            steps,
        })
}

fn faults_of<'a>(w: &'a World, backend: &str) -> &'a Faults {
    match backend {
        "tasks" => w.tasks.faults(),
        "bundles" => w.bundles.faults(),
        "deployment" => w.deployment.faults(),
        "quota" => w.quota.faults(),
        "pager" => w.pager.faults(),
        "notifier" => w.notifier.faults(),
        _ => w.incidents.faults(),
    }
}

fn all_faults(w: &World) -> [&Faults; 9] {
    [
        w.logs.faults(),
        w.tasks.faults(),
        w.bundles.faults(),
        w.quota.faults(),
        w.deployment.faults(),
        w.status.faults(),
        w.pager.faults(),
        w.notifier.faults(),
        w.incidents.faults(),
    ]
}

fn seed(sc: &Scenario, policy: &Policy, clock: &Clock, c: &Case) -> World {
    let world = sc.world(policy, clock.clone()).unwrap();
    for (i, size) in c.extra_timeouts.iter().enumerate() {
        let id = TaskId::parse(&format!("m-{i}")).unwrap();
        world.tasks.insert(
            Task::new(
                id.clone(),
                FlowType::Impl,
                TaskStatus::Failed,
                sc.now - TimeDelta::minutes(3),
            )
            .with_error("Task timed out after 45.00 seconds", None),
        );
        world.tasks.script_retries(&id, [TaskStatus::Succeeded]);
        world.bundles.put(&id, synthesize_bundle(&id, *size));
    }
    if let Some(q) = c.quota {
        world
            .quota
            .set(&sc.primary_vendor, Quota::Known(QuotaUsage::from_ratio(q)));
    }
    world.deployment.human_set_env("DB_PASSWORD", CANARY);
    world
}

fn responder(w: &World, policy: &Policy, clock: &Clock) -> Responder {
    Responder::builder()
        .ports(w.ports())
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

async fn run_case(c: Case, files: &[PathBuf]) {
    let path = &files[c.scenario % files.len()];
    let sc = Scenario::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = seed(&sc, &policy, &clock, &c);
    let mut inv = Invariants::before(&world).canary(CANARY);
    for f in &c.faults {
        match f {
            Fault::Fail { op, nth, transient } => {
                let (backend, op) = OPS[*op];
                let kind = if *transient {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Unexpected
                };
                faults_of(&world, backend).fail_nth(op, *nth, kind);
            }
            Fault::LoseReply { op, nth } => {
                let (backend, op) = OPS[*op];
                faults_of(&world, backend).lose_reply_nth(op, *nth);
            }
        }
    }
    // Every port call takes a millisecond of (paused) time: a pass can be cut between any two.
    for f in all_faults(&world) {
        f.delay("*", Duration::from_millis(1));
    }
    let poll = Duration::from_secs(policy.poll_interval_s);
    let mut r = responder(&world, &policy, &clock);
    for step in &c.steps {
        match step {
            Step::Pass => {
                let _ = r.pass().await;
            }
            Step::Crash { after_calls } => {
                let cut = Duration::from_millis(*after_calls);
                let mark = CallMark::now(&world);
                let _ = tokio::time::timeout(cut, r.pass()).await;
                inv = inv.unrecorded_allowed_since(&world, mark);
                r = responder(&world, &policy, &clock);
            }
            Step::Concurrent => {
                let other = responder(&world, &policy, &clock);
                let mark = CallMark::now(&world);
                let _ = tokio::join!(r.pass(), other.pass());
                // The other replica is gone after this step: what it could not record stays
                // unrecorded (this one writes its own at its next pass).
                inv = inv.unrecorded_allowed_since(&world, mark);
            }
        }
        tokio::time::sleep(poll).await;
    }
    // The faults stop; a fresh process runs until the incident settles.
    for f in all_faults(&world) {
        f.clear();
    }
    let last = responder(&world, &policy, &clock);
    let report = last.run(Duration::from_secs(6 * 3600)).await.unwrap();
    let inv = inv
        .report(&report)
        .output(serde_json::to_string(&report).unwrap())
        .output(report.to_markdown());
    if let Err(v) = inv.check(&world, &policy) {
        panic!("{}: {v}", path.display());
    }
}

fn cases() -> u32 {
    std::env::var("FLOWFAIL_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn nothing_is_lost_under_random_faults_crashes_and_replicas(c in case()) {
        let files = scenario_files();
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run_case(c, &files));
    }
}
