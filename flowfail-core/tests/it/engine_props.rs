//! Properties of the whole engine over random incidents, run on the in-memory backends in
//! virtual time: never two rollbacks for one incident, never a retry of a validation failure,
//! never more attempts than the policy allows, no mutation with the kill switch on, none in a
//! dry run.

use flowfail_core::decide::actions;
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

// ---------------------------------------------------------------------------------------------
// The outcome function: the one writer of action effects into the incident state.

mod outcomes {
    use super::*;
    use flowfail_core::breaker::Breaker;
    use flowfail_core::decide::{Action, ActionOutcome, Applied, IncidentState, apply_outcome};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-11-13T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn state() -> IncidentState {
        let alert = flowfail_core::detect::alert_from_counts(400, 100, false, &Policy::default());
        IncidentState::open("flowengine-x".into(), t0(), alert, BTreeMap::new(), None)
    }

    fn id(n: u8) -> TaskId {
        TaskId::parse(&format!("t-{n}")).unwrap()
    }

    fn action() -> impl Strategy<Value = Action> {
        let p = Policy::default();
        let envs = vec![
            p.breaker_env.clone(),
            p.fallback_env.clone(),
            p.manual_review_env.clone(),
            "OTHER".to_owned(),
        ];
        prop_oneof![
            (0u8..4, 500_000u64..900_000).prop_map(|(n, b)| Action::PruneContext(
                actions::PruneContext {
                    task_id: id(n),
                    from_bytes: b,
                    max_bytes: 180_000
                }
            )),
            (
                proptest::sample::select(envs),
                proptest::option::of(proptest::sample::select(vec!["true", "false", "m-2"]))
            )
                .prop_map(|(name, v)| Action::SetEnv(actions::SetEnv {
                    deployment: "flowengine".into(),
                    name,
                    value: v.map(str::to_owned),
                    purpose: "p".into()
                })),
            (0u8..4, 0u32..3, any::<bool>()).prop_map(|(n, a, probe)| Action::RetryTask(
                actions::RetryTask {
                    task_id: id(n),
                    attempt: a + 1,
                    expected_attempts: a,
                    failure_kind: FailureKind::RateLimit,
                    after_prune: false,
                    probe
                }
            )),
            Just(Action::Rollback(actions::Rollback {
                deployment: "flowengine".into(),
                from_revision: 8,
                to_revision: 7,
                expected_resource_version: "100".into()
            })),
            Just(Action::VerifyRollout(actions::VerifyRollout {
                deployment: "flowengine".into()
            })),
            (0u8..3).prop_map(|r| Action::Page(actions::Page {
                target: "on_call".into(),
                reason: format!("r{r}"),
                summary: "s".into(),
                details: serde_json::Value::Null,
            })),
            Just(Action::Notify(actions::Notify {
                audience: "stakeholders".into(),
                message: "m".into(),
                reason: None,
            })),
        ]
    }

    /// Outcomes that change nothing in the world.
    fn no_effect() -> impl Strategy<Value = ActionOutcome> {
        prop_oneof![
            Just(ActionOutcome::DryRun),
            Just(ActionOutcome::Refused {
                reason: "kill switch is on".into()
            }),
            Just(ActionOutcome::Failed {
                reason: "unavailable".into(),
                final_for_incident: false
            }),
        ]
    }

