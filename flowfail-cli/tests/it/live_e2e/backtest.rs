//! `flowfail backtest` on a month of history: a TaskDB of a million tasks on PostgreSQL with
//! three planted incidents — a burst of timeouts whose bundles are in the bundle store, an hour
//! of rate limits, a bad deploy in the Deployment's revision history — finds exactly those
//! three, classifies them, proposes the runbook's actions, and writes each as a scenario that
//! replays to the same decisions. Nothing is written to the TaskDB, the bundle store or the
//! Deployment: asserted on the peers.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use super::{World, world};
use crate::support::flowfail_cmd;

const TIMEOUT: &str = "Task timed out after 45.00 seconds";
const RATE_LIMIT: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
const KEY_ERROR: &str = "KeyError: 'context_refs'";

/// A month of traffic: a million tasks from 2026-11-01, one every 2.592 s, 0.2 % failing with a
/// 500 (under the alert's clear rate); then the three incidents' failures: 40 timeouts over ten
/// minutes, 120 rate limits over an hour, and 600 tasks of a backlog failing within a
/// second on the revision deployed ten minutes before.
async fn seed(w: &World) {
    let c = w.pool.get().await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO {s}.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
         SELECT 'm-' || i, 'plan',
                CASE WHEN i % 500 = 0 THEN 'failed' ELSE 'succeeded' END,
                CASE WHEN i % 500 = 0 THEN 'Internal server error' END,
                CASE WHEN i % 500 = 0 THEN 500 END,
                t - interval '30 seconds', t, 0
           FROM (SELECT i, timestamptz '2026-11-01 00:00:00+00' + i * interval '2.592 seconds' AS t
                   FROM generate_series(1, 1000000) i) g;
         INSERT INTO {s}.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
         SELECT 'to-' || k, 'impl', 'failed', '{TIMEOUT}', NULL,
                t - interval '45 seconds', t, 0
           FROM (SELECT k, timestamptz '2026-11-05 10:00:00+00' + k * interval '15 seconds' AS t
                   FROM generate_series(0, 39) k) g;
         INSERT INTO {s}.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
         SELECT 'rl-' || k, 'review', 'failed', $${RATE_LIMIT}$$, 429,
                t - interval '5 seconds', t, 0
           FROM (SELECT k, timestamptz '2026-11-12 14:00:00+00' + k * interval '30 seconds' AS t
                   FROM generate_series(0, 119) k) g;
         INSERT INTO {s}.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
         SELECT 'bd-' || k, 'impl', 'failed', $${KEY_ERROR}$$, NULL,
                t - interval '2 seconds', t, 0
           FROM (SELECT k, timestamptz '2026-11-20 12:00:00+00' + k * interval '1 millisecond' AS t
                   FROM generate_series(0, 599) k) g;
         ANALYZE {s}.tasks;",
        s = w.schema
    ))
    .await
    .unwrap();
}

