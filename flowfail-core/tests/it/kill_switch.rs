//! Issue 27 #13: the kill switch as the guard reads it. A switch on at a pass's start: nothing
//! is written anywhere, the ledger included. Pulled mid-pass: every later call to the world is
//! refused, and the pass's record (with the refusals) is still written, so the ledger stays
//! true; the next pass writes nothing. Released: the same responder acts on the same incident.

use std::time::Duration;

use flowfail_core::memory::World;
use flowfail_core::respond::{KillSwitch, Responder};
use flowfail_core::{Clock, Policy};

use crate::support::{load, paused, world_mutations};

fn responder(policy: &Policy, clock: &Clock, w: &World, kill: &KillSwitch) -> Responder {
    Responder::builder()
        .ports(w.ports())
        .policy(policy.clone())
        .clock(clock.clone())
        .kill_switch(kill.clone())
        .build()
        .unwrap()
}

#[test]
fn a_switch_on_writes_nothing_and_released_the_same_responder_acts() {
    paused(async {
        let sc = load("pilot-timeout");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let w = sc.world(&policy, clock.clone()).unwrap();
        let dir = std::env::temp_dir().join(format!("ff-kill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kill");
        std::fs::write(&file, "").unwrap();
        let kill = KillSwitch::watching(&file);
        let r = responder(&policy, &clock, &w, &kill);
        for _ in 0..3 {
            r.pass().await.unwrap();
            tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
        }
        assert!(world_mutations(&w).is_empty(), "{:?}", world_mutations(&w));
        assert!(w.incidents.calls().mutations().is_empty(), "ledger written");
        std::fs::remove_file(&file).unwrap();
        let report = r.run(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(report.post_incident.status, "resolved", "{report:#?}");
        assert!(!world_mutations(&w).is_empty());
        assert_eq!(w.incidents.incidents().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn a_switch_pulled_mid_pass_refuses_what_follows_and_the_record_says_so() {
    paused(async {
        let sc = load("pilot-timeout");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let w = sc.world(&policy, clock.clone()).unwrap();
        let kill = KillSwitch::new();
        let r = responder(&policy, &clock, &w, &kill);
        // The pass's read of recent failures takes 5 s; the switch is pulled 1 s in.
        w.tasks
            .faults()
            .delay("task.recent_failed", Duration::from_secs(5));
        let pull = tokio::spawn({
            let kill = kill.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                kill.set(true);
            }
        });
        r.pass().await.unwrap();
        pull.await.unwrap();
        assert!(world_mutations(&w).is_empty(), "{:?}", world_mutations(&w));
        let rec = &w.incidents.incidents()[0];
        let refused = rec
            .timeline
            .iter()
            .filter(|e| e.kind == "action" && e.detail.to_string().contains("kill switch is on"))
            .count();
        assert!(
            refused > 0,
            "the refusals are not in the record: {:#?}",
            rec.timeline
        );
        // The next pass, with the switch on from its start, writes nothing at all.
        let ledger = w.incidents.calls().mutations().len();
        w.tasks.faults().clear();
        tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
        r.pass().await.unwrap();
        assert_eq!(w.incidents.calls().mutations().len(), ledger);
        assert!(world_mutations(&w).is_empty());
    });
}
