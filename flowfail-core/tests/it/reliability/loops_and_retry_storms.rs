//! B. Loops (quota flapping, rate-limited actions) and C. retry storms (ten thousand failing
//! tasks, failing reads).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::memory::synthesize_bundle;
use flowfail_core::{ErrorKind, FlowType, Policy, Task, TaskId, TaskStatus};

use super::{applied, responder, setup};
use crate::support::{load, paused};

// ---------------------------------------------------------------- B. loops

/// B1: quota flapping at 79/81 % every 30 s for two hours, with rate-limited failures arriving
/// all along so the incident stays open: every one of the 240 passes reads the quota, and the
/// breaker env is changed exactly once (enabled at the first 81 %; 79 % never reaches the 70 %
/// that turns it off). When the alert clears the quota is still 79 %: restoring is not safe, so
/// the breaker is left in place and on-call told, never flipped off.
#[test]
fn b1_quota_flapping_causes_bounded_flips() {
    paused(async {
        let sc = load("rate-limit");
        let mut s = setup(&sc);
        let vendor = sc.primary_vendor.clone();
        let quota = |q: f64| {
            s.world.quota.set(
                &vendor,
                flowfail_core::Quota::Known(flowfail_core::QuotaUsage::from_ratio(q)),
            );
        };
        let r = responder(&s, s.world.ports());
        let rate_limited = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        for i in 0..240u64 {
            quota(if i % 2 == 0 { 0.81 } else { 0.79 });
            for k in 0..2 {
                let id = TaskId::parse(&format!("f-{i}-{k}")).unwrap();
                s.world.tasks.insert(
                    Task::new(
                        id.clone(),
                        FlowType::Impl,
                        TaskStatus::Failed,
                        s.clock.now(),
                    )
                    .with_error(rate_limited, Some(429)),
                );
                s.world.tasks.script_retries(&id, [TaskStatus::Failed]);
            }
            let out = r.pass().await.unwrap();
            assert!(
                out.settled.is_none(),
                "pass {i}: settled ({:?}) before the schedule ended",
                out.settled
            );
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        assert_eq!(
            s.world.quota.calls().of("quota.quota").len(),
            240,
            "the quota was read on every pass of the two hours"
        );
        let flips = s.world.deployment.calls().of("deployment.set_env");
        assert_eq!(flips.len(), 1, "{flips:?}");
        assert!(
            flips[0].detail.contains("ENABLE_CIRCUIT_BREAKER=true"),
            "{flips:?}"
        );
        // The failures stop; the alert clears with the quota still flapping above 70 %.
        s.world.tasks.set_background(100_000, 0);
        let report = r.run(Duration::from_secs(3600)).await.unwrap();
        s.report(&report);
        assert!(report.resolved);
        assert_eq!(s.world.deployment.calls().of("deployment.set_env").len(), 1);
        assert_eq!(
            s.world
                .deployment
                .snapshot()
                .env
                .get("ENABLE_CIRCUIT_BREAKER")
                .map(String::as_str),
            Some("true")
        );
    });
}

/// B4: an action rate limit under a storm: 60 oversized bundles, 10 mutations a minute: every
/// bundle is pruned eventually (deferred, not dropped).
#[test]
fn b4_rate_limited_actions_are_deferred_not_dropped() {
    paused(async {
        let sc = load("pilot-timeout");
        let mut s = setup(&sc);
        s.policy =
            Policy::from_json_str(r#"{"max_actions_per_minute": 10, "alert_clear_rate": 0.0}"#)
                .unwrap();
        for i in 0..60 {
            let id = TaskId::parse(&format!("s-{i}")).unwrap();
            s.world.tasks.insert(
                Task::new(
                    id.clone(),
                    FlowType::Impl,
                    TaskStatus::Failed,
                    sc.now - TimeDelta::minutes(5),
                )
                .with_error("Task timed out after 45.00 seconds", None),
            );
            s.world.tasks.script_retries(&id, [TaskStatus::Succeeded]);
            s.world.bundles.put(&id, synthesize_bundle(&id, 600_000));
        }
        s.world.tasks.set_background(5000, 0);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3 * 3600))
            .await
            .unwrap();
        assert_eq!(applied(&r, "prune_context"), 63);
        assert!(
            r.not_taken
                .iter()
                .any(|n| n.skip.reason.contains("rate limit"))
        );
        // The excess is escalated once, not dropped.
        let escalations = s
            .world
            .pager
            .pages()
            .iter()
            .filter(|p| p.dedup_key.ends_with("action_rate_limited"))
            .count();
        assert_eq!(escalations, 1);
        assert!(r.resolved);
        // Never more than 10 mutations of bundles or the deployment in any minute.
        let mut times: Vec<DateTime<Utc>> = r
            .actions
            .iter()
            .filter(|a| a.action.kind() == "prune_context")
            .map(|a| a.at)
            .collect();
        times.sort();
        for w in times.windows(11) {
            assert!(w[10] - w[0] >= TimeDelta::seconds(60));
        }
    });
}

// ---------------------------------------------------------------- C. retry storms

/// C1: 10,000 failing tasks whose retries keep failing: no task beyond 3 attempts, no pass
/// beyond the retry budget, and the incident ends escalated.
#[test]
fn c1_ten_thousand_failing_tasks_stay_within_budget_and_attempts() {
    paused(async {
        let sc = load("pilot-timeout");
        let s = setup(&sc);
        for i in 0..10_000 {
            let id = TaskId::parse(&format!("x-{i}")).unwrap();
            s.world.tasks.insert(
                Task::new(id.clone(), FlowType::Impl, TaskStatus::Failed, sc.now - TimeDelta::minutes(30))
                    .with_error(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, Some(529)),
            );
            s.world.tasks.script_retries(&id, [TaskStatus::Failed]);
        }
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(2 * 3600))
            .await
            .unwrap();
        assert!(s.world.tasks.tasks().iter().all(|t| t.attempts <= 3));
        for c in s.world.tasks.calls().of("task.schedule_retries") {
            assert!(c.detail.split(',').count() <= s.policy.retry_budget_per_pass);
        }
        assert!(r.escalated, "{}", r.post_incident.status);
    });
}

/// C4, F4: TaskDB reads failing: no decision on missing data, nothing mutated, the gap reported.
#[test]
fn c4_failing_reads_mean_no_decision() {
    for op in ["task.counts", "task.recent_failed"] {
        paused(async {
            let s = setup(&load("bad-deploy"));
            s.world
                .tasks
                .faults()
                .fail_always(op, ErrorKind::Unavailable);
            let r = responder(&s, s.world.ports())
                .run(Duration::from_secs(600))
                .await
                .unwrap();
            assert!(
                s.world.mutations().is_empty(),
                "{op}: {:?}",
                s.world.mutations()
            );
            assert!(r.data_gaps.iter().any(|g| g.contains("TaskDB")), "{op}");
        });
    }
}
