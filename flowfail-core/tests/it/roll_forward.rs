//! No roll forward across incidents (issue 24 #5): after a rollback that did not help (escalated,
//! "failures persist after rollback"), neither a restarted supervisor nor a fresh responder on
//! the same world rolls back again — onto the bad revision flowfail just removed. The cool-down
//! after an escalation is in the ledger; so are the revisions flowfail rolled away from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::invariants::Invariants;
use flowfail_core::memory::{MemoryDeployment, World};
use flowfail_core::model::RevisionInfo;
use flowfail_core::report::Report;
use flowfail_core::respond::{Responder, Supervisor};
use flowfail_core::{Clock, FlowType, Policy, Task, TaskId, TaskStatus};
use tokio_util::sync::CancellationToken;

use crate::support::paused;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-11-13T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Revision 8, deployed 20 minutes ago, with 7 before it; 30 % of tasks fail, and keep failing
/// whatever runs (the deploy is not the cause): the rollback to 7 does not help.
fn world(clock: &Clock) -> World {
    let mut w = World::new(&Policy::default(), clock.clone());
    w.deployment = MemoryDeployment::new(
        "flowengine",
        8,
        Some(t0() - TimeDelta::minutes(20)),
        Default::default(),
        vec![RevisionInfo::new(7, Some(t0() - TimeDelta::days(2)))],
        clock.clone(),
    );
    failing(&w, true);
    for i in 0..10 {
        let id = TaskId::parse(&format!("u-{i}")).unwrap();
        w.tasks.insert(
            Task::new(
                id.clone(),
                FlowType::Impl,
                TaskStatus::Failed,
                t0() - TimeDelta::minutes(2),
            )
            .with_error("KeyError: 'context_refs'", None),
        );
        w.tasks.script_retries(&id, [TaskStatus::Failed]);
    }
    w
}

/// Failures present (30 %) or gone (the stored failures finished, none in the background).
fn failing(w: &World, on: bool) {
    if on {
        w.tasks.set_background(700, 300);
    } else {
        w.tasks.set_background(5000, 0);
        for t in w.tasks.tasks() {
            w.tasks
                .set_status(&t.task_id, TaskStatus::Succeeded, t.created_at);
        }
    }
}

fn supervisor(w: &World, clock: &Clock, reports: &Arc<Mutex<Vec<Report>>>) -> Supervisor {
    let reports = reports.clone();
    Supervisor::builder()
        .responder(
            Responder::builder()
                .ports(w.ports())
                .policy(Policy::default())
                .clock(clock.clone()),
        )
        .on_settled(move |r| reports.lock().unwrap().push(r.clone()))
        .build()
        .unwrap()
}

/// Runs a supervisor for `secs` of virtual time, then stops it (the process goes away).
async fn run_for(s: Supervisor, secs: u64) {
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { s.run(stop).await }
    });
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
}

fn rollbacks(w: &World) -> Vec<String> {
    w.deployment
        .calls()
        .of("deployment.rollback")
        .into_iter()
        .map(|c| c.detail)
        .collect()
}

/// The first supervisor: one incident, rolled back to 7 (now revision 9), failures persist,
/// escalated; then the process is gone.
async fn escalated_after_a_rollback(w: &World, clock: &Clock) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    run_for(supervisor(w, clock, &reports), 40 * 60).await;
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "one incident");
    assert_eq!(reports[0].post_incident.status, "escalated");
    assert_eq!(rollbacks(w), ["flowengine to 7 if rv=1"]);
    assert!(
        w.pager
            .pages()
            .iter()
            .any(|p| p.dedup_key.ends_with(":failures_persist_after_rollback")),
        "{:?}",
        w.pager.pages()
    );
    let d = w.deployment.snapshot();
    assert_eq!(d.revision, 9, "7's template under the next number");
    assert_eq!(
        d.previous_revision(),
        Some(8),
        "the bad revision is the previous one now"
    );
}

#[test]
fn a_restarted_supervisor_does_not_roll_forward_while_the_failures_persist() {
    paused(async {
        let clock = Clock::tokio_anchored(t0());
        let w = world(&clock);
        let inv = Invariants::before(&w);
        escalated_after_a_rollback(&w, &clock).await;

        // A fresh process on the same world, failures still present: it cools down (the ledger
        // says the last incident escalated and its alert has not cleared) and opens nothing.
        let reports = Arc::new(Mutex::new(Vec::new()));
        let counts = w.tasks.calls().of("task.counts").len();
        run_for(supervisor(&w, &clock, &reports), 3600).await;
        assert!(reports.lock().unwrap().is_empty());
        assert_eq!(w.incidents.incidents().len(), 1, "no second incident");
        assert_eq!(
            rollbacks(&w),
            ["flowengine to 7 if rv=1"],
            "exactly one rollback"
        );
        assert_ne!(w.deployment.snapshot().revision, 8);
        assert!(
            w.tasks.calls().of("task.counts").len() > counts + 600,
            "it kept watching"
        );
        inv.check(&w, &Policy::default())
            .unwrap_or_else(|v| panic!("{v}"));
    });
}

