#![doc = include_str!("../README.md")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::{
    Delivery, Error, ErrorKind, Notification, Notifier, Page, Pager, Quota, QuotaChecker,
    QuotaUsage, Result, StatusPage, VendorHealth, VendorStatus,
};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const BACKEND: &str = "http";

/// Timeouts, size limits and retries shared by every adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Deadline of one request, connection included.
    pub timeout: Duration,
    /// Refuse response bodies larger than this.
    pub max_response_bytes: usize,
    /// Retries after the first attempt, only on 429, 5xx and connection errors.
    pub max_retries: u32,
    /// First backoff; doubles per retry (when the server gives no `Retry-After`).
    pub base_backoff: Duration,
    /// The longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            max_retries: 2,
            base_backoff: Duration::from_millis(500),
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
    /// Sets the retry count.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// Sets the first backoff.
    pub fn base_backoff(mut self, d: Duration) -> Self {
        self.base_backoff = d;
        self
    }
}

/// How long to wait before retry `attempt` (0-based): the server's `Retry-After` capped at
/// `retry_after_cap`, or exponential backoff.
pub fn retry_wait(headers: &HeaderMap, attempt: u32, opts: &HttpOptions) -> Duration {
    let backoff = opts.base_backoff.saturating_mul(1u32 << attempt.min(10));
    retry_after(headers).map_or(backoff, |d| d.min(opts.retry_after_cap))
}

/// An HTTP client with flowfail's limits.
#[derive(Debug, Clone)]
struct Http {
    client: reqwest::Client,
    opts: HttpOptions,
}

