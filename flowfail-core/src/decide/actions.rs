//! What the engine decides to do: an [`Action`], one variant per kind, each with its own struct
//! so that the responder dispatches an action once and each handler takes exactly its fields.

use serde::{Deserialize, Serialize};

use super::kinds::ActionKind;
use crate::model::{FailureKind, TaskId};

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Prune the task's context bundle to `max_bytes`.
    PruneContext(PruneContext),
    /// Set (or, with `value: None`, unset) an env var on the Deployment.
    SetEnv(SetEnv),
    /// Retry a task, fenced on its attempt count.
    RetryTask(RetryTask),
    /// Roll back to a recorded revision, only if the Deployment is unchanged.
    Rollback(Rollback),
    /// Check the rollout after a rollback.
    VerifyRollout(VerifyRollout),
    /// Page a human.
    Page(Page),
    /// Notify an audience.
    Notify(Notify),
}

/// Prune the task's context bundle to `max_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneContext {
    /// Task.
    pub task_id: TaskId,
    /// Bundle size seen.
    pub from_bytes: u64,
    /// Budget.
    pub max_bytes: u64,
}

/// Set (or, with `value: None`, unset) an env var on the Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetEnv {
    /// Deployment.
    pub deployment: String,
    /// Variable.
    pub name: String,
    /// New value.
    pub value: Option<String>,
    /// Why, in the runbook's words.
    pub purpose: String,
}

/// Retry a task, fenced on its attempt count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryTask {
    /// Task.
    pub task_id: TaskId,
    /// The attempt this is (1-based).
    pub attempt: u32,
    /// Attempt count the retry is fenced on.
    pub expected_attempts: u32,
    /// The failure being retried.
    pub failure_kind: FailureKind,
    /// Only if the bundle was pruned in this pass (or needs no prune).
    pub after_prune: bool,
    /// The breaker's half-open probe.
    pub probe: bool,
}

/// Roll back to a recorded revision, only if the Deployment is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// Deployment.
    pub deployment: String,
    /// Current revision.
    pub from_revision: u64,
    /// Target revision (the previous one when the incident opened).
    pub to_revision: u64,
    /// Precondition.
    pub expected_resource_version: String,
}

/// Check the rollout after a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRollout {
    /// Deployment.
    pub deployment: String,
}

/// Page a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Configured target.
    pub target: String,
    /// Short machine-readable reason (`quota_critical`, `outage_30min`, …).
    pub reason: String,
    /// Human summary.
    pub summary: String,
    /// Evidence for the human beyond the summary (the templates of a new failure mode, the
    /// evidence of an outage); `null` when there is none.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// Notify an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Audience.
    pub audience: String,
    /// Message.
    pub message: String,
    /// What about, when an incident tells an audience more than one thing (`outage_over`);
    /// part of the dedup key. `None`: the incident's first notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Action {
    /// What kind of action it is (its `kind` in reports).
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::PruneContext(_) => ActionKind::PruneContext,
            Action::SetEnv(_) => ActionKind::SetEnv,
            Action::RetryTask(_) => ActionKind::RetryTask,
            Action::Rollback(_) => ActionKind::Rollback,
            Action::VerifyRollout(_) => ActionKind::VerifyRollout,
            Action::Page(_) => ActionKind::Page,
            Action::Notify(_) => ActionKind::Notify,
        }
    }

    /// Whether carrying it out changes anything.
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Action::VerifyRollout(_))
    }

    /// The effect key used for at-most-once reservations and dedup keys (pages, notifications,
    /// rollback).
    pub fn effect_key(&self) -> Option<String> {
        match self {
            Action::Page(p) => Some(super::effects::page(&p.target, &p.reason)),
            Action::Notify(n) => Some(super::effects::notify(&n.audience, n.reason.as_deref())),
            Action::Rollback(_) => Some(super::effects::ROLLBACK.to_owned()),
            _ => None,
        }
    }

    /// What it is about, as a skip names it: the task, the env var, the revision, the target.
    pub fn subject(&self) -> String {
        match self {
            Action::PruneContext(p) => p.task_id.to_string(),
            Action::RetryTask(r) => r.task_id.to_string(),
            Action::SetEnv(s) => s.name.clone(),
            Action::Rollback(r) => format!("revision {}", r.to_revision),
            Action::VerifyRollout(v) => v.deployment.clone(),
            Action::Page(p) => p.target.clone(),
            Action::Notify(n) => n.audience.clone(),
        }
    }
}
