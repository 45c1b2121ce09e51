//! The `flowfail` binary, end to end.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::support::{flowfail_cmd, repo, run_with_stdin};

fn flowfail(args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(flowfail_cmd().args(args), stdin).0
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flowfail-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn classify_labels_the_corpus_one_line_per_input() {
    let corpus = std::fs::read(repo().join("testdata/corpus/errors-sample.jsonl")).unwrap();
    let out = flowfail(&["classify"], &corpus);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inputs: Vec<Value> = corpus
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let outputs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(inputs.len(), outputs.len());
    for (i, o) in inputs.iter().zip(&outputs) {
        assert_eq!(o["kind"], i["expect"], "{}", i["message"]);
        assert!(o["retryable"].is_boolean() && o["rule"].is_string());
    }
}

#[test]
fn classify_reports_malformed_lines_in_place_and_fails_at_the_end() {
    let input = b"{\"message\": \"Task timed out after 45.00 seconds\"}\nnot json\n{\"status\": 500}\n\xff\xfe\n{\"message\": \"x\", \"status\": 429, \"extra\": [1]}\n";
    let out = flowfail(&["classify"], input);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["kind"], "timeout");
    assert!(lines[1]["error"].is_string());
    assert!(lines[2]["error"].is_string(), "message is required");
    assert!(lines[3]["error"].is_string());
    assert_eq!(lines[4]["kind"], "rate_limit");
}

#[test]
fn classify_plain_takes_raw_lines() {
    let out = flowfail(
        &["classify", "--plain", "--all-lines"],
        b"502 Bad Gateway\nIndexError: list index out of range\n",
    );
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<Value> = s
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("model_api_5xx"), json!("unknown")]);
}

