//! The record says what happened (issue 24 #4): a rollback reserved in the ledger whose PATCH
//! never reached the API — the process was killed between the reservation and the call — is
//! not reported as applied or verified, and does not hold back the new-failure-mode page. One
//! that did land before the kill is recorded as applied and verified.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::invariants::Invariants;
use flowfail_core::memory::{MemoryDeployment, World};
use flowfail_core::ports::Ports;
use flowfail_core::report::{Outcome, Report};
use flowfail_core::respond::Responder;
use flowfail_core::{
    ChangeCause, Clock, DeploymentController, DeploymentState, EnvChange, IncidentStore, Policy,
    Result, RolloutStatus,
};

use crate::support::{load, paused};

/// A Deployment whose rollback call never returns, and, unless `land` is set, never reaches
/// the API: the process is killed while it waits.
#[derive(Debug)]
struct KilledAtRollback {
    inner: MemoryDeployment,
    land: bool,
}

#[async_trait]
impl DeploymentController for KilledAtRollback {
    async fn state(&self, n: &str) -> Result<DeploymentState> {
        self.inner.state(n).await
    }
    async fn set_env(
        &self,
        n: &str,
        c: &[EnvChange],
        p: Option<String>,
        why: &ChangeCause,
    ) -> Result<DeploymentState> {
        self.inner.set_env(n, c, p, why).await
    }
    async fn rollback(
        &self,
        n: &str,
        to: u64,
        rv: &str,
        why: &ChangeCause,
    ) -> Result<DeploymentState> {
        if self.land {
            self.inner.rollback(n, to, rv, why).await?;
        }
        std::future::pending().await
    }
    async fn rollout_status(&self, n: &str) -> Result<RolloutStatus> {
        self.inner.rollout_status(n).await
    }
}

fn responder(ports: Ports, policy: &Policy, clock: &Clock) -> Responder {
    Responder::builder()
        .ports(ports)
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn outcomes(r: &Report, kind: &str) -> Vec<Outcome> {
    r.actions
        .iter()
        .filter(|a| a.action.kind() == kind)
        .map(|a| a.outcome)
        .collect()
}

/// The bad deploy: the first process reserves the rollback and is killed in the call (landing it
/// first when `land`); a fresh process runs the incident to its end.
async fn killed_in_the_rollback(land: bool) -> (World, Policy, Invariants, Report) {
    let sc = load("bad-deploy");
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone()).unwrap();
    let inv = Invariants::before(&world);
    let mut ports = world.ports();
    ports.deployment = Arc::new(KilledAtRollback {
        inner: world.deployment.clone(),
        land,
    });
    let first = responder(ports, &policy, &clock);
    // Killed well before the step deadline: the pass future is dropped mid-call.
    let killed = tokio::time::timeout(Duration::from_secs(2), first.pass()).await;
    assert!(
        killed.is_err(),
        "the first pass was cut in the rollback call"
    );
    drop(first);
    let rec = world
        .incidents
        .find_open("flowengine")
        .await
        .unwrap()
        .unwrap();
    assert!(
        rec.effects.iter().any(|e| e == "rollback"),
        "reserved: {rec:?}"
    );
    let second = responder(world.ports(), &policy, &clock);
    let report = second.run(Duration::from_secs(3 * 3600)).await.unwrap();
    (world, policy, inv, report)
}

#[test]
fn a_reserved_rollback_that_never_reached_the_api_is_not_reported_as_done() {
    paused(async {
        let (world, policy, inv, report) = killed_in_the_rollback(false).await;
        // Never attempted again, and the Deployment still runs the bad revision.
        assert!(
            world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty()
        );
        assert_eq!(world.deployment.snapshot().revision, 8);
        // Not reported as applied, nor its rollout as verified.
        assert!(
            !outcomes(&report, "rollback").contains(&Outcome::Applied),
            "{report:#?}"
        );
        assert!(
            !outcomes(&report, "verify_rollout").contains(&Outcome::Applied),
            "{:#?}",
            report.actions
        );
        let rec = &world.incidents.incidents()[0];
        let post = rec.post_incident.as_ref().unwrap();
        for kind in ["rollback", "verify_rollout"] {
            assert!(
                post["actions_summary"][kind]["applied"].is_null(),
                "{kind} in the post-incident record: {post:#}"
            );
        }
        let root = post["root_cause"].as_str().unwrap();
        assert!(!root.contains("rolled back"), "{root}");
        // The record says what became of the reservation.
        assert!(
            report.actions.iter().any(|a| a.action.kind() == "rollback"
                && a.outcome == Outcome::Failed
                && a.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("never reached"))),
            "{:#?}",
            report.actions
        );
        // The unknown failures page on-call as a new failure mode, and the missing rollback too.
        let keys: Vec<String> = world
            .pager
            .pages()
            .into_iter()
            .map(|p| p.dedup_key)
            .collect();
        assert!(
            keys.iter()
                .any(|k| k.ends_with(":page:on_call:new_failure_mode")),
            "{keys:?}"
        );
        assert!(
            keys.iter()
                .any(|k| k.ends_with(":page:on_call:rollback_not_applied")),
            "{keys:?}"
        );
        assert!(report.escalated, "{}", report.post_incident.status);
        inv.check(&world, &policy).unwrap_or_else(|v| panic!("{v}"));
    });
}

#[test]
fn a_reserved_rollback_that_landed_before_the_kill_is_recorded_and_verified() {
    paused(async {
        let (world, policy, inv, report) = killed_in_the_rollback(true).await;
        assert_eq!(world.deployment.calls().of("deployment.rollback").len(), 1);
        assert_ne!(world.deployment.snapshot().revision, 8);
        assert_eq!(
            outcomes(&report, "rollback"),
            [Outcome::Applied],
            "{report:#?}"
        );
        assert_eq!(outcomes(&report, "verify_rollout"), [Outcome::Applied]);
        let keys: Vec<String> = world
            .pager
            .pages()
            .into_iter()
            .map(|p| p.dedup_key)
            .collect();
        assert!(
            !keys
                .iter()
                .any(|k| k.ends_with(":page:on_call:rollback_not_applied")),
            "{keys:?}"
        );
        inv.check(&world, &policy).unwrap_or_else(|v| panic!("{v}"));
    });
}
