//! Issue 17 #2: an env change is written ahead to the ledger. A process that stops between
//! `set_env` and recording it leaves the intent; the next responder reconciles it with the
//! Deployment, records the change as flowfail's, and restores it when the incident closes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::memory::{MemoryDeployment, World};
use flowfail_core::respond::Responder;
use flowfail_core::{
    ChangeCause, Clock, DeploymentController, DeploymentState, EnvChange, Policy, Quota,
    QuotaUsage, Result, RolloutStatus, VendorHealth, VendorStatus,
};
use tokio::sync::Notify;

use crate::support::{load, paused};

/// A Deployment whose `set_env` of `name` applies and then never answers: the process is
/// stopped (its future dropped) between the call and anything it would record.
struct StopsAfterSetEnv {
    inner: MemoryDeployment,
    name: &'static str,
    applied: Arc<Notify>,
}

impl std::fmt::Debug for StopsAfterSetEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopsAfterSetEnv").finish_non_exhaustive()
    }
}

#[async_trait]
impl DeploymentController for StopsAfterSetEnv {
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
        let r = self.inner.set_env(n, c, p, why).await;
        if c.iter().any(|c| c.name == self.name) {
            self.applied.notify_one();
            std::future::pending::<()>().await;
        }
        r
    }
    async fn rollback(
        &self,
        n: &str,
        to: u64,
        rv: &str,
        why: &ChangeCause,
    ) -> Result<DeploymentState> {
        self.inner.rollback(n, to, rv, why).await
    }
    async fn rollout_status(&self, n: &str) -> Result<RolloutStatus> {
        self.inner.rollout_status(n).await
    }
}

fn responder(policy: &Policy, clock: &Clock, ports: flowfail_core::ports::Ports) -> Responder {
    Responder::builder()
        .ports(ports)
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Runs passes of a responder whose `set_env` of `name` never answers, and drops it the moment
/// the change has applied: a crash between `set_env` and `save_state`.
async fn crash_after_set_env(world: &World, policy: &Policy, clock: &Clock, name: &'static str) {
    let applied = Arc::new(Notify::new());
    let ports = world
        .ports_builder()
        .deployment(Arc::new(StopsAfterSetEnv {
            inner: world.deployment.clone(),
            name,
            applied: applied.clone(),
        }))
        .build()
        .unwrap();
    let first = responder(policy, clock, ports);
    let passes = async {
        for _ in 0..20 {
            let _ = first.pass().await;
            tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
        }
    };
    tokio::select! {
        () = passes => panic!("{name} was never set"),
        () = applied.notified() => {}
    }
    drop(first);
}

/// The breaker: set by a process that stops before recording it; a fresh responder restores it
/// to what flowfail found ("false") when the incident closes with quota back to normal.
#[test]
fn a_breaker_set_by_a_crashed_process_is_restored_at_close() {
    paused(async {
        let sc = load("rate-limit");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        crash_after_set_env(&world, &policy, &clock, "ENABLE_CIRCUIT_BREAKER").await;
        let env = world.deployment.snapshot().env;
        assert_eq!(
            env.get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
            Some("true")
        );
        world.quota.set(
            &sc.primary_vendor,
            Quota::Known(QuotaUsage::from_ratio(0.2)),
        );
        let r = responder(&policy, &clock, world.ports())
            .run(Duration::from_secs(3 * 3600))
            .await
            .unwrap();
        assert!(r.resolved, "{:?}", r.not_taken);
        let env = world.deployment.snapshot().env;
        assert_eq!(
            env.get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
            Some("false"),
            "the Deployment's breaker is back to what flowfail found"
        );
        let rec = &world.incidents.incidents()[0];
        assert!(rec.closed_at.is_some());
        assert!(rec.state.get("env_intents").is_none());
    });
}

/// The fallback model: the same, restored (unset) once the primary vendor is operational.
#[test]
fn a_fallback_set_by_a_crashed_process_is_restored_at_close() {
    paused(async {
        let sc = load("vendor-outage");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let before = world.deployment.snapshot().env;
        let name: &'static str = "FALLBACK_MODEL";
        assert_eq!(policy.fallback_env, name);
        crash_after_set_env(&world, &policy, &clock, name).await;
        assert!(world.deployment.snapshot().env.contains_key(name));
        world.status.set(
            &sc.primary_vendor,
            VendorStatus::new(VendorHealth::Operational),
        );
        let r = responder(&policy, &clock, world.ports())
            .run(Duration::from_secs(3 * 3600))
            .await
            .unwrap();
        assert!(r.resolved, "{:?}", r.not_taken);
        let env = world.deployment.snapshot().env;
        assert_eq!(
            env.get(name),
            before.get(name),
            "the fallback is back to what flowfail found"
        );
    });
}
