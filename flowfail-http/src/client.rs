//! The HTTP client every adapter shares: [`HttpOptions`], sending with the size limit, the
//! mapping of transport errors and statuses to flowfail's [`Error`], and `Retry-After`.
//!
//! One call is one attempt: the responder's read loop is flowfail's only retry loop, and a page
//! or a notification must not go out twice because the adapter tried again on its own. A
//! throttled or unavailable answer's `Retry-After` travels on the returned error
//! ([`Error::retry_after`]) instead.
//!
//! Secrets travel in headers (`x-api-key`), bodies (PagerDuty's routing key) and paths (webhook
//! tokens), so the client never follows a redirect (a 3xx is an error naming the status and the
//! `Location`'s host, never its path), never sends a `Referer`, and sends plain `http://` only
//! to a loopback host (127.0.0.0/8, `::1`, `localhost`): anything else is refused before a
//! connection is opened.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flowfail_core::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

pub(crate) const BACKEND: &str = "http";

/// Timeouts and size limits shared by every adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Deadline of one request, connection included.
    pub timeout: Duration,
    /// Refuse response bodies larger than this.
    pub max_response_bytes: usize,
    /// The cap on the `Retry-After` delay an error carries.
    pub retry_after_cap: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl HttpOptions {
    /// Sets the request timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Sets the response size limit.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }
}

/// An HTTP client with flowfail's limits.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    opts: HttpOptions,
}

/// A response whose body was read within the size limit.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

fn req_err(op: &'static str, e: reqwest::Error) -> Error {
    // Never let a URL (webhook URLs carry secrets) into an error.
    let e = e.without_url();
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Unexpected
    };
    let transient = e.is_timeout() || e.is_connect() || e.is_request();
    // The cause chain (down to the OS error) holds no URL: `without_url` above.
    Error::new(kind, e.to_string())
        .with_operation(op)
        .with_backend(BACKEND)
        .with_source(e)
        .transient_if(transient)
}

/// What an error body says, made safe to show and log: for JSON the usual error fields
/// (`error.type`, `error.message`, `message`, `detail`, `errors`), otherwise the text with its
/// whitespace collapsed; anything that looks like a key or token replaced by `[redacted]`,
/// control characters escaped, at most 200 bytes. Empty for an empty body.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => json_words(&v).unwrap_or_else(|| v.to_string()),
        Err(_) => String::from_utf8_lossy(body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    cut(&redact(&text), 200)
}

/// `type: message` from the error shapes vendors use.
fn json_words(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let err = v.get("error");
    let kind = err
        .and_then(|e| e.get("type").or_else(|| e.get("code")))
        .and_then(Value::as_str);
    let msg = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| err.and_then(Value::as_str))
        .or_else(|| v.get("message").and_then(Value::as_str))
        .or_else(|| v.get("detail").and_then(Value::as_str))
        .or_else(|| v.get("title").and_then(Value::as_str));
    let mut out = match (kind, msg) {
        (Some(k), Some(m)) => format!("{k}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(k), None) => k.to_owned(),
        (None, None) => return None,
    };
    if let Some(list) = v.get("errors").and_then(Value::as_array) {
        let items: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        if !items.is_empty() {
            out.push_str(&format!(" ({})", items.join("; ")));
        }
    }
    Some(out)
}

