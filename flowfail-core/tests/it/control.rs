//! Operator control on replayed incidents: the external pause (nothing mutated on any port,
//! one notice per incident, everything resumes), approval gates (proposed, unlocked, expired),
//! refused control calls, and the stakeholders' end-of-outage notice. Assertions are on the
//! in-memory peers' raw call logs and state, not on flowfail's report alone.

use std::time::Duration;

use flowfail_core::control;
use flowfail_core::memory::World;
use flowfail_core::replay::{ReplayOptions, replay};
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, ErrorKind, IncidentStore, Policy};

use crate::support::{load, paused};

struct Setup {
    world: World,
    policy: Policy,
    clock: Clock,
}

fn setup(name: &str, tweak: impl FnOnce(&mut Policy)) -> Setup {
    let sc = load(name);
    let mut policy = sc.policy().unwrap();
    tweak(&mut policy);
    policy.validate().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone()).unwrap();
    Setup {
        world,
        policy,
        clock,
    }
}

fn responder(s: &Setup) -> Responder {
    Responder::builder()
        .ports(s.world.ports())
        .policy(s.policy.clone())
        .clock(s.clock.clone())
        .build()
        .unwrap()
}

async fn tick(s: &Setup) {
    tokio::time::sleep(Duration::from_secs(s.policy.poll_interval_s)).await;
}

/// Mutating calls that reached a port other than the ledger and the pager.
fn world_mutations(w: &World) -> Vec<String> {
    [
        w.logs.calls().mutations(),
        w.tasks.calls().mutations(),
        w.bundles.calls().mutations(),
        w.quota.calls().mutations(),
        w.deployment.calls().mutations(),
        w.status.calls().mutations(),
        w.notifier.calls().mutations(),
    ]
    .concat()
    .iter()
    .map(|c| format!("{} {}", c.op, c.detail))
    .collect()
}

fn incident_key(w: &World) -> String {
    let all = w.incidents.incidents();
    assert_eq!(all.len(), 1, "one incident");
    all[0].key.clone()
}

