//! Vendor quota and vendor health.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// A vendor's quota usage as read from its API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuotaUsage {
    /// Share of the quota used, 0.0..=1.0.
    pub used_ratio: f64,
    /// The limit, in the vendor's unit, when known.
    #[serde(default)]
    pub limit: Option<u64>,
    /// What remains, when known.
    #[serde(default)]
    pub remaining: Option<u64>,
    /// When the quota resets, when known.
    #[serde(default)]
    pub reset_at: Option<Timestamp>,
}

impl QuotaUsage {
    /// Usage with only the ratio known; the ratio is clamped to 0..=1 (NaN becomes 1.0, the safe side).
    pub fn from_ratio(used_ratio: f64) -> Self {
        let r = if used_ratio.is_nan() {
            1.0
        } else {
            used_ratio.clamp(0.0, 1.0)
        };
        QuotaUsage {
            used_ratio: r,
            limit: None,
            remaining: None,
            reset_at: None,
        }
    }
}

/// Quota as a check reports it: known, or unknown with the reason. Unknown is never 0 % or 100 %.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Quota {
    /// The vendor reported usage.
    Known(QuotaUsage),
    /// The usage could not be read.
    Unknown {
        /// Why not.
        reason: String,
    },
}

/// A vendor's health from its status page. `Unknown` (page unreadable) is neither healthy nor an
/// outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VendorHealth {
    /// All good.
    Operational,
    /// Slower than usual.
    DegradedPerformance,
    /// Some requests fail.
    PartialOutage,
    /// Most requests fail.
    MajorOutage,
    /// Planned maintenance.
    UnderMaintenance,
    /// The status could not be read or understood.
    Unknown,
}

impl VendorHealth {
    /// Parses a Statuspage (or incident.io) component status; anything unrecognised is `Unknown`.
    pub fn from_status(s: &str) -> Self {
        match s {
            "operational" => VendorHealth::Operational,
            "degraded_performance" => VendorHealth::DegradedPerformance,
            "partial_outage" => VendorHealth::PartialOutage,
            "major_outage" | "full_outage" => VendorHealth::MajorOutage,
            "under_maintenance" => VendorHealth::UnderMaintenance,
            _ => VendorHealth::Unknown,
        }
    }

    /// Whether the vendor is known to be failing requests (degraded, partial or major outage).
    pub fn is_degraded(self) -> bool {
        matches!(
            self,
            VendorHealth::DegradedPerformance
                | VendorHealth::PartialOutage
                | VendorHealth::MajorOutage
                | VendorHealth::UnderMaintenance
        )
    }

    /// Whether the vendor is known to be healthy. `Unknown` is not.
    pub fn is_operational(self) -> bool {
        self == VendorHealth::Operational
    }
}

/// A vendor's health and, during an outage, when the open incident started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VendorStatus {
    /// Health of the components flowfail depends on.
    pub health: VendorHealth,
    /// Start of the open incident, when the page gives one.
    #[serde(default)]
    pub since: Option<Timestamp>,
}

impl VendorStatus {
    /// A status with no known start.
    pub fn new(health: VendorHealth) -> Self {
        VendorStatus {
            health,
            since: None,
        }
    }
    /// Sets the incident start.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }
}
