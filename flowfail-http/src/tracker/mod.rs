//! The incident tracker: [`GitHubIssues`] and [`JiraIssues`], the
//! [`Tracker`](flowfail_core::ports::Tracker) port on GitHub Issues and Jira Cloud (REST).
//!
//! Both find an incident's issue by its tag ([`flowfail_core::tracking::incident_tag`]) each
//! time, never from memory, so a restarted process finds the issue an earlier one filed.

use flowfail_core::{Error, ErrorKind, Result};

use crate::client::{BACKEND, cut};

mod github;
mod jira;

pub use github::GitHubIssues;
pub use jira::JiraIssues;

/// The label every issue flowfail files carries.
const LABEL: &str = "flowfail";
/// The label of a duplicate retired by [`flowfail_core::ports::Tracker::retire`].
const DUPLICATE_LABEL: &str = "flowfail-duplicate";
/// The label of an issue that carries its incident's settled record (not the issue's state,
/// which people change).
const SETTLED_LABEL: &str = "flowfail-settled";

/// A tracker's base URL: `http(s)://host[:port][/path]`, without a query, fragment or
/// credentials, without its trailing `/`. The scheme rules of every request still apply.
fn check_base(key: &str, url: &str) -> Result<String> {
    let bad = |why: &str| Err(Error::invalid_input(format!("{key}: {why}")).with_backend(BACKEND));
    let Ok(u) = reqwest::Url::parse(url) else {
        return bad("not a URL");
    };
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return bad("not an http(s) URL");
    }
    if u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return bad("a base URL without query, fragment or credentials");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A JSON answer, or an `Unexpected` error naming the operation.
fn decode<T: serde::de::DeserializeOwned>(op: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            "the tracker's answer is not the expected JSON",
        )
        .with_operation(op)
        .with_backend(BACKEND)
        .with_source(e)
    })
}

/// A GitHub issue number from a [`flowfail_core::ports::TrackerIssue`] id: digits only.
fn issue_number(op: &'static str, id: &str) -> Result<u64> {
    id.parse::<u64>()
        .ok()
        .filter(|_| id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            Error::invalid_input(format!("{} is not an issue number", cut(id, 40)))
                .with_operation(op)
                .with_backend(BACKEND)
        })
}

/// `body` at most `max` bytes, cut at a character boundary with a note saying so.
fn body_cut(body: &str, max: usize) -> String {
    if body.len() <= max {
        return body.to_owned();
    }
    let mut end = max.saturating_sub(80);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n\n… (cut: the whole record is in flowfail's ledger: `flowfail incident KEY`)",
        &body[..end]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_and_issue_ids_are_checked() {
        assert_eq!(
            check_base("k", "https://api.github.com/").ok().as_deref(),
            Some("https://api.github.com")
        );
        for bad in ["ftp://x", "https://u:p@x", "https://x/?q=1", "x"] {
            assert!(check_base("k", bad).is_err(), "{bad}");
        }
        assert_eq!(issue_number("op", "42").ok(), Some(42));
        for bad in ["", "+4", "4/../x", "-1", "1e3"] {
            assert!(issue_number("op", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_long_body_is_cut_at_a_character_and_says_so() {
        let b = "é".repeat(100);
        let c = body_cut(&b, 150);
        assert!(c.len() <= 150 + 100 && c.contains("cut"), "{c}");
        assert_eq!(body_cut("short", 150), "short");
    }
}
