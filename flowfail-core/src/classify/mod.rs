//! Failure classification: which runbook branch a failed task belongs to.
//!
//! Evidence is weighed in a fixed order, strongest first. Before any of it, **echoed tenant
//! input is masked** ([`mask_echoes`]): pydantic's `input_value=…`, a schema validator's quoted
//! instance (`'…' is not one of […]`, python-jsonschema's `On instance[…]:` block), ajv's
//! `(value: …)`, zod's `received '…'`, serde's `string "…"` / `` variant `…` ``, and the quoted
//! values after FlowEngine's `validation failed:` — what a tenant wrote is never evidence.
//!
//! 1. **validation evidence**: a validation exception class (pydantic, jsonschema, zod),
//!    pydantic's `N validation errors for`, schema-validator and FlowEngine validation lines.
//!    It decides — no vendor code, exception name or status elsewhere in the message overrules
//!    it — unless a vendor's own error (a vendor code where a vendor puts it, or an exception
//!    class) starts *before* it: then the message is the vendor's error quoting a prompt;
//! 2. the HTTP status the task failed with, when the TaskDB recorded one;
//! 3. the vendor's error type or code **where a vendor puts it**: the value of a `type` / `code`
//!    / `status` field of a JSON or Python-dict body (Anthropic `error.type`, OpenAI
//!    `error.code` / `error.type`, Google `error.status`), botocore's `An error occurred (Code)`,
//!    or an SDK exception class starting a line — never a bare word; for this stage the values
//!    of every other field (a vendor's `message` included) are masked too;
//! 4. SDK exception class names (`openai.RateLimitError`, `httpx.ReadTimeout`, …);
//! 5. an HTTP status written in the message in a recognisable place (`Error code: 502`,
//!    `HTTP 503`, a leading `429 Quota exceeded`, `upstream returned 503`) — never a bare
//!    number, so a priority of 429 or a latency of `500ms` is not a status;
//! 6. message patterns (Lambda timeouts, serde validation errors, prose, …).
//!
//! Quota used up (a rate limit never retried blindly) is read from a vendor's body with the
//! quotes inside its values masked: a prompt that says `insufficient_quota` is not quota.
//! Outage evidence is stricter still: see [`server_failure`].
//!
//! The rules of stages 1 and 3–6 are data: a TOML rule file compiled into the binary
//! ([`BUILTIN_RULES`]), to which users add their own ([`RuleSet::with_extra`]); see
//! [`RuleSet`] for the file format. All patterns are compiled once. The result says whether a
//! *blind* retry is safe: quota that is exhausted (OpenAI `insufficient_quota`, spend or billing
//! limits, which can arrive as 400) is a rate limit that must not be retried blindly; validation
//! and unknown failures are never retryable, whatever a user's rule says.
//!
//! ```
//! use flowfail_core::{classify, FailureKind};
//! let c = classify("Task timed out after 45.00 seconds", None);
//! assert_eq!(c.kind, FailureKind::Timeout);
//! let c = classify(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, Some(529));
//! assert_eq!(c.kind, FailureKind::ModelApi5xx);
//! assert!(c.retryable);
//! ```
//!
//! Logs are read by [`classify_failures`]: only failure lines (ERROR / FATAL / CRITICAL, in
//! plain and JSON logs, and exceptions with their tracebacks) are classified; [`classify_lines`]
//! classifies every line.

mod explain;
mod failures;
mod lines;
mod mask;
mod ruleset;
mod server;
mod stages;

use std::sync::{Arc, LazyLock};

use serde::Serialize;

use crate::model::FailureKind;

pub use explain::{Explanation, Step};
pub use failures::{find_failures, record_boundary, record_boundary_before};
pub use ruleset::{BUILTIN_RULES, RuleSet};
pub use server::server_failure;

