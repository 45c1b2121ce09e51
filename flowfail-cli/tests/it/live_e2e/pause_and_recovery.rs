//! (e) Paused mid-incident over HTTP until resume, and (f) an incident that stays open until the
//! retried tasks finish.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, IncidentStore, Task, TaskId, TaskStatus};
use serde_json::json;

use super::{
    CONTROL_TOKEN, HTTP_TOKEN, Listener, TIMEOUT, free_port, terminate, timeout_world,
    triggers_with, until, world,
};

/// (e) Paused mid-incident over HTTP: new failures arrive while paused and nothing reaches any
/// peer (bundles, attempts, the Deployment, the pager but for the one "automation paused"
/// notice) until resume; then they are handled. Unauthenticated pause and resume change
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_pause_mid_incident_holds_every_peer_until_resume() {
    let first = ["q-0", "q-1", "q-2"];
    let Some((w, _)) = timeout_world("pause", first).await else {
        return;
    };
    let port = free_port();
    let mut p = w.run_config(&w.config_with("act", 1, Some(port)), "e");
    let l = Listener::new(port);
    let pause_body = json!({"reason": "e2e change freeze", "by": "e2e"}).to_string();
    // Refused: no token, a wrong one.
    until(&w, 30, "listening", &mut p, "e", || async {
        l.get("/healthz").await.is_some()
    })
    .await;
    assert_eq!(l.post("/pause", None, pause_body.clone()).await.0, 401);
    assert_eq!(
        l.post(
            "/pause",
            Some("e2e-http-token-wrong-0000"),
            pause_body.clone()
        )
        .await
        .0,
        401
    );
    // The webhook token (what the alerting system holds) does not open the control calls.
    assert_eq!(
        l.post("/pause", Some(HTTP_TOKEN), pause_body.clone())
            .await
            .0,
        401,
        "the webhook credential paused automation"
    );
    // The first failures are pruned and retried: the incident is under way.
    until(&w, 60, "the first retries", &mut p, "e", || async {
        let mut all = true;
        for id in first {
            all &= w.task(id).await.attempts == 1;
        }
        all
    })
    .await;
    assert_eq!(
        l.metric("flowfail_paused").await,
        0.0,
        "paused by a refused call"
    );
    let (code, text) = l.post("/pause", Some(CONTROL_TOKEN), pause_body).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(l.metric("flowfail_paused").await, 1.0);
    // Let the pass in progress end, then new failures arrive while paused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = ["r-0", "r-1", "r-2"];
    let now = Utc::now();
    let failed: Vec<Task> = second
        .iter()
        .map(|id| {
            Task::new(
                TaskId::parse(id).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::minutes(1),
            )
            .with_error(TIMEOUT, None)
        })
        .collect();
    w.tasks.insert(&failed, &[]).await.unwrap();
    let mut originals = Vec::new();
    for id in second {
        originals.push(w.put_bundle(id, 600_000).await);
    }
    let keys = w.keys().await;
    let rv = w.resource_version();
    let pages = w.pages().await;
    // Six polls: a responder that acted would have pruned and retried the new failures.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(w.open_incident().await, "the incident is still open");
    for (id, original) in second.iter().zip(&originals) {
        assert_eq!(
            w.task(id).await.attempts,
            0,
            "{id} retried while paused\n{}",
            w.log("e")
        );
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id} pruned while paused"
        );
    }
    assert_eq!(w.keys().await, keys, "S3 changed while paused");
    assert_eq!(
        w.resource_version(),
        rv,
        "the Deployment changed while paused"
    );
    // Nothing paged but the one "automation paused" notice of each incident open while paused
    // (the first may settle during the pause, and the new failures then open a second).
    for (key, n) in w.pages().await {
        if pages.get(&key) != Some(&n) {
            assert!(
                key.ends_with(":automation_paused") && n == 1,
                "paged while paused: {key} x{n}"
            );
        }
    }
    // The ledger recorded what was held back.
    let open = w.ledger.find_open(super::SCOPE).await.unwrap().unwrap();
    let held = w.ledger.get(&open.key).await.unwrap().timeline;
    assert!(
        held.iter().any(|e| e.detail.to_string().contains("paused")),
        "{held:#?}"
    );

    assert_eq!(l.post("/resume", None, String::new()).await.0, 401);
    let (code, text) = l.post("/resume", Some(CONTROL_TOKEN), String::new()).await;
    assert_eq!(code, 200, "{text}");
    until(
        &w,
        60,
        "the held-back failures handled after resume",
        &mut p,
        "e",
        || async {
            let mut all = true;
            for id in second {
                all &= w.task(id).await.attempts == 1;
            }
            all && w
                .keys()
                .await
                .iter()
                .filter(|k| k.starts_with("archive/r-"))
                .count()
                == 3
        },
    )
    .await;
    assert_eq!(l.metric("flowfail_paused").await, 0.0);
    until(&w, 90, "the incident closed", &mut p, "e", || async {
        w.work().await;
        !w.open_incident().await
    })
    .await;
    let notices = triggers_with(&w, ":automation_paused").await;
    let incidents = w.closed().await.len();
    assert!(
        (1..=incidents).contains(&notices),
        "one paused notice per incident open while paused: {notices} for {incidents}: {:?}",
        w.pages().await
    );
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("e"));
}