/// Paused before the incident: across many passes of two replicas, no port sees a mutating
/// call except the pager, which gets exactly one page — the "automation paused" notice; the
/// refusals are in the ledger's timeline. Resumed: the runbook's actions reach the peers.
#[test]
fn paused_nothing_is_mutated_one_notice_then_resume_acts() {
    for (name, resumed_op) in [
        ("bad-deploy", "deployment.rollback"),
        ("pilot-timeout", "bundle.put_if_version"),
        ("vendor-outage", "deployment.set_env"),
    ] {
        paused(async {
            let s = setup(name, |_| {});
            control::pause(
                &s.world.incidents,
                &s.policy.deployment,
                "change freeze",
                "alice",
                s.clock.now(),
            )
            .await
            .unwrap();
            let (a, b) = (responder(&s), responder(&s));
            for _ in 0..20 {
                a.pass().await.unwrap();
                b.pass().await.unwrap();
                tick(&s).await;
            }
            assert_eq!(world_mutations(&s.world), Vec::<String>::new(), "{name}");
            let pages = s.world.pager.calls().mutations();
            assert_eq!(pages.len(), 1, "{name}: one page only: {pages:?}");
            assert!(pages[0].op == "pager.page" && pages[0].detail.contains("automation_paused"));
            let key = incident_key(&s.world);
            let rec = s.world.incidents.get(&key).await.unwrap();
            assert!(
                rec.closed_at.is_none(),
                "{name}: paused, the incident waits"
            );
            let refused = rec
                .timeline
                .iter()
                .filter(|e| e.kind == "action" && e.detail["outcome"] == "skipped")
                .filter(|e| {
                    e.detail["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("automation paused by alice"))
                })
                .count();
            assert!(refused > 0, "{name}: refusals recorded: {:?}", rec.timeline);
            assert!(rec.timeline.iter().any(|e| e.kind == "paused"));

            control::resume(
                &s.world.incidents,
                &s.policy.deployment,
                "alice",
                s.clock.now(),
            )
            .await
            .unwrap();
            for _ in 0..5 {
                a.pass().await.unwrap();
                tick(&s).await;
            }
            assert!(
                !s.world.deployment.calls().of(resumed_op).is_empty()
                    || !s.world.bundles.calls().of(resumed_op).is_empty(),
                "{name}: resumed, {resumed_op} happens: {:?}",
                world_mutations(&s.world)
            );
            let rec = s.world.incidents.get(&key).await.unwrap();
            assert!(rec.timeline.iter().any(|e| e.kind == "resumed"));
            let notices = s
                .world
                .pager
                .pages()
                .iter()
                .filter(|p| p.dedup_key.ends_with("automation_paused"))
                .count();
            assert_eq!(notices, 1, "{name}: the notice is never repeated");
        });
    }
}

/// Issue 27 #14: the "automation paused" notice whose send fails is sent again at the next pass
/// (it was reserved before the send: a failed send was never retried, and on-call never learned
/// that automation was paused). Delivered once, it is not repeated.
#[test]
fn a_failed_pause_notice_is_sent_again_until_delivered() {
    paused(async {
        let s = setup("pilot-timeout", |_| {});
        control::pause(
            &s.world.incidents,
            &s.policy.deployment,
            "change freeze",
            "alice",
            s.clock.now(),
        )
        .await
        .unwrap();
        for n in 1..=2 {
            s.world
                .pager
                .faults()
                .fail_nth("pager.page", n, flowfail_core::ErrorKind::Unavailable);
        }
        let r = responder(&s);
        for _ in 0..10 {
            r.pass().await.unwrap();
            tick(&s).await;
        }
        let attempts = s.world.pager.calls().of("pager.page");
        assert!(
            attempts
                .iter()
                .all(|c| c.detail.contains("automation_paused")),
            "{attempts:?}"
        );
        let delivered = s
            .world
            .pager
            .pages()
            .iter()
            .filter(|p| p.dedup_key.ends_with("automation_paused"))
            .count();
        assert_eq!(
            delivered, 1,
            "the notice never reached on-call: {attempts:?}"
        );
        assert_eq!(
            attempts.len(),
            3,
            "two failed sends, one delivered, none after"
        );
    });
}

/// A pause set mid-incident stops every later mutation: the outage's escalation pages and the
/// stakeholders' notice, due 30 minutes in, never go out while paused.
#[test]
fn a_pause_mid_incident_stops_later_passes() {
    paused(async {
        let s = setup("vendor-outage", |_| {});
        let r = responder(&s);
        r.pass().await.unwrap();
        let before = world_mutations(&s.world).len();
        assert!(before > 0, "the first pass acted (the fallback model)");
        let pages_before = s.world.pager.pages().len();
        control::pause(
            &s.world.incidents,
            &s.policy.deployment,
            "investigating",
            "bob",
            s.clock.now(),
        )
        .await
        .unwrap();
        for _ in 0..400 {
            tick(&s).await;
            r.pass().await.unwrap();
        }
        assert_eq!(
            world_mutations(&s.world).len(),
            before,
            "nothing after the pause: {:?}",
            world_mutations(&s.world)
        );
        let pages = s.world.pager.pages();
        assert_eq!(pages.len(), pages_before + 1, "{pages:?}");
        assert!(
            pages
                .last()
                .unwrap()
                .dedup_key
                .ends_with("automation_paused")
        );
    });
}

/// `require_approval = ["rollback"]`: the rollback is proposed (paged once, with the command),
/// not done; an approval unlocks it on the next pass.
#[test]
fn an_approval_unlocks_a_gated_rollback_on_the_next_pass() {
    paused(async {
        let s = setup("bad-deploy", |p| {
            p.require_approval = vec!["rollback".into()]
        });
        let r = responder(&s);
        for _ in 0..10 {
            r.pass().await.unwrap();
            tick(&s).await;
        }
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty()
        );
        let key = incident_key(&s.world);
        let proposals: Vec<_> = s
            .world
            .pager
            .pages()
            .into_iter()
            .filter(|p| p.dedup_key.ends_with("approval_rollback"))
            .collect();
        assert_eq!(proposals.len(), 1, "proposed once");
        assert!(
            proposals[0]
                .summary
                .contains(&format!("flowfail approve {key} rollback")),
            "{}",
            proposals[0].summary
        );
        let rec = s.world.incidents.get(&key).await.unwrap();
        assert!(
            rec.closed_at.is_none(),
            "waiting for approval, not escalated"
        );
        assert!(rec.timeline.iter().any(|e| e.kind == "proposed"));
        assert!(
            r.report()
                .not_taken
                .iter()
                .any(|n| n.skip.action == "rollback" && n.skip.reason.contains("awaiting approval"))
        );

        control::approve(&s.world.incidents, &key, "rollback", "carol", s.clock.now())
            .await
            .unwrap();
        r.pass().await.unwrap();
        assert_eq!(
            s.world.deployment.calls().of("deployment.rollback").len(),
            1,
            "approved: rolled back on the next pass"
        );
        let rec = s.world.incidents.get(&key).await.unwrap();
        assert!(rec.timeline.iter().any(|e| e.kind == "approved"));
    });
}

