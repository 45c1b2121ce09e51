//! Two Deployments of one name — `flowengine` in `default` (prod) and in `staging` — share one
//! TaskDB (an `environment` column, `[postgres] task_filter`), one ledger and one tracker, each
//! watched by its own `flowfail run`. An incident in prod touches only prod's tasks and
//! Deployment and files one issue; staging stays quiet; a pause of staging holds staging while
//! prod goes on acting. Asserted on PostgreSQL, the fake API server and the tracker.

use std::collections::BTreeMap;

use flowfail_core::IncidentStore;
use flowfail_testkit::trackers::FakeGitHub;

use super::{SCOPE, World, terminate, until, world};
use crate::support::flowfail_cmd;

const TOKEN: &str = "ghp-e2e-shared-token";
const STAGING: &str = "staging.flowengine";
pub(super) const ERR: &str =
    r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;

/// Rows of `env`: `ok` successes ten minutes ago, and failed tasks `ids` two minutes ago.
pub(super) async fn seed(w: &World, env: &str, ok: i32, ids: &[&str]) {
    w.pool
        .get()
        .await
        .unwrap()
        .execute(
            &format!(
                "INSERT INTO {s}.tasks (task_id, flow_type, status, error_message, http_status, created_at, attempts, environment)
                 SELECT $3 || '-ok-' || i, 'plan', 'succeeded', NULL, NULL, now() - interval '10 minutes', 0, $3
                   FROM generate_series(1, $4::int) i
                 UNION ALL
                 SELECT id, 'impl', 'failed', $2, 500, now() - interval '2 minutes', 0, $3
                   FROM unnest($1::text[]) id",
                s = w.schema
            ),
            &[&ids.to_vec(), &ERR, &env, &ok],
        )
        .await
        .unwrap();
}

pub(super) async fn attempts(w: &World, id: &str) -> i32 {
    w.pool
        .get()
        .await
        .unwrap()
        .query_one(
            &format!("SELECT attempts FROM {}.tasks WHERE task_id = $1", w.schema),
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Writes of flowfail's to the Deployment in `ns`.
pub(super) fn writes_in(w: &World, ns: &str) -> usize {
    w.k8s
        .writes()
        .iter()
        .filter(|x| x.namespace == ns && x.field_manager.as_deref() == Some("flowfail"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_share_a_taskdb_a_ledger_and_a_tracker_without_sharing_incidents() {
    let Some(w) = world("shared").await else {
        return;
    };
    for ns in ["default", "staging"] {
        w.k8s
            .add_deployment(ns, "flowengine", "flowengine", &BTreeMap::new(), 2);
    }
    w.pool
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER TABLE {}.tasks ADD COLUMN environment TEXT",
            w.schema
        ))
        .await
        .unwrap();
    seed(&w, "prod", 200, &["p-0", "p-1", "p-2", "p-3"]).await;
    seed(&w, "staging", 200, &[]).await;
    let gh = FakeGitHub::start("example/incidents", TOKEN).await;
    let token = w.dir.join("tracker-token");
    flowfail_testkit::write_secret(&token, &format!("{TOKEN}\n"));
    let base = std::fs::read_to_string(w.config("act")).unwrap();
    let config = |env: &str, ns: &str| {
        let text = base
            .replace(
                &format!("schema = \"{}\"\n", w.schema),
                &format!(
                    "schema = \"{}\"\ntask_filter = {{ column = \"environment\", value = \"{env}\" }}\n",
                    w.schema
                ),
            )
            .replace("namespace = \"default\"", &format!("namespace = \"{ns}\""));
        let p = w.dir.join(format!("{env}.toml"));
        std::fs::write(
            &p,
            format!(
                "{text}\n[tracker]\nkind = \"github\"\nurl = \"{}\"\nrepo = \"example/incidents\"\ntoken = {{ file = \"{}\" }}\n",
                gh.uri(),
                token.display()
            ),
        )
        .unwrap();
        p
    };
    let (prod, staging) = (config("prod", "default"), config("staging", "staging"));
    let mut pp = w.run_config(&prod, "prod");
    let mut ps = w.run_config(&staging, "staging");

    // Prod's incident: its tasks retried, one issue filed, and settled; staging stays quiet.
    until(&w, 30, "prod's tasks retried", &mut pp, "prod", || async {
        attempts(&w, "p-3").await == 1 && !gh.issues().is_empty()
    })
    .await;
    for id in ["p-0", "p-1", "p-2"] {
        assert_eq!(attempts(&w, id).await, 1, "{id}");
    }
    assert!(w.ledger.find_open(SCOPE).await.unwrap().is_some());
    until(
        &w,
        60,
        "prod's incident closed and its issue settled",
        &mut pp,
        "prod",
        || async {
            w.work().await;
            w.ledger.find_open(SCOPE).await.unwrap().is_none()
                && gh.issues().iter().all(|i| i.state == "closed")
        },
    )
    .await;
    assert!(w.ledger.find_open(STAGING).await.unwrap().is_none());
    assert!(w.ledger.latest_closed(STAGING).await.unwrap().is_none());
    assert_eq!(writes_in(&w, "staging"), 0);
    let issues = gh.issues();
    assert_eq!(issues.len(), 1, "one issue, prod's: {issues:?}");
    assert!(
        issues[0].title.contains("default.flowengine-"),
        "{}",
        issues[0].title
    );

    // Staging paused by its own config: prod's pause flag untouched.
    let out = flowfail_cmd()
        .args([
            "pause",
            "--reason",
            "staging freeze",
            "--by",
            "sre",
            "--config",
        ])
        .arg(&staging)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paused: Vec<String> = w
        .pool
        .get()
        .await
        .unwrap()
        .query(
            &format!("SELECT scope FROM {}.flowfail_pause", w.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(paused, [STAGING]);

    // Failures in both: prod opens a new incident and acts; paused staging opens its own and
    // holds every task.
    let (p_new, s_new) = (
        ["q-0", "q-1", "q-2", "q-3", "q-4", "q-5"],
        ["s-0", "s-1", "s-2", "s-3", "s-4", "s-5"],
    );
    seed(&w, "prod", 0, &p_new).await;
    seed(&w, "staging", 0, &s_new).await;
    until(
        &w,
        30,
        "prod's new failures retried",
        &mut pp,
        "prod",
        || async {
            let mut all = true;
            for id in p_new {
                all &= attempts(&w, id).await == 1;
            }
            all
        },
    )
    .await;
    until(
        &w,
        30,
        "staging's incident open",
        &mut ps,
        "staging",
        || async { w.ledger.find_open(STAGING).await.unwrap().is_some() },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for id in s_new {
        assert_eq!(
            attempts(&w, id).await,
            0,
            "{id} retried while staging was paused"
        );
    }
    assert_eq!(writes_in(&w, "staging"), 0);
    assert_eq!(terminate(&mut ps).code(), Some(0), "{}", w.log("staging"));
    assert_eq!(terminate(&mut pp).code(), Some(0), "{}", w.log("prod"));
    // One issue per incident, each found by its own scope's key.
    let titles: Vec<String> = gh.issues().into_iter().map(|i| i.title).collect();
    assert_eq!(titles.len(), 3, "{titles:?}");
    assert_eq!(
        titles
            .iter()
            .filter(|t| t.contains("staging.flowengine-"))
            .count(),
        1,
        "{titles:?}"
    );
}
