//! The N1–N6 checker can fail: each invariant broken on purpose, by raw calls to the in-memory
//! backends, is reported under its id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flowfail_core::invariants::Invariants;
use flowfail_core::memory::{World, synthesize_bundle};
use flowfail_core::ports::{BundleStore, IncidentStore, Page, Pager};
use flowfail_core::{Clock, DeploymentController, FlowType, Policy, Task, TaskId, TaskStatus};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn broken(inv: &Invariants, w: &World, p: &Policy) -> Vec<&'static str> {
    match inv.check(w, p) {
        Ok(()) => Vec::new(),
        Err(v) => v.0.iter().map(|v| v.invariant).collect(),
    }
}

fn world() -> (World, Policy) {
    let p = Policy::default();
    (World::new(&p, Clock::manual(chrono::Utc::now())), p)
}

#[test]
fn an_untouched_world_holds() {
    let (w, p) = world();
    assert!(Invariants::before(&w).check(&w, &p).is_ok());
}

#[test]
fn n1_a_lost_or_over_retried_task_breaks_it() {
    let (w, p) = world();
    let id = TaskId::parse("t-1").unwrap();
    w.tasks.insert(Task::new(
        id.clone(),
        FlowType::Plan,
        TaskStatus::Failed,
        chrono::Utc::now(),
    ));
    let inv = Invariants::before(&w);
    w.tasks
        .set_status(&id, TaskStatus::Running, chrono::Utc::now());
    assert_eq!(broken(&inv, &w, &p), ["N1"]);
}

#[test]
fn n2_a_replaced_bundle_without_its_archive_breaks_it() {
    let (w, p) = world();
    let id = TaskId::parse("t-1").unwrap();
    let v = w.bundles.put(&id, synthesize_bundle(&id, 4000));
    let inv = Invariants::before(&w);
    rt().block_on(w.bundles.put_if_version(&id, b"{}", &v))
        .unwrap();
    assert_eq!(broken(&inv, &w, &p), ["N2"]);
    // Archived under a checksum that does not match: still broken.
    rt().block_on(
        w.bundles
            .put_archive(&id, "00", &synthesize_bundle(&id, 4000)),
    )
    .unwrap();
    assert_eq!(broken(&inv, &w, &p), ["N2"]);
}

#[test]
fn n3_an_open_incident_breaks_it_unless_allowed() {
    let (w, p) = world();
    let inv = Invariants::before(&w);
    rt().block_on(w.incidents.open(
        "flowengine",
        "k",
        chrono::Utc::now(),
        &serde_json::json!({}),
    ))
    .unwrap();
    assert_eq!(broken(&inv, &w, &p), ["N3"]);
    assert!(broken(&inv.open_incidents_allowed(), &w, &p).is_empty());
}

#[test]
fn n4_a_second_rollback_breaks_it() {
    let p = Policy::default();
    let clock = Clock::manual(chrono::Utc::now());
    let w = World::new(&p, clock.clone());
    w.deployment.deploy(2, clock.now());
    w.deployment.deploy(3, clock.now());
    let inv = Invariants::before(&w).open_incidents_allowed();
    let rt = rt();
    for to in [2, 1] {
        let rv = rt
            .block_on(w.deployment.state("flowengine"))
            .unwrap()
            .resource_version;
        rt.block_on(w.deployment.rollback("flowengine", to, &rv))
            .unwrap();
    }
    assert_eq!(broken(&inv, &w, &p), ["N4"]);
}

#[test]
fn n5_one_key_applied_twice_or_for_two_targets_breaks_it() {
    let (w, p) = world();
    let inv = Invariants::before(&w);
    let rt = rt();
    let page = Page::new("on_call", "inc:page:x", "s", serde_json::json!({}));
    rt.block_on(w.pager.page(&page)).unwrap();
    assert!(broken(&inv, &w, &p).is_empty());
    rt.block_on(w.pager.page(&page)).unwrap();
    assert_eq!(broken(&inv, &w, &p), ["N5"]);
    assert!(broken(&inv.clone().redelivery_allowed(), &w, &p).is_empty());
    let other = Page::new("sre", "inc:page:x", "s", serde_json::json!({}));
    rt.block_on(w.pager.page(&other)).unwrap();
    assert_eq!(broken(&inv.redelivery_allowed(), &w, &p), ["N5"]);
}

#[test]
fn n6_a_canary_anywhere_breaks_it() {
    let (w, p) = world();
    let inv = Invariants::before(&w).canary("sk-ant-CANARY");
    assert!(broken(&inv, &w, &p).is_empty());
    assert_eq!(
        broken(
            &inv.clone().output("error: key sk-ant-CANARY refused"),
            &w,
            &p
        ),
        ["N6"]
    );
    let page = Page::new(
        "on_call",
        "k",
        "leaked sk-ant-CANARY",
        serde_json::json!({}),
    );
    rt().block_on(w.pager.page(&page)).unwrap();
    assert_eq!(broken(&inv, &w, &p), ["N6"]);
}
