//! The Lambda side (issue 28 #4): the function's logs read incrementally, Lambda's own
//! `Task timed out` lines counted (an `ERROR` filter misses them), and the detection gap —
//! failures the logs show and the TaskDB does not — reported once, with counts and examples.

use std::time::Duration;

use chrono::TimeDelta;
use flowfail_core::model::LogEvent;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, FlowType, Task, TaskId, TaskStatus};

use crate::support::load;

#[test]
fn lambda_timeouts_and_errors_the_taskdb_never_saw_are_a_detection_gap_reported_once() {
    let sc = load("pilot-timeout");
    let policy = sc.policy().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let clock = Clock::tokio_anchored(sc.now);
            let world = sc.world(&policy, clock.clone()).unwrap();
            // Five invocations Lambda's runtime ended (no ERROR on those lines) besides the
            // three the scenario logs for its three timeouts in the TaskDB; one task that logged
            // an error and still runs, one the TaskDB has never heard of.
            for i in 0..5 {
                world.logs.push(LogEvent::new(
                    sc.now - TimeDelta::minutes(20 + i),
                    format!(
                        "2025-11-13T09:4{i}:00.000Z 8f1c-{i} Task timed out after 45.00 seconds"
                    ),
                ));
            }
            world.tasks.insert(Task::new(
                TaskId::parse("t-90001").unwrap(),
                FlowType::Impl,
                TaskStatus::Running,
                sc.now - TimeDelta::minutes(10),
            ));
            world.logs.push(LogEvent::new(
                sc.now - TimeDelta::minutes(9),
                "ERROR t-90001 anthropic call failed: connection reset",
            ));
            world.logs.push(LogEvent::new(
                sc.now - TimeDelta::minutes(8),
                "ERROR worker crashed before writing its row task_id=t-90002",
            ));
            let r = Responder::builder()
                .ports(world.ports())
                .policy(policy.clone())
                .clock(clock.clone())
                .build()
                .unwrap();
            let report = r.run(Duration::from_secs(3600)).await.unwrap();
            let gaps: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.finding.kind == "detection_gap")
                .collect();
            assert_eq!(gaps.len(), 1, "once per incident: {:#?}", report.findings);
            let f = &gaps[0].finding;
            assert!(
                f.summary.contains("8 Lambda invocations timed out")
                    && f.summary.contains("against 3 timeouts in the TaskDB")
                    && f.summary
                        .contains("2 tasks logged errors but are not failed")
                    && f.summary.contains("t-90001 (running)")
                    && f.summary.contains("t-90002 (not in the TaskDB"),
                "{}",
                f.summary
            );
            assert_eq!(f.details["lambda_timeouts"], 8);
            assert!(
                report
                    .post_incident
                    .follow_ups
                    .iter()
                    .any(|u| u.contains("detection gap")),
                "{:?}",
                report.post_incident.follow_ups
            );
            // The runbook's other work went on as before: the three timeouts pruned.
            assert_eq!(
                report
                    .actions
                    .iter()
                    .filter(|a| a.action.kind() == "prune_context")
                    .count(),
                3
            );
            // Incremental: after the first read of the whole window, each read starts a minute
            // before the end of the last one.
            let reads = world.logs.calls().of("logs.errors");
            assert!(reads.len() >= 2, "{reads:?}");
            let window_start = |d: &str| d.split("..").next().unwrap_or("").to_owned();
            let first = window_start(&reads[0].detail);
            assert!(
                reads[1..].iter().all(|c| window_start(&c.detail) > first),
                "{:#?}",
                reads.iter().map(|c| &c.detail).collect::<Vec<_>>()
            );
        });
}

#[test]
fn the_error_filter_takes_lambdas_timeout_lines_and_error_lines_only() {
    let q = flowfail_core::ports::LogQuery::errors(chrono::Utc::now(), chrono::Utc::now());
    assert!(q.matches("ERROR t-1 boom"));
    assert!(q.matches("2025-11-13T09:40:00Z 8f1c Task timed out after 45.00 seconds"));
    assert!(!q.matches("INFO all good"));
    assert!(!q.matches("Task done"));
}
