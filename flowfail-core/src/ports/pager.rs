//! Paging: the page, its delivery and the [`Pager`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A page to a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Page {
    /// Configured target (`on_call`, `sre`, `tech_lead`).
    pub target: String,
    /// Idempotency key (PagerDuty `dedup_key`, ≤ 255 chars): derived from the incident key.
    pub dedup_key: String,
    /// One-line summary.
    pub summary: String,
    /// Evidence for the human.
    pub details: serde_json::Value,
}

impl Page {
    /// A page.
    pub fn new(
        target: impl Into<String>,
        dedup_key: impl Into<String>,
        summary: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Page {
            target: target.into(),
            dedup_key: dedup_key.into(),
            summary: summary.into(),
            details,
        }
    }
}

/// Whether a page or notification was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// Delivered for the first time.
    Sent,
    /// A page or notification with the same key was already delivered; nothing new was sent.
    Deduplicated,
}

/// The pager (PagerDuty Events API v2).
#[async_trait]
pub trait Pager: Send + Sync + Debug + 'static {
    /// Triggers a page.
    ///
    /// **Behavior**
    /// 1. A second page with the same `dedup_key` pages nobody again: `Deduplicated`.
    /// 2. A target that is not configured is [`crate::ErrorKind::Refused`], nothing sent.
    async fn page(&self, page: &Page) -> Result<Delivery>;

    /// Resolves the page with this key.
    ///
    /// **Behavior**
    /// 1. Resolving an unknown or already resolved key succeeds.
    async fn resolve(&self, dedup_key: &str) -> Result<()>;
}