/// An approval that expired unlocks nothing; an approval of another action does not either.
#[test]
fn an_expired_approval_unlocks_nothing() {
    paused(async {
        let s = setup("bad-deploy", |p| {
            p.require_approval = vec!["rollback".into()];
            p.approval_ttl_s = 60;
        });
        let r = responder(&s);
        r.pass().await.unwrap();
        let key = incident_key(&s.world);
        control::approve(&s.world.incidents, &key, "rollback", "carol", s.clock.now())
            .await
            .unwrap();
        control::approve(
            &s.world.incidents,
            &key,
            "manual_review",
            "carol",
            s.clock.now(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
        for _ in 0..5 {
            r.pass().await.unwrap();
            tick(&s).await;
        }
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty(),
            "expired: no rollback"
        );
        // A fresh approval still works: the engine still decides the rollback.
        control::approve(&s.world.incidents, &key, "rollback", "carol", s.clock.now())
            .await
            .unwrap();
        r.pass().await.unwrap();
        assert_eq!(
            s.world.deployment.calls().of("deployment.rollback").len(),
            1
        );
    });
}

/// Refused control calls change nothing in the ledger.
#[test]
fn refused_control_calls_change_nothing() {
    paused(async {
        let s = setup("bad-deploy", |p| {
            p.require_approval = vec!["rollback".into()]
        });
        let r = responder(&s);
        r.pass().await.unwrap();
        let key = incident_key(&s.world);
        let ledger = &s.world.incidents;
        let writes = ledger.calls().mutations().len();
        let now = s.clock.now();
        for (incident, action, by, kind) in [
            ("no-such-incident", "rollback", "carol", ErrorKind::NotFound),
            (key.as_str(), "reboot", "carol", ErrorKind::InvalidInput),
            (key.as_str(), "", "carol", ErrorKind::InvalidInput),
            (key.as_str(), "rollback", "  ", ErrorKind::InvalidInput),
            (
                key.as_str(),
                "rollback",
                "car\u{7}ol",
                ErrorKind::InvalidInput,
            ),
        ] {
            let e = control::approve(ledger, incident, action, by, now)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), kind, "{incident} {action} {by:?}: {e}");
        }
        for reason in ["", "   ", &"x".repeat(501), "line\nbreak"] {
            let e = control::pause(ledger, &s.policy.deployment, reason, "alice", now)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{reason:?}");
        }
        assert_eq!(ledger.calls().mutations().len(), writes, "nothing written");
        assert!(ledger.approvals(&key).await.unwrap().is_empty());
        assert_eq!(
            control::paused(ledger, &s.policy.deployment).await.unwrap(),
            None
        );
        // Resuming what is not paused is a no-op.
        assert_eq!(
            control::resume(ledger, &s.policy.deployment, "alice", now)
                .await
                .unwrap(),
            None
        );
        assert_eq!(ledger.calls().mutations().len(), writes);
    });
}

