//! Issue 24 #3: "resolved" means the tasks recovered. Retrying a failed task moves it to
//! `pending`, which takes it out of the alert's failure count at once; the incident must not
//! resolve on that. It stays open, saying what it waits for, until the alert is clear *and*
//! every task flowfail retried has finished (succeeded, or failed again and reported as such);
//! MTTR is measured to that moment.
//!
//! The in-memory TaskDB leaves an unscripted retry `pending`, as a real TaskDB with no worker
//! does; the test plays FlowEngine's worker with `set_status`.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use flowfail_core::invariants::Invariants;
use flowfail_core::memory::World;
use flowfail_core::replay::Scenario;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, ErrorKind, Policy, TaskId, TaskStatus};

use crate::support::paused;

/// 30 timeouts (no context bundle: retried as they are) beside 150 successes; retries are not
/// scripted, so they stay `pending` until the test's worker runs them.
fn scenario() -> Scenario {
    let now: chrono::DateTime<Utc> = "2025-11-13T10:00:00Z".parse().unwrap();
    let tasks: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            serde_json::json!({
                "task_id": format!("t-{i:02}"),
                "flow_type": "impl",
                "status": "failed",
                "error_message": "Task timed out after 45.00 seconds",
                "created_at": (now - TimeDelta::minutes(2)).to_rfc3339(),
                "on_retry": [],
            })
        })
        .collect();
    let sc = serde_json::json!({
        "name": "retries-in-flight",
        "now": now.to_rfc3339(),
        "deployment": {"revision": 7, "deployed_at": (now - TimeDelta::hours(12)).to_rfc3339(),
                        "env": {"ENABLE_CIRCUIT_BREAKER": "false"}},
        "tasks": tasks,
        "volume": {"succeeded": 150},
        "quota": {"used_ratio": 0.2},
        "vendors": {"anthropic": "operational", "openai": "operational"},
    });
    Scenario::from_json(&sc.to_string()).unwrap()
}

