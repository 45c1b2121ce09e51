//! Claims about exact interactions, checked with mocks (feature `mock`): a dry run never calls
//! `rollback` or `set_env`; a validation failure never reaches `schedule_retries`. The other
//! ports are the scenario's in-memory world; the mocked one is swapped in with the public
//! `Ports` builder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flowfail_core::ports::{MockDeploymentController, MockTaskStore};
use flowfail_core::replay::Scenario;
use flowfail_core::report::Outcome;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, RolloutStatus, StatusCounts, TaskStatus, TaskStore};

fn scenario(name: &str) -> Scenario {
    let p = format!(
        "{}/../testdata/scenarios/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Scenario::from_json(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn a_dry_run_never_calls_rollback_or_set_env() {
    let sc = scenario("bad-deploy.json");
    let policy = sc.policy().unwrap();
    runtime().block_on(async {
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let snapshot = world.deployment.snapshot();
        let mut deployment = MockDeploymentController::new();
        deployment
            .expect_state()
            .returning(move |_| Ok(snapshot.clone()));
        deployment
            .expect_rollout_status()
            .returning(|_| Ok(RolloutStatus::Complete));
        deployment.expect_rollback().never();
        deployment.expect_set_env().never();
        let ports = world
            .ports_builder()
            .deployment(Arc::new(deployment))
            .build()
            .unwrap();
        let responder = Responder::builder()
            .ports(ports)
            .policy(policy)
            .clock(clock)
            .dry_run(true)
            .build()
            .unwrap();
        let report = responder.run(Duration::from_secs(600)).await.unwrap();
        // Not vacuous: the rollback was decided, and reported as a dry run.
        assert!(
            report
                .actions
                .iter()
                .any(|a| a.action.kind() == "rollback" && a.outcome == Outcome::DryRun),
            "{:#?}",
            report.actions
        );
    });
}

#[test]
fn a_validation_failure_never_reaches_schedule_retries() {
    let sc = scenario("extra/validation.json");
    let policy = sc.policy().unwrap();
    runtime().block_on(async {
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let failed: Vec<_> = world
            .tasks
            .tasks()
            .into_iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .collect();
        assert!(!failed.is_empty());
        let mut objects = HashMap::new();
        for t in &failed {
            objects.insert(
                t.task_id.clone(),
                world.tasks.task_object(&t.task_id).await.unwrap(),
            );
        }
        let counts = world
            .tasks
            .counts(sc.now - chrono::TimeDelta::hours(1), sc.now)
            .await
            .unwrap();
        let (succeeded, n_failed) = (counts.succeeded, counts.failed);
        let mut tasks = MockTaskStore::new();
        tasks
            .expect_counts()
            .returning(move |_, _| Ok(StatusCounts::new(succeeded, n_failed)));
        // The incident pass reads the alert window as the supervisor does.
        tasks
            .expect_window_counts()
            .returning(move |_, _| Ok(StatusCounts::new(succeeded, n_failed)));
        tasks
            .expect_recent_failed_read()
            .returning(move |_| Ok(flowfail_core::ports::FailedRead::new(failed.clone())));
        tasks
            .expect_task_object()
            .returning(move |id| Ok(objects.get(id).cloned().flatten()));
        tasks.expect_schedule_retries().never();
        tasks.expect_mark_final().never();
        let ports = world
            .ports_builder()
            .tasks(Arc::new(tasks))
            .build()
            .unwrap();
        let responder = Responder::builder()
            .ports(ports)
            .policy(policy)
            .clock(clock)
            .build()
            .unwrap();
        let report = responder.run(Duration::from_secs(600)).await.unwrap();
        // Not vacuous: validation failures were found and reported.
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.finding.kind == "validation"),
            "{:#?}",
            report.findings
        );
        assert!(
            report
                .actions
                .iter()
                .all(|a| a.action.kind() != "retry_task")
        );
    });
}

/// A quota read throttled with `Retry-After: 7` the first time.
#[derive(Debug, Default)]
struct ThrottledOnce(std::sync::atomic::AtomicU32);

#[async_trait::async_trait]
impl flowfail_core::QuotaChecker for ThrottledOnce {
    async fn quota(&self, _vendor: &str) -> flowfail_core::Result<flowfail_core::Quota> {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Err(
                flowfail_core::Error::new(flowfail_core::ErrorKind::RateLimited, "429")
                    .with_retry_after(Duration::from_secs(7)),
            );
        }
        Ok(flowfail_core::Quota::Known(
            flowfail_core::QuotaUsage::from_ratio(0.5),
        ))
    }
}

#[test]
fn the_one_retry_loop_waits_what_the_backend_asked() {
    let sc = scenario("rate-limit.json");
    let policy = sc.policy().unwrap();
    runtime().block_on(async {
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let quota = Arc::new(ThrottledOnce::default());
        let ports = world.ports_builder().quota(quota.clone()).build().unwrap();
        let responder = Responder::builder()
            .ports(ports)
            .policy(policy)
            .clock(clock)
            .dry_run(true)
            .build()
            .unwrap();
        let start = tokio::time::Instant::now();
        responder.pass().await.unwrap();
        // Read twice: throttled, then answered after at least the 7 s asked for.
        assert_eq!(quota.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "{:?}",
            start.elapsed()
        );
        assert!(
            responder
                .report()
                .data_gaps
                .iter()
                .all(|g| !g.contains("quota"))
        );
    });
}

