//! Vendor quota: the [`QuotaChecker`] port.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Quota;

/// Model-vendor quota usage.
#[async_trait]
pub trait QuotaChecker: Send + Sync + Debug + 'static {
    /// The vendor's quota usage.
    ///
    /// **Behavior**
    /// 1. Usage that cannot be read or understood is `Ok(Quota::Unknown { .. })`, never 0 % or 100 %.
    /// 2. A known `used_ratio` is within `0.0..=1.0`.
    /// 3. A vendor that is not configured is [`crate::ErrorKind::NotFound`].
    async fn quota(&self, vendor: &str) -> Result<Quota>;
}
