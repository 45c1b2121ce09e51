//! The incidents of the pilot end to end: (a) timeouts with oversized bundles, (b) a rate limit,
//! (c) a bad deploy, (d) paused before the alert then resumed, and shadow mode on (a)'s world.

use std::collections::BTreeMap;
use std::time::Duration;

use flowfail_core::{IncidentStore, TaskStatus};
use sha2::{Digest, Sha256};

use super::{kill9, set_quota, terminate, timeout_world, until, world};

/// (a) The pilot's timeout incident: three oversized bundles; killed -9 after the first
/// prune, restarted; then SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_incident_with_oversized_bundles_end_to_end() {
    let ids = ["t-0", "t-1", "t-2"];
    let Some((w, originals)) = timeout_world("timeout", ids).await else {
        return;
    };
    let mut first = w.run("act", "a1");
    // Kill -9 once the first bundle is pruned (mid-incident).
    until(
        &w,
        60,
        "a first pruned bundle",
        &mut first,
        "a1",
        || async { w.keys().await.iter().any(|k| k.starts_with("archive/")) },
    )
    .await;
    kill9(&mut first);
    // What the first process did that its record does not hold: at most the action in flight.
    let recorded_at_kill = w.recorded_retries().await;
    let mut unrecorded = 0;
    for id in ids {
        if w.task(id).await.attempts == 1 && !recorded_at_kill.contains(&id.to_owned()) {
            unrecorded += 1;
        }
    }
    let mut second = w.run("act", "a2");
    until(&w, 90, "the incident closed", &mut second, "a2", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut second).code(), Some(0), "{}", w.log("a2"));

    // S3: every bundle within the budget, its original archived byte for byte, once.
    let keys = w.keys().await;
    for (id, original) in ids.iter().zip(&originals) {
        let live = w.object(&format!("{id}.json")).await.unwrap();
        assert!(
            live.len() <= 180_000,
            "{id}: {} bytes\nrecord: {:#?}\nfirst run:\n{}\nsecond run:\n{}",
            live.len(),
            w.closed().await,
            w.log("a1"),
            w.log("a2")
        );
        serde_json::from_slice::<serde_json::Value>(&live).expect("pruned bundle is JSON");
        let sum: String = Sha256::digest(original)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let archives: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("archive/{id}.")))
            .collect();
        assert_eq!(archives.len(), 1, "{id}: {keys:?}");
        assert_eq!(archives[0], &format!("archive/{id}.{sum}.json"));
        assert_eq!(
            &w.object(archives[0]).await.unwrap(),
            original,
            "{id}: archive differs"
        );
    }
    // PostgreSQL: each retried exactly once (nothing done twice across the kill).
    for id in ids {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    // The ledger: one incident, closed, with the record built from the whole timeline.
    let closed = w.closed().await;
    assert_eq!(closed.len(), 1, "{closed:#?}");
    let post = &closed[0]["post_incident"];
    assert_eq!(post["status"], "resolved", "{post:#}");
    // Every retry on the TaskDB is in the record, but for those in flight at the kill.
    assert_eq!(
        post["actions_summary"]["retry_task"]["applied"]
            .as_u64()
            .unwrap_or(0)
            + unrecorded,
        3,
        "{post:#}"
    );
    // Nobody paged for a timeout incident that resolved; the Deployment untouched.
    assert!(w.pages().await.is_empty());
    assert_eq!(w.image(), "flowengine:2");
}

/// (b) A rate-limit incident: quota at 86 %, then falling. The breaker goes on, retries wait
/// for half-open, the breaker setting is restored when quota is back under 70 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_rate_limit_incident_end_to_end() {
    let Some(w) = world("ratelimit").await else {
        return;
    };
    w.k8s.add_deployment(
        "default",
        "flowengine",
        "flowengine",
        &BTreeMap::from([("ENABLE_CIRCUIT_BREAKER".to_owned(), "false".to_owned())]),
        2,
    );
    set_quota(&w.quota, 86).await;
    let rl = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let ids = ["r-0", "r-1", "r-2", "r-3"];
    w.seed_tasks(200, &ids.map(|i| (i, rl, Some(429)))).await;
    let mut p = w.run("act", "b");
    until(&w, 30, "the breaker enabled", &mut p, "b", || async {
        w.env().get("ENABLE_CIRCUIT_BREAKER").map(String::as_str) == Some("true")
    })
    .await;
    // No retry while the breaker is open.
    for id in ids {
        assert_eq!(
            w.task(id).await.attempts,
            0,
            "{id} retried while the breaker was open"
        );
    }
    set_quota(&w.quota, 50).await;
    until(&w, 90, "the incident closed", &mut p, "b", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("b"));
    for id in ids {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    assert_eq!(
        w.env().get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
        Some("false"),
        "breaker restored"
    );
    assert!(w.pages().await.is_empty(), "quota never critical: no page");
}