/// What would show any write to the TaskDB: rows, attempts, statuses and the newest row
/// version.
async fn taskdb_fingerprint(w: &World) -> (i64, i64, i64, String) {
    let r = w
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            &format!(
                "SELECT count(*), sum(attempts)::int8, count(*) FILTER (WHERE status = 'failed'),
                        max(xmin::text::int8)::text FROM {}.tasks",
                w.schema
            ),
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// The (kind, outcome) of each action, in order.
fn decisions(actions: &Value) -> Vec<(String, String)> {
    actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn applied(i: &Value, kind: &str) -> Vec<Value> {
    i["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["outcome"] == "applied")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_history_backtests_to_its_three_incidents_and_writes_nothing() {
    let Some(w) = world("backtest").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 3);
    for (rev, at) in [
        (1, "2026-10-01T00:00:00Z"),
        (2, "2026-11-20T11:50:00Z"),
        (3, "2026-11-20T13:00:00Z"),
    ] {
        w.k8s.set_revision_created("default", "flowengine", rev, at);
    }
    let started = Instant::now();
    seed(&w).await;
    for k in 0..40 {
        w.put_bundle(&format!("to-{k}"), 600_000).await;
    }
    eprintln!("seeded in {:?}", started.elapsed());
    let before = (taskdb_fingerprint(&w).await, w.keys().await, w.image());
    let requests_before = w.k8s.requests().len();
    let export = w.dir.join("scenarios");

    let t = Instant::now();
    let out = flowfail_cmd()
        .args([
            "backtest",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--json",
        ])
        .args(["--assume", "quota=0.9", "--export-scenario"])
        .arg(&export)
        .arg("--config")
        .arg(w.config("act"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    eprintln!("backtest in {:?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["tasks_read"].as_u64().unwrap() >= 1_000_000,
        "{report}"
    );
    let incidents = report["incidents"].as_array().unwrap();
    let opened: Vec<&str> = incidents
        .iter()
        .map(|i| i["opened_at"].as_str().unwrap())
        .collect();
    assert_eq!(incidents.len(), 3, "{opened:?}\n{stderr}");
    for (i, day) in opened
        .iter()
        .zip(["2026-11-05T10", "2026-11-12T14", "2026-11-20T12"])
    {
        assert!(i.starts_with(day), "{i} not on {day}: {opened:?}");
    }
    let kinds: Vec<&str> = incidents
        .iter()
        .map(|i| {
            i["classification"]
                .as_object()
                .unwrap()
                .iter()
                .max_by_key(|(_, n)| n.as_u64())
                .map(|(k, _)| k.as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(kinds, ["timeout", "rate_limit", "unknown"], "{report:#}");

    // The runbook's actions: prune the oversized bundles, open the breaker on rate limits
    // (quota assumed at 90 %), roll the bad deploy back to the revision before it.
    let pruned = applied(&incidents[0], "prune_context");
    assert!(!pruned.is_empty(), "{:#}", incidents[0]);
    assert!(
        pruned
            .iter()
            .all(|a| a["from_bytes"].as_u64() == Some(600_000))
    );
    let breaker = applied(&incidents[1], "set_env");
    assert!(
        breaker
            .iter()
            .any(|a| a["name"] == "ENABLE_CIRCUIT_BREAKER"),
        "{:#}",
        incidents[1]
    );
    let rollback = applied(&incidents[2], "rollback");
    assert_eq!(rollback.len(), 1, "{:#}", incidents[2]);
    assert_eq!(
        (
            rollback[0]["from_revision"].as_u64(),
            rollback[0]["to_revision"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert!(
        report["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g.as_str().unwrap().contains("status pages")),
        "{report:#}"
    );

    // Each exported scenario replays to the same decisions.
    let mut files: Vec<_> = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    for (file, incident) in files.iter().zip(incidents) {
        let out = flowfail_cmd()
            .args(["respond", "--json", "--scenario"])
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let replay: Value = serde_json::from_slice(&out.stdout).unwrap();
        // The replay reads the window the scan read when it opened the incident.
        assert_eq!(
            replay["alert"]["window_tasks"],
            incident["window_tasks"],
            "{}",
            file.display()
        );
        let (a, b) = (
            replay["alert"]["failure_rate"].as_f64().unwrap(),
            incident["rate_at_open"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        assert_eq!(
            decisions(&replay["actions"]),
            decisions(&incident["actions"]),
            "{}",
            file.display()
        );
    }

    // Nothing written: the TaskDB, the bundles, the Deployment are as they were.
    assert_eq!(
        (taskdb_fingerprint(&w).await, w.keys().await, w.image()),
        before
    );
    let requests = w.k8s.requests();
    let writes: Vec<&String> = requests[requests_before..]
        .iter()
        .filter(|r| {
            ["PATCH ", "PUT ", "POST ", "DELETE "]
                .iter()
                .any(|m| r.starts_with(m))
        })
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(requests.len() > requests_before, "the Deployment was read");
}
