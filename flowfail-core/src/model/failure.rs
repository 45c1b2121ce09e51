//! The runbook's failure types.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The runbook's failure types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// Timeout (45 s+): usually a context bundle that is too large.
    Timeout,
    /// Rate limit: model API quota exceeded.
    RateLimit,
    /// Validation error: invalid TaskObject schema.
    Validation,
    /// Model API 5xx: vendor outage.
    #[serde(rename = "model_api_5xx")]
    ModelApi5xx,
    /// Anything else: no automated fix.
    Unknown,
}

impl FailureKind {
    /// All kinds, in the runbook's order.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Timeout,
        FailureKind::RateLimit,
        FailureKind::Validation,
        FailureKind::ModelApi5xx,
        FailureKind::Unknown,
    ];

    /// The snake_case name used in reports and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimit => "rate_limit",
            FailureKind::Validation => "validation",
            FailureKind::ModelApi5xx => "model_api_5xx",
            FailureKind::Unknown => "unknown",
        }
    }

    /// Whether the cause lies outside FlowEngine (vendor quota or vendor outage): such failures
    /// are never a reason to roll FlowEngine back.
    pub fn is_external(self) -> bool {
        matches!(self, FailureKind::RateLimit | FailureKind::ModelApi5xx)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