/// (c) A bad deploy: widespread unknown failures after a recent deploy. Rolled back once to the
/// revision recorded at open. The first process is killed -9 after its rollback reached the
/// Deployment and before it heard back (the API server holds the reply), so its ledger holds
/// the reservation and no outcome; the restarted process finds the rollback on the Deployment,
/// records it as applied, never rolls back twice, and retries the failed tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_bad_deploy_end_to_end() {
    let Some(w) = world("baddeploy").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    assert_eq!(w.image(), "flowengine:2");
    let ids: Vec<String> = (0..60).map(|i| format!("u-{i}")).collect();
    let failed: Vec<(&str, &str, Option<u16>)> = ids
        .iter()
        .map(|i| (i.as_str(), "KeyError: 'context_refs'", None))
        .collect();
    w.seed_tasks(140, &failed).await;
    w.k8s.hold_next_patch_reply(Duration::from_secs(120));
    let mut first = w.run("act", "c1");
    until(&w, 60, "the rollback", &mut first, "c1", || async {
        w.image() == "flowengine:1"
    })
    .await;
    kill9(&mut first);
    let replicasets = w.k8s.replicasets("default").len();
    let mut second = w.run("act", "c2");
    until(&w, 90, "the incident closed", &mut second, "c2", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut second).code(), Some(0), "{}", w.log("c2"));
    // The Deployment: rolled back to revision 1's template, exactly once.
    assert_eq!(w.image(), "flowengine:1");
    assert_eq!(
        w.k8s.replicasets("default").len(),
        replicasets,
        "a second rollout happened"
    );
    let patches = w
        .k8s
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH deployments/flowengine"))
        .count();
    assert_eq!(patches, 1, "{:?}", w.k8s.requests());
    // The rollback names its incident in the change cause (`kubectl rollout history`).
    let closed_key = w.closed().await[0]["key"].as_str().unwrap().to_owned();
    assert_eq!(
        w.change_cause(),
        format!(
            "flowfail: roll back to revision 1 (incident {closed_key}: widespread failures after the deploy of revision 2)"
        )
    );
    // Unknown failures retried only after the verified rollback, once each.
    for id in &ids {
        let t = w.task(id).await;
        assert_eq!(
            (t.status, t.attempts),
            (TaskStatus::Succeeded, 1),
            "{id}\nrecord: {:#?}\nfirst run:\n{}\nsecond run:\n{}",
            w.closed().await,
            w.log("c1"),
            w.log("c2")
        );
    }
    // On-call paged for the new failure mode under one dedup key. Pages are at least once: the
    // one in flight at the kill (sent, not yet checkpointed) may go out again under the same
    // key, which the pager deduplicates; no other page repeats.
    let pages = w.pages().await;
    assert!(
        pages
            .keys()
            .any(|k| k.ends_with(":page:on_call:new_failure_mode")),
        "{pages:?}"
    );
    assert!(pages.values().all(|n| *n <= 2), "{pages:?}");
    assert!(
        pages.values().filter(|n| **n == 2).count() <= 1,
        "{pages:?}"
    );
    let closed = w.closed().await;
    assert_eq!(closed.len(), 1);
    // The rollback is in the record, as found on the Deployment by the second process, and the
    // ledger still holds the first process's reservation (which kept it from happening twice:
    // one PATCH above).
    assert_eq!(
        closed[0]["post_incident"]["actions_summary"]["rollback"],
        serde_json::json!({"applied": 1}),
        "{:#}",
        closed[0]
    );
    let key = closed[0]["key"].as_str().unwrap();
    let reserved = w.ledger.get(key).await.unwrap().effects;
    assert!(reserved.iter().any(|e| e == "rollback"), "{reserved:?}");
}