fn responder(world: &World, policy: &Policy, clock: &Clock) -> Responder {
    Responder::builder()
        .ports(world.ports())
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn ids() -> Vec<TaskId> {
    (0..30)
        .map(|i| TaskId::parse(&format!("t-{i:02}")).unwrap())
        .collect()
}

fn open_incidents(world: &World) -> usize {
    world
        .incidents
        .incidents()
        .iter()
        .filter(|i| i.closed_at.is_none())
        .count()
}

/// Retried, no worker: open for ten minutes, saying so; the worker runs them (one fails
/// again): resolved at the first pass after, with MTTR to that moment and the failure reported.
/// A fresh responder (a restart) carries the wait on from the ledger.
#[test]
fn an_incident_with_retries_in_flight_resolves_only_when_they_finish() {
    paused(async {
        let sc = scenario();
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let inv = Invariants::before(&world);

        let first = responder(&world, &policy, &clock);
        let report = first.run(Duration::from_secs(600)).await.unwrap();
        // Every failed task retried once; no worker ran them.
        for t in world
            .tasks
            .tasks()
            .iter()
            .filter(|t| t.task_id.as_str().starts_with("t-"))
        {
            assert_eq!(
                (t.status, t.attempts),
                (TaskStatus::Pending, 1),
                "{}",
                t.task_id
            );
        }
        assert!(
            !report.resolved && !report.escalated,
            "settled with every retry still pending: {} (MTTR {:?})",
            report.post_incident.status,
            report.post_incident.mttr_seconds
        );
        assert_eq!(report.post_incident.status, "unresolved");
        assert_eq!(open_incidents(&world), 1);
        // It says what it waits for.
        let wait = report
            .not_taken
            .iter()
            .find(|s| s.skip.action == "resolve")
            .unwrap_or_else(|| {
                panic!(
                    "no word of the retries it waits for: {:#?}",
                    report.not_taken
                )
            });
        assert_eq!(wait.skip.count, 30, "{wait:?}");
        assert!(wait.skip.reason.contains("retried tasks"), "{wait:?}");
        // Each pass read back only the tasks it retried, by id.
        let reads = world.tasks.calls().of("task.get_many");
        assert!(!reads.is_empty(), "the retried tasks were never read back");
        for c in &reads {
            assert!(
                c.detail.split(',').all(|id| id.starts_with("t-")),
                "read more than the retried tasks: {}",
                c.detail
            );
        }
        drop(first);

        // The worker picks them up: running is not finished.
        let ids = ids();
        for id in &ids {
            world.tasks.set_status(id, TaskStatus::Running, clock.now());
        }
        let second = responder(&world, &policy, &clock);
        let report = second.run(Duration::from_secs(60)).await.unwrap();
        assert!(!report.resolved, "resolved with every retry still running");
        assert_eq!(open_incidents(&world), 1);

        // They finish: 29 succeed, one fails again.
        let finished_at = clock.now();
        for id in &ids[1..] {
            world
                .tasks
                .set_status(id, TaskStatus::Succeeded, finished_at);
        }
        world
            .tasks
            .set_status(&ids[0], TaskStatus::Failed, finished_at);
        let report = second.run(Duration::from_secs(600)).await.unwrap();
        assert!(report.resolved, "{:#?}", report.not_taken);
        let resolved_at = report.resolved_at.unwrap();
        let detected_at = report.detected_at.unwrap();
        assert!(
            resolved_at >= finished_at
                && resolved_at - finished_at <= TimeDelta::seconds(policy.poll_interval_s as i64),
            "resolved at {resolved_at}, the retries finished at {finished_at}"
        );
        let mttr = report.post_incident.mttr_seconds.unwrap();
        assert_eq!(mttr, (resolved_at - detected_at).num_seconds());
        assert!(
            mttr >= 660,
            "MTTR {mttr} s, measured before the retries finished"
        );
        eprintln!(
            "detected {detected_at}, retries finished {finished_at}, resolved {resolved_at}: MTTR {mttr} s"
        );
        // The task that failed again is reported as such, and not retried with the alert clear.
        let again: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.finding.kind == "retry_failed_again")
            .collect();
        assert_eq!(again.len(), 1, "{:#?}", report.findings);
        assert_eq!(again[0].finding.task_id.as_ref(), Some(&ids[0]));
        assert!(
            report
                .post_incident
                .timeline
                .iter()
                .any(|l| l.event.contains("failed again") && l.event.contains("t-00")),
            "{:#?}",
            report.post_incident.timeline
        );
        assert!(
            report
                .post_incident
                .follow_ups
                .iter()
                .any(|f| f.contains("failed again")),
            "{:#?}",
            report.post_incident.follow_ups
        );
        assert_eq!(open_incidents(&world), 0);
        let rec = &world.incidents.incidents()[0];
        let post = rec.post_incident.as_ref().unwrap();
        assert_eq!(post["status"], "resolved");
        assert_eq!(post["mttr_seconds"], mttr);
        inv.check(&world, &policy).unwrap();
    });
}

/// With the alert clear, retried tasks whose status cannot be read keep the incident open: an
/// unknown is not "finished". Once the read answers (and the tasks finished), it resolves.
#[test]
fn retried_tasks_that_cannot_be_read_are_not_taken_as_finished() {
    paused(async {
        let sc = scenario();
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let r = responder(&world, &policy, &clock);
        assert!(r.pass().await.unwrap().incident_open);
        for id in ids() {
            world
                .tasks
                .set_status(&id, TaskStatus::Succeeded, clock.now());
        }
        world
            .tasks
            .faults()
            .fail_always("task.get_many", ErrorKind::Unavailable);
        let report = r.run(Duration::from_secs(300)).await.unwrap();
        assert!(!report.resolved, "resolved on retries it could not read");
        assert!(
            report.data_gaps.iter().any(|g| g.contains("retried")),
            "{:?}",
            report.data_gaps
        );
        world.tasks.faults().clear();
        let report = r.run(Duration::from_secs(300)).await.unwrap();
        assert!(report.resolved, "{:#?}", report.not_taken);
    });
}
