//! Vendor status pages: [`StatusPages`] reads Statuspage v2 `summary.json` (and incident.io's
//! compatible shape) for the components configured in [`StatusPageConfig`], and Google Cloud's
//! incidents feed (`incidents.json`) for the products configured there.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flowfail_core::{Error, ErrorKind, Result, StatusPage, VendorHealth, VendorStatus};
use serde::Deserialize;

use crate::client::{BACKEND, Http, HttpOptions, chain_text};

/// What a vendor's status page publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PageFormat {
    /// Statuspage v2 `summary.json` (Anthropic's and OpenAI's pages; incident.io's pages
    /// publish the same shape): components with a status each, and open incidents.
    #[default]
    Statuspage,
    /// Google Cloud's incidents feed (`incidents.json`): every incident, open and past, each
    /// with its affected products, its latest status and when it began and ended. There are no
    /// components: the products it names are matched.
    GoogleCloud,
}

impl PageFormat {
    /// The path read under the page's base URL.
    pub fn path(self) -> &'static str {
        match self {
            PageFormat::Statuspage => "/api/v2/summary.json",
            PageFormat::GoogleCloud => "/incidents.json",
        }
    }

    /// Its name in the config (`statuspage`, `google_cloud`).
    pub fn as_str(self) -> &'static str {
        match self {
            PageFormat::Statuspage => "statuspage",
            PageFormat::GoogleCloud => "google_cloud",
        }
    }

    /// The format named `s` in the config.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "statuspage" => Some(PageFormat::Statuspage),
            "google_cloud" => Some(PageFormat::GoogleCloud),
            _ => None,
        }
    }
}

/// Where a vendor's status page is, what it publishes, and which of its components (or, on
/// Google's feed, products) FlowEngine depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusPageConfig {
    /// Base URL (`https://status.anthropic.com`); the format's path is appended.
    pub base_url: String,
    /// Component (or product) names, case-insensitive; empty: the page's overall indicator
    /// (on Google's feed: any product).
    pub components: Vec<String>,
    /// What the page publishes.
    pub format: PageFormat,
}

impl StatusPageConfig {
    /// A Statuspage v2 page and its components.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        base_url: impl Into<String>,
        components: I,
    ) -> Self {
        StatusPageConfig {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            components: components.into_iter().map(Into::into).collect(),
            format: PageFormat::Statuspage,
        }
    }

    /// Google Cloud's incidents feed and the products that count.
    pub fn google_cloud<I: IntoIterator<Item = S>, S: Into<String>>(
        base_url: impl Into<String>,
        products: I,
    ) -> Self {
        StatusPageConfig {
            format: PageFormat::GoogleCloud,
            ..StatusPageConfig::new(base_url, products)
        }
    }

    /// The same kind of page at another base URL (a mirror, a test server).
    pub fn at(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The same page read as `format`.
    pub fn with_format(mut self, format: PageFormat) -> Self {
        self.format = format;
        self
    }

    /// The same page with these components (or products).
    pub fn with_components<I: IntoIterator<Item = S>, S: Into<String>>(mut self, c: I) -> Self {
        self.components = c.into_iter().map(Into::into).collect();
        self
    }
}

impl StatusPageConfig {
    /// The runbook's vendors: Anthropic, OpenAI and Google AI, with the components FlowEngine
    /// uses (on Google's incidents feed, the Vertex AI products that serve Gemini).
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
            StatusPageConfig::google_cloud("https://status.cloud.google.com", GOOGLE_PRODUCTS),
        );
        v
    }
}

/// The products of Google Cloud's feed that FlowEngine's Gemini calls go through, by default.
pub const GOOGLE_PRODUCTS: [&str; 2] = ["Vertex Gemini API", "Vertex AI Online Prediction"];

/// Vendor status from Statuspage v2 `summary.json` (and incident.io's compatible shape) or
/// Google Cloud's `incidents.json`.
///
/// With [`StatusPages::refresh`] (`flowfail run` sets [`STATUS_REFRESH`]), a page read is kept
/// that long: the vendors' pages are themselves cached for about a minute, so an incident's
/// passes every few seconds read each page at most once a refresh. An unreadable page is not
/// kept: it is tried again at the next call. By default every call reads the page.
#[derive(Debug)]
pub struct StatusPages {
    http: Http,
    /// For Google's feed, which holds every incident since the page began: several megabytes,
    /// read with [`FEED_MAX_BYTES`] as its limit.
    feed_http: Http,
    vendors: BTreeMap<String, StatusPageConfig>,
    refresh: std::time::Duration,
    read: std::sync::Mutex<BTreeMap<String, (tokio::time::Instant, VendorStatus)>>,
}

/// How long `flowfail run` keeps a status page read ([`StatusPages::refresh`]).
pub const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

/// The size limit of Google's incidents feed (the whole history of the page; a few megabytes
/// today). Other pages keep [`HttpOptions::max_response_bytes`].
pub const FEED_MAX_BYTES: usize = 32 << 20;

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

/// One incident of Google Cloud's feed (the fields read; the feed has more).
#[derive(Deserialize)]
struct GoogleIncident {
    #[serde(default)]
    begin: Option<String>,
    #[serde(default)]
    end: Option<String>,
    #[serde(default)]
    status_impact: Option<String>,
    #[serde(default)]
    most_recent_update: Option<GoogleUpdate>,
    /// `null` or missing: none named.
    #[serde(default)]
    affected_products: Option<Vec<GoogleProduct>>,
}