#[test]
fn a_later_incident_never_rolls_back_onto_a_revision_flowfail_rolled_away_from() {
    paused(async {
        let clock = Clock::tokio_anchored(t0());
        let w = world(&clock);
        let inv = Invariants::before(&w);
        escalated_after_a_rollback(&w, &clock).await;

        // A fresh process: the failures clear (the cool-down ends, in the ledger), then come
        // back with revision 9 still recent: a new incident, whose rollback target (8) is the
        // revision flowfail rolled away from.
        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        failing(&w, false);
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let stop = stop.clone();
            async move { s.run(stop).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        let first = &w.incidents.incidents()[0];
        assert!(
            first.effects.iter().any(|e| e == "cooldown_over"),
            "the cool-down's end is in the ledger: {:?}",
            first.effects
        );
        failing(&w, true);
        for i in 0..10 {
            let id = TaskId::parse(&format!("v-{i}")).unwrap();
            w.tasks.insert(
                Task::new(id.clone(), FlowType::Impl, TaskStatus::Failed, clock.now())
                    .with_error("KeyError: 'context_refs'", None),
            );
            w.tasks.script_retries(&id, [TaskStatus::Failed]);
        }
        tokio::time::sleep(Duration::from_secs(40 * 60)).await;
        stop.cancel();
        run.await.unwrap().unwrap();

        assert_eq!(w.incidents.incidents().len(), 2, "a second incident");
        assert_eq!(
            rollbacks(&w),
            ["flowengine to 7 if rv=1"],
            "exactly one rollback"
        );
        assert_eq!(w.deployment.snapshot().revision, 9, "never back on 8");
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let skipped: Vec<&str> = reports[0]
            .not_taken
            .iter()
            .filter(|s| s.skip.action == "rollback")
            .map(|s| s.skip.reason.as_str())
            .collect();
        assert!(
            skipped
                .iter()
                .any(|r| r.contains("revision 8") && r.contains("rolled back from")),
            "{skipped:?}"
        );
        assert!(
            w.pager
                .pages()
                .iter()
                .any(|p| p.dedup_key.ends_with(":page:on_call:rollback_refused")),
            "on-call paged instead"
        );
        inv.check(&w, &Policy::default())
            .unwrap_or_else(|v| panic!("{v}"));
    });
}

#[test]
fn a_fresh_responder_on_the_same_failure_does_not_roll_forward() {
    paused(async {
        let clock = Clock::tokio_anchored(t0());
        let w = world(&clock);
        escalated_after_a_rollback(&w, &clock).await;
        // Not a supervisor: a responder run directly opens a new incident for the failure that
        // persists; its rollback target is the revision flowfail rolled away from.
        let r = Responder::builder()
            .ports(w.ports())
            .clock(clock.clone())
            .build()
            .unwrap();
        let report = r.run(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(
            rollbacks(&w),
            ["flowengine to 7 if rv=1"],
            "exactly one rollback"
        );
        assert_eq!(w.deployment.snapshot().revision, 9);
        assert!(
            report
                .not_taken
                .iter()
                .any(|s| s.skip.action == "rollback" && s.skip.reason.contains("rolled back from")),
            "{:#?}",
            report.not_taken
        );
    });
}

#[test]
fn two_replicas_open_no_second_incident_after_an_escalated_rollback() {
    paused(async {
        let clock = Clock::tokio_anchored(t0());
        let w = world(&clock);
        let inv = Invariants::before(&w);
        let reports = Arc::new(Mutex::new(Vec::new()));
        // Two replicas, the failures present throughout: the second starts after the first
        // escalated (it never saw the incident), while the first is still cooling down.
        let first = tokio::spawn(run_for(supervisor(&w, &clock, &reports), 2 * 3600));
        tokio::time::sleep(Duration::from_secs(45 * 60)).await;
        assert_eq!(
            reports.lock().unwrap().len(),
            1,
            "escalated before the second starts"
        );
        run_for(supervisor(&w, &clock, &reports), 2 * 3600 - 45 * 60).await;
        first.await.unwrap();
        assert_eq!(w.incidents.incidents().len(), 1, "one incident");
        assert_eq!(
            rollbacks(&w),
            ["flowengine to 7 if rv=1"],
            "exactly one rollback"
        );
        assert_eq!(w.deployment.snapshot().revision, 9);
        let reports = reports.lock().unwrap();
        assert!(
            reports
                .iter()
                .all(|r| r.post_incident.status == "escalated"),
            "{:?}",
            reports
                .iter()
                .map(|r| &r.post_incident.status)
                .collect::<Vec<_>>()
        );
        inv.redelivery_allowed()
            .check(&w, &Policy::default())
            .unwrap_or_else(|v| panic!("{v}"));
    });
}