/// (d) Paused with `flowfail pause` before the alert: the incident opens and is recorded, and
/// nothing reaches S3, the TaskDB, the Deployment or the webhook; on-call gets one "automation
/// paused" page. After `flowfail resume` the same process works the incident to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_paused_then_resumed_end_to_end() {
    let ids = ["p-0", "p-1", "p-2"];
    let Some((w, originals)) = timeout_world("paused", ids).await else {
        return;
    };
    let (code, err) = w.control(&["pause", "--reason", "change freeze", "--by", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    let rv = w.resource_version();
    let mut p = w.run("act", "d");
    until(&w, 30, "the paused notice", &mut p, "d", || async {
        w.open_incident().await
            && w.pages()
                .await
                .keys()
                .any(|k| k.ends_with(":page:on_call:automation_paused"))
    })
    .await;
    // Several more passes (one a second), paused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (id, original) in ids.iter().zip(&originals) {
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id}"
        );
        assert_eq!(w.task(id).await.attempts, 0, "{id} retried while paused");
    }
    assert!(!w.keys().await.iter().any(|k| k.starts_with("archive/")));
    assert_eq!(
        w.resource_version(),
        rv,
        "the Deployment changed while paused"
    );
    assert!(
        !w.k8s.requests().iter().any(|r| r.starts_with("PATCH")),
        "{:?}",
        w.k8s.requests()
    );
    assert_eq!(
        w.pages().await.values().sum::<usize>(),
        1,
        "{:?}",
        w.pages().await
    );
    assert!(
        w.webhook
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );

    let (code, err) = w.control(&["resume", "--by", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    until(&w, 90, "the incident closed", &mut p, "d", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("d"));
    for id in ids {
        assert!(
            w.object(&format!("{id}.json")).await.unwrap().len() <= 180_000,
            "{id}"
        );
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    let pages = w.pages().await;
    assert_eq!(
        pages.values().sum::<usize>(),
        1,
        "only the notice: {pages:?}"
    );
    let closed = w.closed().await;
    let kinds: Vec<&str> = closed[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"paused") && kinds.contains(&"resumed"),
        "{kinds:?}"
    );
}

/// Shadow mode on (a)'s world: zero changes on every peer, the same decisions in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_changes_nothing_and_records_the_decisions() {
    let ids = ["s-0", "s-1", "s-2"];
    let Some((w, originals)) = timeout_world("shadow", ids).await else {
        return;
    };
    let rv = w.resource_version();
    let mut p = w.run("shadow", "s");
    until(&w, 60, "decisions in the ledger", &mut p, "s", || async {
        let Ok(Some(open)) = w
            .ledger
            .find_open(&format!("{}:shadow", super::SCOPE))
            .await
        else {
            return false;
        };
        let Ok(rec) = w.ledger.get(&open.key).await else {
            return false;
        };
        let dry: Vec<_> = rec
            .timeline
            .iter()
            .filter(|e| e.kind == "action" && e.detail["outcome"] == "dry_run")
            .collect();
        dry.iter()
            .filter(|e| e.detail["action"]["kind"] == "prune_context")
            .count()
            == 3
            && dry
                .iter()
                .filter(|e| e.detail["action"]["kind"] == "retry_task")
                .count()
                == 3
    })
    .await;
    // A few more passes: still nothing changes, decisions not repeated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("s"));
    for (id, original) in ids.iter().zip(&originals) {
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id} changed"
        );
        assert_eq!(w.task(id).await.attempts, 0, "{id} retried");
    }
    assert!(
        w.keys().await.iter().all(|k| !k.starts_with("archive/")),
        "archived in shadow mode"
    );
    assert_eq!(w.resource_version(), rv, "the Deployment changed");
    assert!(
        w.pager
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        w.webhook
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    // Shadow incidents are kept under a scope of their own: an acting process on the same
    // ledger finds none of them.
    assert!(w.ledger.find_open(super::SCOPE).await.unwrap().is_none());
    let open = w
        .ledger
        .find_open(&format!("{}:shadow", super::SCOPE))
        .await
        .unwrap()
        .unwrap();
    assert!(
        open.key.starts_with("default.flowengine:shadow-"),
        "{}",
        open.key
    );
    let rec = w.ledger.get(&open.key).await.unwrap();
    let actions = rec.timeline.iter().filter(|e| e.kind == "action").count();
    assert_eq!(
        actions, 6,
        "each decision recorded once: {:#?}",
        rec.timeline
    );
}