#[derive(Deserialize)]
struct GoogleUpdate {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct GoogleProduct {
    #[serde(default)]
    title: String,
}

/// A Google incident's status as a health: an outage is a major outage, a disruption a
/// partial one; "service information" and "available" say requests are served.
fn google_health(status: &str) -> Option<VendorHealth> {
    match status {
        "SERVICE_OUTAGE" => Some(VendorHealth::MajorOutage),
        "SERVICE_DISRUPTION" => Some(VendorHealth::PartialOutage),
        "SERVICE_INFORMATION" | "AVAILABLE" => Some(VendorHealth::Operational),
        _ => None,
    }
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
        let feed = opts
            .clone()
            .max_response_bytes(opts.max_response_bytes.max(FEED_MAX_BYTES));
        Ok(StatusPages {
            http: Http::new(opts)?,
            feed_http: Http::new(feed)?,
            vendors,
            refresh: std::time::Duration::ZERO,
            read: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Keeps each page read for `d` (zero: every call reads the page).
    pub fn refresh(mut self, d: std::time::Duration) -> Self {
        self.refresh = d;
        self
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

impl StatusPages {
    /// Google's feed: the worst status of the open incidents (no `end`) that name a product
    /// that counts, since the earliest of their beginnings; operational when there is none.
    fn judge_google(
        cfg: &StatusPageConfig,
        incidents: &[GoogleIncident],
    ) -> std::result::Result<VendorStatus, String> {
        let wanted: Vec<String> = cfg.components.iter().map(|c| c.to_lowercase()).collect();
        let mut worst = VendorHealth::Operational;
        let mut since = None;
        for i in incidents.iter().filter(|i| i.end.is_none()) {
            if !wanted.is_empty()
                && !i
                    .affected_products
                    .iter()
                    .flatten()
                    .any(|p| wanted.contains(&p.title.to_lowercase()))
            {
                continue;
            }
            // The latest update's status, else the incident's impact.
            let latest = i
                .most_recent_update
                .as_ref()
                .and_then(|u| u.status.as_deref());
            let Some(h) = latest
                .and_then(google_health)
                .or_else(|| i.status_impact.as_deref().and_then(google_health))
            else {
                let shown = flowfail_core::model::sanitize(latest.unwrap_or(""), 40);
                return Err(format!(
                    "an open incident has an unrecognised status {shown:?}"
                ));
            };
            if !h.is_degraded() {
                continue;
            }
            if severity(h) > severity(worst) {
                worst = h;
            }
            let began = i
                .begin
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            since = match (since, began) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
        }
        let mut st = VendorStatus::new(worst);
        if let Some(t) = since {
            st = st.since(t);
        }
        Ok(st)
    }

    /// The vendor's health, or the error that kept it from being read: the transport's (down
    /// to the OS error), the server's answer with its status and what its body said, or what
    /// is wrong with the page. [`StatusPage::health`] reports such an error as
    /// [`VendorHealth::Unknown`]; callers that explain errors use this.
    pub async fn read(&self, vendor: &str) -> Result<VendorStatus> {
        let Some(cfg) = self.vendors.get(vendor) else {
            return Err(
                Error::not_found(format!("vendor {vendor:?} is not configured"))
                    .with_backend(BACKEND),
            );
        };
        let (op, http) = match cfg.format {
            PageFormat::Statuspage => ("status.summary", &self.http),
            PageFormat::GoogleCloud => ("status.incidents", &self.feed_http),
        };
        let url = format!("{}{}", cfg.base_url, cfg.format.path());
        let r = http.send(op, |c| c.get(&url)).await?;
        if !(200..300).contains(&r.status) {
            return Err(http.status_err(op, &r));
        }
        let page_err = |why: String| {
            Error::new(ErrorKind::Unexpected, why)
                .with_operation(op)
                .with_backend(BACKEND)
        };
        match cfg.format {
            PageFormat::Statuspage => {
                let summary = serde_json::from_slice::<Summary>(&r.body).map_err(|e| {
                    page_err("summary.json is not the expected JSON".into()).with_source(e)
                })?;
                Self::judge(cfg, &summary).map_err(page_err)
            }
            PageFormat::GoogleCloud => {
                let incidents =
                    serde_json::from_slice::<Vec<GoogleIncident>>(&r.body).map_err(|e| {
                        page_err("incidents.json is not the expected JSON".into()).with_source(e)
                    })?;
                Self::judge_google(cfg, &incidents).map_err(page_err)
            }
        }
    }
}

#[async_trait]
impl StatusPage for StatusPages {
    async fn health(&self, vendor: &str) -> Result<VendorStatus> {
        if !self.vendors.contains_key(vendor) {
            return Err(
                Error::not_found(format!("vendor {vendor:?} is not configured"))
                    .with_backend(BACKEND),
            );
        }
        let now = tokio::time::Instant::now();
        let kept = self
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(vendor)
            .filter(|(at, _)| now.duration_since(*at) < self.refresh)
            .map(|(_, s)| s.clone());
        if let Some(s) = kept {
            return Ok(s);
        }
        match self.read(vendor).await {
            Ok(s) => {
                if !self.refresh.is_zero() {
                    self.read
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(vendor.to_owned(), (now, s.clone()));
                }
                Ok(s)
            }
            Err(e) => {
                let why = chain_text(&e);
                tracing::warn!(vendor, reason = %why, "status page unreadable: vendor health unknown");
                Ok(VendorStatus::new(VendorHealth::Unknown))
            }
        }
    }
}