/// The message with every echo of tenant input (pydantic's `input_value=…`, a schema
/// validator's quoted instance, ajv's `(value: …)`, zod's `received …`, serde's quoted values,
/// the quoted values after FlowEngine's `validation failed:`) replaced by `x`s, byte for byte:
/// what every stage of the classification reads.
///
/// ```
/// use flowfail_core::classify::mask_echoes;
/// let m = mask_echoes("'rate_limit_error' is not one of ['plan', 'impl']");
/// assert_eq!(m, "'xxxxxxxxxxxxxxxx' is not one of ['plan', 'impl']");
/// ```
pub fn mask_echoes(message: &str) -> std::borrow::Cow<'_, str> {
    mask::mask_echoes(message)
}

use stages::truncate_at_char;

/// The verdict on one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Classification {
    /// The runbook branch.
    pub kind: FailureKind,
    /// Whether retrying the task unchanged can help.
    pub retryable: bool,
    /// The rule that decided, for the report (`http_status:429`, `vendor_code:overloaded_error`, …).
    pub rule: &'static str,
}

impl Classification {
    const fn new(kind: FailureKind, retryable: bool, rule: &'static str) -> Self {
        Classification {
            kind,
            retryable,
            rule,
        }
    }
}

/// Messages longer than this are classified on their first bytes only (evidence sits at the start).
pub const MAX_CLASSIFY_BYTES: usize = 16 * 1024;

static BUILTIN: LazyLock<Arc<RuleSet>> = LazyLock::new(|| Arc::new(RuleSet::builtin_uncached()));

/// Classifies one failure from its message and, when known, its HTTP status, with the built-in
/// rules ([`RuleSet::builtin`]; a [`RuleSet`] of users' rules classifies with
/// [`RuleSet::classify`], and a responder with the rules it was built with).
pub fn classify(message: &str, http_status: Option<u16>) -> Classification {
    RuleSet::builtin().classify(message, http_status)
}

/// Classifies every line of a log (lines end with `\n`; a trailing `\r` is dropped), calling
/// `each` once per line, in order, with the line and what [`classify`] says of it with no HTTP
/// status. A final line without `\n` counts; an empty input has no lines.
///
/// The result for every line is exactly `classify(line, None)` (invalid UTF-8 is read lossily),
/// but lines without any evidence are found with one scan of the whole buffer instead of being
/// classified one at a time: on a typical log, where few lines are errors, this runs at
/// memory-scan speed. See [`RuleSet::classify_lines`].
///
/// ```
/// use flowfail_core::{classify_lines, FailureKind};
/// let log = b"INFO all good\nERROR Task timed out after 45.00 seconds\nINFO done\n";
/// let mut kinds = Vec::new();
/// classify_lines(log, |_line, c| kinds.push(c.kind));
/// assert_eq!(kinds, [FailureKind::Unknown, FailureKind::Timeout, FailureKind::Unknown]);
/// ```
pub fn classify_lines(log: &[u8], each: impl FnMut(&[u8], Classification)) {
    RuleSet::builtin().classify_lines(log, each);
}

