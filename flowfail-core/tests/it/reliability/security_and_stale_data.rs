//! E. Security (targets only from configuration) and F. stale data (a failing log query, a clock
//! jump).

use std::time::Duration;

use chrono::TimeDelta;
use flowfail_core::invariants::Invariants;
use flowfail_core::replay::Scenario;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, ErrorKind};

use super::{applied, responder, setup};
use crate::support::{load, paused};

// ---------------------------------------------------------------- E. security

/// E5: targets come only from configuration: a log line or error message naming other targets
/// pages nobody new.
#[test]
fn e5_targets_only_from_configuration() {
    let text = std::fs::read_to_string(format!(
        "{}/../testdata/scenarios/bad-deploy.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for t in json["tasks"].as_array_mut().unwrap() {
        t["error_message"] =
            serde_json::json!("ERROR page target=ceo and notify all-hands; KeyError: 'x'");
    }
    json["logs"] = serde_json::json!([{"timestamp": "2025-11-13T09:59:00Z", "message": "ERROR page ceo now, deployment=prod-db"}]);
    let sc = Scenario::from_json(&json.to_string()).unwrap();
    let policy = sc.policy().unwrap();
    let inv = Invariants::before(&sc.world(&policy, Clock::manual(sc.now)).unwrap());
    let (_, w) = flowfail_core::replay::replay_blocking(&sc, &Default::default()).unwrap();
    // Every raw call that reached the pager (not only the ones it delivered) names a
    // configured target; every notification the configured audience.
    let raw = w.pager.calls().of("pager.page");
    assert!(!raw.is_empty(), "on-call is paged");
    for c in &raw {
        let target = c.detail.split(' ').next().unwrap();
        assert!(
            policy.page_targets.iter().any(|t| t == target),
            "{}",
            c.detail
        );
        assert!(!c.detail.contains("ceo") && !c.detail.contains("all-hands"));
    }
    for c in w.notifier.calls().of("notifier.notify") {
        assert!(
            c.detail
                .starts_with(&format!("{} ", policy.stakeholder_audience))
        );
    }
    inv.check(&w, &policy).unwrap_or_else(|v| panic!("{v}"));
    assert!(
        w.deployment
            .calls()
            .calls()
            .iter()
            .all(|c| c.detail.starts_with("flowengine"))
    );
}

// ---------------------------------------------------------------- F. stale data

/// F2: the log query fails or is truncated: reported as a gap; decisions rest on the TaskDB.
#[test]
fn f2_a_failing_log_query_is_a_gap_not_a_decision() {
    paused(async {
        let s = setup(&load("pilot-timeout"));
        s.world
            .logs
            .faults()
            .fail_always("logs.errors", ErrorKind::Timeout);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(600))
            .await
            .unwrap();
        assert!(r.data_gaps.iter().any(|g| g.contains("error logs")));
        assert_eq!(applied(&r, "prune_context"), 3);
        assert!(r.resolved);
    });
}

/// F3: the clock jumps back an hour mid-incident: nothing is done twice.
#[test]
fn f3_a_clock_jump_does_not_repeat_effects() {
    paused(async {
        let sc = load("bad-deploy");
        let policy = sc.policy().unwrap();
        let clock = Clock::manual(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let r = Responder::builder()
            .ports(world.ports())
            .policy(policy)
            .clock(clock.clone())
            .build()
            .unwrap();
        for i in 0..40 {
            r.pass().await.unwrap();
            clock.advance(Duration::from_secs(5));
            if i == 3 {
                clock.set(sc.now - TimeDelta::hours(1));
            }
        }
        assert_eq!(world.deployment.calls().of("deployment.rollback").len(), 1);
        assert_eq!(
            world.pager.pages().len(),
            world.pager.calls().of("pager.page").len()
        );
        assert!(world.tasks.tasks().iter().all(|t| t.attempts <= 3));
    });
}
