//! Properties of the whole engine over random incidents, run on the in-memory backends in
//! virtual time: never two rollbacks for one incident, never a retry of a validation failure,
//! never more attempts than the policy allows, no mutation with the kill switch on, none in a
//! dry run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::memory::World;
use flowfail_core::memory::{MemoryDeployment, synthesize_bundle};
use flowfail_core::respond::{KillSwitch, Responder};
use flowfail_core::{
    Clock, FailureKind, FlowType, Policy, Quota, QuotaUsage, RevisionInfo, Task, TaskId,
    TaskStatus, VendorHealth, VendorStatus, classify,
};
use proptest::prelude::*;

const MESSAGES: [(&str, Option<u16>); 6] = [
    ("Task timed out after 45.00 seconds", None),
    (
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        Some(429),
    ),
    (
        "TaskObject failed schema validation: /flow_type: \"refactor\" is not one of [\"plan\"]",
        None,
    ),
    (
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        Some(529),
    ),
    ("KeyError: 'context_refs'", None),
    ("insufficient_quota", Some(429)),
];

#[derive(Debug, Clone)]
struct Incident {
    tasks: Vec<(usize, u32, bool, u64)>, // message, attempts, retry succeeds, bundle KB
    succeeded: u64,
    quota: Option<f64>,
    primary: u8,
    fallback: u8,
    deployed_hours_ago: i64,
    has_history: bool,
    paused: bool,
}

fn health(n: u8) -> VendorHealth {
    [
        VendorHealth::Operational,
        VendorHealth::MajorOutage,
        VendorHealth::PartialOutage,
        VendorHealth::Unknown,
    ][n as usize % 4]
}

fn incident() -> impl Strategy<Value = Incident> {
    (
        proptest::collection::vec(
            (0..MESSAGES.len(), 0u32..5, any::<bool>(), 100u64..900),
            1..40,
        ),
        0u64..400,
        proptest::option::of(0.0f64..1.0),
        0u8..4,
        0u8..4,
        0i64..30,
        any::<bool>(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(
                tasks,
                succeeded,
                quota,
                primary,
                fallback,
                deployed_hours_ago,
                has_history,
                paused,
            )| Incident {
                tasks,
                succeeded,
                quota,
                primary,
                fallback,
                deployed_hours_ago,
                has_history,
                paused,
            },
        )
}

fn world(i: &Incident, start: DateTime<Utc>, clock: &Clock, policy: &Policy) -> World {
    let mut w = World::new(policy, clock.clone());
    let history = if i.has_history {
        vec![RevisionInfo::new(6, Some(start - TimeDelta::days(3)))]
    } else {
        vec![]
    };
    w.deployment = MemoryDeployment::new(
        "flowengine",
        7,
        Some(start - TimeDelta::hours(i.deployed_hours_ago)),
        BTreeMap::new(),
        history,
        clock.clone(),
    );
    if i.paused {
        w.deployment.set_paused(true);
    }
    for (n, (m, attempts, ok, kb)) in i.tasks.iter().enumerate() {
        let id = TaskId::parse(&format!("t-{n}")).unwrap();
        let (msg, status) = MESSAGES[*m];
        w.tasks.insert(
            Task::new(
                id.clone(),
                FlowType::Plan,
                TaskStatus::Failed,
                start - TimeDelta::minutes(n as i64 % 50),
            )
            .with_error(msg, status)
            .with_attempts(*attempts),
        );
        w.tasks.script_retries(
            &id,
            [if *ok {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Failed
            }],
        );
        w.bundles.put(&id, synthesize_bundle(&id, kb * 1000));
    }
    w.tasks.set_background(i.succeeded, 0);
    w.quota.set(
        "anthropic",
        i.quota.map_or(
            Quota::Unknown {
                reason: "unreadable".into(),
            },
            |q| Quota::Known(QuotaUsage::from_ratio(q)),
        ),
    );
    w.status
        .set("anthropic", VendorStatus::new(health(i.primary)));
    w.status
        .set("openai", VendorStatus::new(health(i.fallback)));
    w
}

fn run(i: &Incident, dry_run: bool, kill: bool) -> (World, flowfail_core::report::Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let start: DateTime<Utc> = "2025-11-13T10:00:00Z".parse().unwrap();
        let clock = Clock::tokio_anchored(start);
        let policy = Policy::default();
        let w = world(i, start, &clock, &policy);
        let k = KillSwitch::new();
        k.set(kill);
        let r = Responder::builder()
            .ports(w.ports())
            .policy(policy)
            .clock(clock)
            .dry_run(dry_run)
            .kill_switch(k)
            .build()
            .unwrap();
        let report = r.run(Duration::from_secs(3 * 3600)).await.unwrap();
        (w, report)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_runbook_never_overreaches(i in incident()) {
        let (w, report) = run(&i, false, false);
        // Never two rollbacks for one incident.
        prop_assert!(w.deployment.calls().of("deployment.rollback").len() <= 1);
        // Never a retry of a validation failure, never more attempts than the policy.
        let kinds: BTreeMap<String, (FailureKind, u32)> = i.tasks.iter().enumerate()
            .map(|(n, (m, a, _, _))| (format!("t-{n}"), (classify(MESSAGES[*m].0, MESSAGES[*m].1).kind, *a)))
            .collect();
        for call in w.tasks.calls().of("task.schedule_retries") {
            for req in call.detail.split(',') {
                let (id, expected) = req.split_once('@').unwrap();
                let expected: u32 = expected.parse().unwrap();
                let (kind, _) = kinds[id];
                prop_assert_ne!(kind, FailureKind::Validation, "validation task {} retried", id);
                prop_assert!(expected < 3, "retry of {} beyond max attempts", id);
            }
        }
        for t in w.tasks.tasks() {
            let (_, seeded) = kinds[t.task_id.as_str()];
            prop_assert!(t.attempts <= seeded.max(3));
        }
        // A paused Deployment is never rolled back (not even attempted); every run ends in a
        // known state.
        if i.paused {
            let rollbacks = w.deployment.calls().of("deployment.rollback");
            prop_assert!(rollbacks.is_empty(), "paused deployment rolled back: {:?}", rollbacks);
        }
        prop_assert!(["resolved", "escalated", "unresolved", "not_firing"].contains(&report.post_incident.status.as_str()));
        // Pages go only to configured targets and at most once per reason.
        let pages = w.pager.pages();
        let mut keys: Vec<&str> = pages.iter().map(|p| p.dedup_key.as_str()).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        prop_assert_eq!(n, keys.len());
    }

    #[test]
    fn kill_switch_and_dry_run_mutate_nothing(i in incident()) {
        let (w, _) = run(&i, false, true);
        prop_assert!(w.mutations().is_empty(), "kill switch: {:?}", w.mutations());
        let (w, report) = run(&i, true, false);
        prop_assert!(w.mutations().is_empty(), "dry run: {:?}", w.mutations());
        prop_assert!(report.actions.iter().all(|a| a.outcome == flowfail_core::report::Outcome::DryRun));
    }
}
