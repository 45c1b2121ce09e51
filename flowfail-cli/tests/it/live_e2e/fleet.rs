//! Two Deployments watched by one `flowfail run` (`[[deployment]]`): `flowengine` in `default`
//! (prod) and in `staging`, one TaskDB with an `environment` column (a `task_filter` each), one
//! ledger, one tracker, one listener. Prod's incident touches only prod's tasks and Deployment
//! and files one issue; staging stays quiet; `/metrics` tells them apart; a pause of staging over
//! HTTP holds staging while prod goes on acting. Asserted on PostgreSQL, the fake API server and
//! the tracker.

use std::collections::BTreeMap;

use flowfail_core::IncidentStore;
use flowfail_testkit::trackers::FakeGitHub;

use super::shared::{attempts, seed, writes_in};
use super::{CONTROL_TOKEN, Listener, SCOPE, World, free_port, terminate, until, world};
use crate::support::flowfail_cmd;

const TOKEN: &str = "ghp-e2e-fleet-token";
const STAGING: &str = "staging.flowengine";

/// Signs in to the console, checks it shows both Deployments (a banner each, a deployment
/// column), and presses staging's Pause; a screenshot of the index goes to
/// `target/screenshots/console-fleet.png`.
async fn pause_staging_in_the_console(driver: &crate::webdriver::Driver, port: u16) {
    let base = format!("http://127.0.0.1:{port}");
    let b = driver.browser().await;
    b.goto(&format!("{base}/login")).await;
    let name = b.wait_for("#name").await;
    b.type_into(&name, "e2e-sre").await;
    let token = b.find("#token").await;
    b.type_into(&token, CONTROL_TOKEN).await;
    let sign_in = b.find("#sign-in").await;
    b.click(&sign_in).await;
    b.wait_for("#incidents").await;
    let cells = b.find_all("#incidents td.deployment").await;
    assert_eq!(cells.len(), 1, "prod's one incident");
    assert_eq!(b.text(&cells[0]).await, SCOPE);
    let staging = b.find("#pause-2").await;
    assert!(b.text(&staging).await.contains(STAGING));
    let reason = b.find("#pause-2 input[name=reason]").await;
    b.type_into(&reason, "staging freeze").await;
    let pause = b.find("#pause-button-2").await;
    b.click(&pause).await;
    let banner = b.wait_for("#pause-2.banner").await;
    assert!(b.text(&banner).await.contains("paused by console:e2e-sre"));
    assert_eq!(b.find_all("#pause-1.banner").await.len(), 0, "prod paused");
    let shot = b.screenshot().await;
    assert!(shot.starts_with(b"\x89PNG"), "not a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("console-fleet.png"), &shot).unwrap();
    b.quit().await;
}

/// The scopes paused in the ledger.
async fn paused_scopes(w: &World) -> Vec<String> {
    w.pool
        .get()
        .await
        .unwrap()
        .query(
            &format!(
                "SELECT scope FROM {}.flowfail_pause ORDER BY scope",
                w.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The act config of `w` with a listener on `port`, its `[kubernetes]` Deployment replaced by
/// two `[[deployment]]` entries, and the GitHub tracker at `tracker`.
fn fleet_config(w: &World, port: u16, tracker: &str) -> std::path::PathBuf {
    let token = w.dir.join("tracker-token");
    flowfail_testkit::write_secret(&token, &format!("{TOKEN}\n"));
    let base = std::fs::read_to_string(w.config_with("act", 1, Some(port))).unwrap();
    assert!(base.contains("deployment = \"flowengine\"\n"));
    let text = format!(
        "{}\n[tracker]\nkind = \"github\"\nurl = \"{tracker}\"\nrepo = \"example/incidents\"\ntoken = {{ file = \"{}\" }}\n\
         \n[[deployment]]\nnamespace = \"default\"\ndeployment = \"flowengine\"\ntask_filter = {{ column = \"environment\", value = \"prod\" }}\n\
         \n[[deployment]]\nnamespace = \"staging\"\ndeployment = \"flowengine\"\ntask_filter = {{ column = \"environment\", value = \"staging\" }}\n",
        base.replace("deployment = \"flowengine\"\n", ""),
        token.display()
    );
    let p = w.dir.join("fleet.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_watches_two_deployments_that_share_nothing_but_the_process() {
    let Some(w) = world("fleet").await else {
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
    seed(&w, "staging", 200, &["s-lone"]).await;
    // Staging's one failure is below every threshold: it must never be retried.
    let gh = FakeGitHub::start("example/incidents", TOKEN).await;
    let port = free_port();
    let config = fleet_config(&w, port, &gh.uri());
    let l = Listener::new(port);
    let mut p = w.run_config(&config, "fleet");

    // Prod's incident: its tasks retried and one issue filed, both Deployments in /metrics.
    until(&w, 30, "prod's tasks retried", &mut p, "fleet", || async {
        attempts(&w, "p-3").await == 1 && !gh.issues().is_empty()
    })
    .await;
    for id in ["p-0", "p-1", "p-2"] {
        assert_eq!(attempts(&w, id).await, 1, "{id}");
    }
    assert!(w.ledger.find_open(SCOPE).await.unwrap().is_some());
    let prod = r#"{deployment="default.flowengine"}"#;
    let staging = r#"{deployment="staging.flowengine"}"#;
    assert_eq!(
        l.metric(&format!("flowfail_incidents_open{prod}")).await,
        1.0
    );
    // Staging's zero is its own series, not a missing one.
    let (_, text) = l.get("/metrics").await.unwrap();
    assert!(
        text.contains("flowfail_incidents_open{deployment=\"staging.flowengine\"} 0"),
        "{text}"
    );
    assert!(
        l.metric("flowfail_passes_total{deployment=\"staging.flowengine\",kind=\"idle\"}")
            .await
            >= 1.0
    );
    until(
        &w,
        60,
        "prod's incident closed and its issue settled",
        &mut p,
        "fleet",
        || async {
            w.work_on(&["p-0", "p-1", "p-2", "p-3"], "succeeded").await;
            w.ledger.find_open(SCOPE).await.unwrap().is_none()
                && gh.issues().iter().all(|i| i.state == "closed")
        },
    )
    .await;
    assert!(w.ledger.find_open(STAGING).await.unwrap().is_none());
    assert!(w.ledger.latest_closed(STAGING).await.unwrap().is_none());
    assert_eq!(writes_in(&w, "staging"), 0);
    assert_eq!(attempts(&w, "s-lone").await, 0);
    let issues = gh.issues();
    assert_eq!(issues.len(), 1, "one issue, prod's: {issues:?}");
    assert!(
        issues[0].title.contains("default.flowengine-"),
        "{}",
        issues[0].title
    );

    // The CLI on the same config: the list covers every Deployment; an incident is found by
    // its key alone; a pause must name its Deployment.
    let cli = |args: &[&str]| {
        let out = flowfail_cmd()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, listed, err) = cli(&["incidents", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let keys: Vec<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 1, "{listed}");
    assert!(keys[0].starts_with("default.flowengine-"), "{keys:?}");
    let (code, shown, err) = cli(&["incident", &keys[0]]);
    assert_eq!(code, Some(0), "{err}");
    assert!(shown.contains(&keys[0]), "{shown}");
    let (code, _, err) = cli(&["pause", "--reason", "freeze"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("staging.flowengine"), "{err}");
    assert!(paused_scopes(&w).await.is_empty());

    // A pause must name its Deployment here; staging's leaves prod's untouched.
    let (code, said) = l
        .post(
            "/pause",
            Some(CONTROL_TOKEN),
            r#"{"reason":"freeze","by":"sre"}"#.into(),
        )
        .await;
    assert_eq!(code, 400, "{said}");
    assert!(said.contains("staging.flowengine"), "{said}");
    // Staging paused from the console in a real browser (a banner and a Pause button per
    // Deployment), or over HTTP where no browser is installed.
    match crate::webdriver::Driver::start().await {
        Some(driver) => pause_staging_in_the_console(&driver, port).await,
        None => {
            let (code, said) = l
                .post(
                    "/pause",
                    Some(CONTROL_TOKEN),
                    r#"{"reason":"staging freeze","by":"sre","deployment":"staging.flowengine"}"#
                        .into(),
                )
                .await;
            assert_eq!(code, 200, "{said}");
        }
    }
    assert_eq!(paused_scopes(&w).await, [STAGING]);
    assert_eq!(l.metric(&format!("flowfail_paused{staging}")).await, 1.0);
    let (_, text) = l.get("/metrics").await.unwrap();
    assert!(
        text.contains("flowfail_paused{deployment=\"default.flowengine\"} 0"),
        "{text}"
    );

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
        "prod's new failures retried and staging's incident open",
        &mut p,
        "fleet",
        || async {
            let mut all = w.ledger.find_open(STAGING).await.unwrap().is_some();
            for id in p_new {
                all &= attempts(&w, id).await == 1;
            }
            all
        },
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
    assert_eq!(
        l.metric(&format!("flowfail_incidents_open{staging}")).await,
        1.0
    );
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("fleet"));
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
