//! A Deployment a GitOps controller owns (issue 31 #4): flowfail's env change that Argo CD puts
//! back is recorded as a GitOps revert (a finding, one page: make the change in Git), and is
//! not set again; a rollback is refused with the same advice, since the next sync would undo
//! it.

use std::time::Duration;

use flowfail_core::memory::World;
use flowfail_core::model::{GitOpsOwner, GitOpsTool};
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, Policy};

use crate::support::{load, paused};

const BREAKER: &str = "ENABLE_CIRCUIT_BREAKER";

/// Scenario `name`'s world with its Deployment owned by `owner`, and a responder on it.
fn owned(name: &str, owner: GitOpsOwner) -> (World, Policy, Responder) {
    let sc = load(name);
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone()).unwrap();
    world.deployment.set_gitops(Some(owner));
    let responder = Responder::builder()
        .ports(world.ports())
        .policy(policy.clone())
        .clock(clock)
        .build()
        .unwrap();
    (world, policy, responder)
}

fn set_env_calls(world: &World) -> usize {
    world.deployment.calls().of("deployment.set_env").len()
}

#[test]
fn a_breaker_argo_cd_reverts_is_reported_once_and_not_set_again() {
    paused(async {
        let (world, policy, responder) = owned(
            "rate-limit",
            GitOpsOwner::new(GitOpsTool::ArgoCd, "flowengine"),
        );
        let before = world.deployment.snapshot().env.get(BREAKER).cloned();
        responder.pass().await.unwrap();
        assert_eq!(
            world
                .deployment
                .snapshot()
                .env
                .get(BREAKER)
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(set_env_calls(&world), 1);
        // Argo CD's self-heal puts Git's value back.
        tokio::time::sleep(Duration::from_secs(5)).await;
        world
            .deployment
            .human_set_env(BREAKER, before.as_deref().unwrap_or("false"));
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            responder.pass().await.unwrap();
        }
        assert_eq!(
            set_env_calls(&world),
            1,
            "never set again against the controller"
        );
        let pages: Vec<_> = world
            .pager
            .pages()
            .into_iter()
            .filter(|p| p.dedup_key.contains("gitops_reverted"))
            .collect();
        assert_eq!(pages.len(), 1, "{pages:?}");
        assert!(
            pages[0]
                .summary
                .contains("Argo CD (application flowengine)")
                && pages[0].summary.contains("make the change in Git")
                && pages[0].summary.contains(BREAKER),
            "{}",
            pages[0].summary
        );
        let rec = world.incidents.incidents().pop().unwrap();
        let timeline = serde_json::to_string(&rec.timeline).unwrap();
        assert!(timeline.contains("gitops_reverted"), "{timeline}");
        // Quota back: the incident closes, and hands the breaker over as Argo CD's revert.
        world.quota.set(
            &policy.primary_vendor,
            flowfail_core::Quota::Known(flowfail_core::QuotaUsage::from_ratio(0.3)),
        );
        responder.run(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(
            set_env_calls(&world),
            1,
            "nothing restored over Git's value"
        );
        let handed = world
            .pager
            .pages()
            .into_iter()
            .find(|p| p.dedup_key.contains("changes_left_in_place"))
            .map(|p| p.summary)
            .unwrap_or_default();
        assert!(
            handed.contains("ENABLE_CIRCUIT_BREAKER (reverted by Argo CD (application flowengine): make the change in Git)"),
            "{handed}"
        );
    });
}

#[test]
fn a_rollback_of_a_deployment_flux_owns_is_refused_with_roll_back_in_git() {
    paused(async {
        let (world, _, responder) = owned(
            "bad-deploy",
            GitOpsOwner::new(GitOpsTool::Flux, "kustomization flux-system/apps"),
        );
        let report = responder.run(Duration::from_secs(600)).await.unwrap();
        assert!(
            world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty()
        );
        let why = serde_json::to_string(&report).unwrap();
        assert!(
            why.contains("owned by Flux (kustomization flux-system/apps): a rollback here is undone by its next sync; roll back in Git"),
            "{why}"
        );
        assert!(
            world
                .pager
                .pages()
                .iter()
                .any(|p| p.summary.contains("roll back in Git"))
        );
    });
}

/// The outage fallback Argo CD puts back is not set again at the next passes (it would be set
/// at every pass and reverted at every sync): one write, a skip that says why, one page.
#[test]
fn a_fallback_argo_cd_reverts_is_not_fought_pass_after_pass() {
    paused(async {
        let (world, policy, responder) = owned(
            "vendor-outage",
            GitOpsOwner::new(GitOpsTool::ArgoCd, "flowengine"),
        );
        let before = world
            .deployment
            .snapshot()
            .env
            .get(&policy.fallback_env)
            .cloned();
        responder.pass().await.unwrap();
        let set = world
            .deployment
            .snapshot()
            .env
            .get(&policy.fallback_env)
            .cloned();
        assert!(set.is_some() && set != before, "the fallback set: {set:?}");
        let writes = set_env_calls(&world);
        // Argo CD's self-heal: Git's template, which has no fallback.
        match &before {
            Some(v) => world.deployment.human_set_env(&policy.fallback_env, v),
            None => world.deployment.human_unset_env(&policy.fallback_env),
        }
        let mut last = None;
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            last = Some(responder.pass().await.unwrap());
        }
        assert!(last.is_some());
        assert_eq!(
            set_env_calls(&world),
            writes,
            "set again against the controller"
        );
        let rec = world.incidents.incidents().pop().unwrap();
        let timeline = serde_json::to_string(&rec.timeline).unwrap();
        assert!(
            timeline
                .contains("reverted by the Deployment's GitOps controller: make the change in Git"),
            "{timeline}"
        );
        let pages = world
            .pager
            .pages()
            .into_iter()
            .filter(|p| p.dedup_key.contains("gitops_reverted"))
            .count();
        assert_eq!(pages, 1);
    });
}
