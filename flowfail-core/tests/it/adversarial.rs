//! The adversarial corpus of `testdata/corpus/adversarial/`: failure messages that echo tenant
//! input (pydantic, python jsonschema, jsonschema-rs, ajv, zod, serde, FlowEngine's own lines)
//! crossed with the words a tenant can plant in it — vendor codes, statuses, timeout phrases,
//! exception names — and genuine vendor errors that quote a prompt
//! (`scripts/adversarial-corpus.py` writes it).
//!
//! Prints accuracy per family (`cargo test -p flowfail-core --test it adversarial:: --
//! --nocapture`) and fails on any message steered: classified as anything but what it is, or a
//! validation failure retryable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flowfail_core::{FailureKind, classify};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    family: String,
    provenance: String,
    planted: String,
    message: String,
    #[serde(default)]
    status: Option<u16>,
    expect: FailureKind,
}

fn entries() -> Vec<Entry> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus/adversarial");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        for (i, l) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let e: Entry = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), i + 1));
            all.push(e);
        }
    }
    all
}

#[test]
fn no_tenant_text_steers_a_verdict() {
    let all = entries();
    assert!(all.len() >= 60, "the corpus holds {} messages", all.len());
    let mut by_family: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut steered = Vec::new();
    for e in &all {
        let c = classify(&e.message, e.status);
        // As a log line carries it: a logfmt value (one line) gives the same verdict.
        let line = format!(
            "2026-11-13T09:50:01Z ERROR flowengine task=t-1 error=\"{}\"",
            e.message.replace('\n', " | ")
        );
        let in_line = classify(&line, e.status);
        // And a JSON log line's `msg`.
        let json_line = serde_json::json!({
            "level": "error",
            "ts": "2026-11-13T09:50:01Z",
            "msg": e.message.replace('\n', " | "),
        })
        .to_string();
        let in_json = classify(&json_line, e.status);
        let ok = in_line.kind == c.kind
            && in_json.kind == c.kind
            && c.kind == e.expect
            && !(matches!(e.expect, FailureKind::Validation | FailureKind::Unknown) && c.retryable);
        let t = by_family.entry(&e.family).or_default();
        t.0 += u32::from(ok);
        t.1 += 1;
        if !ok {
            steered.push(format!(
                "[{}] {} (planted {:?}): {:?} by {}, in a log line {:?} by {}, in JSON {:?} by {} (want {:?})\n    {:?}",
                e.family,
                e.provenance,
                e.planted,
                c.kind,
                c.rule,
                in_line.kind,
                in_line.rule,
                in_json.kind,
                in_json.rule,
                e.expect,
                e.message
            ));
        }
    }
    println!("adversarial corpus: {} messages", all.len());
    for (family, (right, total)) in &by_family {
        println!(
            "  {family:<24} {right:>4}/{total:<4} {:>6.1} %",
            100.0 * f64::from(*right) / f64::from(*total)
        );
    }
    println!("  steered: {}", steered.len());
    assert!(
        steered.is_empty(),
        "{} of {} steered:\n{}",
        steered.len(),
        all.len(),
        steered.join("\n")
    );
}

/// The example, as it arrived.
#[test]
fn a_vendor_word_in_pydantic_input_is_not_a_rate_limit() {
    let m = "1 validation error for TaskObject\ntitle\n  Input should be a valid integer [type=int_parsing, input_value='rate_limit_error', input_type=str]";
    let c = classify(m, None);
    assert_eq!(
        (c.kind, c.retryable),
        (FailureKind::Validation, false),
        "{c:?}"
    );
}

/// Vendor codes count where a vendor puts them, not as bare words.
#[test]
fn a_bare_vendor_word_is_not_a_vendor_code() {
    for m in [
        "ERROR flow t-9 failed: step 'summarise' could not parse rate_limit_error from config",
        "worker w-3 lost its lease; last note: overloaded_error RESOURCE_EXHAUSTED",
    ] {
        let c = classify(m, None);
        assert!(!c.rule.starts_with("vendor_code"), "{m}: {c:?}");
    }
    // Where a vendor puts them, they still decide.
    for (m, kind) in [
        (
            "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow\"}}",
            FailureKind::RateLimit,
        ),
        (
            "An error occurred (ThrottlingException) when calling the InvokeModel operation: Too many requests",
            FailureKind::RateLimit,
        ),
        (
            "botocore.errorfactory.ModelTimeoutException: Model has timed out",
            FailureKind::Timeout,
        ),
        (
            "{\"error\":{\"code\":503,\"message\":\"busy\",\"status\":\"UNAVAILABLE\"}}",
            FailureKind::ModelApi5xx,
        ),
    ] {
        let c = classify(m, None);
        assert_eq!(c.kind, kind, "{m}: {c:?}");
        assert!(c.rule.starts_with("vendor_code"), "{m}: {c:?}");
    }
}
