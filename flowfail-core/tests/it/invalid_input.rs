//! Invalid input is not a bad deploy: validation failures count toward a rollback only when
//! they began with the deploy.

use flowfail_core::FailureKind;
use flowfail_core::replay::{ReplayOptions, replay_blocking};
use flowfail_core::report::{ActionFields, Outcome};

use crate::support::load;

/// A tenant's invalid TaskObjects all hour, a healthy deploy 20 minutes ago, 36 % failing: the
/// deploy is not rolled back, and the record says why.
#[test]
fn a_steady_stream_of_invalid_input_never_rolls_back() {
    let (r, w) = replay_blocking(
        &load("steady-invalid-input-recent-deploy"),
        &ReplayOptions::default(),
    )
    .unwrap();
    assert!(r.alert.failure_rate >= 0.25, "{}", r.alert.failure_rate);
    assert_eq!(r.classification[&FailureKind::Validation], 400);
    assert!(w.deployment.calls().of("deployment.rollback").is_empty());
    assert!(r.actions.iter().all(
        |a| !matches!(a.action, ActionFields::Rollback { .. }) || a.outcome != Outcome::Applied
    ));
    let why: Vec<&str> = r
        .not_taken
        .iter()
        .filter(|n| n.skip.action == "rollback")
        .map(|n| n.skip.reason.as_str())
        .collect();
    assert!(
        why.iter()
            .any(|w| w.contains("invalid input is not a bad deploy")),
        "{why:?}"
    );
}

/// A deploy that starts rejecting the TaskObjects every client sends: all the failures began
/// with it, and it is rolled back.
#[test]
fn a_deploy_that_starts_rejecting_taskobjects_is_rolled_back() {
    let (r, w) = replay_blocking(
        &load("deploy-rejects-old-taskobjects"),
        &ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(r.classification[&FailureKind::Validation], 400);
    assert_eq!(w.deployment.calls().of("deployment.rollback").len(), 1);
    assert!(r.actions.iter().any(|a| matches!(
        a.action,
        ActionFields::Rollback {
            from_revision: 8,
            to_revision: 7,
            ..
        }
    ) && a.outcome == Outcome::Applied));
}

/// A burst of TaskObjects invalid under every known schema version right after a deploy is
/// still invalid input: no version mismatch, no rollback.
#[test]
fn malformed_input_arriving_after_a_deploy_is_not_the_deploy() {
    let mut sc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../testdata/scenarios/extra/deploy-rejects-old-taskobjects.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    for t in sc["tasks"].as_array_mut().unwrap() {
        // Valid under no version: v2 wants inputs.repo_url and created_at, v1 wants inputs.repo.
        t["task_object"] = serde_json::json!({
            "schema_version": "2.0.0",
            "task_id": t["task_id"],
            "flow_type": "plan",
            "created_at": "2025-11-13T09:00:00Z",
            "inputs": {"instructions": "x"}
        });
    }
    let sc = flowfail_core::replay::Scenario::from_json(&sc.to_string()).unwrap();
    let (r, w) = replay_blocking(&sc, &ReplayOptions::default()).unwrap();
    assert!(w.deployment.calls().of("deployment.rollback").is_empty());
    assert!(
        r.not_taken.iter().any(|n| n.skip.action == "rollback"
            && n.skip
                .reason
                .contains("invalid under every known schema version")),
        "{:?}",
        r.not_taken
    );
}
