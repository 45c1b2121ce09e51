//! Classification rules are passed to each responder, not installed for the process: two
//! responders with different rules run side by side in one process and each classifies with
//! its own.

use std::sync::Arc;

use flowfail_core::classify::RuleSet;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, FailureKind};

use crate::support::{load, paused};

#[test]
fn two_responders_with_different_rules_in_one_process() {
    paused(async {
        let sc = load("bad-deploy");
        let policy = sc.policy().unwrap();
        // FlowEngine's team decided their KeyErrors are timeouts upstream (the key itself is
        // echoed data, masked before rules read it).
        let theirs = Arc::new(
            RuleSet::with_extra_toml([(
                "theirs.toml",
                "[[rule]]\nname = \"flowengine:context_refs\"\nstage = \"exception\"\nkind = \"timeout\"\npattern = '''\\bKeyError\\b'''\n",
            )])
            .unwrap(),
        );
        let responder = |rules: Option<Arc<RuleSet>>| {
            let clock = Clock::tokio_anchored(sc.now);
            let world = sc.world(&policy, clock.clone()).unwrap();
            let mut b = Responder::builder()
                .ports(world.ports())
                .policy(policy.clone())
                .clock(clock)
                .dry_run(true);
            if let Some(r) = rules {
                b = b.rules(r);
            }
            (b.build().unwrap(), world)
        };
        let (mine, _w1) = responder(None);
        let (custom, _w2) = responder(Some(theirs));
        let (a, b) = tokio::join!(mine.pass(), custom.pass());
        a.unwrap();
        b.unwrap();
        let (mine, custom) = (mine.report(), custom.report());
        let failed = sc.tasks.len() as u64;
        assert_eq!(
            mine.classification.get(&FailureKind::Unknown).copied(),
            Some(failed),
            "{:?}",
            mine.classification
        );
        assert_eq!(
            custom.classification.get(&FailureKind::Timeout).copied(),
            Some(failed),
            "{:?}",
            custom.classification
        );
        // The free function keeps the built-in rules.
        assert_eq!(
            flowfail_core::classify("KeyError: 'context_refs'", None).kind,
            FailureKind::Unknown
        );
    });
}