#[test]
fn classify_plain_classifies_failure_lines_only() {
    let log = b"2026-11-13T09:50:00Z INFO dispatching to lambda flowengine-impl timeout=45s\n\
2026-11-13T09:50:01Z INFO vendor answered 429 earlier, rate ok\n\
2026-11-13T09:50:02Z ERROR flow=impl task=t-1 Task timed out after 45.00 seconds\n\
{\"level\":\"error\",\"msg\":\"openai.RateLimitError: Error code: 429\"}\n\
{\"level\":\"info\",\"msg\":\"upstream returned 503 yesterday\"}\n\
2026-11-13T09:50:03Z ERROR flow=impl task=t-2 KeyError: 'context_refs'\n";
    let out = flowfail(&["classify", "--plain"], log);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(u64, &str)> = lines
        .iter()
        .map(|v| (v["line"].as_u64().unwrap(), v["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(3, "timeout"), (4, "rate_limit"), (6, "unknown")]);

    let out = flowfail(&["classify", "--plain", "--count"], log);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lines"], 6);
    assert_eq!(v["failure_lines"], 3);
    assert_eq!(
        v["by_kind"],
        json!({"timeout": 1, "rate_limit": 1, "unknown": 1})
    );
    assert_eq!(v["by_rule"]["exception:programming_error"], 1, "{v}");
    assert!(v["by_rule"].get("no_rule").is_none(), "{v}");

    // Every line, as before: the healthy lines count too.
    let out = flowfail(&["classify", "--plain", "--all-lines", "--count"], log);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lines"], 6);
    assert!(v.get("failure_lines").is_none());
    assert_eq!(v["by_kind"]["timeout"], 2, "{v}");
}

#[test]
fn classify_explain_says_which_stage_decided_and_why_earlier_ones_did_not() {
    let out = flowfail(
        &["classify", "--explain"],
        br#"{"message": "upstream returned 503 while calling the model"}"#,
    );
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "model_api_5xx");
    let steps: Vec<(&str, &str)> = v["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(steps[0], ("validation", "no rule matched"));
    assert_eq!(steps[1], ("http_status", "no HTTP status given"));
    assert_eq!(steps[2], ("vendor_code", "no rule matched"));
    assert_eq!(steps[3], ("exception", "no rule matched"));
    assert_eq!(steps[4].0, "status_in_message");
    assert!(steps[4].1.starts_with("decided: status 503"), "{steps:?}");
    assert_eq!(steps.len(), 5);

    // Echoed tenant input is masked before any stage, and the explanation says so.
    let out = flowfail(
        &["classify", "--explain"],
        br#"{"message": "1 validation error for TaskObject\ntitle\n  Input should be a valid integer [type=int_parsing, input_value='rate_limit_error', input_type=str]"}"#,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["kind"], &v["retryable"]),
        (&Value::from("validation"), &Value::from(false)),
        "{v}"
    );
    assert_eq!(v["explain"][0]["stage"], "mask", "{v}");
    assert_eq!(v["explain"][1]["stage"], "validation", "{v}");

    let out = flowfail(
        &["classify", "--plain", "--explain"],
        b"INFO ok\nERROR Task timed out after 45.00 seconds\n",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["line"], 2);
    assert_eq!(
        v["explain"].as_array().unwrap().last().unwrap()["stage"],
        "pattern"
    );

    let out = flowfail(&["classify", "--explain", "--count"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn classify_takes_users_rule_files_and_refuses_bad_ones() {
    let dir = temp_dir("classify-rules");
    let good = dir.join("flowengine.toml");
    std::fs::write(
        &good,
        "[[rule]]\nname = \"flowengine:step_budget\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step budget of \\d+s spent'\n",
    )
    .unwrap();
    let input = br#"{"message": "step budget of 45s spent"}"#;
    let builtin = flowfail(&["classify"], input);
    let v: Value = serde_json::from_slice(&builtin.stdout).unwrap();
    assert_eq!(v["kind"], "unknown");
    let extended = flowfail(&["classify", "--rules", good.to_str().unwrap()], input);
    assert!(extended.status.success());
    let v: Value = serde_json::from_slice(&extended.stdout).unwrap();
    assert_eq!(
        (&v["kind"], &v["rule"]),
        (&json!("timeout"), &json!("flowengine:step_budget"))
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"flowengine:broken\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step (budget'\n",
    )
    .unwrap();
    let out = flowfail(&["classify", "--rules", bad.to_str().unwrap()], input);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("flowengine:broken"), "{err}");
    assert!(err.contains("column 6"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn classify_plain_count_of_a_file_matches_the_lines_from_stdin() {
    let dir = temp_dir("classify-count");
    let mut log = Vec::new();
    for i in 0..20_000 {
        log.extend_from_slice(match i % 5 {
            0 => b"2026-11-13T09:50:00Z ERROR Task timed out after 45.00 seconds\n".as_slice(),
            1 => b"2026-11-13T09:50:00Z ERROR {\"error\":{\"type\":\"overloaded_error\"}}\r\n",
            2 => "2026-11-13T09:50:00Z WARN caf\u{e9} slow, priority 429\n".as_bytes(),
            _ => b"2026-11-13T09:50:00Z INFO step ok latency_ms=500\n",
        });
    }
    log.extend_from_slice(b"no final newline: 503 Service Unavailable");
    let path = dir.join("flowengine.log");
    std::fs::write(&path, &log).unwrap();

    let per_line = flowfail(&["classify", "--plain", "--all-lines"], &log);
    assert!(per_line.status.success());
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for l in String::from_utf8(per_line.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        *want
            .entry(v["rule"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let counted = flowfail(
        &[
            "classify",
            "--plain",
            "--all-lines",
            "--count",
            path.to_str().unwrap(),
        ],
        b"",
    );
    assert!(counted.status.success());
    let v: Value = serde_json::from_slice(&counted.stdout).unwrap();
    assert_eq!(v["lines"], 20_001);
    assert_eq!(v["by_kind"]["timeout"], 4000);
    assert_eq!(v["by_kind"]["model_api_5xx"], 4001);
    let got: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(v["by_rule"].clone()).unwrap();
    assert_eq!(got, want);

    let missing = flowfail(&["classify", "--plain", "--count", "/nonexistent/log"], b"");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/log"));
}

#[test]
fn validate_refuses_a_huge_file_unread_and_goes_on() {
    let dir = temp_dir("validate-huge");
    let huge = dir.join("huge.json");
    std::fs::write(&huge, vec![b' '; 17 << 20]).unwrap();
    let ok = dir.join("ok.json");
    std::fs::write(
        &ok,
        br#"{"schema_version": "2.0.0", "task_id": "t-1", "flow_type": "impl",
            "created_at": "2025-11-13T09:00:00Z",
            "inputs": {"repo_url": "https://example.com/r.git", "instructions": "x"}}"#,
    )
    .unwrap();
    let out = flowfail(
        &["validate", huge.to_str().unwrap(), ok.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["valid"], false);
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a TaskObject")
    );
    assert_eq!(lines[1]["valid"], true);
}

fn chat_bundle() -> Vec<u8> {
    let msgs: Vec<Value> = (0..3000)
        .map(|i| json!({"role": "user", "content": format!("turn {i} {}", "z".repeat(200))}))
        .collect();
    serde_json::to_vec(&json!({"task": {"task_id": "t-9", "note": "keep me"}, "meta": {"owner": "sre"}, "messages": msgs})).unwrap()
}

#[test]
fn prune_fits_the_budget_keeps_pins_and_is_idempotent() {
    let input = chat_bundle();
    let out = flowfail(&["prune", "--max-size", "180KB", "--keep", "/meta"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() <= 180_000 && out.stdout.len() >= 162_000,
        "{}",
        out.stdout.len()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["meta"], json!({"owner": "sre"}));
    assert_eq!(v["task"]["note"], "keep me");
    assert!(
        v["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("turn 2999 ")
    );
    let manifest: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(manifest["budget"], 180_000);
    let again = flowfail(
        &["prune", "--max-size", "180KB", "--keep", "/meta"],
        &out.stdout,
    );
    assert_eq!(again.stdout, out.stdout, "idempotent");
}

#[test]
fn prune_refuses_bad_input_with_nothing_on_stdout() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    // Exit 1 (the input was checked and found wanting, never 101: a panic) and the reason.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            b"{\"messages\": [\"a\", \"b\"".to_vec(),
            "invalid JSON: unexpected end of input",
        ),
        (
            "deep",
            deep.into_bytes(),
            "input is nested deeper than 10000 levels",
        ),
        (
            "invalid utf-8",
            b"{\"a\": \"\xc3\x28\"}".to_vec(),
            "input is not valid UTF-8 (at byte 7)",
        ),
        (
            "empty",
            Vec::new(),
            "invalid JSON: unexpected end of input at byte 0",
        ),
        (
            "pinned too large",
            serde_json::to_vec(&json!({"task": "x".repeat(300_000)})).unwrap(),
            "cannot prune to 180000 bytes: the pinned content alone needs",
        ),
    ];
    for (name, input, message) in cases {
        let out = flowfail(&["prune", "--max-size", "180KB"], &input);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}: stdout must be empty");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("flowfail: invalid_input in prune: ") && err.contains(message),
            "{name}: {err}"
        );
    }
    // A bad flag value is a usage error: exit 2, naming the flag and the value.
    let bad_size = flowfail(&["prune", "--max-size", "lots"], b"{}");
    assert_eq!(bad_size.status.code(), Some(2));
    assert!(bad_size.stdout.is_empty());
    let err = String::from_utf8_lossy(&bad_size.stderr);
    assert!(
        err.contains("invalid value 'lots' for '--max-size <MAX_SIZE>'"),
        "{err}"
    );
}

#[test]
fn prune_context_archives_then_replaces() {
    let dir = temp_dir("prune-context");
    let original = chat_bundle();
    std::fs::write(dir.join("t-9.json"), &original).unwrap();
    let out = flowfail(
        &[
            "prune-context",
            "--task-id",
            "t-9",
            "--max-size",
            "180KB",
            "--bundle-dir",
            dir.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["outcome"], "pruned");
    let sum = r["archive_sha256"].as_str().unwrap();
    let archived = std::fs::read(dir.join("archive").join(format!("t-9.{sum}.json"))).unwrap();
    assert_eq!(archived, original, "the original is archived byte for byte");
    let live = std::fs::read(dir.join("t-9.json")).unwrap();
    assert!(live.len() <= 180_000);
    // Again: already within budget, nothing changes.
    let out = flowfail(
        &[
            "prune-context",
            "--task-id",
            "t-9",
            "--max-size",
            "180KB",
            "--bundle-dir",
            dir.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["outcome"],
        "already_within_budget"
    );
    // Hostile ids never reach the filesystem.
    for bad in ["../t-9", "t-9/../../etc", "t 9", ""] {
        let out = flowfail(
            &[
                "prune-context",
                "--task-id",
                bad,
                "--max-size",
                "180KB",
                "--bundle-dir",
                dir.to_str().unwrap(),
            ],
            b"",
        );
        // A usage error (exit 2) naming the flag and the pattern, before any path is built.
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("flowfail: --task-id: invalid_input: invalid task id {bad:?}: must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$")),
            "{bad:?}: {err}"
        );
    }
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["archive", "t-9.json"], "nothing else was written");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn validate_reports_pointers_and_mismatches() {
    let dir = temp_dir("validate");
    let good = json!({"schema_version": "2.0.0", "task_id": "t-1", "flow_type": "docs", "created_at": "2025-11-13T09:00:00Z",
        "inputs": {"repo_url": "https://example.com/r.git", "instructions": "x"}});
    let mut bad = good.clone();
    bad["flow_type"] = json!("refactor");
    std::fs::write(dir.join("good.json"), good.to_string()).unwrap();
    std::fs::write(dir.join("bad.json"), bad.to_string()).unwrap();
    std::fs::write(dir.join("broken.json"), "{").unwrap();
    let files: Vec<String> = ["good.json", "bad.json", "broken.json"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = flowfail(&args, b"");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["valid"], true);
    assert_eq!(lines[1]["valid"], false);
    assert_eq!(lines[1]["errors"][0]["pointer"], "/flow_type");
    assert_eq!(lines[2]["valid"], false);
    let _ = std::fs::remove_dir_all(dir);
}

fn respond(path: &Path) -> Value {
    let out = flowfail(
        &["respond", "--scenario", path.to_str().unwrap(), "--json"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn actions<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["outcome"] == "applied")
        .collect()
}

#[test]
fn respond_replays_the_four_scenarios_as_json() {
    let dir = repo().join("testdata/scenarios");
    let pilot = respond(&dir.join("pilot-timeout.json"));
    assert_eq!(actions(&pilot, "prune_context").len(), 3);
    assert!(
        actions(&pilot, "prune_context")
            .iter()
            .all(|a| a["to_bytes"].as_u64().unwrap() <= 180_000)
    );
    assert_eq!(pilot["resolved"], true);
    let rl = respond(&dir.join("rate-limit.json"));
    assert_eq!(actions(&rl, "set_env").len(), 1);
    let outage = respond(&dir.join("vendor-outage.json"));
    let targets: Vec<&Value> = actions(&outage, "page")
        .iter()
        .map(|a| &a["target"])
        .collect();
    assert_eq!(targets.len(), 2);
    // Stakeholders: the outage, then its end.
    assert_eq!(actions(&outage, "notify").len(), 2);
    let bad = respond(&dir.join("bad-deploy.json"));
    let rb = actions(&bad, "rollback");
    assert_eq!(rb.len(), 1);
    assert_eq!(
        (
            rb[0]["from_revision"].as_u64(),
            rb[0]["to_revision"].as_u64()
        ),
        (Some(8), Some(7))
    );
}

#[test]
fn respond_handles_the_other_branches() {
    let dir = repo().join("testdata/scenarios/extra");
    let r = respond(&dir.join("timeout-small-bundle.json"));
    assert!(actions(&r, "prune_context").is_empty());
    assert!(!actions(&r, "retry_task").is_empty());
    let r = respond(&dir.join("rate-limit-quota-unknown.json"));
    assert!(
        actions(&r, "set_env").is_empty(),
        "unknown quota flips nothing"
    );
    assert!(
        r["not_taken"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["reason"].as_str().unwrap().contains("quota unknown"))
    );
    let r = respond(&dir.join("rate-limit-critical.json"));
    assert!(
        actions(&r, "page")
            .iter()
            .any(|p| p["target"] == "on_call" && p["reason"] == "quota_critical")
    );
    let r = respond(&dir.join("validation.json"));
    assert!(
        actions(&r, "retry_task").is_empty(),
        "validation is never retried"
    );
    let all = r["findings"].as_array().unwrap();
    let findings: Vec<&serde_json::Value> =
        all.iter().filter(|f| f["kind"] == "validation").collect();
    assert_eq!(findings.len(), 20);
    // And one schema-version mismatch for the incident, naming the versions.
    assert_eq!(
        all.iter()
            .filter(|f| f["kind"] == "schema_version_mismatch")
            .count(),
        1
    );
    assert!(
        findings
            .iter()
            .any(|f| f["details"]["schema"]["errors"][0]["pointer"] == "/flow_type")
    );
    assert!(
        findings
            .iter()
            .any(|f| f["details"]["schema"]["version_mismatch"].is_string())
    );
    let r = respond(&dir.join("outage-no-healthy-fallback.json"));
    assert!(
        actions(&r, "set_env")
            .iter()
            .any(|a| a["name"] == "MANUAL_REVIEW_MODE" && a["value"] == "true")
    );
    assert!(
        !actions(&r, "set_env")
            .iter()
            .any(|a| a["name"] == "FALLBACK_MODEL")
    );
    let r = respond(&dir.join("outage-status-unknown.json"));
    assert!(
        actions(&r, "set_env").is_empty(),
        "unknown status is not an outage"
    );
    for f in ["bad-deploy-no-history.json", "bad-deploy-old.json"] {
        let r = respond(&dir.join(f));
        assert!(actions(&r, "rollback").is_empty(), "{f}");
        assert!(!actions(&r, "page").is_empty(), "{f}");
    }
    let r = respond(&dir.join("bad-deploy-rollback-does-not-help.json"));
    assert_eq!(actions(&r, "rollback").len(), 1);
    assert!(
        actions(&r, "page")
            .iter()
            .any(|p| p["reason"] == "failures_persist_after_rollback")
    );
    assert_eq!(r["escalated"], true);
    for f in ["below-threshold.json", "below-min-sample.json"] {
        let r = respond(&dir.join(f));
        assert_eq!(r["alert"]["firing"], false, "{f}");
        assert!(r["actions"].as_array().unwrap().is_empty(), "{f}");
    }
    let r = respond(&dir.join("mixed.json"));
    assert_eq!(actions(&r, "prune_context").len(), 1);
    assert_eq!(r["resolved"], true);
}

#[test]
fn respond_rejects_bad_scenarios_cleanly() {
    let dir = temp_dir("bad-scenario");
    for (name, body, message) in [
        (
            "truncated.json",
            "{\"now\": \"2025-11-13T10:00:00Z\"",
            "invalid_input: invalid scenario: EOF while parsing an object",
        ),
        (
            "hostile-id.json",
            r#"{"now": "2025-11-13T10:00:00Z", "deployment": {"revision": 1}, "tasks": [{"task_id": "../../etc", "flow_type": "plan", "status": "failed", "created_at": "2025-11-13T10:00:00Z"}]}"#,
            "invalid_input: invalid scenario: invalid_input: invalid task id \"../../etc\"",
        ),
        (
            "bad-status.json",
            r#"{"now": "2025-11-13T10:00:00Z", "deployment": {"revision": 1}, "vendors": {"anthropic": "on fire"}}"#,
            "invalid_input: unknown vendor status \"on fire\"",
        ),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let out = flowfail(
            &["respond", "--scenario", p.to_str().unwrap(), "--json"],
            b"",
        );
        // An invalid scenario: exit 1 (never 101, a panic), the file and the reason.
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("flowfail: {}: {message}", p.display())),
            "{name}: {err}"
        );
    }
    // An unreadable scenario file: an I/O error, exit 2.
    let missing = dir.join("missing.json");
    let out = flowfail(
        &["respond", "--scenario", missing.to_str().unwrap(), "--json"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("flowfail: reading {}: ", missing.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
