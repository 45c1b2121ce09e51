//! Notifications to stakeholders: the [`Notifier`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Delivery;
use crate::error::Result;

/// A notification to an audience (stakeholders).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// Audience (`stakeholders`).
    pub audience: String,
    /// Idempotency key.
    pub dedup_key: String,
    /// The message.
    pub message: String,
}

impl Notification {
    /// A notification.
    pub fn new(
        audience: impl Into<String>,
        dedup_key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Notification {
            audience: audience.into(),
            dedup_key: dedup_key.into(),
            message: message.into(),
        }
    }
}

/// Stakeholder notifications (a chat webhook).
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Sends a notification.
    ///
    /// **Behavior**
    /// 1. A second notification with the same `dedup_key` is `Deduplicated`.
    async fn notify(&self, notification: &Notification) -> Result<Delivery>;
}
