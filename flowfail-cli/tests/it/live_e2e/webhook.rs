//! The alert webhook starts the response: the Grafana webhook and the metrics, and the P9
//! benchmark (webhook to first action).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, IncidentStore, Task, TaskId, TaskStatus};

use super::{HTTP_TOKEN, Listener, TIMEOUT, free_port, grafana_alert, terminate, until, world};

/// (d) The alert webhook starts the response. flowfail polls every five minutes here, so only
/// the Grafana webhook can explain an incident within seconds of the failures. An
/// unauthenticated call changes nothing; the metrics move from before to after; the ledger
/// names the alert that woke flowfail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_a_grafana_webhook_starts_the_response_and_the_metrics_move() {
    let Some(w) = world("webhook").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    w.seed_tasks(100, &[]).await;
    let ids = ["h-0", "h-1", "h-2"];
    for id in ids {
        w.put_bundle(id, 600_000).await;
    }
    let port = free_port();
    let mut p = w.run_config(&w.config_with("act", 300, Some(port)), "d");
    let l = Listener::new(port);
    until(&w, 30, "ready", &mut p, "d", || async {
        matches!(l.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert_eq!(l.get("/healthz").await.unwrap().0, 200);
    until(&w, 30, "a first idle pass", &mut p, "d", || async {
        l.metric("flowfail_passes_total{kind=\"idle\"}").await >= 1.0
    })
    .await;
    let before_incident_passes = l.metric("flowfail_passes_total{kind=\"incident\"}").await;
    assert_eq!(before_incident_passes, 0.0);
    assert_eq!(l.metric("flowfail_incidents_open").await, 0.0);

    // The failures appear; the next poll is five minutes away.
    let now = Utc::now();
    let failed: Vec<Task> = ids
        .iter()
        .map(|id| {
            Task::new(
                TaskId::parse(id).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::minutes(2),
            )
            .with_error(TIMEOUT, None)
        })
        .collect();
    w.tasks.insert(&failed, &[]).await.unwrap();
    // Unauthenticated and malformed alerts: refused, nothing happens.
    let (code, _) = l.post("/hooks/grafana", None, grafana_alert("x")).await;
    assert_eq!(code, 401);
    let (code, _) = l
        .post(
            "/hooks/grafana",
            Some("e2e-http-token-wrong-0000"),
            grafana_alert("x"),
        )
        .await;
    assert_eq!(code, 401);
    let (code, text) = l
        .post("/hooks/grafana", Some(HTTP_TOKEN), "{\"status\":1}".into())
        .await;
    assert_eq!(code, 400, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!w.open_incident().await, "an incident before the alert");
    assert!(w.keys().await.iter().all(|k| !k.starts_with("archive/")));

    let (code, text) = l
        .post("/hooks/grafana", Some(HTTP_TOKEN), grafana_alert("e2e1"))
        .await;
    assert_eq!(code, 202, "{text}");
    let sent = Instant::now();
    until(
        &w,
        20,
        "the bundles pruned after the alert",
        &mut p,
        "d",
        || async {
            w.keys()
                .await
                .iter()
                .filter(|k| k.starts_with("archive/"))
                .count()
                == 3
        },
    )
    .await;
    let to_prune = sent.elapsed();
    until(&w, 30, "the tasks retried", &mut p, "d", || async {
        let mut all = true;
        for id in ids {
            all &= w.task(id).await.attempts == 1;
        }
        all
    })
    .await;
    assert!(to_prune < Duration::from_secs(20), "{to_prune:?}");
    // The ledger names the alert.
    let open = w.ledger.find_open(super::SCOPE).await.unwrap().unwrap();
    assert_eq!(
        open.state["woken_by"],
        "grafana alert \"FlowFailureRate\" (fingerprint e2e1)"
    );
    // The metrics moved (once the pass that acted has ended).
    until(&w, 20, "an incident pass counted", &mut p, "d", || async {
        l.metric("flowfail_passes_total{kind=\"incident\"}").await >= 1.0
    })
    .await;
    assert_eq!(l.metric("flowfail_incidents_open").await, 1.0);
    assert_eq!(
        l.metric("flowfail_actions_total{kind=\"prune_context\",outcome=\"applied\"}")
            .await,
        3.0
    );
    assert_eq!(
        l.metric("flowfail_actions_total{kind=\"retry_task\",outcome=\"applied\"}")
            .await,
        3.0
    );
    assert_eq!(
        l.metric("flowfail_alerts_received_total{source=\"grafana\",status=\"firing\"}")
            .await,
        1.0
    );
    assert_eq!(
        l.metric(
            "flowfail_requests_refused_total{path=\"/hooks/grafana\",reason=\"unauthenticated\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        l.metric("flowfail_requests_refused_total{path=\"/hooks/grafana\",reason=\"malformed\"}")
            .await,
        1.0
    );
    assert!(
        l.metric("flowfail_last_successful_read_timestamp_seconds{port=\"bundles\"}")
            .await
            > 1.7e9
    );
    assert_eq!(l.metric("flowfail_mode{mode=\"act\"}").await, 1.0);
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("d"));
}

/// P9 of docs/BENCHMARKS.md, webhook-triggered: the real binary on the live stack, polling
/// every five minutes; 200 failed tasks (HTTP 503) appear beside 1,000 succeeded ones, a
/// Grafana alert is posted, and the time from the POST to the first retry visible in
/// PostgreSQL is measured, for `FLOWFAIL_P9_ALERTS` alerts (default 20), each on a fresh world.
/// A measurement, not a test: it asserts only that each alert led to a retry.
///
/// ```bash
/// cargo test --release -p flowfail-cli --test it live_e2e::webhook::p9_webhook -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (P9): run it with --ignored --nocapture"]
async fn p9_webhook_to_first_action() {
    let n: usize = std::env::var("FLOWFAIL_P9_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut took = Vec::new();
    for k in 0..n {
        let Some(w) = world(&format!("p9{k}")).await else {
            return;
        };
        w.k8s
            .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
        w.seed_tasks(1000, &[]).await;
        let port = free_port();
        let mut p = w.run_config(&w.config_with("act", 300, Some(port)), "p9");
        let l = Listener::new(port);
        until(&w, 30, "a first idle pass", &mut p, "p9", || async {
            l.metric("flowfail_passes_total{kind=\"idle\"}").await >= 1.0
        })
        .await;
        // Passes an alert wakes start at least a second after the last pass started (the
        // supervisor's flood guard); in production the alert comes minutes after the last idle
        // pass. Wait that second out, so what is timed is the webhook's path, not the guard.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let now = Utc::now();
        let failed: Vec<Task> = (0..200)
            .map(|i| {
                Task::new(
                    TaskId::parse(&format!("p9-{i}")).unwrap(),
                    FlowType::Impl,
                    TaskStatus::Failed,
                    now - TimeDelta::minutes(1),
                )
                .with_error("503 Service Unavailable", Some(503))
            })
            .collect();
        w.tasks.insert(&failed, &[]).await.unwrap();
        let c = w.pool.get().await.unwrap();
        let q = format!("SELECT count(*) FROM {}.tasks WHERE attempts > 0", w.schema);
        let (code, _) = l
            .post(
                "/hooks/grafana",
                Some(HTTP_TOKEN),
                grafana_alert(&format!("p9-{k}")),
            )
            .await;
        let sent = Instant::now();
        assert_eq!(code, 202);
        loop {
            let retried: i64 = c.query_one(&q, &[]).await.unwrap().get(0);
            if retried > 0 {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(60), "{}", w.log("p9"));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(sent.elapsed());
        assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("p9"));
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95 = took[((took.len() * 95).div_ceil(100)).max(1) - 1];
    println!(
        "P9 webhook to first retry in PostgreSQL, {} alerts: min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        took.len(),
        ms(took[0]),
        ms(took[took.len() / 2]),
        ms(p95),
        ms(took[took.len() - 1])
    );
    println!(
        "  each (ms): {}",
        took.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