/// Stakeholders told of an outage are told once when it ends.
#[test]
fn stakeholders_are_told_once_when_the_outage_ends() {
    paused(async {
        let sc = load("vendor-outage");
        let (report, world) = replay(&sc, &ReplayOptions::default()).await.unwrap();
        assert!(report.resolved);
        let sent = world.notifier.sent();
        let keys: Vec<&str> = sent.iter().map(|n| n.dedup_key.as_str()).collect();
        assert_eq!(sent.len(), 2, "{keys:?}");
        assert!(keys[0].ends_with(":notify:stakeholders"));
        assert!(keys[1].ends_with(":notify:stakeholders:outage_over"));
        assert!(sent[1].message.contains("outage is over"));
        assert_eq!(
            world.notifier.calls().of("notifier.notify").len(),
            2,
            "each sent once"
        );
    });
}

/// Issue 25: a "no". A denied rollback is not carried out, nor proposed or paged for again, in
/// that incident, even when approved afterwards; the denial, its reason and who gave it are in
/// the timeline, the reasons for not acting and the read-back view. Denying needs a reason and
/// an open incident.
#[test]
fn a_denied_action_is_never_carried_out_nor_proposed_again() {
    paused(async {
        let s = setup("bad-deploy", |p| {
            p.require_approval = vec!["rollback".into()]
        });
        let r = responder(&s);
        for _ in 0..3 {
            r.pass().await.unwrap();
            tick(&s).await;
        }
        let key = incident_key(&s.world);
        let proposals = || {
            s.world
                .pager
                .pages()
                .into_iter()
                .filter(|p| p.dedup_key.ends_with("approval_rollback"))
                .count()
        };
        assert_eq!(proposals(), 1);
        let e = control::deny(
            &s.world.incidents,
            &key,
            "rollback",
            " ",
            "dan",
            s.clock.now(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "a denial needs a reason");
        control::deny(
            &s.world.incidents,
            &key,
            "rollback",
            "a schema migration went out with revision 8",
            "dan",
            s.clock.now(),
        )
        .await
        .unwrap();
        // An approval after the "no" does not undo it.
        control::approve(&s.world.incidents, &key, "rollback", "carol", s.clock.now())
            .await
            .unwrap();
        for _ in 0..10 {
            r.pass().await.unwrap();
            tick(&s).await;
        }
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty()
        );
        assert_eq!(proposals(), 1, "proposed (paged) again after the denial");
        let rec = s.world.incidents.get(&key).await.unwrap();
        let denied: Vec<_> = rec.timeline.iter().filter(|e| e.kind == "denied").collect();
        assert_eq!(denied.len(), 1, "{:#?}", rec.timeline);
        assert_eq!(denied[0].detail["by"], "dan");
        let proposed_after = rec
            .timeline
            .iter()
            .skip_while(|e| e.kind != "denied")
            .filter(|e| e.kind == "proposed")
            .count();
        assert_eq!(proposed_after, 0, "proposed again after the denial");
        let why = "denied by dan: a schema migration went out with revision 8";
        assert!(
            r.report()
                .not_taken
                .iter()
                .any(|n| n.skip.action == "rollback" && n.skip.reason == why),
            "{:#?}",
            r.report().not_taken
        );
        let approvals = s.world.incidents.approvals(&key).await.unwrap();
        let view =
            flowfail_core::history::IncidentView::from_record(&rec, &approvals, s.clock.now());
        assert!(view.pending.is_empty(), "{:?}", view.pending);
        assert!(view.to_text(false).contains(why), "{}", view.to_text(false));
        assert!(approvals.iter().any(|a| a.denied && a.by == "dan"));
    });
}