/// Closing restores what flowfail changed when that is safe (quota back under the clear level
/// before the alert clears), and pages nobody about it.
#[test]
fn closing_restores_flowfails_env_changes_when_safe() {
    let p = format!(
        "{}/../testdata/scenarios/rate-limit.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(p).unwrap();
    let text = text.replace("\"after_s\": 300", "\"after_s\": 20");
    assert!(text.contains("\"after_s\": 20"));
    let sc = Scenario::from_json(&text).unwrap();
    let (report, world) = flowfail_core::replay::replay_blocking(
        &sc,
        &flowfail_core::replay::ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(report.post_incident.status, "resolved");
    let env = world.deployment.snapshot().env;
    assert_eq!(
        env.get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
        Some("false"),
        "{env:?}"
    );
    assert!(
        report.post_incident.left_in_place.is_empty(),
        "{:?}",
        report.post_incident.left_in_place
    );
    assert!(
        world
            .pager
            .calls()
            .of("pager.page")
            .iter()
            .all(|c| !c.detail.contains("changes_left_in_place"))
    );
}

/// When restoring is not yet safe, the incident closes and on-call is told what is left.
#[test]
fn closing_hands_unsafe_changes_to_on_call() {
    let (report, world) = flowfail_core::replay::replay_blocking(
        &scenario("rate-limit.json"),
        &flowfail_core::replay::ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(report.post_incident.status, "resolved");
    assert_eq!(report.post_incident.left_in_place.len(), 1);
    // The pager's raw calls: one page about what is left in place.
    let calls = world.pager.calls().of("pager.page");
    let handed: Vec<_> = calls
        .iter()
        .filter(|c| c.detail.contains("changes_left_in_place"))
        .collect();
    assert_eq!(handed.len(), 1, "{calls:?}");
    let action = report
        .actions
        .iter()
        .find(|a| matches!(&a.action, flowfail_core::report::ActionFields::Page { reason, .. } if reason == "changes_left_in_place"))
        .unwrap();
    assert!(format!("{:?}", action.action).contains("ENABLE_CIRCUIT_BREAKER"));
}

/// A rollback reserved in the ledger by a process that died before recording its outcome is
/// recorded as what the Deployment shows: applied and going to verification when the Deployment
/// was rolled back, never applied (and never verified) when it was not — never attempted again
/// either way; nothing is decided while the Deployment is unreadable.
#[test]
fn a_reserved_rollback_without_a_record_is_reconciled_with_the_deployment() {
    use flowfail_core::DeploymentController;
    use flowfail_core::decide::{IncidentState, ReservedRollback, reconcile_reserved};
    let sc = scenario("bad-deploy.json");
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock).unwrap();
    let d = world.deployment.snapshot();
    let alert = flowfail_core::detect::alert_from_counts(70, 30, false, &policy);
    let opened = IncidentState::open("k".into(), sc.now, alert, Default::default(), Some(&d));
    let reserved = ["rollback".to_owned()];
    let mut state = opened.clone();
    reconcile_reserved(&mut state, &[], Some(&d), sc.now);
    assert_eq!(state, opened, "nothing reserved: nothing changes");
    reconcile_reserved(&mut state, &reserved, None, sc.now);
    assert_eq!(state, opened, "the Deployment unreadable: nothing decided");

    // The call never reached the Deployment.
    let (from, to) = (d.revision, d.previous_revision().unwrap());
    let found = reconcile_reserved(&mut state, &reserved, Some(&d), sc.now);
    assert_eq!(
        found,
        Some(ReservedRollback::NeverReached {
            from_revision: from,
            to_revision: to
        })
    );
    let rb = state.rollback.clone().unwrap();
    assert!(rb.never_reached(), "{rb:?}");
    assert_eq!(rb.verified_at, None, "never verified");
    assert_eq!(
        reconcile_reserved(&mut state, &reserved, Some(&d), sc.now),
        None
    );
    assert_eq!(state.rollback, Some(rb), "idempotent");

    // It shows up on the Deployment after all (a replica's call in flight): applied, verified next.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(world.deployment.rollback(
            "flowengine",
            to,
            &d.resource_version,
            &flowfail_core::ChangeCause::default(),
        ))
        .unwrap();
    let rolled = world.deployment.snapshot();
    let found = reconcile_reserved(&mut state, &reserved, Some(&rolled), sc.now);
    assert_eq!(
        found,
        Some(ReservedRollback::Landed {
            from_revision: from,
            to_revision: to
        })
    );
    let rb = state.rollback.clone().unwrap();
    assert_eq!(
        (rb.from_revision, rb.to_revision, rb.rollout),
        (from, to, None)
    );
    assert_eq!(
        state.known_resource_version,
        Some(rolled.resource_version.clone())
    );

    // Found rolled back by a fresh process: applied, to verification.
    let mut fresh = opened.clone();
    let found = reconcile_reserved(&mut fresh, &reserved, Some(&rolled), sc.now);
    assert!(matches!(found, Some(ReservedRollback::Landed { .. })));
    assert_eq!(fresh.rollback.unwrap().rollout, None);
}
