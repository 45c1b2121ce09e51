//! An incident's passes read a bundle's size once per attempt of its task: a bundle already
//! measured is not read again every pass; one whose task was retried (a new attempt) is.

use flowfail_core::replay::{ReplayOptions, Scenario, replay};

use crate::support::paused;

#[test]
fn a_bundle_is_measured_once_per_attempt_not_once_per_pass() {
    // Five timeouts with small bundles (retried, not pruned) that keep failing, and an alert
    // that keeps firing: many passes between retries.
    let tasks: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "task_id": format!("t-{i}"), "flow_type": "impl", "status": "failed",
                "error_message": "Task timed out after 45.00 seconds",
                "created_at": "2026-11-13T09:55:00Z",
                "on_retry": ["failed", "failed", "failed"]
            })
        })
        .collect();
    let bundles: serde_json::Map<String, serde_json::Value> = (0..5)
        .map(|i| (format!("t-{i}"), serde_json::json!({"size_bytes": 100_000})))
        .collect();
    let sc = Scenario::from_json(
        &serde_json::json!({
            "name": "slow timeouts", "now": "2026-11-13T10:00:00Z", "max_virtual_s": 600,
            "policy": {"poll_interval_s": 5, "retry_base_delay_s": 60, "retry_max_delay_s": 120},
            "deployment": {"revision": 3, "deployed_at": "2026-11-01T00:00:00Z"},
            "tasks": tasks, "bundles": bundles,
            "volume": {"succeeded": 500, "failed": 40},
            "quota": {"used_ratio": 0.2},
            "vendors": {"anthropic": "operational", "openai": "operational"}
        })
        .to_string(),
    )
    .unwrap();
    let (report, world) = paused(replay(&sc, &ReplayOptions::default())).unwrap();
    let retries = report
        .actions
        .iter()
        .filter(|a| a.action.kind() == "retry_task")
        .count();
    let heads = world.bundles.calls().of("bundle.head").len();
    eprintln!(
        "{heads} bundle heads, {retries} retries, {} passes",
        report.passes
    );
    assert!(report.passes >= 20, "{} passes", report.passes);
    // One read per attempt of each task (the first, then one after each retry), not one a pass.
    assert!(
        heads <= 5 + retries,
        "{heads} heads for 5 bundles, {retries} retries, over {} passes",
        report.passes
    );
    assert!(heads >= 5, "{heads}");
}