    /// The outcome an action of this kind reports when it was applied.
    fn applied_for(a: &Action) -> ActionOutcome {
        ActionOutcome::Applied(match a {
            Action::PruneContext(actions::PruneContext { from_bytes, .. }) => Applied::Pruned {
                from_bytes: *from_bytes,
                to_bytes: 170_000,
                archive_checksum: "ab".repeat(32),
            },
            Action::SetEnv(_) => Applied::EnvSet {
                resource_version: "101".into(),
                previous: Some("before".into()),
            },
            Action::RetryTask(actions::RetryTask {
                expected_attempts, ..
            }) => Applied::Retried {
                attempts: expected_attempts + 1,
            },
            Action::Rollback(_) => Applied::RolledBack {
                resource_version: "102".into(),
            },
            Action::VerifyRollout(_) => Applied::RolloutVerdict {
                verdict: flowfail_core::decide::RolloutVerdict::Complete,
            },
            _ => Applied::Delivered {
                deduplicated: false,
            },
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Refused, dry-run and retryable failures leave the state exactly as it was, whatever
        /// happened before: the next pass decides the action again.
        #[test]
        fn an_outcome_without_effect_changes_nothing(
            history in proptest::collection::vec(action(), 0..12),
            a in action(),
            o in no_effect(),
        ) {
            let p = Policy::default();
            let mut s = state();
            for (i, h) in history.iter().enumerate() {
                apply_outcome(&mut s, h, &applied_for(h), &p, t0() + TimeDelta::seconds(i as i64));
            }
            let before = s.clone();
            apply_outcome(&mut s, &a, &o, &p, t0() + TimeDelta::hours(1));
            prop_assert_eq!(s, before);
        }

        /// Applying the same applied outcome twice is the same as once.
        #[test]
        fn an_applied_outcome_is_idempotent(
            history in proptest::collection::vec(action(), 0..12),
            a in action(),
        ) {
            let p = Policy::default();
            let mut s = state();
            for h in &history {
                apply_outcome(&mut s, h, &applied_for(h), &p, t0());
            }
            let o = applied_for(&a);
            let now = t0() + TimeDelta::minutes(5);
            apply_outcome(&mut s, &a, &o, &p, now);
            let once = s.clone();
            apply_outcome(&mut s, &a, &o, &p, now);
            prop_assert_eq!(s, once);
        }

        /// Each applied kind leaves its mark: a retry its attempts, a page its effect key, a
        /// breaker enabled its opening, a rollback its record (which a later outcome of the
        /// rollback never erases: never twice in one incident).
        #[test]
        fn applied_outcomes_are_recorded(
            history in proptest::collection::vec(action(), 0..12),
            a in action(),
        ) {
            let p = Policy::default();
            let mut s = state();
            for h in &history {
                apply_outcome(&mut s, h, &applied_for(h), &p, t0());
            }
            let had_rollback = s.rollback.is_some();
            let half_open = matches!(s.breaker, Breaker::HalfOpen { .. });
            let now = t0() + TimeDelta::minutes(5);
            apply_outcome(&mut s, &a, &applied_for(&a), &p, now);
            match &a {
                Action::RetryTask(actions::RetryTask { task_id, expected_attempts, probe, .. }) => {
                    prop_assert_eq!(s.retries[task_id].attempts, expected_attempts + 1);
                    prop_assert_eq!(s.retries[task_id].last_at, now);
                    // A probe is only ever planned while the breaker is half-open.
                    if *probe && half_open {
                        prop_assert_eq!(s.breaker.probe(), Some(task_id));
                    }
                }
                Action::PruneContext(actions::PruneContext { task_id, .. }) => prop_assert!(s.pruned.contains_key(task_id)),
                Action::Page(_) | Action::Notify(_) => {
                    prop_assert!(s.effects.contains(&a.effect_key().unwrap()));
                }
                Action::SetEnv(actions::SetEnv { name, value, .. }) if *name == p.breaker_env => {
                    if value.as_deref() == Some("true") {
                        prop_assert_eq!(s.breaker_enabled_at, Some(now));
                        let is_open = matches!(s.breaker, Breaker::Open { .. });
                        prop_assert!(is_open);
                    } else {
                        prop_assert_eq!(s.breaker_enabled_at, None);
                    }
                }
                Action::Rollback(_) | Action::VerifyRollout(_) => {
                    prop_assert!(s.rollback.is_some() || !had_rollback);
                }
                _ => {}
            }
            // Whatever comes next for a rollback, a recorded one is never erased.
            if s.rollback.is_some() {
                let rb = Action::Rollback(actions::Rollback {
                    deployment: "flowengine".into(),
                    from_revision: 8,
                    to_revision: 7,
                    expected_resource_version: "100".into(),
                });
                for o in [
                    ActionOutcome::DoneElsewhere { reason: "reserved".into() },
                    ActionOutcome::Refused { reason: "kill switch is on".into() },
                    ActionOutcome::DryRun,
                ] {
                    apply_outcome(&mut s, &rb, &o, &p, now);
                    prop_assert!(s.rollback.is_some());
                }
            }
        }

        /// An env change flowfail applied and then undid (restoring the value it found) leaves
        /// no record behind: nothing is "left in place".
        #[test]
        fn set_then_undo_leaves_no_env_record(
            v in proptest::sample::select(vec!["true", "m-2"]),
            previous in proptest::option::of(proptest::sample::select(vec!["false", "m-1"])),
        ) {
            let p = Policy::default();
            let mut s = state();
            let set = Action::SetEnv(actions::SetEnv { deployment: "flowengine".into(), name: p.fallback_env.clone(), value: Some(v.to_owned()), purpose: "p".into() });
            apply_outcome(&mut s, &set, &ActionOutcome::Applied(Applied::EnvSet { resource_version: "1".into(), previous: previous.map(str::to_owned) }), &p, t0());
            prop_assert!(s.env_changes.contains_key(&p.fallback_env));
            let undo = Action::SetEnv(actions::SetEnv { deployment: "flowengine".into(), name: p.fallback_env.clone(), value: previous.map(str::to_owned), purpose: "undo".into() });
            apply_outcome(&mut s, &undo, &ActionOutcome::Applied(Applied::EnvSet { resource_version: "2".into(), previous: Some(v.to_owned()) }), &p, t0());
            prop_assert!(!s.env_changes.contains_key(&p.fallback_env));
            prop_assert_eq!(s.known_resource_version.as_deref(), Some("2"));
        }

        /// A failed rollback (reserved, then refused by the API) or one that panicked is final.
        #[test]
        fn a_failed_rollback_is_never_retried(final_failure in any::<bool>()) {
            let p = Policy::default();
            let mut s = state();
            let rb = Action::Rollback(actions::Rollback { deployment: "flowengine".into(), from_revision: 8, to_revision: 7, expected_resource_version: "100".into() });
            let o = if final_failure {
                ActionOutcome::Failed { reason: "conflict".into(), final_for_incident: true }
            } else {
                ActionOutcome::Unknown { reason: "panicked: boom".into() }
            };
            apply_outcome(&mut s, &rb, &o, &p, t0());
            let rec = s.rollback.clone().unwrap();
            prop_assert!(rec.rollout.unwrap().starts_with("rollback failed"));
            prop_assert!(rec.verified_at.is_some());
        }
    }
}
