//! `flowfail respond` on a 250-task incident: the human timeline groups repeated per-task
//! actions and fits on a screen; `--verbose` shows every action on a line of its own, as the
//! JSON report (and the post-incident timeline) has them.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::support::flowfail_cmd;

fn flowfail(args: &[&str]) -> Output {
    flowfail_cmd().args(args).output().unwrap()
}

/// A bad deploy: 250 tasks failing with an error no rule knows, every third failing its first
/// retry too (so there are second attempts at several times), and a rollback that helps.
fn bad_deploy_250(dir: &Path) -> PathBuf {
    let tasks: Vec<Value> = (0..250)
        .map(|i| {
            let flow_type = ["plan", "impl", "review", "docs"][i % 4];
            json!({
                "task_id": format!("t-{i:05}"),
                "flow_type": flow_type,
                "status": "failed",
                "error_message": "KeyError: 'context_refs'",
                "created_at": format!("2025-11-13T09:{:02}:00Z", 59 - i % 15),
                "on_retry": if i % 3 == 0 { json!(["failed", "succeeded"]) } else { json!(["succeeded"]) },
            })
        })
        .collect();
    let scenario = json!({
        "name": "bad-deploy-250",
        "now": "2025-11-13T10:00:00Z",
        "deployment": {
            "name": "flowengine",
            "revision": 8,
            "deployed_at": "2025-11-13T09:40:00Z",
            "env": {"ENABLE_CIRCUIT_BREAKER": "false"},
            "history": [{"revision": 7, "deployed_at": "2025-11-11T09:40:00Z"}]
        },
        "tasks": tasks,
        "volume": {"succeeded": 700},
        "bundles": {},
        "quota": {"used_ratio": 0.35},
        "vendors": {"anthropic": "operational", "openai": "operational"},
        "primary_vendor": "anthropic"
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("bad-deploy-250.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&scenario).unwrap()).unwrap();
    path
}

fn stdout_of(args: &[&str]) -> String {
    let out = flowfail(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn timeline_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("  2025-")).collect()
}

#[test]
fn a_250_task_incident_fits_on_a_screen_and_verbose_shows_every_action() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("respond_timeline");
    let path = bad_deploy_250(&dir);
    let path = path.to_str().unwrap();

    let report: Value =
        serde_json::from_str(&stdout_of(&["respond", "--scenario", path, "--json"])).unwrap();
    let actions = report["actions"].as_array().unwrap();
    let retries = actions.iter().filter(|a| a["kind"] == "retry_task").count();
    assert!(
        retries >= 250 + 80,
        "{retries} retries: the scenario changed"
    );
    let timeline_len = report["post_incident"]["timeline"]
        .as_array()
        .unwrap()
        .len();

    let text = stdout_of(&["respond", "--scenario", path]);
    let lines = text.lines().count();
    assert!(lines <= 60, "{lines} lines:\n{text}");
    assert!(
        text.contains("retry_task 250 tasks (unknown), attempt 1 — applied: t-00000…t-00249\n"),
        "{text}"
    );
    assert!(
        text.contains("rollback flowengine revision 8 -> 7 [applied]"),
        "{text}"
    );
    // Pages are never grouped.
    let pages = actions.iter().filter(|a| a["kind"] == "page").count();
    assert_eq!(
        timeline_lines(&text)
            .iter()
            .filter(|l| l.contains(" page "))
            .count(),
        pages
    );

    let verbose = stdout_of(&["respond", "--scenario", path, "--verbose"]);
    let v_lines = timeline_lines(&verbose);
    assert_eq!(v_lines.len(), timeline_len, "{verbose}");
    assert_eq!(
        v_lines
            .iter()
            .filter(|l| l.contains("  retry_task t-"))
            .count(),
        retries,
        "{verbose}"
    );
    assert!(verbose.lines().count() > 250 + 80);
}

#[test]
fn verbose_is_for_the_human_timeline_only() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("respond_timeline_flags");
    let path = bad_deploy_250(&dir);
    let out = flowfail(&[
        "respond",
        "--scenario",
        path.to_str().unwrap(),
        "--json",
        "--verbose",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
