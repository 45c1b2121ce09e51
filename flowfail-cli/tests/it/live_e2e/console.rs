//! Issue 25 #3: the web console in a real browser (headless Chromium over WebDriver) against
//! the real `flowfail run` on PostgreSQL and the other real peers: sign in, open the incident,
//! read the timeline and the chart, approve the held prune and see the next pass carry it out
//! on S3, and a hostile error message rendered as text. A screenshot of the incident page is
//! written to `target/screenshots/console-incident.png`.

use std::collections::BTreeMap;

use flowfail_core::IncidentStore;

use super::{CONTROL_TOKEN, Listener, TIMEOUT, free_port, terminate, until, world};
use crate::webdriver::Driver;

/// A tenant's error message that would run script if a page let it.
const HOSTILE: &str = "ValueError: <img src=x onerror=alert(1)><script>alert(2)</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_signs_in_shows_the_incident_and_approves() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let Some(w) = world("console").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let ids = ["c-0", "c-1", "c-2"];
    let mut failed: Vec<(&str, &str, Option<u16>)> =
        ids.iter().map(|i| (*i, TIMEOUT, None)).collect();
    failed.push(("c-hostile", HOSTILE, None));
    w.seed_tasks(100, &failed).await;
    for id in ids {
        w.put_bundle(id, 600_000).await;
    }
    // Prunes wait for an operator.
    let port = free_port();
    let config = w.config_with("act", 1, Some(port));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "step_timeout_s = 10\n",
        "step_timeout_s = 10\nrequire_approval = [\"prune_context\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let mut p = w.run_config(&config, "c");
    let l = Listener::new(port);
    until(
        &w,
        60,
        "a prune waiting for approval",
        &mut p,
        "c",
        || async {
            let Ok(Some(open)) = w.ledger.find_open(super::SCOPE).await else {
                return false;
            };
            let rec = w.ledger.get(&open.key).await.unwrap();
            rec.timeline
                .iter()
                .any(|e| e.kind == "proposed" && e.detail["gate"] == "prune_context")
        },
    )
    .await;
    assert!(l.get("/healthz").await.is_some());
    let key = w.ledger.find_open(super::SCOPE).await.unwrap().unwrap().key;
    for id in ids {
        assert!(
            w.object(&format!("{id}.json")).await.unwrap().len() > 180_000,
            "pruned unapproved"
        );
    }

    let base = format!("http://127.0.0.1:{port}");
    let b = driver.browser().await;
    // Not signed in: the sign-in form.
    b.goto(&format!("{base}/incidents/{key}")).await;
    assert!(b.url().await.ends_with("/login"), "{}", b.url().await);
    let name = b.wait_for("#name").await;
    b.type_into(&name, "e2e-ana").await;
    let token = b.find("#token").await;
    b.type_into(&token, CONTROL_TOKEN).await;
    let sign_in = b.find("#sign-in").await;
    b.click(&sign_in).await;
    b.wait_for("#incidents").await;
    assert_eq!(b.url().await, format!("{base}/"));
    let listed = b.find_all("#incidents tr").await.len();
    assert_eq!(listed, 2, "a header row and the incident");

    // The incident: its key, timeline rows, the chart, the hostile message as text.
    b.goto(&format!("{base}/incidents/{}", key.replace(':', "%3A")))
        .await;
    let k = b.wait_for("#key").await;
    assert_eq!(b.text(&k).await, key);
    let rows = b.find_all("#timeline tr").await;
    assert!(rows.len() >= 3, "{} timeline rows", rows.len());
    assert_eq!(b.find_all("svg#chart polyline").await.len(), 1, "no chart");
    assert!(
        b.find_all("img").await.is_empty(),
        "an element from tenant text"
    );
    assert!(
        b.find_all("body script").await.is_empty(),
        "a script from tenant text"
    );
    assert!(!b.alert_open().await, "a script ran");
    let modes = b.find("#new-failure-modes").await;
    let modes = b.text(&modes).await;
    assert!(modes.contains("<img src=x onerror=alert(1)>"), "{modes}");
    let shot = b.screenshot().await;
    assert!(shot.starts_with(b"\x89PNG"), "not a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("console-incident.png"), &shot).unwrap();

    // Approve the held prune: the next pass carries it out (S3 says so).
    let approve = b.find("#approve-prune_context").await;
    b.click(&approve).await;
    b.wait_for("#approvals").await;
    assert!(b.url().await.contains("/incidents/"), "{}", b.url().await);
    until(&w, 60, "the approved prunes on S3", &mut p, "c", || async {
        let mut all = true;
        for id in ids {
            all &= w.object(&format!("{id}.json")).await.unwrap().len() <= 180_000;
        }
        all
    })
    .await;
    let approvals = w.ledger.approvals(&key).await.unwrap();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0].by, "console:e2e-ana");
    b.goto(&format!("{base}/incidents/{}", key.replace(':', "%3A")))
        .await;
    let table = b.wait_for("#approvals").await;
    assert!(b.text(&table).await.contains("console:e2e-ana"));
    b.quit().await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("c"));
}
