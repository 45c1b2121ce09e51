//! Tenant text must not steer decisions: the replays behind issue-style reports of a
//! tenant whose TaskObjects echo vendor words (`input_value='rate_limit_error'`) into their
//! validation errors.

use flowfail_core::FailureKind;
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail_core::report::{ActionFields, Outcome, Report};
use serde_json::json;

fn pydantic_echo(word: &str) -> String {
    format!(
        "1 validation error for TaskObject\ntitle\n  Input should be a valid integer [type=int_parsing, input_value='{word}', input_type=str]"
    )
}

fn tasks(n: usize, first: usize, message: &str, minutes_ago_max: i64) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let ago = 1 + (i as i64 % minutes_ago_max.max(1));
            json!({
                "task_id": format!("t-{:05}", first + i),
                "flow_type": "plan",
                "status": "failed",
                "error_message": message,
                "created_at": format!("2025-11-13T{:02}:{:02}:00Z", 9 + (60 - ago) / 60, (60 - ago) % 60),
            })
        })
        .collect()
}

/// A world at 10:00 with the revision deployed at `deployed_at` (revision 7 before it), these
/// failed tasks and `succeeded` more, quota at 35 %, both vendors green.
fn world(
    name: &str,
    deployed_at: &str,
    tasks: Vec<serde_json::Value>,
    succeeded: u64,
) -> serde_json::Value {
    let before = if deployed_at.starts_with("2025-11-13") {
        "2025-11-11T09:40:00Z"
    } else {
        "2025-10-20T09:40:00Z"
    };
    json!({
        "name": name,
        "now": "2025-11-13T10:00:00Z",
        "deployment": {
            "name": "flowengine", "revision": 8, "deployed_at": deployed_at,
            "env": {"ENABLE_CIRCUIT_BREAKER": "false"},
            "history": [{"revision": 7, "deployed_at": before}]
        },
        "tasks": tasks,
        "volume": {"succeeded": succeeded},
        "logs": [], "bundles": {},
        "quota": {"used_ratio": 0.35},
        "vendors": {"anthropic": "operational", "openai": "operational"},
        "primary_vendor": "anthropic"
    })
}

fn run(scenario: serde_json::Value) -> Report {
    let sc = Scenario::from_json(&scenario.to_string()).unwrap();
    replay_blocking(&sc, &ReplayOptions::default()).unwrap().0
}

fn applied<'r>(r: &'r Report, kind: &str) -> Vec<&'r ActionFields> {
    r.actions
        .iter()
        .filter(|a| a.action.kind() == kind && a.outcome == Outcome::Applied)
        .map(|a| &a.action)
        .collect()
}

/// 150 invalid TaskObjects whose titles say `rate_limit_error` (or `overloaded_error` with 529),
/// out of 1,650 tasks: no breaker, no fallback, no retry, nobody but on-call paged, no
/// stakeholder told of an outage.
#[test]
fn vendor_words_in_invalid_input_change_nothing_in_the_world() {
    for word in [
        "rate_limit_error",
        "overloaded_error Error code: 529",
        "RESOURCE_EXHAUSTED",
    ] {
        let r = run(world(
            "tenant-echo",
            "2025-11-01T09:40:00Z",
            tasks(150, 0, &pydantic_echo(word), 55),
            1500,
        ));
        assert!(r.alert.firing, "{word}");
        assert_eq!(r.classification[&FailureKind::Validation], 150, "{word}");
        assert!(
            applied(&r, "set_env").is_empty(),
            "{word}: {:?}",
            applied(&r, "set_env")
        );
        assert!(applied(&r, "retry_task").is_empty(), "{word}");
        assert!(applied(&r, "notify").is_empty(), "{word}");
        assert!(applied(&r, "rollback").is_empty(), "{word}");
        for p in applied(&r, "page") {
            assert!(
                matches!(p, ActionFields::Page { target, .. } if target == "on_call"),
                "{word}: {p:?}"
            );
        }
    }
}

/// 310 such failures beside a real bad deploy: the deploy's own failures still roll it back
/// (they are not "a vendor problem").
#[test]
fn vendor_words_in_invalid_input_do_not_hide_a_bad_deploy() {
    let mut all = tasks(400, 0, "KeyError: 'context_refs'", 19);
    all.extend(tasks(310, 400, &pydantic_echo("rate_limit_error"), 19));
    let r = run(world(
        "tenant-echo-bad-deploy",
        "2025-11-13T09:40:00Z",
        all,
        700,
    ));
    assert_eq!(
        r.classification
            .get(&FailureKind::RateLimit)
            .copied()
            .unwrap_or(0),
        0
    );
    let rollbacks = applied(&r, "rollback");
    assert!(
        matches!(
            rollbacks.as_slice(),
            [ActionFields::Rollback {
                from_revision: 8,
                to_revision: 7,
                ..
            }]
        ),
        "{:?}",
        r.not_taken
    );
    assert!(applied(&r, "set_env").is_empty());
}

/// A vendor's observed 5xx rate is outage evidence only from server statuses and server errors
/// at the head of a message: 200 failures that merely say `overloaded` (with a vendor's name in
/// them) do not route traffic away from a vendor whose status page is green.
#[test]
fn words_are_not_outage_evidence() {
    let r = run(world(
        "words-not-outage",
        "2025-11-01T09:40:00Z",
        tasks(
            200,
            0,
            "step 'summarise' for claude failed: the downstream cache is overloaded",
            55,
        ),
        1450,
    ));
    assert_eq!(r.classification[&FailureKind::ModelApi5xx], 200);
    assert!(
        applied(&r, "set_env").is_empty(),
        "{:?}",
        applied(&r, "set_env")
    );
    // The same failures with the vendor's server status recorded are outage evidence.
    let mut with_status = tasks(
        200,
        0,
        "step 'summarise' for claude failed: the downstream cache is overloaded",
        55,
    );
    for t in &mut with_status {
        t["http_status"] = json!(529);
    }
    let r = run(world(
        "status-is-outage",
        "2025-11-01T09:40:00Z",
        with_status,
        1450,
    ));
    assert!(
        applied(&r, "set_env")
            .iter()
            .any(|a| matches!(a, ActionFields::SetEnv { name, .. } if name == "FALLBACK_MODEL")),
        "{:?}",
        r.actions
    );
}
