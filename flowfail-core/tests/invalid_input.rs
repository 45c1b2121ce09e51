//! Invalid input is not a bad deploy: validation failures count toward a rollback only when
//! they began with the deploy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flowfail_core::FailureKind;
use flowfail_core::replay::{ReplayOptions, replay_blocking};
use flowfail_core::report::{ActionFields, Outcome};

mod support;
use support::load;

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
