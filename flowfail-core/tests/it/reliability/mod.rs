//! Reliability scenarios (docs/RELIABILITY.md): replicas, lost replies, crashes, human changes,
//! loops, retry storms, stale data, self-protection. Each test tries to make an incident
//! bigger and checks that flowfail does not. One module per group of scenarios; the setup they
//! share is here.

use std::time::Duration;

use flowfail_core::invariants::Invariants;
use flowfail_core::memory::World;
use flowfail_core::ports::Ports;
use flowfail_core::replay::Scenario;
use flowfail_core::report::{Outcome, Report};
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, Policy};

mod double_action;
mod loops_and_retry_storms;
mod security_and_stale_data;
mod self_protection;

/// A scenario's world, and the invariants N1-N7 (`flowfail_core::invariants`), checked on the
/// world when the test's `Setup` is dropped: after every test here that builds one.
struct Setup {
    world: World,
    policy: Policy,
    clock: Clock,
    inv: Option<Invariants>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(inv) = self.inv.take()
            && !std::thread::panicking()
            && let Err(v) = inv.check(&self.world, &self.policy)
        {
            panic!("{v}");
        }
    }
}

impl Setup {
    /// The test ends with the incident open on purpose (N3 not checked).
    fn open_allowed(&mut self) {
        self.inv = self.inv.take().map(Invariants::open_incidents_allowed);
    }

    /// A report flowfail produced (N7 checks its applied actions; N1 counts the tasks it
    /// names or holds back as reported).
    fn report(&mut self, report: &Report) {
        self.inv = self.inv.take().map(|i| i.report(report));
    }
}

fn setup(sc: &Scenario) -> Setup {
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone()).unwrap();
    let inv = Some(Invariants::before(&world));
    Setup {
        world,
        policy,
        clock,
        inv,
    }
}

fn responder(s: &Setup, ports: Ports) -> Responder {
    Responder::builder()
        .ports(ports)
        .policy(s.policy.clone())
        .clock(s.clock.clone())
        .build()
        .unwrap()
}

fn applied(r: &Report, kind: &str) -> usize {
    r.actions
        .iter()
        .filter(|a| a.action.kind() == kind && a.outcome == Outcome::Applied)
        .count()
}

async fn tick(s: &Setup) {
    tokio::time::sleep(Duration::from_secs(s.policy.poll_interval_s)).await;
}