/// Classifies the failures of a log only, with the built-in rules; returns the number of lines
/// read. See [`RuleSet::classify_failures`].
///
/// ```
/// use flowfail_core::{classify_failures, FailureKind};
/// let log = b"INFO dispatching to lambda timeout=45s\nERROR Task timed out after 45.00 seconds\n";
/// let mut found = Vec::new();
/// let lines = classify_failures(log, |line_index, _text, c| found.push((line_index, c.kind)));
/// assert_eq!(lines, 2);
/// assert_eq!(found, [(1, FailureKind::Timeout)]);
/// ```
pub fn classify_failures(log: &[u8], each: impl FnMut(usize, &[u8], Classification)) -> usize {
    RuleSet::builtin().classify_failures(log, each)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::{ModelApi5xx, RateLimit, Timeout, Unknown, Validation};

    fn k(m: &str, s: Option<u16>) -> FailureKind {
        classify(m, s).kind
    }

    #[derive(serde::Deserialize)]
    struct Labelled {
        message: String,
        #[serde(default)]
        status: Option<u16>,
        expect: FailureKind,
    }

    #[test]
    fn labelled_corpus_is_classified_correctly() {
        let corpus = [
            include_str!("../../../testdata/corpus/errors-sample.jsonl"),
            include_str!("../../../testdata/corpus/errors-extended.jsonl"),
        ]
        .concat();
        let mut wrong = Vec::new();
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let l: Labelled = serde_json::from_str(line).unwrap();
            let c = classify(&l.message, l.status);
            if c.kind != l.expect {
                wrong.push(format!(
                    "{:?} -> {:?} by {} (want {:?})",
                    l.message, c.kind, c.rule, l.expect
                ));
            }
            if matches!(l.expect, Validation | Unknown) {
                assert!(!c.retryable, "{}", l.message);
            }
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn vendor_formats() {
        let cases: &[(&str, Option<u16>, FailureKind, bool)] = &[
            // Anthropic
            (
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit"}}"#,
                Some(429),
                RateLimit,
                true,
            ),
            (
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                None,
                ModelApi5xx,
                true,
            ),
            (
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2025-12-01"}}"#,
                Some(400),
                RateLimit,
                false,
            ),
            (
                r#"anthropic.BadRequestError: Error code: 400 - {'type': 'error', 'error': {'type': 'invalid_request_error', 'message': 'Your credit balance is too low to access the Anthropic API.'}}"#,
                None,
                RateLimit,
                false,
            ),
            (
                "anthropic.InternalServerError: Error code: 500 - {'type': 'error', 'error': {'type': 'api_error', 'message': 'Internal server error'}}",
                None,
                ModelApi5xx,
                true,
            ),
            (
                "anthropic.APIStatusError: Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}",
                None,
                ModelApi5xx,
                true,
            ),
            (
                "anthropic.APITimeoutError: Request timed out.",
                None,
                Timeout,
                true,
            ),
            (
                "anthropic.AuthenticationError: Error code: 401 - {'type': 'error', 'error': {'type': 'authentication_error', 'message': 'invalid x-api-key'}}",
                None,
                Unknown,
                false,
            ),
            // OpenAI
            (
                "openai.RateLimitError: Error code: 429 - {'error': {'message': 'You exceeded your current quota, please check your plan and billing details.', 'type': 'insufficient_quota', 'param': None, 'code': 'insufficient_quota'}}",
                None,
                RateLimit,
                false,
            ),
            (
                r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
                Some(500),
                ModelApi5xx,
                true,
            ),
            (
                "openai.APIStatusError: Error code: 504 - Gateway Timeout",
                None,
                ModelApi5xx,
                true,
            ),
            (
                "openai.APITimeoutError: Request timed out.",
                None,
                Timeout,
                true,
            ),
            (
                "openai.APIConnectionError: Connection error.",
                None,
                Unknown,
                false,
            ),
            // Google
            (
                r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
                None,
                RateLimit,
                true,
            ),
            (
                r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
                None,
                ModelApi5xx,
                true,
            ),
            (
                "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for aiplatform.googleapis.com",
                None,
                RateLimit,
                true,
            ),
            (
                "google.api_core.exceptions.InternalServerError: 500 Internal error encountered.",
                None,
                ModelApi5xx,
                true,
            ),
            (
                "google.api_core.exceptions.DeadlineExceeded: 504 Deadline Exceeded",
                None,
                ModelApi5xx,
                true,
            ),
            (
                "google.api_core.exceptions.DeadlineExceeded: Deadline of 60.0s exceeded",
                None,
                Timeout,
                true,
            ),
            (
                "google.api_core.exceptions.InvalidArgument: 400 Request contains an invalid argument.",
                None,
                Unknown,
                false,
            ),
            // Bedrock
            (
                "botocore.errorfactory.ThrottlingException: An error occurred (ThrottlingException) when calling the InvokeModel operation (reached max retries: 4): Too many requests, please wait before trying again.",
                None,
                RateLimit,
                true,
            ),
            (
                "An error occurred (ServiceUnavailableException) when calling the InvokeModel operation: Bedrock is unable to process your request.",
                None,
                ModelApi5xx,
                true,
            ),
            (
                "An error occurred (ModelTimeoutException) when calling the InvokeModel operation: Model has timed out in processing the request.",
                None,
                Timeout,
                true,
            ),
            (
                "An error occurred (AccessDeniedException) when calling the InvokeModel operation: You don't have access to the model",
                None,
                Unknown,
                false,
            ),
            // Lambda and HTTP clients
            (
                "2025-11-13T09:50:00.000Z 1f0c Task timed out after 45.00 seconds",
                None,
                Timeout,
                true,
            ),
            (
                "REPORT RequestId: 1f0c Duration: 45000.00 ms Status: timeout",
                None,
                Timeout,
                true,
            ),
            (
                "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.anthropic.com', port=443): Read timed out. (read timeout=45)",
                None,
                Timeout,
                true,
            ),
            (
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                None,
                Timeout,
                true,
            ),
            (
                "error sending request: operation timed out",
                None,
                Timeout,
                true,
            ),
            // Validation
            (
                "jsonschema.exceptions.ValidationError: 'inputs' is a required property",
                None,
                Validation,
                false,
            ),
            (
                "2 validation errors for TaskObject\ninputs.repo_url\n  Field required [type=missing, input_value={}, input_type=dict]",
                None,
                Validation,
                false,
            ),
            (
                "invalid type: integer `3`, expected a string at line 1 column 20",
                None,
                Validation,
                false,
            ),
            (
                "unknown variant `refactor`, expected one of `plan`, `impl`, `review`, `docs`",
                None,
                Validation,
                false,
            ),
            // Traps
            (
                "ERROR t-9 KeyError: 'context_refs' (priority 429)",
                None,
                Unknown,
                false,
            ),
            (
                "step finished in 500ms then failed: IndexError",
                None,
                Unknown,
                false,
            ),
            ("502 Bad Gateway", None, ModelApi5xx, true),
            ("upstream returned HTTP 503", None, ModelApi5xx, true),
            ("Forbidden", Some(403), Unknown, false),
            ("", None, Unknown, false),
        ];
        for (m, s, kind, retryable) in cases {
            let c = classify(m, *s);
            assert_eq!(
                (c.kind, c.retryable),
                (*kind, *retryable),
                "{m} (rule {})",
                c.rule
            );
        }
    }

    /// The reference: split, strip `\r`, classify each line on its own.
    fn one_by_one(log: &[u8]) -> Vec<(Vec<u8>, Classification)> {
        let mut lines: Vec<&[u8]> = log.split(|b| *b == b'\n').collect();
        if log.is_empty() || log.ends_with(b"\n") {
            lines.pop();
        }
        lines
            .into_iter()
            .map(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                (l.to_vec(), classify(&String::from_utf8_lossy(l), None))
            })
            .collect()
    }

    /// Both scanning paths, which must agree; the prefiltered one is what `classify_lines` uses.
    fn scanned(log: &[u8]) -> Vec<(Vec<u8>, Classification)> {
        let mut v = Vec::new();
        classify_lines(log, |l, c| v.push((l.to_vec(), c)));
        let mut w = Vec::new();
        let rules = RuleSet::builtin();
        let evidence = rules.evidence_regex().unwrap();
        rules.classify_lines_scanned(evidence, log, &mut |l, c| w.push((l.to_vec(), c)));
        assert_eq!(v, w, "prefiltered and full scans disagree");
        v
    }

    #[test]
    fn a_failure_scan_builds_only_what_it_uses() {
        // Classifying ASCII failures needs the ASCII set alone: the Unicode set, the evidence
        // regex and the prefilter (most of the start-up time) wait for their first use.
        let rules = RuleSet::builtin_uncached();
        let log = b"2026-11-13T09:50:00Z INFO ok\n2026-11-13T09:50:01Z ERROR Error code: 429\n";
        let mut kinds = Vec::new();
        rules.classify_failures(log, |_, _, c| kinds.push(c.kind));
        assert_eq!(kinds, [FailureKind::RateLimit]);
        assert_eq!(rules.lazy_parts_built(), (false, false, false));
        // A non-ASCII message builds the Unicode set; a scan of every line the prefilter (its
        // hits are checked with the ASCII set); only a scan without a prefilter needs the union.
        rules.classify("délai dépassé: request timed out", None);
        assert_eq!(rules.lazy_parts_built(), (true, false, false));
        // The status rules' Unicode forms too, when a status rule matches such a message.
        let c = rules.classify("échec: upstream returned 503", None);
        assert_eq!(
            (c.kind, c.rule),
            (FailureKind::ModelApi5xx, "status_in_message:5xx")
        );
        rules.classify_lines(log, |_, _| {});
        assert_eq!(rules.lazy_parts_built(), (true, false, true));
        // A set with users' rules builds everything while it loads (errors surface then).
        let user = RuleSet::with_extra_toml([(
            "extra.toml",
            "[[rule]]\nname = \"x:y\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step budget spent'\n",
        )])
        .unwrap();
        assert_eq!(user.lazy_parts_built(), (true, true, true));
    }

    #[test]
    fn the_rules_allow_a_sound_prefilter() {
        // Every part built on first use builds for the built-in rules.
        RuleSet::builtin_uncached().build_all().unwrap();
        assert!(
            RuleSet::builtin().prefilter().is_some(),
            "no needles could be derived from the rules"
        );
    }

    fn corpus_messages() -> Vec<String> {
        [
            include_str!("../../../testdata/corpus/errors-sample.jsonl"),
            include_str!("../../../testdata/corpus/errors-extended.jsonl"),
        ]
        .iter()
        .flat_map(|c| c.lines())
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["message"].as_str().unwrap().to_owned()
        })
        .collect()
    }

    #[test]
    fn scanning_a_log_agrees_with_classifying_each_line() {
        let mut log = String::new();
        for (i, m) in corpus_messages().iter().enumerate() {
            log.push_str(&format!(
                "2026-11-13T09:50:{:02}Z INFO step ok latency_ms=500\n",
                i % 60
            ));
            log.push_str(&format!("2026-11-13T09:50:{:02}Z ERROR {m}\r\n", i % 60));
            log.push_str("WARN priority 429, 500ms\n\n");
        }
        log.push_str("503 Service Unavailable"); // no final newline
        let want = one_by_one(log.as_bytes());
        assert!(want.iter().filter(|(_, c)| c.rule != "no_rule").count() > 60);
        assert_eq!(scanned(log.as_bytes()), want);
        assert!(scanned(b"").is_empty());
        assert_eq!(scanned(b"\n").len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn scanning_agrees_on_arbitrary_logs(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(corpus_messages()),
                    // Case must not matter to the scan where it does not matter to the rules.
                    proptest::sample::select(
                        corpus_messages()
                            .iter()
                            .flat_map(|m| [m.to_uppercase(), m.to_lowercase()])
                            .collect::<Vec<_>>()
                    ),
                    "[ -~]{0,40}",
                    "\\PC{0,12}",
                    proptest::sample::select(vec![
                        "\n".to_owned(), "\r\n".to_owned(), "\n\n".to_owned(), " ".to_owned(),
                        "K".to_owned(), "\u{212A}".to_owned(), "é".to_owned(), "ſ".to_owned(),
                        "429 ".to_owned(), "Error code: ".to_owned(), "status".to_owned(),
                        "timed out".to_owned(), "RateLimitError".to_owned(),
                    ]),
                ],
                0..24,
            ),
            invalid_utf8 in proptest::bool::ANY,
        ) {
            let mut log = parts.concat().into_bytes();
            if invalid_utf8 && !log.is_empty() {
                let at = log.len() / 2;
                log.insert(at, 0xff);
            }
            proptest::prop_assert_eq!(scanned(&log), one_by_one(&log));
        }
    }

    #[test]
    fn huge_and_odd_input_does_not_panic() {
        let big = "é".repeat(MAX_CLASSIFY_BYTES);
        assert_eq!(k(&big, None), Unknown);
        assert_eq!(k("\u{0}\u{1b}[31m429", Some(999)), Unknown);
    }
}
