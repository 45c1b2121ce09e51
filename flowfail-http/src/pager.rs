//! Paging on-call: [`PagerDuty`] on the Events API v2.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use flowfail_core::{Delivery, Error, Page, Pager, Result};
use secrecy::{ExposeSecret, SecretString};

use crate::client::{BACKEND, Http, HttpOptions, cut};
use crate::recent::{CAPACITY, Recent};

/// PagerDuty Events API v2.
///
/// Every trigger carries the configured severity ([`PagerDuty::severity`], default `error`)
/// and links ([`PagerDuty::link`]: the runbook, a dashboard), sent as the event's `links`.
///
/// A page whose dedup key was already sent by this process is not sent again
/// ([`Delivery::Deduplicated`]), and a resolve goes to the service the key was paged on. The
/// last [`PagerDuty::REMEMBERED`] keys used are remembered; an older one is forgotten, so its
/// page is sent again (PagerDuty merges it into the open incident of that key) and its resolve
/// goes to every configured service, as after a restart.
#[derive(Debug)]
pub struct PagerDuty {
    http: Http,
    base_url: String,
    routing_keys: BTreeMap<String, SecretString>,
    source: String,
    severity: &'static str,
    links: Vec<(String, String)>,
    /// Dedup key → the target it was paged on.
    sent: Mutex<Recent<String>>,
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
            severity: Self::DEFAULT_SEVERITY,
            links: Vec::new(),
            sent: Mutex::new(Recent::new(CAPACITY)),
        })
    }

    /// How many dedup keys are remembered, the least recently used forgotten first.
    pub const REMEMBERED: usize = CAPACITY;

    /// How many dedup keys are remembered now (at most [`PagerDuty::REMEMBERED`]).
    #[doc(hidden)]
    pub fn remembered(&self) -> usize {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The severities of the Events API v2, most severe first.
    pub const SEVERITIES: [&'static str; 4] = ["critical", "error", "warning", "info"];

    /// The severity when none is set: `error` (the runbook's alert is a P2).
    pub const DEFAULT_SEVERITY: &'static str = "error";

    /// The severity of every trigger: one of [`PagerDuty::SEVERITIES`], else `InvalidInput`.
    pub fn severity(mut self, severity: &str) -> Result<Self> {
        let Some(s) = Self::SEVERITIES.iter().find(|s| **s == severity) else {
            return Err(Error::invalid_input(format!(
                "PagerDuty severity {severity:?} is not one of {}",
                Self::SEVERITIES.join(", ")
            ))
            .with_backend(BACKEND));
        };
        self.severity = s;
        Ok(self)
    }

    /// A link sent with every trigger (`href` shown as `text`), in the order added.
    pub fn link(mut self, href: impl Into<String>, text: impl Into<String>) -> Self {
        self.links.push((href.into(), text.into()));
        self
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
        let r = self.http.send(op, |c| c.post(&url).json(&body)).await?;
        if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(self.http.status_err(op, &r))
        }
    }
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
            .get(&dedup)
            .is_some()
        {
            return Ok(Delivery::Deduplicated);
        }
        let mut body = serde_json::json!({
            "event_action": "trigger",
            "dedup_key": dedup,
            "payload": {
                "summary": cut(&page.summary, 1024),
                "source": self.source,
                "severity": self.severity,
                "custom_details": page.details,
            },
        });
        if !self.links.is_empty() {
            body["links"] = self
                .links
                .iter()
                .map(|(href, text)| serde_json::json!({"href": href, "text": text}))
                .collect();
        }
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
