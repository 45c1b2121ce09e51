//! Issue 25 #1: the ledger records each pass's decision — skipped actions with their reasons,
//! what it waits for, the alert and the classification — when it differs from the last one,
//! every entry says whether it was acted on or only decided, and the post-incident record of
//! a live incident carries the reasons for not acting. Read back with [`IncidentView`], a
//! shadow incident reads as "would have", an acting one as "did".

use std::collections::BTreeSet;
use std::time::Duration;

use flowfail_core::Clock;
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::memory::World;
use flowfail_core::ports::{IncidentListing, IncidentRecord, TimelineKind};
use flowfail_core::report::Conduct;
use flowfail_core::respond::Responder;

use crate::support::{load, paused, world_mutations};

/// Runs `name` with one responder (shadow or acting) pass by pass for up to `max` passes;
/// returns the world, the responder's own report and the number of passes run.
fn run(name: &str, shadow: bool, max: usize) -> (World, flowfail_core::report::Report, usize) {
    paused(async {
        let sc = load(name);
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let r = Responder::builder()
            .ports(world.ports())
            .policy(policy.clone())
            .clock(clock.clone())
            .shadow(shadow)
            .build()
            .unwrap();
        let mut passes = 0;
        for _ in 0..max {
            passes += 1;
            if r.pass().await.unwrap().stop {
                break;
            }
            tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
        }
        (world, r.report(), passes)
    })
}

fn only_incident(w: &World) -> IncidentRecord {
    let all = w.incidents.incidents();
    assert_eq!(all.len(), 1, "one incident");
    all.into_iter().next().unwrap()
}

fn kinds(r: &IncidentRecord, kind: TimelineKind) -> Vec<&serde_json::Value> {
    r.timeline
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail.as_object().map(|_| &e.detail).unwrap())
        .collect()
}

fn reasons(view: &IncidentView) -> BTreeSet<(String, String)> {
    view.report
        .not_taken
        .iter()
        .map(|s| (s.skip.action.as_str().to_owned(), s.skip.reason.clone()))
        .collect()
}

/// A shadow run of a vendor outage held for 60 passes: a handful of decisions, not one per
/// pass; every decision and action entry says "shadow", acted false; the view reads as "would
/// have", with the same reasons for not acting the responder's own report gives; nothing in
/// the world changed.
#[test]
fn a_shadow_incident_reads_back_as_what_would_have_been_done() {
    let (world, report, passes) = run("vendor-outage", true, 60);
    assert!(
        world_mutations(&world).is_empty(),
        "{:?}",
        world_mutations(&world)
    );
    let rec = only_incident(&world);
    assert_eq!(rec.scope, "flowengine:shadow");
    let decisions = kinds(&rec, TimelineKind::Decision);
    assert!(!decisions.is_empty(), "no decision recorded");
    assert!(
        decisions.len() * 4 < passes,
        "{} decisions over {passes} passes: a steady incident repeats them",
        decisions.len()
    );
    for d in &decisions {
        assert_eq!(
            (d["mode"].as_str(), d["acted"].as_bool()),
            (Some("shadow"), Some(false)),
            "{d}"
        );
    }
    let actions = kinds(&rec, TimelineKind::Action);
    assert!(!actions.is_empty());
    for a in &actions {
        assert_eq!(
            (a["mode"].as_str(), a["acted"].as_bool()),
            (Some("shadow"), Some(false)),
            "{a}"
        );
    }
    // An unchanged decision leaves a sample of the numbers at most once a minute.
    let samples = kinds(&rec, TimelineKind::Sample);
    let minutes = passes as u64 * 5 / 60 + 1;
    assert!(samples.len() as u64 <= minutes, "{} samples", samples.len());

    let view = IncidentView::from_record(&rec, &[], rec.opened_at);
    assert_eq!(view.mode, Conduct::Shadow);
    assert!(!view.report.not_taken.is_empty(), "no why-not in the view");
    let want: BTreeSet<_> = report
        .not_taken
        .iter()
        .map(|s| (s.skip.action.as_str().to_owned(), s.skip.reason.clone()))
        .collect();
    assert_eq!(
        reasons(&view),
        want,
        "the ledger's why-not is the responder's"
    );
    let text = view.to_text(false);
    eprintln!("{} decisions, {passes} passes\n{text}", decisions.len());
    assert!(text.contains("would have"), "{text}");
    assert!(!text.contains(" did "), "{text}");
    for (_, why) in &want {
        assert!(text.contains(why.as_str()), "{why} missing: {text}");
    }
    assert_eq!(view.action_counts().0, 0, "nothing applied in shadow");
    assert!(view.rates.len() >= decisions.len());
}

/// An acting run to resolution: the record's actions are the world's (rollback applied once),
/// the post-incident record stored at close carries the reasons for not acting, and the
/// listing counts what was applied.
#[test]
fn an_acting_incident_reads_back_as_what_was_done_with_its_why_not() {
    let (world, report, _) = run("bad-deploy", false, 200);
    assert!(report.resolved, "{}", report.to_text());
    let rec = only_incident(&world);
    assert!(rec.closed_at.is_some());
    for d in kinds(&rec, TimelineKind::Decision) {
        assert_ne!(d["mode"], "shadow");
    }
    let post = rec.post_incident.clone().expect("post-incident record");
    let stored: BTreeSet<String> = post["not_taken"]
        .as_array()
        .expect("not_taken in the stored record")
        .iter()
        .map(|s| s["reason"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = report
        .not_taken
        .iter()
        .map(|s| s.skip.reason.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(stored, want);

    let view = IncidentView::from_record(&rec, &[], rec.opened_at);
    assert_eq!(
        (view.mode, view.status.as_str()),
        (Conduct::Act, "resolved")
    );
    let (applied, _, _) = view.action_counts();
    let rollbacks = world.deployment.calls().of("deployment.rollback").len();
    assert_eq!(rollbacks, 1);
    assert!(applied >= rollbacks);
    let text = view.to_text(false);
    eprintln!("{text}");
    assert!(text.contains("mode: act — what flowfail did"), "{text}");
    assert!(text.contains("rollback"), "{text}");
    let md = view.to_markdown();
    assert!(md.contains("## Not done, and why"), "{md}");
    assert!(md.contains("- **Mode:** act"), "{md}");

    let line = IncidentLine::of(&IncidentListing::of(rec.clone()));
    assert_eq!(line.status, "resolved");
    assert_eq!(line.applied as usize, applied);
    assert!(line.mttr_seconds.is_some() && line.root_cause.is_some());
}
