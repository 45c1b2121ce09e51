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
use crate::prefilter::Prefilter;

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
const STATUS_IN_TEXT_PATTERN: &str = r#"(?i)(?:error code|status(?:[ _]?code)?|http(?:/\d(?:\.\d)?)?|response code|returned|responded with|['"]code['"])\s*[:=]?\s*['"]?([1-5]\d\d)\b|^\s*(?:error:?\s*)?([1-5]\d\d)\s+[a-z]|(?-i:\w(?:Error|Exception|Exceeded|Unavailable|Exhausted|Timeout|Gateway|Found|Denied|Argument):\s*([1-5]\d\d)\s+[A-Z])|\b([1-5]\d\d)\s+(?:too many requests|service unavailable|bad gateway|gateway time-?out|internal server error|request time-?out)"#;

static STATUS_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(STATUS_IN_TEXT_PATTERN).unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// Every rule of stages 2, 3 and 5 and the stage-4 status pattern in one set, so that a message
/// is read once: the stages are then answered from which members matched, in stage order.
///
/// The set is compiled twice: as written, and with Unicode off for ASCII messages (most of
/// them), where `\b`, `\w`, `\d`, `\s` and `(?i)` mean the same and the automaton is far
/// smaller.
struct Rules {
    unicode: RegexSet,
    ascii: regex::bytes::RegexSet,
    ascii_status: regex::bytes::Regex,
    /// `set` index ranges of the stages.
    vendor: std::ops::Range<usize>,
    exceptions: std::ops::Range<usize>,
    patterns: std::ops::Range<usize>,
    status: usize,
    quota_exhausted: usize,
}

/// Every pattern of stages 2, 3 and 5, then the stage-4 status pattern: the order of the
/// members of [`Rules`]' sets, and what the log scan's evidence regex and needles cover.
fn all_patterns() -> Vec<&'static str> {
    VENDOR_CODES
        .iter()
        .chain(EXCEPTIONS.iter())
        .chain(PATTERNS.iter())
        .map(|r| r.pattern)
        .chain([STATUS_IN_TEXT_PATTERN])
        .collect()
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let all = all_patterns();
    // The evidence is kept as a bit set.
    const _: () = assert!(usize::BITS >= 64);
    let unicode = RegexSet::new(&all).unwrap_or_else(|e| unreachable!("static regex set: {e}"));
    let ascii = regex::bytes::RegexSetBuilder::new(&all)
        .unicode(false)
        .build()
        .unwrap_or_else(|e| unreachable!("static regex set: {e}"));
    let ascii_status = regex::bytes::RegexBuilder::new(STATUS_IN_TEXT_PATTERN)
        .unicode(false)
        .build()
        .unwrap_or_else(|e| unreachable!("static regex: {e}"));
    let (v, e, p) = (VENDOR_CODES.len(), EXCEPTIONS.len(), PATTERNS.len());
    assert!(v + e + p < 64, "evidence bit set too small");
    let quota_exhausted = v
        + e
        + PATTERNS
            .iter()
            .position(|r| r.pattern == QUOTA_EXHAUSTED)
            .unwrap_or_else(|| unreachable!("the quota-exhausted rule is a pattern rule"));
    Rules {
        unicode,
        ascii,
        ascii_status,
        vendor: 0..v,
        exceptions: v..v + e,
        patterns: v + e..v + e + p,
        status: v + e + p,
        quota_exhausted,
    }
});

/// Which rules matched one message.
struct Evidence<'t> {
    text: &'t str,
    /// Read with the ASCII build of the rules.
    ascii: bool,
    /// Bit `i` set: member `i` of the rule set matched.
    hits: u64,
}

impl<'t> Evidence<'t> {
    fn read(text: &'t str) -> Self {
        let ascii = text.is_ascii();
        let hits = if ascii {
            RULES
                .ascii
                .matches(text.as_bytes())
                .iter()
                .fold(0, |h, i| h | 1 << i)
        } else {
            RULES
                .unicode
                .matches(text)
                .iter()
                .fold(0, |h, i| h | 1 << i)
        };
        Evidence { text, ascii, hits }
    }

    fn matched(&self, i: usize) -> bool {
        self.hits & (1 << i) != 0
    }

