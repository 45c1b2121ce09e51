//! Failure classification: which runbook branch a failed task belongs to.
//!
//! Evidence is weighed in a fixed order, strongest first:
//!
//! 1. the HTTP status the task failed with, when the TaskDB recorded one;
//! 2. the vendor's error type or code in the body (Anthropic `error.type`, OpenAI `error.code` /
//!    `error.type`, Google `error.status`, Bedrock exception names), in JSON or in an SDK's
//!    Python-repr string;
//! 3. SDK exception class names (`openai.RateLimitError`, `httpx.ReadTimeout`, …);
//! 4. an HTTP status written in the message in a recognisable place (`Error code: 502`,
//!    `HTTP 503`, a leading `429 Quota exceeded`) — never a bare number, so a priority of 429 or
//!    a latency of `500ms` is not a status;
//! 5. message patterns (Lambda timeouts, pydantic / jsonschema / serde validation errors, …).
//!
//! All patterns are compiled once. The result says whether a *blind* retry is safe: quota that
//! is exhausted (OpenAI `insufficient_quota`, spend or billing limits, which can arrive as 400)
//! is a rate limit that must not be retried blindly; validation and unknown failures are never
//! retryable.
//!
//! ```
//! use flowfail_core::{classify, FailureKind};
//! let c = classify("Task timed out after 45.00 seconds", None);
//! assert_eq!(c.kind, FailureKind::Timeout);
//! let c = classify(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, Some(529));
//! assert_eq!(c.kind, FailureKind::ModelApi5xx);
//! assert!(c.retryable);
//! ```

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::Serialize;

use crate::model::FailureKind;

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

use FailureKind::{ModelApi5xx, RateLimit, Timeout, Unknown, Validation};

/// A rule: name, verdict, pattern.
struct Rule {
    name: &'static str,
    kind: FailureKind,
    retryable: bool,
    pattern: &'static str,
}

const fn rule(
    name: &'static str,
    kind: FailureKind,
    retryable: bool,
    pattern: &'static str,
) -> Rule {
    Rule {
        name,
        kind,
        retryable,
        pattern,
    }
}

/// Quota that is used up (billing, spend limits): a rate limit that must not be retried blindly.
const QUOTA_EXHAUSTED: &str = r"(?i)insufficient_quota|exceeded your current quota|billing[ _]hard[ _]limit|billing details|spend(?:ing)? limit|specified api usage limits|usage limits|credit balance is too low|out of credits|monthly (?:spend|budget|quota)|ServiceQuotaExceeded|payment required";

/// Stage 2: vendor error types and codes, as JSON / repr values or exception names.
static VENDOR_CODES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule(
            "vendor_code:rate_limit",
            RateLimit,
            true,
            r"\b(?:rate_limit_error|rate_limit_exceeded|RESOURCE_EXHAUSTED|ThrottlingException|TooManyRequestsException|too_many_requests|tokens_exceeded)\b",
        ),
        rule(
            "vendor_code:openai_rate_limit_type",
            RateLimit,
            true,
            r#"['"]type['"]\s*:\s*['"](?:requests|tokens|input_tokens|output_tokens)['"]"#,
        ),
        rule(
            "vendor_code:timeout",
            Timeout,
            true,
            r"\b(?:DEADLINE_EXCEEDED|ModelTimeoutException|timeout_error|request_timeout)\b",
        ),
        rule(
            "vendor_code:server_error",
            ModelApi5xx,
            true,
            r"\b(?:overloaded_error|api_error|server_error|internal_server_error|service_unavailable|engine_overloaded|InternalServerException|ServiceUnavailableException|ModelNotReadyException|ModelStreamErrorException|ServiceUnavailable|InternalServerError)\b|['\x22](?:INTERNAL|UNAVAILABLE)['\x22]",
        ),
        rule(
            "vendor_code:request_error",
            Unknown,
            false,
            r"\b(?:invalid_request_error|authentication_error|permission_error|not_found_error|request_too_large|invalid_api_key|context_length_exceeded|model_not_found|AccessDeniedException|ValidationException|ResourceNotFoundException|UnrecognizedClientException|PERMISSION_DENIED|UNAUTHENTICATED|INVALID_ARGUMENT|FAILED_PRECONDITION)\b",
        ),
    ]
});

