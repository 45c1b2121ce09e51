//! In-memory [`QuotaChecker`](crate::ports::QuotaChecker) and [`StatusPage`](crate::ports::StatusPage).

use super::*;

/// In-memory [`QuotaChecker`].
#[derive(Debug, Clone, Default)]
pub struct MemoryQuota {
    quotas: Arc<Mutex<HashMap<String, Quota>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryQuota {
    /// No vendors configured.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Sets a vendor's quota.
    pub fn set(&self, vendor: &str, quota: Quota) {
        lock(&self.quotas).insert(vendor.to_owned(), quota);
    }
}

#[async_trait]
impl QuotaChecker for MemoryQuota {
    async fn quota(&self, vendor: &str) -> Result<Quota> {
        let t = enter(&self.log, &self.faults, "quota.quota", false, || {
            vendor.to_owned()
        })
        .await?;
        let q = lock(&self.quotas)
            .get(vendor)
            .cloned()
            .ok_or_else(|| not_found("quota.quota", format!("vendor {vendor:?}")))?;
        t.finish("quota.quota", q)
    }
}

/// In-memory [`StatusPage`].
#[derive(Debug, Clone, Default)]
pub struct MemoryStatusPage {
    statuses: Arc<Mutex<HashMap<String, VendorStatus>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryStatusPage {
    /// No vendors configured.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Sets a vendor's status.
    pub fn set(&self, vendor: &str, status: VendorStatus) {
        lock(&self.statuses).insert(vendor.to_owned(), status);
    }
}

#[async_trait]
impl StatusPage for MemoryStatusPage {
    async fn health(&self, vendor: &str) -> Result<VendorStatus> {
        let t = enter(&self.log, &self.faults, "status.health", false, || {
            vendor.to_owned()
        })
        .await?;
        let s = lock(&self.statuses)
            .get(vendor)
            .cloned()
            .ok_or_else(|| not_found("status.health", format!("vendor {vendor:?}")))?;
        t.finish("status.health", s)
    }
}
