//! Issue 29: every port call of a pass has the step deadline, the ledger's included. A ledger
//! whose `claim` hangs does not hold the pass: the pass gives up on it at the step deadline,
//! reports the gap, and mutates nothing.

use std::time::Duration;

use flowfail_core::Clock;
use flowfail_core::respond::Responder;

use crate::support::{load, paused};

#[test]
fn a_hung_ledger_claim_ends_the_pass_at_the_step_deadline() {
    paused(async {
        let sc = load("rate-limit");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        world
            .incidents
            .faults()
            .delay("incident.claim", Duration::from_secs(24 * 3600));
        let responder = Responder::builder()
            .ports(world.ports())
            .policy(policy.clone())
            .clock(clock)
            .build()
            .unwrap();
        let started = tokio::time::Instant::now();
        let out = responder.pass().await.unwrap();
        let took = started.elapsed();
        assert!(
            took <= Duration::from_secs(policy.step_timeout_s + 5),
            "the pass waited {took:?} on a hung ledger (step deadline {} s)",
            policy.step_timeout_s
        );
        assert!(out.incident_open && out.settled.is_none(), "{out:?}");
        let mutations = [
            world.tasks.calls().mutations(),
            world.bundles.calls().mutations(),
            world.deployment.calls().mutations(),
            world.pager.calls().mutations(),
            world.notifier.calls().mutations(),
        ]
        .concat();
        assert!(mutations.is_empty(), "{mutations:?}");
        let report = responder.report();
        assert!(
            report
                .data_gaps
                .iter()
                .any(|g| g.contains("incident.claim") || g.contains("no answer within")),
            "{:#?}",
            report.data_gaps
        );
    });
}
