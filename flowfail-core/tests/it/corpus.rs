//! The labelled corpus of `testdata/corpus/sources/`: real failure messages from the SDKs,
//! HTTP clients, validators and runtimes FlowEngine meets, each with its provenance, and
//! healthy log lines that use the same words.
//!
//! Prints accuracy per source and per kind (`cargo test -p flowfail-core --test it corpus:: --
//! --nocapture`), and fails on any dangerous error — a failure the runbook must not retry classed retryable, or
//! one it retries classed not retryable — on accuracy under 97 %, and on a healthy line counted
//! as a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flowfail_core::classify::RuleSet;
use flowfail_core::{FailureKind, classify};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    source: String,
    provenance: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    line: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    expect: String,
    #[serde(default)]
    retryable: Option<bool>,
}

fn entries() -> Vec<Entry> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus/sources");
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
            assert!(!e.provenance.trim().is_empty(), "{}:{}", f.display(), i + 1);
            all.push(e);
        }
    }
    all
}

fn kind(s: &str) -> FailureKind {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .unwrap_or_else(|_| panic!("unknown kind {s:?}"))
}

/// Whether the runbook retries a failure of this kind (quota used up is marked per entry).
fn runbook_retries(k: FailureKind) -> bool {
    matches!(
        k,
        FailureKind::Timeout | FailureKind::RateLimit | FailureKind::ModelApi5xx
    )
}

#[derive(Default)]
struct Tally {
    right: u32,
    total: u32,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.right += u32::from(ok);
    }
    fn pct(&self) -> f64 {
        100.0 * f64::from(self.right) / f64::from(self.total.max(1))
    }
}

#[test]
fn the_corpus_is_classified_with_no_dangerous_error() {
    let all = entries();
    let messages: Vec<&Entry> = all.iter().filter(|e| e.expect != "none").collect();
    assert!(
        messages.len() >= 300,
        "{} labelled messages",
        messages.len()
    );
    let mut by_source: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_kind: BTreeMap<&str, Tally> = BTreeMap::new();
    let (mut misses, mut dangerous) = (Vec::new(), Vec::new());
    for e in &messages {
        let message = e
            .message
            .as_deref()
            .expect("a labelled entry has a message");
        let want = kind(&e.expect);
        let want_retry = e.retryable.unwrap_or(runbook_retries(want));
        let c = classify(message, e.status);
        let ok = c.kind == want;
        by_source.entry(&e.source).or_default().add(ok);
        by_kind.entry(&e.expect).or_default().add(ok);
        let what = format!(
            "[{}] {} -> {} by {} (want {}): {message:?}",
            e.source, e.provenance, c.kind, c.rule, e.expect
        );
        if c.retryable != want_retry {
            dangerous.push(format!(
                "retryable {} (want {want_retry}) {what}",
                c.retryable
            ));
        }
        if !ok {
            misses.push(what);
        }
    }
    let total: Tally = Tally {
        right: by_kind.values().map(|t| t.right).sum(),
        total: by_kind.values().map(|t| t.total).sum(),
    };
    println!("corpus accuracy by source:");
    for (s, t) in &by_source {
        println!("  {s:28} {:3}/{:3} {:6.1} %", t.right, t.total, t.pct());
    }
    println!("corpus accuracy by kind:");
    for (k, t) in &by_kind {
        println!("  {k:28} {:3}/{:3} {:6.1} %", t.right, t.total, t.pct());
    }
    println!(
        "corpus: {}/{} = {:.1} %, dangerous errors: {}",
        total.right,
        total.total,
        total.pct(),
        dangerous.len()
    );
    for m in &misses {
        println!("  miss: {m}");
    }
    assert!(dangerous.is_empty(), "dangerous:\n{}", dangerous.join("\n"));
    assert!(
        total.pct() >= 97.0,
        "accuracy {:.1} % < 97 %:\n{}",
        total.pct(),
        misses.join("\n")
    );
}

#[test]
fn healthy_lines_with_failure_words_are_not_failures() {
    let all = entries();
    let healthy: Vec<&str> = all
        .iter()
        .filter(|e| e.expect == "none")
        .map(|e| e.line.as_deref().expect("a healthy entry has a line"))
        .collect();
    assert!(healthy.len() >= 15);
    let log = healthy.join("\n");
    let mut found = Vec::new();
    let lines = RuleSet::builtin().classify_failures(log.as_bytes(), |i, _, c| {
        found.push(format!("{} ({})", healthy[i], c.rule));
    });
    assert_eq!(lines, healthy.len());
    assert!(
        found.is_empty(),
        "counted as failures:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_labelled_message_is_a_failure_line_when_logged_at_error() {
    // The same messages as a log: each at ERROR, between healthy lines; each counts once.
    let all = entries();
    let mut log = String::new();
    let mut want = 0;
    for e in all.iter().filter(|e| e.expect != "none") {
        let m = e
            .message
            .as_deref()
            .unwrap_or_default()
            .replace('\n', " | ");
        log.push_str(&format!(
            "2026-11-13T09:50:00Z ERROR flowengine step=llm_call {m}\n"
        ));
        log.push_str("2026-11-13T09:50:00Z INFO  flowengine dispatching to lambda timeout=45s\n");
        want += 1;
    }
    let mut n = 0;
    RuleSet::builtin().classify_failures(log.as_bytes(), |_, _, _| n += 1);
    assert_eq!(n, want);
}
