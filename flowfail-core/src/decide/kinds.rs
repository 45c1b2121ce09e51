//! The kinds of what the engine decides and does not do, as types: [`ActionKind`] (what an
//! [`Action`](super::Action) is) and [`SkipKind`] (what a [`Skip`](super::Skip) is about). They
//! serialize as the snake_case names reports and the ledger always carried.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionKind {
    /// Prune a task's context bundle.
    PruneContext,
    /// Set or unset an env var on the Deployment.
    SetEnv,
    /// Retry a failed task.
    RetryTask,
    /// Roll the Deployment back.
    Rollback,
    /// Check a rollout.
    VerifyRollout,
    /// Page a target.
    Page,
    /// Notify an audience.
    Notify,
}

impl ActionKind {
    /// Its name in reports, metrics and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::PruneContext => "prune_context",
            ActionKind::SetEnv => "set_env",
            ActionKind::RetryTask => "retry_task",
            ActionKind::Rollback => "rollback",
            ActionKind::VerifyRollout => "verify_rollout",
            ActionKind::Page => "page",
            ActionKind::Notify => "notify",
        }
    }
}

impl PartialEq<&str> for ActionKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a decision not taken is about: an action of one kind, resolving the incident, or every
/// action (no decision at all on missing data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipKind {
    /// See [`ActionKind::PruneContext`].
    PruneContext,
    /// See [`ActionKind::SetEnv`].
    SetEnv,
    /// See [`ActionKind::RetryTask`].
    RetryTask,
    /// See [`ActionKind::Rollback`].
    Rollback,
    /// See [`ActionKind::VerifyRollout`].
    VerifyRollout,
    /// See [`ActionKind::Page`].
    Page,
    /// See [`ActionKind::Notify`].
    Notify,
    /// Resolving the incident.
    Resolve,
    /// Every action: the pass decided nothing.
    All,
}

impl SkipKind {
    /// Its name in reports and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::PruneContext => "prune_context",
            SkipKind::SetEnv => "set_env",
            SkipKind::RetryTask => "retry_task",
            SkipKind::Rollback => "rollback",
            SkipKind::VerifyRollout => "verify_rollout",
            SkipKind::Page => "page",
            SkipKind::Notify => "notify",
            SkipKind::Resolve => "resolve",
            SkipKind::All => "all",
        }
    }
}

impl From<ActionKind> for SkipKind {
    fn from(k: ActionKind) -> Self {
        match k {
            ActionKind::PruneContext => SkipKind::PruneContext,
            ActionKind::SetEnv => SkipKind::SetEnv,
            ActionKind::RetryTask => SkipKind::RetryTask,
            ActionKind::Rollback => SkipKind::Rollback,
            ActionKind::VerifyRollout => SkipKind::VerifyRollout,
            ActionKind::Page => SkipKind::Page,
            ActionKind::Notify => SkipKind::Notify,
        }
    }
}

impl PartialEq<&str> for SkipKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a rollback's rollout, as the incident's state records it
/// ([`RollbackRecord::rollout`](super::RollbackRecord::rollout), kept as its text).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RolloutVerdict {
    /// `complete`: the Deployment runs the target revision everywhere.
    Complete,
    /// `failed: <message>`: the rollout failed.
    Failed(String),
    /// `timeout`: no verdict within the policy's rollout timeout.
    Timeout,
    /// `rollback failed: <reason>`: the rollback call itself failed.
    RollbackFailed(String),
    /// Reserved by a process that stopped before the call: it never reached the Deployment.
    NeverReached,
    /// Text of no known form.
    Other(String),
}

impl RolloutVerdict {
    /// Reads a recorded verdict.
    pub fn parse(s: &str) -> Self {
        if s == "complete" {
            RolloutVerdict::Complete
        } else if s == "timeout" {
            RolloutVerdict::Timeout
        } else if s == super::ROLLBACK_NEVER_REACHED {
            RolloutVerdict::NeverReached
        } else if let Some(m) = s.strip_prefix("rollback failed: ") {
            RolloutVerdict::RollbackFailed(m.to_owned())
        } else if let Some(m) = s.strip_prefix("failed: ") {
            RolloutVerdict::Failed(m.to_owned())
        } else {
            RolloutVerdict::Other(s.to_owned())
        }
    }

    /// Whether the rollout completed.
    pub fn is_complete(&self) -> bool {
        *self == RolloutVerdict::Complete
    }
}

impl fmt::Display for RolloutVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutVerdict::Complete => f.write_str("complete"),
            RolloutVerdict::Failed(m) => write!(f, "failed: {m}"),
            RolloutVerdict::Timeout => f.write_str("timeout"),
            RolloutVerdict::RollbackFailed(m) => write!(f, "rollback failed: {m}"),
            RolloutVerdict::NeverReached => f.write_str(super::ROLLBACK_NEVER_REACHED),
            RolloutVerdict::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_names() {
        for k in [
            ActionKind::PruneContext,
            ActionKind::SetEnv,
            ActionKind::RetryTask,
            ActionKind::Rollback,
            ActionKind::VerifyRollout,
            ActionKind::Page,
            ActionKind::Notify,
        ] {
            let json = serde_json::to_value(k).unwrap_or_default();
            assert_eq!(json.as_str(), Some(k.as_str()));
            let s = SkipKind::from(k);
            assert_eq!(s.as_str(), k.as_str());
            assert_eq!(
                serde_json::to_value(s).unwrap_or_default().as_str(),
                Some(k.as_str())
            );
        }
        for v in [
            RolloutVerdict::Complete,
            RolloutVerdict::Failed("ProgressDeadlineExceeded".into()),
            RolloutVerdict::Timeout,
            RolloutVerdict::RollbackFailed("forbidden".into()),
            RolloutVerdict::NeverReached,
            RolloutVerdict::Other("something else".into()),
        ] {
            assert_eq!(RolloutVerdict::parse(&v.to_string()), v);
        }
        for s in [SkipKind::Resolve, SkipKind::All] {
            assert_eq!(
                serde_json::to_value(s).unwrap_or_default().as_str(),
                Some(s.as_str())
            );
        }
    }
}
