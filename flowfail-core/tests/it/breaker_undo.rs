//! Issue 24 #6: a human's value stands. Undoing the circuit breaker in the middle of an
//! incident (quota back under `quota_breaker_clear`, flowfail's breaker closed again) restores
//! what flowfail found only if the Deployment still holds the value flowfail set — as closing
//! does — and never writes without having read the Deployment (no read, no precondition: wait).

use std::time::Duration;

use flowfail_core::memory::World;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, ErrorKind, Policy, Quota, QuotaUsage};

use crate::support::{load, paused};

const BREAKER: &str = "ENABLE_CIRCUIT_BREAKER";

struct Setup {
    world: World,
    policy: Policy,
    clock: Clock,
    responder: Responder,
}

/// The rate-limit scenario after its first pass, which enabled the breaker (quota 86 %); then
/// quota falls to 50 %, so the pass that sees the half-open probe succeed (its other failures
/// still firing the alert) undoes the breaker mid-incident.
async fn breaker_enabled_then_quota_low() -> Setup {
    let sc = load("rate-limit");
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone()).unwrap();
    let responder = Responder::builder()
        .ports(world.ports())
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let out = responder.pass().await.unwrap();
    assert!(out.incident_open);
    assert_eq!(breaker(&world).as_deref(), Some("true"), "breaker enabled");
    assert_eq!(set_env_calls(&world).len(), 1);
    world.quota.set(
        &sc.primary_vendor,
        Quota::Known(QuotaUsage::from_ratio(0.5)),
    );
    Setup {
        world,
        policy,
        clock,
        responder,
    }
}

fn breaker(world: &World) -> Option<String> {
    world.deployment.snapshot().env.get(BREAKER).cloned()
}

fn set_env_calls(world: &World) -> Vec<String> {
    world
        .deployment
        .calls()
        .of("deployment.set_env")
        .into_iter()
        .map(|c| c.detail)
        .collect()
}

/// A human sets the breaker to a value of their own while flowfail's breaker is open; the
/// mid-incident undo leaves it, and so does closing (which hands it over to on-call).
#[test]
fn a_humans_breaker_value_is_never_overwritten_mid_incident() {
    paused(async {
        let s = breaker_enabled_then_quota_low().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        s.world.deployment.human_set_env(BREAKER, "strict");
        let report = s.responder.run(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(
            breaker(&s.world).as_deref(),
            Some("strict"),
            "the human's value was overwritten: {:?}",
            set_env_calls(&s.world)
        );
        let calls = set_env_calls(&s.world);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(
            calls[0].contains("ENABLE_CIRCUIT_BREAKER=true"),
            "{calls:?}"
        );
        // Retries went on and the incident closed, handing the value to a human.
        assert!(report.resolved, "{:#?}", report.not_taken);
        assert!(
            report.not_taken.iter().any(|n| n.skip.action == "set_env"
                && n.skip.reason.contains("changed since by someone else")),
            "{:#?}",
            report.not_taken
        );
        let pages = s.world.pager.calls().of("pager.page");
        assert!(
            pages
                .iter()
                .any(|p| p.detail.contains("changes_left_in_place")),
            "{pages:?}"
        );
        let _ = (&s.policy, &s.clock);
    });
}

/// The Deployment cannot be read when the undo falls due: no write (with or without a
/// precondition) until it can; then the undo goes out fenced on the resourceVersion just read.
#[test]
fn no_breaker_undo_is_written_blind() {
    paused(async {
        let s = breaker_enabled_then_quota_low().await;
        s.world
            .deployment
            .faults()
            .fail_always("deployment.state", ErrorKind::Unavailable);
        let mut settled = None;
        for _ in 0..40 {
            settled = s.responder.pass().await.unwrap().settled;
            if settled.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(s.policy.poll_interval_s)).await;
        }
        let calls = set_env_calls(&s.world);
        assert_eq!(
            calls.len(),
            1,
            "an env change written with the Deployment unread: {calls:?}"
        );
        assert_eq!(
            settled, None,
            "settled with flowfail's breaker not restored"
        );
        assert_eq!(breaker(&s.world).as_deref(), Some("true"));
        s.world.deployment.faults().clear();
        let report = s.responder.run(Duration::from_secs(3600)).await.unwrap();
        assert!(report.resolved, "{:#?}", report.not_taken);
        let calls = set_env_calls(&s.world);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(
            calls[1].contains("ENABLE_CIRCUIT_BREAKER=false") && !calls[1].contains("rv=None"),
            "the undo must carry the resourceVersion it read: {calls:?}"
        );
        assert_eq!(breaker(&s.world).as_deref(), Some("false"));
        let _ = &s.clock;
    });
}