/// Stage 3: SDK exception class names.
static EXCEPTIONS: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule(
            "exception:validation",
            Validation,
            false,
            r"\b(?:pydantic(?:_core)?\.\w*ValidationError|jsonschema\.exceptions\.ValidationError|ValidationError:|SchemaError)",
        ),
        rule(
            "exception:rate_limit",
            RateLimit,
            true,
            r"\b(?:RateLimitError|ResourceExhausted|TooManyRequests|RateLimitExceeded)\b",
        ),
        rule(
            "exception:timeout",
            Timeout,
            true,
            r"\b(?:APITimeoutError|ReadTimeout|ConnectTimeout|WriteTimeout|PoolTimeout|TimeoutException|ReadTimeoutError|ConnectTimeoutError|TimeoutError|DeadlineExceeded|ETIMEDOUT|ESOCKETTIMEDOUT|socket\.timeout)\b",
        ),
        rule(
            "exception:server_error",
            ModelApi5xx,
            true,
            r"\b(?:InternalServerError|ServiceUnavailable|OverloadedError|BadGateway|GatewayTimeout|ServerError|APIStatusError: Error code: 5\d\d)\b",
        ),
        rule(
            "exception:client_error",
            Unknown,
            false,
            r"\b(?:BadRequestError|AuthenticationError|PermissionDeniedError|NotFoundError|UnprocessableEntityError|ConflictError|InvalidArgument|PermissionDenied|Unauthenticated|APIConnectionError)\b",
        ),
    ]
});

/// Stage 5: message patterns, in priority order.
static PATTERNS: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule(
            "pattern:validation",
            Validation,
            false,
            r"(?i)validation (?:error|failed)|failed (?:schema )?validation|schema validation|is not valid under|is a required property|is not one of \[|additional properties are not allowed|is not of type|failed validating|does not match '|missing field `|unknown field `|invalid type: |unknown variant `|duplicate field `|invalid value: |schema[_ ]version|schema mismatch|\[type=[a-z_]+|field required|extra fields not permitted|input should be|string should match|value is not a valid|invalid taskobject|taskobject (?:is )?invalid|eof while parsing|trailing characters at line|expected value at line|is (?:less|greater) than (?:or equal to )?the (?:minimum|maximum)|is too (?:long|short)|is not valid under any of the given schemas|should be non-empty|has non-unique elements|enumeration member",
        ),
        rule("pattern:quota_exhausted", RateLimit, false, QUOTA_EXHAUSTED),
        rule(
            "pattern:rate_limit",
            RateLimit,
            true,
            r"(?i)rate[ _-]?limit|too many requests|quota|resource[ _]exhausted|throttl|(?:requests|tokens) per (?:minute|min|second|day)|token budget|budget exhausted|concurrency limit|\b[RT]PM\b|slow ?down",
        ),
        rule(
            "pattern:gateway",
            ModelApi5xx,
            true,
            r"(?i)gateway time-?out|bad gateway|upstream (?:connect error|request timeout)|service unavailable|internal server error|server had an error|overloaded|temporarily unavailable|server error|no healthy upstream|capacity",
        ),
        rule(
            "pattern:timeout",
            Timeout,
            true,
            r"(?i)timed? ?out|time-out|timeout|deadline (?:exceeded|expired)|exceeded (?:the )?deadline|took too long|did not (?:respond|complete) (?:within|in time)|no response within",
        ),
    ]
});

/// Stage 4: HTTP statuses written in recognisable places.
static STATUS_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:error code|status(?:[ _]?code)?|http(?:/\d(?:\.\d)?)?|response code|returned|responded with|['"]code['"])\s*[:=]?\s*['"]?([1-5]\d\d)\b|^\s*(?:error:?\s*)?([1-5]\d\d)\s+[a-z]|(?-i:\w(?:Error|Exception|Exceeded|Unavailable|Exhausted|Timeout|Gateway|Found|Denied|Argument):\s*([1-5]\d\d)\s+[A-Z])|\b([1-5]\d\d)\s+(?:too many requests|service unavailable|bad gateway|gateway time-?out|internal server error|request time-?out)"#,
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

struct Stage {
    set: RegexSet,
    rules: &'static [Rule],
}

impl Stage {
    fn new(rules: &'static [Rule]) -> Self {
        let set = RegexSet::new(rules.iter().map(|r| r.pattern))
            .unwrap_or_else(|e| unreachable!("static regex set: {e}"));
        Stage { set, rules }
    }

    fn first(&self, text: &str) -> Option<&'static Rule> {
        self.set.matches(text).iter().next().map(|i| &self.rules[i])
    }
}