/// `text` with every run that looks like a key or token (`sk-…`, or 20 or more characters of
/// letters and digits mixed) replaced by `[redacted]`: error bodies sometimes echo the key.
pub(crate) fn redact(text: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "-_.+/=*~".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let secretish = run.starts_with("sk-")
            || run.starts_with("sk_")
            || (run.len() >= 20
                && run.bytes().any(|b| b.is_ascii_digit())
                && run.bytes().any(|b| b.is_ascii_alphabetic()));
        if secretish {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if token(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `e` with its causes, `: `-separated, each said once: for reasons kept as text.
pub(crate) fn chain_text(e: &Error) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

fn status_err(op: &'static str, status: u16) -> Error {
    let (kind, transient) = match status {
        401 | 403 => (ErrorKind::PermissionDenied, false),
        404 => (ErrorKind::NotFound, false),
        408 => (ErrorKind::Timeout, true),
        429 => (ErrorKind::RateLimited, true),
        500..=599 => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::InvalidInput, false),
    };
    Error::new(kind, format!("HTTP {status}"))
        .with_operation(op)
        .with_backend(BACKEND)
        .transient_if(transient)
}

/// Plain `http://` only to a loopback host (127.0.0.0/8, `::1`, `localhost`: local test
/// servers); `https://` anywhere; any other scheme refused. The refusal names the host (never
/// the path or query, where webhooks keep their token) and happens before any connection.
fn check_scheme(op: &'static str, url: &reqwest::Url) -> Result<()> {
    let host = url.host_str().unwrap_or("");
    let loopback = || {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback() => Ok(()),
        scheme => Err(Error::new(
            ErrorKind::Refused,
            format!(
                "refusing {scheme}:// to {}: only https (plain http to a loopback host only)",
                cut(host, 100)
            ),
        )
        .with_operation(op)
        .with_backend(BACKEND)),
    }
}

/// A 3xx answer as an error: redirects are never followed (they would carry the key and the
/// body to another host). Names the status and the `Location`'s host, never its path or query.
fn redirect_err(op: &'static str, resp: &reqwest::Response) -> Error {
    let target = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|loc| resp.url().join(loc).ok())
        .and_then(|u| u.host_str().map(|h| cut(h, 100)));
    let to = match target {
        Some(h) => format!(" to host {h}"),
        None => " without a usable Location".to_owned(),
    };
    Error::new(
        ErrorKind::Refused,
        format!(
            "HTTP {}: redirect{to} not followed (check the configured URL)",
            resp.status().as_u16()
        ),
    )
    .with_operation(op)
    .with_backend(BACKEND)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    (at - Utc::now()).to_std().ok()
}

impl Http {
    pub(crate) fn new(opts: HttpOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            // Never follow: reqwest strips `Authorization` on a cross-host redirect but not
            // `x-api-key`, and a 307/308 resends the body (PagerDuty's routing key).
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(concat!("flowfail/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| req_err("http.client", e))?;
        Ok(Http { client, opts })
    }

    /// Sends once (an adapter never tries again on its own) and reads the body up to the size
    /// limit.
    pub(crate) async fn send(
        &self,
        op: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let req = build(&self.client).build().map_err(|e| req_err(op, e))?;
        check_scheme(op, req.url())?;
        let resp = self.client.execute(req).await.map_err(|e| req_err(op, e))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            return Err(redirect_err(op, &resp));
        }
        let headers = resp.headers().clone();
        let body = self.read_body(op, resp).await?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A non-2xx answer as an error: kind and retryability from the status. A transient one
    /// (408, 429, 5xx) carries the server's `Retry-After`, capped at `retry_after_cap`, for the
    /// caller's retry loop.
    pub(crate) fn status_err(&self, op: &'static str, r: &Response) -> Error {
        let e = status_err(op, r.status);
        let said = excerpt(&r.body);
        let e = if said.is_empty() {
            e
        } else {
            let m = format!("{}: {said}", e.message());
            Error::new(e.kind(), m)
                .with_operation(op)
                .with_backend(BACKEND)
                .transient_if(e.is_transient())
        };
        match retry_after(&r.headers) {
            Some(d) if e.is_transient() => e.with_retry_after(d.min(self.opts.retry_after_cap)),
            _ => e,
        }
    }

    async fn read_body(&self, op: &'static str, mut resp: reqwest::Response) -> Result<Vec<u8>> {
        let max = self.opts.max_response_bytes;
        let too_large = || {
            Error::new(
                ErrorKind::TooLarge,
                format!("response body over {max} bytes"),
            )
            .with_operation(op)
            .with_backend(BACKEND)
        };
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| req_err(op, e))? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A configured key as a sensitive header value.
pub(crate) fn secret_header(s: &SecretString) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(s.expose_secret()).map_err(|_| {
        Error::invalid_input("a configured key is not a valid header value").with_backend(BACKEND)
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Bearer <key>` as a sensitive header value.
pub(crate) fn bearer(s: &SecretString) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", s.expose_secret())).map_err(|_| {
        Error::invalid_input("a configured key is not a valid header value").with_backend(BACKEND)
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Outside text made safe to send or log, at most `max` bytes.
pub(crate) fn cut(s: &str, max: usize) -> String {
    flowfail_core::model::sanitize(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("garbage"),
        );
        assert_eq!(retry_after(&h), None);
        let date = (Utc::now() + TimeDelta::seconds(30)).to_rfc2822();
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(&date).unwrap(),
        );
        let w = retry_after(&h).unwrap();
        assert!(
            w <= Duration::from_secs(30) && w >= Duration::from_secs(28),
            "{w:?}"
        );
    }

    #[test]
    fn error_bodies_are_excerpted_without_keys() {
        let anthropic = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(
            excerpt(anthropic),
            "authentication_error: invalid x-api-key"
        );
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-proj-abc***xyz9. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let e = excerpt(openai);
        assert!(
            e.starts_with("invalid_request_error: Incorrect API key provided: [redacted] You"),
            "{e}"
        );
        let pd = br#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect"]}"#;
        assert_eq!(
            excerpt(pd),
            "Event object is invalid (Length of 'routing_key' is incorrect)"
        );
        assert_eq!(
            excerpt(b"<html>\n<h1>502   Bad Gateway</h1>\n</html>"),
            "<html> <h1>502 Bad Gateway</h1> </html>"
        );
        assert_eq!(excerpt(b""), "");
        assert_eq!(
            redact("token R2d2C3poR2d2C3poR2d2 ok"),
            "token [redacted] ok"
        );
        assert!(excerpt(&vec![b'x'; 5000]).len() <= 203);
    }

    #[test]
    fn status_errors_say_what_the_server_said() {
        let http = Http::new(HttpOptions::default()).unwrap();
        let r = Response {
            status: 401,
            headers: HeaderMap::new(),
            body: br#"{"error": {"type": "authentication_error", "message": "invalid x-api-key"}}"#
                .to_vec(),
        };
        let e = http.status_err("quota.anthropic", &r);
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "permission_denied in quota.anthropic (http): HTTP 401: authentication_error: invalid x-api-key"
        );
    }

    #[test]
    fn only_transient_status_errors_carry_retry_after() {
        let http = Http::new(HttpOptions::default()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("3600"),
        );
        let answer = |status| Response {
            status,
            headers: headers.clone(),
            body: Vec::new(),
        };
        for status in [408, 429, 500, 503] {
            let e = http.status_err("op", &answer(status));
            assert!(e.is_transient(), "{status}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(60)), "{status}");
        }
        for status in [400, 401, 404] {
            let e = http.status_err("op", &answer(status));
            assert!(!e.is_transient(), "{status}");
            assert_eq!(e.retry_after(), None, "{status}");
        }
        let e = http.status_err(
            "op",
            &Response {
                status: 503,
                headers: HeaderMap::new(),
                body: Vec::new(),
            },
        );
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), None);
    }
}
