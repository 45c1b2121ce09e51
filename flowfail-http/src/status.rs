//! Vendor status pages: [`StatusPages`] reads Statuspage v2 `summary.json` (and incident.io's
//! compatible shape) for the components configured in [`StatusPageConfig`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flowfail_core::{Error, ErrorKind, Result, StatusPage, VendorHealth, VendorStatus};
use serde::Deserialize;

use crate::client::{BACKEND, Http, HttpOptions, chain_text};

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

impl StatusPages {
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
        const OP: &str = "status.summary";
        let url = format!("{}/api/v2/summary.json", cfg.base_url);
        let r = self.http.send(OP, |c| c.get(&url)).await?;
        if !(200..300).contains(&r.status) {
            return Err(self.http.status_err(OP, &r));
        }
        let page_err = |why: String| {
            Error::new(ErrorKind::Unexpected, why)
                .with_operation(OP)
                .with_backend(BACKEND)
        };
        let summary = serde_json::from_slice::<Summary>(&r.body)
            .map_err(|e| page_err("summary.json is not the expected JSON".into()).with_source(e))?;
        Self::judge(cfg, &summary).map_err(page_err)
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
        match self.read(vendor).await {
            Ok(s) => Ok(s),
            Err(e) => {
                let why = chain_text(&e);
                tracing::warn!(vendor, reason = %why, "status page unreadable: vendor health unknown");
                Ok(VendorStatus::new(VendorHealth::Unknown))
            }
        }
    }
}