/// (f) Issue 24 #3, "resolved" means the tasks recovered: 30 timeouts beside 100 successes.
/// flowfail retries them (pending in PostgreSQL), which takes them out of the alert's failure
/// count at once; with no worker running, the incident stays open and says what it waits for.
/// The test then plays FlowEngine's worker: running (still open), 3 succeed ("27 retried tasks
/// not finished yet"), then 26 succeed and one fails again: resolved, MTTR measured to then,
/// and the task that failed again in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_an_incident_stays_open_until_the_retried_tasks_finish() {
    let Some(w) = world("inflight").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let ids: Vec<String> = (0..30).map(|i| format!("f-{i:02}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let failed: Vec<(&str, &str, Option<u16>)> = ids.iter().map(|i| (*i, TIMEOUT, None)).collect();
    w.seed_tasks(100, &failed).await;
    let mut p = w.run("act", "f");
    until(&w, 60, "the 30 retries scheduled", &mut p, "f", || async {
        let mut all = true;
        for id in &ids {
            let t = w.task(id).await;
            all &= (t.status, t.attempts) == (TaskStatus::Pending, 1);
        }
        all
    })
    .await;
    let retried = Instant::now();

    // No worker: the alert is clear (the failures are pending now), and the incident is open.
    while retried.elapsed() < Duration::from_secs(8) {
        assert!(
            w.open_incident().await && w.closed().await.is_empty(),
            "resolved with no worker running: {:#?}\n{}",
            w.closed().await,
            w.log("f")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        w.log("f").contains("30 retried tasks not finished yet"),
        "{}",
        w.log("f")
    );
    // The worker picks them up: running is not finished.
    w.work_on(&ids, "running").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.open_incident().await, "resolved with every retry running");
    w.work_on(&ids[..3], "succeeded").await;
    until(&w, 30, "the wait for the other 27", &mut p, "f", || async {
        w.log("f").contains("27 retried tasks not finished yet")
    })
    .await;
    assert!(w.open_incident().await && w.closed().await.is_empty());
    let open_for = retried.elapsed();

    // They finish: 26 succeed, one fails again.
    w.work_on(&ids[3..29], "succeeded").await;
    w.work_on(&ids[29..], "failed").await;
    let finished = Utc::now();
    let finished_at = Instant::now();
    until(&w, 30, "the incident closed", &mut p, "f", || async {
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    let closed_after = finished_at.elapsed();
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("f"));

    let closed = w.closed().await;
    assert_eq!(closed.len(), 1, "{closed:#?}");
    let post = &closed[0]["post_incident"];
    assert_eq!(post["status"], "resolved", "{post:#}");
    let at = |k: &str| {
        post[k]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    };
    let (detected, resolved) = (at("detected_at"), at("resolved_at"));
    let mttr = post["mttr_seconds"].as_i64().unwrap();
    assert_eq!(mttr, (resolved - detected).num_seconds());
    assert!(
        resolved >= finished - TimeDelta::seconds(1),
        "resolved at {resolved}, before the retries finished at {finished}"
    );
    assert!(
        mttr >= (finished - detected).num_seconds(),
        "MTTR {mttr} s, not to the moment the retries finished"
    );
    // The task that failed again is in the record, and was not retried with the alert clear.
    let again: Vec<&serde_json::Value> = closed[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "finding" && e["detail"]["kind"] == "retry_failed_again")
        .collect();
    assert_eq!(again.len(), 1, "{:#}", closed[0]["timeline"]);
    assert_eq!(again[0]["detail"]["task_id"], ids[29]);
    assert!(
        post["follow_ups"].to_string().contains("failed again"),
        "{post:#}"
    );
    let last = w.task(ids[29]).await;
    assert_eq!((last.status, last.attempts), (TaskStatus::Failed, 1));
    for id in &ids[..29] {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    assert_eq!(
        post["actions_summary"]["retry_task"]["applied"], 30,
        "{post:#}"
    );
    eprintln!(
        "open {:.1} s after the retries were scheduled with no worker; closed {:.1} s after the worker finished; MTTR {mttr} s",
        open_for.as_secs_f64(),
        closed_after.as_secs_f64()
    );
}
