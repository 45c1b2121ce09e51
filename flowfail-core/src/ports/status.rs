//! Vendor status pages: the [`StatusPage`] port.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::VendorStatus;

/// Model-vendor status pages.
#[async_trait]
pub trait StatusPage: Send + Sync + Debug + 'static {
    /// The vendor's health.
    ///
    /// **Behavior**
    /// 1. A page that cannot be read or understood is `Ok(VendorHealth::Unknown)`, never an outage.
    /// 2. A vendor that is not configured is `NotFound`.
    async fn health(&self, vendor: &str) -> Result<VendorStatus>;
}