struct Response {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
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
    Error::new(kind, e.to_string())
        .with_operation(op)
        .with_backend(BACKEND)
        .transient_if(transient)
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
    let e = Error::new(kind, format!("HTTP {status}"))
        .with_operation(op)
        .with_backend(BACKEND);
    if transient {
        e.transient()
    } else {
        e.permanent()
    }
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
    fn new(opts: HttpOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("flowfail/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| req_err("http.client", e))?;
        Ok(Http { client, opts })
    }

    /// Sends with retries on 429 (when `retry_429`), 5xx and connection errors; reads the body
    /// up to the size limit.
    async fn send(
        &self,
        op: &'static str,
        retry_429: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            let backoff = retry_wait(&HeaderMap::new(), attempt, &self.opts);
            match build(&self.client).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retryable = (status == 429 && retry_429)
                        || (500..=599).contains(&status)
                        || status == 408;
                    if retryable && attempt < self.opts.max_retries {
                        let wait = retry_wait(resp.headers(), attempt, &self.opts);
                        tracing::debug!(
                            op,
                            status,
                            attempt,
                            wait_ms = wait.as_millis() as u64,
                            "retrying"
                        );
                        drop(resp);
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    let headers = resp.headers().clone();
                    let body = self.read_body(op, resp).await?;
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
                Err(e) => {
                    let e = req_err(op, e);
                    if e.is_transient() && attempt < self.opts.max_retries {
                        tokio::time::sleep(backoff).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
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

fn secret_header(s: &SecretString) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(s.expose_secret()).map_err(|_| {
        Error::invalid_input("a configured key is not a valid header value").with_backend(BACKEND)
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn bearer(s: &SecretString) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", s.expose_secret())).map_err(|_| {
        Error::invalid_input("a configured key is not a valid header value").with_backend(BACKEND)
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn unknown(reason: impl Into<String>) -> Quota {
    Quota::Unknown {
        reason: reason.into(),
    }
}

/// The most used of a vendor's rate limits, from `limit`/`remaining`/`reset` headers named by
/// `name(kind, part)`; limits that are missing, zero or inconsistent are ignored.
fn tightest_limit(
    h: &HeaderMap,
    kinds: &[&str],
    name: impl Fn(&str, &str) -> String,
    reset: impl Fn(&str) -> Option<DateTime<Utc>>,
) -> Option<QuotaUsage> {
    let mut best: Option<QuotaUsage> = None;
    for kind in kinds {
        let (Some(limit), Some(remaining)) = (
            header_u64(h, &name(kind, "limit")),
            header_u64(h, &name(kind, "remaining")),
        ) else {
            continue;
        };
        if limit == 0 || remaining > limit {
            continue;
        }
        let mut u = QuotaUsage::from_ratio(1.0 - remaining as f64 / limit as f64);
        if best.as_ref().is_some_and(|b| b.used_ratio >= u.used_ratio) {
            continue;
        }
        u.limit = Some(limit);
        u.remaining = Some(remaining);
        u.reset_at = h
            .get(name(kind, "reset"))
            .and_then(|v| v.to_str().ok())
            .and_then(&reset);
        best = Some(u);
    }
    best
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Quota: Anthropic

/// Anthropic quota: the `anthropic-ratelimit-*` headers of a free `count_tokens` call, or,
/// with an admin key and a token budget, the Admin usage report for the current month.
#[derive(Debug)]
pub struct AnthropicQuota {
    http: Http,
    base_url: String,
    api_key: SecretString,
    model: String,
    admin: Option<(SecretString, u64)>,
}

impl AnthropicQuota {
    /// Header mode against `base_url` (`https://api.anthropic.com`).
    pub fn new(
        base_url: impl Into<String>,
        api_key: SecretString,
        opts: HttpOptions,
    ) -> Result<Self> {
        Ok(AnthropicQuota {
            http: Http::new(opts)?,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key,
            model: "claude-3-5-haiku-latest".into(),
            admin: None,
        })
    }

    /// The model named in the probe call.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Usage-report mode: an admin key and the monthly token budget the ratio is taken against.
    pub fn admin_usage(mut self, admin_key: SecretString, monthly_token_budget: u64) -> Self {
        self.admin = Some((admin_key, monthly_token_budget));
        self
    }

    async fn read_headers(&self) -> Result<Quota> {
        let key = secret_header(&self.api_key)?;
        let url = format!("{}/v1/messages/count_tokens", self.base_url);
        let body = serde_json::json!({"model": self.model, "messages": [{"role": "user", "content": "ping"}]});
        let r = match self
            .http
            .send("quota.anthropic", false, |c| {
                c.post(&url)
                    .header("x-api-key", key.clone())
                    .header("anthropic-version", "2023-06-01")
                    .json(&body)
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return Ok(unknown(format!("anthropic quota unreadable: {e}"))),
        };
        Ok(tightest_limit(
            &r.headers,
            &["requests", "tokens", "input-tokens", "output-tokens"],
            |kind, part| format!("anthropic-ratelimit-{kind}-{part}"),
            |v| {
                DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            },
        )
        .map_or_else(
            || {
                unknown(format!(
                    "HTTP {} without anthropic-ratelimit headers",
                    r.status
                ))
            },
            Quota::Known,
        ))
    }

    async fn read_usage_report(&self, admin: &SecretString, budget: u64) -> Result<Quota> {
        let key = secret_header(admin)?;
        let now = Utc::now();
        let month = now.format("%Y-%m-01T00:00:00Z").to_string();
        let mut total = 0u64;
        let mut page: Option<String> = None;
        for _ in 0..10 {
            let mut url = format!(
                "{}/v1/organizations/usage_report/messages?starting_at={month}&bucket_width=1d",
                self.base_url
            );
            if let Some(p) = &page {
                url.push_str("&page=");
                url.push_str(
                    &p.chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "-_=".contains(*c))
                        .collect::<String>(),
                );
            }
            let r = match self
                .http
                .send("quota.anthropic_usage", true, |c| {
                    c.get(&url)
                        .header("x-api-key", key.clone())
                        .header("anthropic-version", "2023-06-01")
                })
                .await
            {
                Ok(r) if (200..300).contains(&r.status) => r,
                Ok(r) => {
                    return Ok(unknown(format!(
                        "anthropic usage report: HTTP {}",
                        r.status
                    )));
                }
                Err(e) => return Ok(unknown(format!("anthropic usage report unreadable: {e}"))),
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
                return Ok(unknown("anthropic usage report is not JSON"));
            };
            let Some(data) = v.get("data").and_then(|d| d.as_array()) else {
                return Ok(unknown("anthropic usage report has no data"));
            };
            for bucket in data {
                for res in bucket
                    .get("results")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
                {
                    total = total.saturating_add(sum_tokens(res));
                }
            }
            match (
                v.get("has_more").and_then(|h| h.as_bool()),
                v.get("next_page").and_then(|p| p.as_str()),
            ) {
                (Some(true), Some(p)) => page = Some(p.to_owned()),
                _ => {
                    page = None;
                    break;
                }
            }
        }
        if page.is_some() {
            return Ok(unknown("anthropic usage report has more than 10 pages"));
        }
        let mut u = QuotaUsage::from_ratio(total as f64 / budget.max(1) as f64);
        u.limit = Some(budget);
        u.remaining = Some(budget.saturating_sub(total));
        Ok(Quota::Known(u))
    }
}

/// Sums every numeric field named `*tokens` in a usage result, nested objects included.
fn sum_tokens(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::Number(n) if k.ends_with("tokens") => n.as_u64().unwrap_or(0),
                serde_json::Value::Object(_) => sum_tokens(v),
                _ => 0,
            })
            .fold(0u64, u64::saturating_add),
        _ => 0,
    }
}

#[async_trait]
impl QuotaChecker for AnthropicQuota {
    async fn quota(&self, vendor: &str) -> Result<Quota> {
        if vendor != "anthropic" {
            return Err(
                Error::not_found(format!("vendor {vendor:?} is not configured"))
                    .with_backend(BACKEND),
            );
        }
        match &self.admin {
            Some((key, budget)) => self.read_usage_report(key, *budget).await,
            None => self.read_headers().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quota: OpenAI

/// OpenAI quota from the `x-ratelimit-*` headers of a probe request (`GET /v1/models` by
/// default).
#[derive(Debug)]
pub struct OpenAiQuota {
    http: Http,
    base_url: String,
    api_key: SecretString,
    probe_path: String,
}

impl OpenAiQuota {
    /// Against `base_url` (`https://api.openai.com`).
    pub fn new(
        base_url: impl Into<String>,
        api_key: SecretString,
        opts: HttpOptions,
    ) -> Result<Self> {
        Ok(OpenAiQuota {
            http: Http::new(opts)?,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key,
            probe_path: "/v1/models".into(),
        })
    }

    /// The path probed for headers.
    pub fn probe_path(mut self, path: impl Into<String>) -> Self {
        self.probe_path = path.into();
        self
    }
}

/// Parses OpenAI's reset durations: `6m0s`, `1s`, `20ms`, `1h2m3.5s`.
pub fn parse_reset(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += v * unit;
        any = true;
    }
    if !num.is_empty() || !any || !total.is_finite() {
        return None;
    }
    Some(Duration::from_secs_f64(total.min(86_400.0 * 31.0)))
}

#[async_trait]
impl QuotaChecker for OpenAiQuota {
    async fn quota(&self, vendor: &str) -> Result<Quota> {
        if vendor != "openai" {
            return Err(
                Error::not_found(format!("vendor {vendor:?} is not configured"))
                    .with_backend(BACKEND),
            );
        }
        let auth = bearer(&self.api_key)?;
        let url = format!("{}{}", self.base_url, self.probe_path);
        let r = match self
            .http
            .send("quota.openai", false, |c| {
                c.get(&url)
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return Ok(unknown(format!("openai quota unreadable: {e}"))),
        };
        Ok(tightest_limit(
            &r.headers,
            &["requests", "tokens"],
            |kind, part| format!("x-ratelimit-{part}-{kind}"),
            |v| {
                parse_reset(v)
                    .and_then(|d| TimeDelta::from_std(d).ok())
                    .map(|d| Utc::now() + d)
            },
        )
        .map_or_else(
            || unknown(format!("HTTP {} without x-ratelimit headers", r.status)),
            Quota::Known,
        ))
    }
}

/// Routes quota checks by vendor.
#[derive(Debug, Default)]
pub struct VendorQuotas {
    by_vendor: BTreeMap<String, Arc<dyn QuotaChecker>>,
}

impl VendorQuotas {
    /// No vendors.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a vendor's checker.
    pub fn with(mut self, vendor: impl Into<String>, checker: Arc<dyn QuotaChecker>) -> Self {
        self.by_vendor.insert(vendor.into(), checker);
        self
    }
}

#[async_trait]
impl QuotaChecker for VendorQuotas {
    async fn quota(&self, vendor: &str) -> Result<Quota> {
        match self.by_vendor.get(vendor) {
            Some(c) => c.quota(vendor).await,
            None => Err(
                Error::not_found(format!("vendor {vendor:?} is not configured"))
                    .with_backend(BACKEND),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status pages

/// Where a vendor's status page is and which of its components FlowEngine depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusPageConfig {
    /// Base URL (`https://status.anthropic.com`); `/api/v2/summary.json` is appended.
    pub base_url: String,
    /// Component names (case-insensitive); empty: the page's overall indicator.
    pub components: Vec<String>,
}

impl StatusPageConfig {
    /// A page and its components.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        base_url: impl Into<String>,
        components: I,
    ) -> Self {
        StatusPageConfig {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            components: components.into_iter().map(Into::into).collect(),
        }
    }
}

impl StatusPageConfig {
    /// The runbook's vendors: Anthropic, OpenAI and Google AI, with the components FlowEngine
    /// uses (Google's page has no Statuspage components: its overall indicator is used).
    pub fn defaults() -> BTreeMap<String, StatusPageConfig> {
        let mut v = BTreeMap::new();
        v.insert(
            "anthropic".into(),
            StatusPageConfig::new("https://status.anthropic.com", ["Claude API"]),
        );
        v.insert(
            "openai".into(),
            StatusPageConfig::new("https://status.openai.com", ["API", "Chat Completions"]),
        );
        v.insert(
            "google".into(),
            StatusPageConfig::new("https://status.cloud.google.com", Vec::<String>::new()),
        );
        v
    }
}

/// Vendor status from Statuspage v2 `summary.json` (and incident.io's compatible shape).
#[derive(Debug)]
pub struct StatusPages {
    http: Http,
    vendors: BTreeMap<String, StatusPageConfig>,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(default)]
    status: Option<Indicator>,
    #[serde(default)]
    components: Vec<Component>,
    #[serde(default)]
    incidents: Vec<Incident>,
}

#[derive(Deserialize)]
struct Indicator {
    #[serde(default)]
    indicator: String,
}

#[derive(Deserialize)]
struct Component {
    name: String,
    status: String,
}

#[derive(Deserialize)]
struct Incident {
    #[serde(default)]
    status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    components: Vec<IncidentComponent>,
}

#[derive(Deserialize)]
struct IncidentComponent {
    name: String,
}

fn severity(h: VendorHealth) -> u8 {
    match h {
        VendorHealth::Operational => 0,
        VendorHealth::UnderMaintenance => 1,
        VendorHealth::DegradedPerformance => 2,
        VendorHealth::PartialOutage => 3,
        VendorHealth::MajorOutage => 4,
        _ => 5,
    }
}

impl StatusPages {
    /// The given vendors.
    pub fn new(vendors: BTreeMap<String, StatusPageConfig>, opts: HttpOptions) -> Result<Self> {
        Ok(StatusPages {
            http: Http::new(opts)?,
            vendors,
        })
    }

    /// Anthropic, OpenAI and Google AI with their public status pages.
    pub fn defaults(opts: HttpOptions) -> Result<Self> {
        Self::new(StatusPageConfig::defaults(), opts)
    }

    fn judge(cfg: &StatusPageConfig, s: &Summary) -> std::result::Result<VendorStatus, String> {
        let wanted: Vec<String> = cfg.components.iter().map(|c| c.to_lowercase()).collect();
        let health = if wanted.is_empty() {
            match s.status.as_ref().map(|i| i.indicator.as_str()) {
                Some("none") => VendorHealth::Operational,
                Some("minor") => VendorHealth::DegradedPerformance,
                Some("major") => VendorHealth::PartialOutage,
                Some("critical") => VendorHealth::MajorOutage,
                Some("maintenance") => VendorHealth::UnderMaintenance,
                _ => return Err("no recognisable status indicator".into()),
            }
        } else {
            let found: Vec<VendorHealth> = s
                .components
                .iter()
                .filter(|c| wanted.contains(&c.name.to_lowercase()))
                .map(|c| VendorHealth::from_status(&c.status))
                .collect();
            if found.is_empty() {
                return Err("none of the configured components is on the page".into());
            }
            let worst = found
                .iter()
                .copied()
                .max_by_key(|h| severity(*h))
                .unwrap_or(VendorHealth::Unknown);
            if worst == VendorHealth::Unknown {
                return Err("a component has an unrecognised status".into());
            }
            worst
        };
        let mut st = VendorStatus::new(health);
        if health.is_degraded() {
            let since = s
                .incidents
                .iter()
                .filter(|i| !matches!(i.status.as_str(), "resolved" | "postmortem" | "completed"))
                .filter(|i| {
                    wanted.is_empty()
                        || i.components.is_empty()
                        || i.components
                            .iter()
                            .any(|c| wanted.contains(&c.name.to_lowercase()))
                })
                .filter_map(|i| i.started_at.as_deref().or(i.created_at.as_deref()))
                .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .min();
            if let Some(t) = since {
                st = st.since(t);
            }
        }
        Ok(st)
    }
}

#[async_trait]
impl StatusPage for StatusPages {
    async fn health(&self, vendor: &str) -> Result<VendorStatus> {
        let Some(cfg) = self.vendors.get(vendor) else {
            return Err(
                Error::not_found(format!("vendor {vendor:?} is not configured"))
                    .with_backend(BACKEND),
            );
        };
        let url = format!("{}/api/v2/summary.json", cfg.base_url);
        let unknown = |why: String| {
            tracing::warn!(vendor, reason = %why, "status page unreadable: vendor health unknown");
            Ok(VendorStatus::new(VendorHealth::Unknown))
        };
        let r = match self
            .http
            .send("status.summary", true, |c| c.get(&url))
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => r,
            Ok(r) => return unknown(format!("HTTP {}", r.status)),
            Err(e) => return unknown(e.to_string()),
        };
        let Ok(summary) = serde_json::from_slice::<Summary>(&r.body) else {
            return unknown("summary.json is not the expected JSON".into());
        };
        match Self::judge(cfg, &summary) {
            Ok(s) => Ok(s),
            Err(why) => unknown(why),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PagerDuty

/// PagerDuty Events API v2.
#[derive(Debug)]
pub struct PagerDuty {
    http: Http,
    base_url: String,
    routing_keys: BTreeMap<String, SecretString>,
    source: String,
    sent: Mutex<HashMap<String, String>>,
}

impl PagerDuty {
    /// Targets (`on_call`, `sre`, `tech_lead`) → integration routing keys, against `base_url`
    /// (`https://events.pagerduty.com`).
    pub fn new(
        base_url: impl Into<String>,
        routing_keys: BTreeMap<String, SecretString>,
        opts: HttpOptions,
    ) -> Result<Self> {
        Ok(PagerDuty {
            http: Http::new(opts)?,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            routing_keys,
            source: "flowfail".into(),
            sent: Mutex::new(HashMap::new()),
        })
    }

    async fn enqueue(
        &self,
        key: &SecretString,
        body: serde_json::Value,
        op: &'static str,
    ) -> Result<()> {
        let url = format!("{}/v2/enqueue", self.base_url);
        let mut body = body;
        body["routing_key"] = serde_json::Value::String(key.expose_secret().to_owned());
        let r = self
            .http
            .send(op, true, |c| c.post(&url).json(&body))
            .await?;
        if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(status_err(op, r.status))
        }
    }
}

fn cut(s: &str, max: usize) -> String {
    flowfail_core::model::sanitize(s, max)
}

#[async_trait]
impl Pager for PagerDuty {
    async fn page(&self, page: &Page) -> Result<Delivery> {
        let Some(key) = self.routing_keys.get(&page.target) else {
            return Err(
                Error::refused(format!("page target {:?} is not configured", page.target))
                    .with_operation("pager.page")
                    .with_backend(BACKEND),
            );
        };
        let dedup = cut(&page.dedup_key, 255);
        if self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&dedup)
        {
            return Ok(Delivery::Deduplicated);
        }
        let body = serde_json::json!({
            "event_action": "trigger",
            "dedup_key": dedup,
            "payload": {
                "summary": cut(&page.summary, 1024),
                "source": self.source,
                "severity": "critical",
                "custom_details": page.details,
            },
        });
        self.enqueue(key, body, "pager.page").await?;
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dedup, page.target.clone());
        Ok(Delivery::Sent)
    }

    async fn resolve(&self, dedup_key: &str) -> Result<()> {
        let dedup = cut(dedup_key, 255);
        let target = self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&dedup)
            .cloned();
        let keys: Vec<&SecretString> = match target.as_ref().and_then(|t| self.routing_keys.get(t))
        {
            Some(k) => vec![k],
            // Not paged by this process (a restart): resolve on every service; unknown keys are ignored.
            None => self.routing_keys.values().collect(),
        };
        for k in keys {
            self.enqueue(
                k,
                serde_json::json!({"event_action": "resolve", "dedup_key": dedup}),
                "pager.resolve",
            )
            .await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook

/// A JSON webhook (Slack-compatible body: `{"text": …}`). The URL is a secret: chat webhook
/// URLs carry their token.
#[derive(Debug)]
pub struct Webhook {
    http: Http,
    url: SecretString,
    sent: Mutex<HashSet<String>>,
}

impl Webhook {
    /// A webhook at `url`.
    pub fn new(url: SecretString, opts: HttpOptions) -> Result<Self> {
        Ok(Webhook {
            http: Http::new(opts)?,
            url,
            sent: Mutex::new(HashSet::new()),
        })
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn notify(&self, n: &Notification) -> Result<Delivery> {
        if self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&n.dedup_key)
        {
            return Ok(Delivery::Deduplicated);
        }
        let body = serde_json::json!({
            "text": format!("[{}] {}", n.audience, cut(&n.message, 3000)),
            "audience": n.audience,
            "dedup_key": n.dedup_key,
        });
        let url = self.url.expose_secret().to_owned();
        let r = self
            .http
            .send("notifier.notify", true, |c| c.post(&url).json(&body))
            .await?;
        if !(200..300).contains(&r.status) {
            return Err(status_err("notifier.notify", r.status));
        }
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n.dedup_key.clone());
        Ok(Delivery::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_reset_durations() {
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        for bad in ["", "abc", "5", "1x", "99999999999999999999999h"] {
            assert!(
                parse_reset(bad).is_none_or(|d| d <= Duration::from_secs(86_400 * 31)),
                "{bad}"
            );
        }
        assert_eq!(parse_reset("abc"), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let o = HttpOptions::default();
        let mut h = HeaderMap::new();
        assert_eq!(retry_wait(&h, 0, &o), Duration::from_millis(500));
        assert_eq!(retry_wait(&h, 2, &o), Duration::from_millis(2000));
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_wait(&h, 0, &o), Duration::from_secs(7));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("3600"),
        );
        assert_eq!(retry_wait(&h, 0, &o), Duration::from_secs(60));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("garbage"),
        );
        assert_eq!(retry_wait(&h, 0, &o), Duration::from_millis(500));
        let date = (Utc::now() + TimeDelta::seconds(30)).to_rfc2822();
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(&date).unwrap(),
        );
        let w = retry_wait(&h, 0, &o);
        assert!(
            w <= Duration::from_secs(30) && w >= Duration::from_secs(28),
            "{w:?}"
        );
    }

    #[test]
    fn tokens_are_summed_through_nested_objects() {
        let v = serde_json::json!({"uncached_input_tokens": 10, "output_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 2}, "model": "x", "server_tool_use": {"web_search_requests": 9}});
        assert_eq!(sum_tokens(&v), 17);
    }
}
