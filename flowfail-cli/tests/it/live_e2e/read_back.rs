//! Issue 25: a shadow run, then an acting run, on PostgreSQL, read back with the real
//! `flowfail incidents` and `flowfail incident KEY`: what flowfail would have done, then what
//! it did, with every reason for not acting the ledger's decisions give. The peers say what
//! happened (bundles in S3, attempts in PostgreSQL); the commands must agree with them.

use std::process::Output;

use flowfail_core::IncidentStore;

use super::{terminate, timeout_world, until};
use crate::support::flowfail_cmd;

fn cli(args: &[&str], config: &std::path::Path) -> Output {
    flowfail_cmd()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The reasons for not acting in the decisions of a ledger timeline.
fn skip_reasons(rec: &flowfail_core::IncidentRecord) -> Vec<String> {
    let mut out: Vec<String> = rec
        .timeline
        .iter()
        .filter(|e| e.kind == "decision")
        .flat_map(|e| e.detail["skipped"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["reason"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_run_then_an_act_run_read_back_as_would_have_then_did() {
    let ids = ["rb-0", "rb-1", "rb-2"];
    let Some((w, originals)) = timeout_world("readback", ids).await else {
        return;
    };
    let config = w.config("act");

    // Shadow: decisions recorded, nothing changed.
    let mut s = w.run_with(&config, "s", &["--shadow"]);
    until(&w, 60, "shadow decisions", &mut s, "s", || async {
        let Ok(Some(open)) = w
            .ledger
            .find_open(&format!("{}:shadow", super::SCOPE))
            .await
        else {
            return false;
        };
        let rec = w.ledger.get(&open.key).await.unwrap();
        rec.timeline.iter().filter(|e| e.kind == "action").count() >= 6
            && rec.timeline.iter().any(|e| e.kind == "decision")
    })
    .await;
    assert_eq!(terminate(&mut s).code(), Some(0), "{}", w.log("s"));
    for (id, original) in ids.iter().zip(&originals) {
        assert_eq!(&w.object(&format!("{id}.json")).await.unwrap(), original);
        assert_eq!(w.task(id).await.attempts, 0);
    }
    let shadow = w
        .ledger
        .find_open(&format!("{}:shadow", super::SCOPE))
        .await
        .unwrap()
        .unwrap();
    let shadow = w.ledger.get(&shadow.key).await.unwrap();

    // Act, with JSON logs: resolved on the peers.
    let mut a = w.run_with(&config, "a", &["--log-format", "json"]);
    until(
        &w,
        90,
        "the acting incident closed",
        &mut a,
        "a",
        || async {
            w.work().await;
            !w.closed().await.is_empty() && !w.open_incident().await
        },
    )
    .await;
    assert_eq!(terminate(&mut a).code(), Some(0), "{}", w.log("a"));
    let acted = w.ledger.latest_closed(super::SCOPE).await.unwrap().unwrap();
    let acted = w.ledger.get(&acted.key).await.unwrap();
    for id in ids {
        assert_eq!(w.task(id).await.attempts, 1, "{id} not retried once");
        assert!(w.object(&format!("{id}.json")).await.unwrap().len() <= 180_000);
    }

    // The listing: both, newest first, each in its mode; applied counts the peers' changes.
    let o = cli(&["incidents", "--json"], &config);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let line = |key: &str| lines.iter().find(|l| l["key"] == key).unwrap().clone();
    let (ls, la) = (line(&shadow.key), line(&acted.key));
    assert_eq!(
        (ls["mode"].as_str(), ls["status"].as_str()),
        (Some("shadow"), Some("open"))
    );
    assert_eq!(
        (la["mode"].as_str(), la["status"].as_str()),
        (Some("act"), Some("resolved"))
    );
    assert_eq!(ls["applied"], 0);
    assert!(ls["decided"].as_u64().unwrap() >= 6, "{ls}");
    // Three prunes and three retries reached the peers.
    assert!(la["applied"].as_u64().unwrap() >= 6, "{la}");
    assert!(la["mttr_seconds"].as_i64().is_some());
    let o = cli(&["incidents", "--open", "--json"], &config);
    let open: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(open.len(), 1, "{open:?}");
    let o = cli(&["incidents", "--since", "1h"], &config);
    assert_eq!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(t.contains(&shadow.key) && t.contains(&acted.key), "{t}");

    // The shadow record: "would have", every action a dry run, every reason given.
    let o = cli(&["incident", &shadow.key], &config);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("would have") && t.contains("dry run"), "{t}");
    assert!(!t.contains("[applied]"), "{t}");
    for r in skip_reasons(&shadow) {
        assert!(t.contains(&r), "{r:?} missing:\n{t}");
    }
    // The acting record: "did", the prunes and retries applied, every reason given.
    let o = cli(&["incident", &acted.key], &config);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("mode: act — what flowfail did"), "{t}");
    assert!(t.contains("prune_context") && t.contains("applied"), "{t}");
    for r in skip_reasons(&acted) {
        assert!(t.contains(&r), "{r:?} missing:\n{t}");
    }
    let o = cli(&["incident", &acted.key, "--markdown"], &config);
    let md = text(&o);
    assert!(md.starts_with("# Post-incident review: "), "{md}");
    assert!(
        md.contains("- **Mode:** act") && md.contains("- **Status:** resolved"),
        "{md}"
    );
    let o = cli(&["incident", &acted.key, "--json"], &config);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mode"], "act");
    assert!(!v["decisions"].as_array().unwrap().is_empty());
    assert!(!v["rates"].as_array().unwrap().is_empty());

    // A "no" to an action this config does not hold for approval is refused (exit 2): it
    // would be recorded and change nothing. Nothing is written.
    let o = cli(
        &["deny", &acted.key, "rollback", "--reason", "not now"],
        &config,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not held for approval"), "{}", text(&o));
    assert!(w.ledger.approvals(&acted.key).await.unwrap().is_empty());

    // Unknown and hostile keys: exit 1, nothing raw echoed.
    for key in ["flowengine-19990101T0000Z", "../../x\u{1b}[31mred\u{7}"] {
        let o = cli(&["incident", key], &config);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(!text(&o).contains('\u{1b}'), "{}", text(&o));
    }

    // The log names what each action touched: task ids, sizes, outcome.
    let log = w.log("a");
    let prunes: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "action" && v["fields"]["action"] == "prune_context")
        .collect();
    assert!(!prunes.is_empty(), "{log}");
    for p in &prunes {
        let f = &p["fields"];
        assert!(f["tasks"].as_str().unwrap().contains("rb-"), "{p}");
        assert!(f["from_bytes"].as_u64().unwrap() >= 600_000, "{p}");
        assert!(
            f["outcome"].is_string() && f["count"].as_u64().unwrap() >= 1,
            "{p}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("\"action\":\"retry_task\"") && l.contains("\"attempt\":1")),
        "{log}"
    );
}