    /// The first rule of a stage that matched.
    fn first(
        &self,
        stage: &std::ops::Range<usize>,
        rules: &'static [Rule],
    ) -> Option<&'static Rule> {
        stage
            .clone()
            .find(|i| self.matched(*i))
            .map(|i| &rules[i - stage.start])
    }

    fn exhausted(&self) -> bool {
        self.matched(RULES.quota_exhausted)
    }

    fn status_in_text(&self) -> Option<u16> {
        if !self.matched(RULES.status) {
            return None;
        }
        let digits = if self.ascii {
            let caps = RULES.ascii_status.captures(self.text.as_bytes())?;
            (1..=4).find_map(|i| caps.get(i)).map(|m| m.as_bytes())?
        } else {
            let caps = STATUS_IN_TEXT.captures(self.text)?;
            (1..=4)
                .find_map(|i| caps.get(i))
                .map(|m| m.as_str().as_bytes())?
        };
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

/// Messages longer than this are classified on their first bytes only (evidence sits at the start).
pub const MAX_CLASSIFY_BYTES: usize = 16 * 1024;

/// Classifies one failure from its message and, when known, its HTTP status.
pub fn classify(message: &str, http_status: Option<u16>) -> Classification {
    let text = truncate_at_char(message, MAX_CLASSIFY_BYTES);
    let ev = Evidence::read(text);

    if let Some(c) = http_status.and_then(|s| by_status(s, &ev, "http_status")) {
        return c;
    }
    if let Some(r) = ev.first(&RULES.vendor, &VENDOR_CODES) {
        return refine(r, &ev);
    }
    if let Some(r) = ev.first(&RULES.exceptions, &EXCEPTIONS) {
        return refine(r, &ev);
    }
    if let Some(c) = ev
        .status_in_text()
        .and_then(|s| by_status(s, &ev, "status_in_message"))
    {
        return c;
    }
    if let Some(r) = ev.first(&RULES.patterns, &PATTERNS) {
        return Classification::new(r.kind, r.retryable, r.name);
    }
    match http_status {
        Some(s) if (400..500).contains(&s) => {
            Classification::new(Unknown, false, "http_status:4xx")
        }
        _ => Classification::new(Unknown, false, "no_rule"),
    }
}

/// Every pattern of every stage in one ASCII, multi-line regex: a line on which it finds nothing
/// has no evidence for any rule, so [`classify`] would answer `no_rule` for it.
///
/// On ASCII text the ASCII forms of `\b`, `\w`, `\d`, `\s` and `(?i)` mean exactly what the
/// Unicode forms mean, so the union is exact there; lines with other bytes are always classified
/// in full. Matches that run past the end of a line only cost a full classification of that line.
static EVIDENCE: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    let union = all_patterns()
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    regex::bytes::RegexBuilder::new(&union)
        .unicode(false)
        .multi_line(true)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .unwrap_or_else(|e| unreachable!("static evidence regex: {e}"))
});

/// Classifies every line of a log (lines end with `\n`; a trailing `\r` is dropped), calling
/// `each` once per line, in order, with the line and what [`classify`] says of it with no HTTP
/// status. A final line without `\n` counts; an empty input has no lines.
///
/// The result for every line is exactly `classify(line, None)` (invalid UTF-8 is read lossily),
/// but lines without any evidence are found with one scan of the whole buffer instead of being
/// classified one at a time: on a typical log, where few lines are errors, this runs at
/// memory-scan speed.
///
/// ```
/// use flowfail_core::{classify_lines, FailureKind};
/// let log = b"INFO all good\nERROR Task timed out after 45.00 seconds\nINFO done\n";
/// let mut kinds = Vec::new();
/// classify_lines(log, |_line, c| kinds.push(c.kind));
/// assert_eq!(kinds, [FailureKind::Unknown, FailureKind::Timeout, FailureKind::Unknown]);
/// ```
pub fn classify_lines(log: &[u8], mut each: impl FnMut(&[u8], Classification)) {
    match &*PREFILTER {
        Some(p) => classify_lines_prefiltered(p, log, &mut each),
        None => classify_lines_scanned(log, &mut each),
    }
}

/// The needles of every rule, for [`classify_lines`]; `None` if the rules ever stop allowing
/// a sound one (a test makes sure they do not).
pub(crate) static PREFILTER: LazyLock<Option<Prefilter>> =
    LazyLock::new(|| Prefilter::build(&all_patterns()));

const QUIET: Classification = Classification::new(Unknown, false, "no_rule");

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// `classify` of one raw line (`\r` already stripped), read lossily when not UTF-8.
fn classify_raw(line: &[u8]) -> Classification {
    match std::str::from_utf8(line) {
        Ok(text) => classify(text, None),
        Err(_) => classify(&String::from_utf8_lossy(line), None),
    }
}

/// The lines of `text` (a final line needs no `\n`), as (start, end) without the `\n`.
fn lines_of(text: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let last = (!text.is_empty() && !text.ends_with(b"\n")).then_some(text.len());
    let mut start = 0;
    memchr::memchr_iter(b'\n', text)
        .chain(last)
        .map(move |end| {
            let line = (start, end);
            start = end + 1;
            line
        })
}

