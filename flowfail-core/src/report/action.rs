//! One action as the report records it: its fields, its outcome, its timeline line.

use crate::decide::actions;
use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::decide::{Action, ActionOutcome, Applied};
use crate::model::{FailureKind, Timestamp};

/// One action in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ActionRecord {
    /// When (virtual time in a replay).
    pub at: Timestamp,
    /// The action, flattened: `kind` and its fields.
    #[serde(flatten)]
    pub action: ActionFields,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it was skipped or failed, or what it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The report's fields of an action (per the scenario format: `prune_context` has `task_id`,
/// `from_bytes`, `to_bytes`; `set_env` has `deployment`, `name`, `value`; …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionFields {
    /// See [`Action::PruneContext`].
    PruneContext {
        /// Task.
        task_id: String,
        /// Size before.
        from_bytes: u64,
        /// Size after (the budget when not applied).
        to_bytes: u64,
    },
    /// See [`Action::SetEnv`].
    SetEnv {
        /// Deployment.
        deployment: String,
        /// Variable.
        name: String,
        /// Value (null: unset).
        value: Option<String>,
        /// Why.
        purpose: String,
    },
    /// See [`Action::RetryTask`].
    RetryTask {
        /// Task.
        task_id: String,
        /// Attempt, 1-based.
        attempt: u32,
        /// Failure retried.
        failure_kind: FailureKind,
        /// Half-open probe.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        probe: bool,
    },
    /// See [`Action::Rollback`].
    Rollback {
        /// Deployment.
        deployment: String,
        /// From.
        from_revision: u64,
        /// To.
        to_revision: u64,
    },
    /// The rollout verdict after a rollback.
    VerifyRollout {
        /// Deployment.
        deployment: String,
        /// `complete`, `failed` or `timeout`.
        status: String,
    },
    /// See [`Action::Page`].
    Page {
        /// Target.
        target: String,
        /// Reason.
        reason: String,
        /// Summary.
        summary: String,
    },
    /// See [`Action::Notify`].
    Notify {
        /// Audience.
        audience: String,
        /// Message.
        message: String,
    },
}

impl ActionFields {
    /// The report fields of a decided action (`to_bytes` = the budget until known).
    pub fn from_action(a: &Action) -> Self {
        match a.clone() {
            Action::PruneContext(actions::PruneContext {
                task_id,
                from_bytes,
                max_bytes,
            }) => ActionFields::PruneContext {
                task_id: task_id.to_string(),
                from_bytes,
                to_bytes: max_bytes,
            },
            Action::SetEnv(actions::SetEnv {
                deployment,
                name,
                value,
                purpose,
            }) => ActionFields::SetEnv {
                deployment,
                name,
                value,
                purpose,
            },
            Action::RetryTask(actions::RetryTask {
                task_id,
                attempt,
                failure_kind,
                probe,
                ..
            }) => ActionFields::RetryTask {
                task_id: task_id.to_string(),
                attempt,
                failure_kind,
                probe,
            },
            Action::Rollback(actions::Rollback {
                deployment,
                from_revision,
                to_revision,
                ..
            }) => ActionFields::Rollback {
                deployment,
                from_revision,
                to_revision,
            },
            Action::VerifyRollout(actions::VerifyRollout { deployment }) => {
                ActionFields::VerifyRollout {
                    deployment,
                    status: "unknown".into(),
                }
            }
            Action::Page(actions::Page {
                target,
                reason,
                summary,
                ..
            }) => ActionFields::Page {
                target,
                reason,
                summary,
            },
            Action::Notify(actions::Notify {
                audience, message, ..
            }) => ActionFields::Notify { audience, message },
        }
    }

    /// The `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionFields::PruneContext { .. } => "prune_context",
            ActionFields::SetEnv { .. } => "set_env",
            ActionFields::RetryTask { .. } => "retry_task",
            ActionFields::Rollback { .. } => "rollback",
            ActionFields::VerifyRollout { .. } => "verify_rollout",
            ActionFields::Page { .. } => "page",
            ActionFields::Notify { .. } => "notify",
        }
    }
}