static VENDOR_STAGE: LazyLock<Stage> = LazyLock::new(|| Stage::new(&VENDOR_CODES));
static EXCEPTION_STAGE: LazyLock<Stage> = LazyLock::new(|| Stage::new(&EXCEPTIONS));
static PATTERN_STAGE: LazyLock<Stage> = LazyLock::new(|| Stage::new(&PATTERNS));
static QUOTA_EXHAUSTED_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(QUOTA_EXHAUSTED).unwrap_or_else(|e| unreachable!("{e}")));

/// Messages longer than this are classified on their first bytes only (evidence sits at the start).
pub const MAX_CLASSIFY_BYTES: usize = 16 * 1024;

/// Classifies one failure from its message and, when known, its HTTP status.
pub fn classify(message: &str, http_status: Option<u16>) -> Classification {
    let text = truncate_at_char(message, MAX_CLASSIFY_BYTES);

    if let Some(c) = http_status.and_then(|s| by_status(s, text, "http_status")) {
        return c;
    }
    if let Some(r) = VENDOR_STAGE.first(text) {
        return refine(r, text);
    }
    if let Some(r) = EXCEPTION_STAGE.first(text) {
        return refine(r, text);
    }
    if let Some(c) = status_in_text(text).and_then(|s| by_status(s, text, "status_in_message")) {
        return c;
    }
    if let Some(r) = PATTERN_STAGE.first(text) {
        return Classification::new(r.kind, r.retryable, r.name);
    }
    match http_status {
        Some(s) if (400..500).contains(&s) => {
            Classification::new(Unknown, false, "http_status:4xx")
        }
        _ => Classification::new(Unknown, false, "no_rule"),
    }
}

/// A rule's verdict, corrected for quota exhaustion (a rate limit that must not be retried) and
/// for vendor request errors that are really spend limits (Anthropic sends those as 400).
fn refine(r: &'static Rule, text: &str) -> Classification {
    let exhausted = QUOTA_EXHAUSTED_RE.is_match(text);
    match r.kind {
        // A deadline the vendor answered with a 504 is the vendor failing, not our timeout.
        Timeout if status_in_text(text) == Some(504) => {
            Classification::new(ModelApi5xx, true, "status_in_message:504")
        }
        RateLimit if exhausted => Classification::new(RateLimit, false, "quota_exhausted"),
        Unknown if exhausted => Classification::new(RateLimit, false, "spend_limit"),
        Unknown => {
            // A client error wrapping a schema problem of our own TaskObject is still validation.
            match PATTERN_STAGE.first(text) {
                Some(p) if p.kind == Validation && !r.name.starts_with("vendor_code") => {
                    Classification::new(Validation, false, p.name)
                }
                _ => Classification::new(Unknown, false, r.name),
            }
        }
        kind => Classification::new(kind, r.retryable, r.name),
    }
}

fn by_status(status: u16, text: &str, source: &'static str) -> Option<Classification> {
    let exhausted = || QUOTA_EXHAUSTED_RE.is_match(text);
    let c = match (status, source) {
        (429, _) if exhausted() => Classification::new(RateLimit, false, "quota_exhausted"),
        (429, "http_status") => Classification::new(RateLimit, true, "http_status:429"),
        (429, _) => Classification::new(RateLimit, true, "status_in_message:429"),
        (402, _) => Classification::new(RateLimit, false, "spend_limit"),
        (400 | 403, _) if exhausted() => Classification::new(RateLimit, false, "spend_limit"),
        (408, "http_status") => Classification::new(Timeout, true, "http_status:408"),
        (408, _) => Classification::new(Timeout, true, "status_in_message:408"),
        (500..=599, "http_status") => Classification::new(ModelApi5xx, true, "http_status:5xx"),
        (500..=599, _) => Classification::new(ModelApi5xx, true, "status_in_message:5xx"),
        // Other statuses say little on their own: let the body and the message decide.
        _ => return None,
    };
    Some(c)
}

fn status_in_text(text: &str) -> Option<u16> {
    let caps = STATUS_IN_TEXT.captures(text)?;
    (1..=4)
        .find_map(|i| caps.get(i))
        .and_then(|m| m.as_str().parse().ok())
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

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
            include_str!("../../testdata/corpus/errors-sample.jsonl"),
            include_str!("../../testdata/corpus/errors-extended.jsonl"),
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

    #[test]
    fn huge_and_odd_input_does_not_panic() {
        let big = "é".repeat(MAX_CLASSIFY_BYTES);
        assert_eq!(k(&big, None), Unknown);
        assert_eq!(k("\u{0}\u{1b}[31m429", Some(999)), Unknown);
    }
}