/// Blocks of about 64 KiB of whole lines are lowercased into a scratch buffer and searched for
/// the needles; a line with a needle is checked with the full evidence regex, a line without
/// only against the line-anchored rules, a non-ASCII line is classified in full.
fn classify_lines_prefiltered(
    p: &Prefilter,
    log: &[u8],
    each: &mut dyn FnMut(&[u8], Classification),
) {
    const BLOCK: usize = 64 << 10;
    let mut lowered = Vec::with_capacity(BLOCK + 1024);
    let mut candidates = Vec::new();
    let mut pos = 0;
    while pos < log.len() {
        let cut = (pos + BLOCK).min(log.len());
        let end = memchr::memchr(b'\n', &log[cut..]).map_or(log.len(), |i| cut + i + 1);
        let block = &log[pos..end];
        lowered.clear();
        lowered.extend_from_slice(block);
        lowered.make_ascii_lowercase();
        candidates.clear();
        p.candidate_lines(&lowered, |start| candidates.push(start));
        let mut next = candidates.iter().copied().peekable();
        for (s, e) in lines_of(block) {
            let line = strip_cr(&block[s..e]);
            let candidate = next.next_if_eq(&s).is_some();
            let c = if !line.is_ascii() {
                classify_raw(line)
            } else if (candidate && EVIDENCE.is_match(line)) || p.anchored_match(line) {
                classify(
                    std::str::from_utf8(line).unwrap_or_else(|_| unreachable!("ASCII")),
                    None,
                )
            } else {
                QUIET
            };
            each(line, c);
        }
        pos = end;
    }
}

/// Without needles: the whole evidence regex finds the next line worth classifying.
fn classify_lines_scanned(log: &[u8], each: &mut dyn FnMut(&[u8], Classification)) {
    let line_end =
        |from: usize| memchr::memchr(b'\n', &log[from..]).map_or(log.len(), |i| from + i);
    let mut pos = 0;
    while pos < log.len() {
        // The first line, from `pos` on, where some rule may match.
        let hit = EVIDENCE.find_at(log, pos).map(|m| {
            let start = m.start();
            memchr::memrchr(b'\n', &log[pos..start]).map_or(pos, |i| pos + i + 1)
        });
        let quiet_end = hit.unwrap_or(log.len());
        // Lines before it have no evidence, unless they hold non-ASCII text.
        let quiet = &log[pos..quiet_end];
        let all_ascii = quiet.is_ascii();
        for (s, e) in lines_of(quiet) {
            let line = strip_cr(&quiet[s..e]);
            if all_ascii || line.is_ascii() {
                each(line, QUIET);
            } else {
                each(line, classify_raw(line));
            }
        }
        match hit {
            Some(start) => {
                let end = line_end(start);
                let line = strip_cr(&log[start..end]);
                each(line, classify_raw(line));
                pos = end + 1;
            }
            None => break,
        }
    }
}

/// A rule's verdict, corrected for quota exhaustion (a rate limit that must not be retried) and
/// for vendor request errors that are really spend limits (Anthropic sends those as 400).
fn refine(r: &'static Rule, ev: &Evidence<'_>) -> Classification {
    let exhausted = ev.exhausted();
    match r.kind {
        // A deadline the vendor answered with a 504 is the vendor failing, not our timeout.
        Timeout if ev.status_in_text() == Some(504) => {
            Classification::new(ModelApi5xx, true, "status_in_message:504")
        }
        RateLimit if exhausted => Classification::new(RateLimit, false, "quota_exhausted"),
        Unknown if exhausted => Classification::new(RateLimit, false, "spend_limit"),
        Unknown => {
            // A client error wrapping a schema problem of our own TaskObject is still validation.
            match ev.first(&RULES.patterns, &PATTERNS) {
                Some(p) if p.kind == Validation && !r.name.starts_with("vendor_code") => {
                    Classification::new(Validation, false, p.name)
                }
                _ => Classification::new(Unknown, false, r.name),
            }
        }
        kind => Classification::new(kind, r.retryable, r.name),
    }
}

fn by_status(status: u16, ev: &Evidence<'_>, source: &'static str) -> Option<Classification> {
    let exhausted = || ev.exhausted();
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
        classify_lines_scanned(log, &mut |l, c| w.push((l.to_vec(), c)));
        assert_eq!(v, w, "prefiltered and full scans disagree");
        v
    }

    #[test]
    fn the_rules_allow_a_sound_prefilter() {
        assert!(
            PREFILTER.is_some(),
            "no needles could be derived from the rules"
        );
    }

    fn corpus_messages() -> Vec<String> {
        [
            include_str!("../../testdata/corpus/errors-sample.jsonl"),
            include_str!("../../testdata/corpus/errors-extended.jsonl"),
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