/// How the report shows an action and what came of it: its fields (with what the action
/// returned: a pruned size, a rollout verdict), the outcome and the detail. `None` for what the
/// report does not show (a rollout check in a dry run, a rollout still in progress, an action
/// deferred by the rate limit — the report has its skip — or superseded by another claim). The
/// one conversion from what an action came to into what the report and the ledger show.
pub fn rendered(
    action: &Action,
    outcome: &ActionOutcome,
) -> Option<(ActionFields, Outcome, Option<String>)> {
    let fields = ActionFields::from_action(action);
    Some(match outcome {
        ActionOutcome::Applied(applied) => return rendered_applied(action, fields, applied),
        ActionOutcome::DryRun if matches!(action, Action::VerifyRollout(_)) => return None,
        ActionOutcome::Deferred | ActionOutcome::Superseded => return None,
        ActionOutcome::DryRun => (fields, Outcome::DryRun, None),
        ActionOutcome::Refused { reason } | ActionOutcome::DoneElsewhere { reason } => {
            (fields, Outcome::Skipped, Some(reason.clone()))
        }
        ActionOutcome::Failed { reason, .. } | ActionOutcome::Unknown { reason } => {
            (fields, Outcome::Failed, Some(reason.clone()))
        }
    })
}

fn rendered_applied(
    action: &Action,
    fields: ActionFields,
    applied: &Applied,
) -> Option<(ActionFields, Outcome, Option<String>)> {
    Some(match (action, applied) {
        (
            Action::PruneContext(actions::PruneContext { task_id, .. }),
            Applied::Pruned {
                from_bytes,
                to_bytes,
                archive_checksum,
            },
        ) => (
            ActionFields::PruneContext {
                task_id: task_id.to_string(),
                from_bytes: *from_bytes,
                to_bytes: *to_bytes,
            },
            Outcome::Applied,
            Some(format!(
                "original archived as sha256 {}",
                archive_checksum.get(..16).unwrap_or(archive_checksum)
            )),
        ),
        (
            Action::PruneContext(actions::PruneContext {
                task_id,
                from_bytes,
                ..
            }),
            Applied::AlreadySmall { bytes },
        ) => (
            ActionFields::PruneContext {
                task_id: task_id.to_string(),
                from_bytes: *from_bytes,
                to_bytes: *bytes,
            },
            Outcome::Skipped,
            Some("bundle already within budget".into()),
        ),
        (
            Action::VerifyRollout(actions::VerifyRollout { deployment }),
            Applied::RolloutVerdict { verdict },
        ) => (
            ActionFields::VerifyRollout {
                deployment: deployment.clone(),
                status: verdict.to_string(),
            },
            if verdict.is_complete() {
                Outcome::Applied
            } else {
                Outcome::Failed
            },
            None,
        ),
        (_, Applied::RolloutPending) => return None,
        (Action::Page(_), Applied::Delivered { deduplicated: true }) => (
            fields,
            Outcome::Applied,
            Some("deduplicated by the pager".into()),
        ),
        _ => (fields, Outcome::Applied, None),
    })
}
pub(super) fn describe(a: &ActionFields, outcome: Outcome, detail: Option<&str>) -> String {
    let what = match a {
        ActionFields::PruneContext {
            task_id,
            from_bytes,
            to_bytes,
        } => format!("prune_context {task_id}: {from_bytes} -> {to_bytes} bytes"),
        ActionFields::SetEnv {
            deployment,
            name,
            value,
            ..
        } => match value {
            Some(v) => format!("set_env {deployment} {name}={v}"),
            None => format!("set_env {deployment} {name} (unset)"),
        },
        ActionFields::RetryTask {
            task_id,
            attempt,
            failure_kind,
            probe,
        } => format!(
            "retry_task {task_id} attempt {attempt} ({failure_kind}{})",
            if *probe { ", half-open probe" } else { "" }
        ),
        ActionFields::Rollback {
            deployment,
            from_revision,
            to_revision,
        } => format!("rollback {deployment} revision {from_revision} -> {to_revision}"),
        ActionFields::VerifyRollout { deployment, status } => {
            format!("rollout status {deployment}: {status}")
        }
        ActionFields::Page {
            target, summary, ..
        } => format!("page {target}: {summary}"),
        ActionFields::Notify { audience, message } => format!("notify {audience}: {message}"),
    };
    let o = match outcome {
        Outcome::Applied => "applied",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "FAILED",
        Outcome::DryRun => "dry run",
    };
    match detail {
        Some(d) => format!("{what} [{o}: {d}]"),
        None => format!("{what} [{o}]"),
    }
}
