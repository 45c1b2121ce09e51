//! The operator's controls as data: a pause, an approval, and the names and bounds they use.
//!
//! A leaf module: the ports, the policy and the engine read these types; what acts on them
//! (validating, writing to the ledger, gating a decision) lives in [`crate::control`], which
//! re-exports them.

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// The actions a policy may hold for approval (`require_approval`), as `flowfail approve`
/// names them:
///
/// | name | the action |
/// |---|---|
/// | `rollback` | the guarded rollback to the revision recorded at open |
/// | `manual_review` | setting the manual review env var (no healthy fallback) |
/// | `fallback_model` | routing to the fallback model |
/// | `circuit_breaker` | enabling FlowEngine's circuit breaker |
/// | `prune_context` | pruning a context bundle (each one) |
///
/// Undoing flowfail's own env changes is never gated.
pub const GATED_ACTIONS: &[&str] = &[
    "rollback",
    "manual_review",
    "fallback_model",
    "circuit_breaker",
    "prune_context",
];

/// The longest `approval_ttl_s` a policy may set: a week.
pub const MAX_APPROVAL_TTL_S: u64 = 7 * 24 * 3600;

/// The longest pause reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The longest name of who paused, resumed or approved, in characters.
pub const MAX_BY_CHARS: usize = 100;

/// The effect key of the one notice a paused responder pages per incident.
pub const PAUSED_NOTICE_REASON: &str = "automation_paused";

/// Automation is paused in a scope: who paused it, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pause {
    /// Why (free text from the operator; validated, never interpreted).
    pub reason: String,
    /// Who.
    pub by: String,
    /// Since when.
    pub since: Timestamp,
}

impl Pause {
    /// A pause. Use [`crate::control::pause`] to validate the text and set it in the ledger.
    pub fn new(reason: impl Into<String>, by: impl Into<String>, since: Timestamp) -> Self {
        Pause {
            reason: reason.into(),
            by: by.into(),
            since,
        }
    }
}

/// A human approved a gated action for one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Approval {
    /// The incident key.
    pub incident: String,
    /// The action's name (one of [`GATED_ACTIONS`]).
    pub action: String,
    /// Who approved.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// A "no": the action is not carried out, nor proposed again, in this incident.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub denied: bool,
    /// Why it was denied (operator text, validated, never interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Approval {
    /// An approval. Use [`crate::control::approve`] to validate it and record it in the ledger.
    pub fn new(
        incident: impl Into<String>,
        action: impl Into<String>,
        by: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        Approval {
            incident: incident.into(),
            action: action.into(),
            by: by.into(),
            at,
            denied: false,
            reason: None,
        }
    }

    /// A denial of `action` for `incident`, with its reason. Use [`crate::control::deny`] to
    /// validate it and record it in the ledger.
    pub fn denial(
        incident: impl Into<String>,
        action: impl Into<String>,
        by: impl Into<String>,
        reason: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        Approval {
            denied: true,
            reason: Some(reason.into()),
            ..Approval::new(incident, action, by, at)
        }
    }
}
