//! Outage evidence: whether a failure is a vendor's server failing, by structure, not by words.

use std::sync::LazyLock;

use regex::Regex;

use super::RuleSet;
use crate::model::FailureKind;

/// A log prefix (timestamp, level, one `who:` token such as a task id), then a vendor's server
/// error as the failure's first word: an SDK server-error class, botocore's
/// `An error occurred (…)` with a server exception, `Error code: 5xx`, `HTTP 5xx` or a 5xx
/// status with its reason phrase.
static HEAD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        ^\s*
        (?:\d[0-9TZ:.,+\-]*\s+)?                                  # a timestamp
        (?:\[?(?i:error|fatal|critical|err|crit)\]?:?\s+)?         # a level
        (?:[A-Za-z0-9_.\-]+:\s+)?                                  # one `t-311:` or `flow:`
        (?:
            (?:[A-Za-z_]\w*\.)*
            (?:InternalServerError|ServiceUnavailable(?:Error)?|OverloadedError|BadGatewayError
              |GatewayTimeoutError|ServerError|InternalServerException|ServiceUnavailableException
              |ModelNotReadyException|ModelStreamErrorException)\b
          | (?:[A-Za-z_]\w*\.)*APIStatusError:\s*Error\ code:\s*5\d\d\b
          | An\ error\ occurred\ \((?:InternalServerException|ServiceUnavailableException
              |ModelNotReadyException|ModelStreamErrorException|ServiceException)\)
          | (?i:error\ code):?\s*5\d\d\b
          | HTTP(?:/\d(?:\.\d)?)?\s+5\d\d\b
          | 5\d\d\s+(?i:service\ unavailable|bad\ gateway|gateway\ time-?out|internal\ server\ error)
        )",
    )
    .ok()
});

/// Where a log prefix ends and the failure starts: a `{` after it opens a vendor's error body.
static BODY_START: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:\d[0-9TZ:.,+\-]*\s+)?(?:\[?(?i:error|fatal|critical|err|crit)\]?:?\s+)?(?:[A-Za-z0-9_.\-]+:\s+)?\{",
    )
    .ok()
});

/// Whether a failed task is evidence of its vendor's servers failing: an HTTP status of 500 or
/// more recorded with it, or a vendor's server error that *starts* its message (see the module
/// docs of [`classify`](super)). A word such as `overloaded` or `503` further in — a tenant's
/// title, a prompt a vendor quotes — is not: only these failures count toward a vendor's
/// observed 5xx rate, the outage evidence of the TaskDB.
///
/// ```
/// use flowfail_core::classify::server_failure;
/// assert!(server_failure("anthropic.InternalServerError: Error code: 500 - {}", None));
/// assert!(server_failure("anything", Some(503)));
/// assert!(server_failure(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, None));
/// assert!(!server_failure("step failed: the model said it is overloaded", None));
/// assert!(!server_failure("1 validation error for TaskObject\ntitle\n  [type=int_parsing, input_value='502 Bad Gateway', input_type=str]", None));
/// ```
pub fn server_failure(message: &str, http_status: Option<u16>) -> bool {
    server_failure_with(RuleSet::builtin(), message, http_status)
}

pub(crate) fn server_failure_with(
    rules: &RuleSet,
    message: &str,
    http_status: Option<u16>,
) -> bool {
    if let Some(s) = http_status {
        return (500..=599).contains(&s);
    }
    let text = super::truncate_at_char(message, super::MAX_CLASSIFY_BYTES);
    let masked = super::mask::mask_echoes(text);
    if HEAD.as_ref().is_some_and(|h| h.is_match(&masked)) {
        return true;
    }
    // A vendor's JSON error body at the start: its code field decides.
    BODY_START.as_ref().is_some_and(|b| b.is_match(&masked)) && {
        let c = rules.classify(text, None);
        c.kind == FailureKind::ModelApi5xx && c.rule.starts_with("vendor_code:")
    }
}
