//! Vendor quota: [`AnthropicQuota`] (rate-limit headers or the Admin usage report),
//! [`OpenAiQuota`] (rate-limit headers) and [`VendorQuotas`] (routing by vendor).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::{Error, Quota, QuotaChecker, QuotaUsage, Result};
use reqwest::header::HeaderMap;
use secrecy::SecretString;

use crate::client::{BACKEND, Http, HttpOptions, bearer, chain_text, secret_header};

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

    /// The quota, or the error that kept it from being read: the transport's (down to the OS
    /// error), or the server's answer with its status and what its body said (a refused key,
    /// a 5xx). [`QuotaChecker::quota`] reports such an error as [`Quota::Unknown`] with the
    /// error as its reason; callers that explain errors use this.
    pub async fn read(&self) -> Result<Quota> {
        match &self.admin {
            Some((key, budget)) => self.read_usage_report(key, *budget).await,
            None => self.read_headers().await,
        }
    }

    async fn read_headers(&self) -> Result<Quota> {
        let key = secret_header(&self.api_key)?;
        let url = format!("{}/v1/messages/count_tokens", self.base_url);
        let body = serde_json::json!({"model": self.model, "messages": [{"role": "user", "content": "ping"}]});
        let r = self
            .http
            .send("quota.anthropic", |c| {
                c.post(&url)
                    .header("x-api-key", key.clone())
                    .header("anthropic-version", "2023-06-01")
                    .json(&body)
            })
            .await?;
        let limit = tightest_limit(
            &r.headers,
            &["requests", "tokens", "input-tokens", "output-tokens"],
            |kind, part| format!("anthropic-ratelimit-{kind}-{part}"),
            |v| {
                DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            },
        );
        match limit {
            Some(u) => Ok(Quota::Known(u)),
            None if !(200..300).contains(&r.status) => {
                Err(self.http.status_err("quota.anthropic", &r))
            }
            None => Ok(unknown(format!(
                "HTTP {} without anthropic-ratelimit headers",
                r.status
            ))),
        }
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
                .send("quota.anthropic_usage", |c| {
                    c.get(&url)
                        .header("x-api-key", key.clone())
                        .header("anthropic-version", "2023-06-01")
                })
                .await
            {
                Ok(r) if (200..300).contains(&r.status) => r,
                Ok(r) => return Err(self.http.status_err("quota.anthropic_usage", &r)),
                Err(e) => return Err(e),
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
        self.read().await.or_else(|e| {
            Ok(unknown(format!(
                "anthropic quota unreadable: {}",
                chain_text(&e)
            )))
        })
    }
}

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

impl OpenAiQuota {
    /// The quota, or the error that kept it from being read (see [`AnthropicQuota::read`]).
    pub async fn read(&self) -> Result<Quota> {
        let auth = bearer(&self.api_key)?;
        let url = format!("{}{}", self.base_url, self.probe_path);
        let r = self
            .http
            .send("quota.openai", |c| {
                c.get(&url)
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
            })
            .await?;
        let limit = tightest_limit(
            &r.headers,
            &["requests", "tokens"],
            |kind, part| format!("x-ratelimit-{part}-{kind}"),
            |v| {
                parse_reset(v)
                    .and_then(|d| TimeDelta::from_std(d).ok())
                    .map(|d| Utc::now() + d)
            },
        );
        match limit {
            Some(u) => Ok(Quota::Known(u)),
            None if !(200..300).contains(&r.status) => {
                Err(self.http.status_err("quota.openai", &r))
            }
            None => Ok(unknown(format!(
                "HTTP {} without x-ratelimit headers",
                r.status
            ))),
        }
    }
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
        self.read().await.or_else(|e| {
            Ok(unknown(format!(
                "openai quota unreadable: {}",
                chain_text(&e)
            )))
        })
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
    fn tokens_are_summed_through_nested_objects() {
        let v = serde_json::json!({"uncached_input_tokens": 10, "output_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 2}, "model": "x", "server_tool_use": {"web_search_requests": 9}});
        assert_eq!(sum_tokens(&v), 17);
    }
}
