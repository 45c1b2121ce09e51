//! The deployment: the [`DeploymentController`] port.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ChangeCause, DeploymentState, EnvChange, RolloutStatus};

/// The FlowEngine Deployment (`kubectl set env`, guarded rollback, `rollout status`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DeploymentController: Send + Sync + Debug + 'static {
    /// The Deployment's state.
    ///
    /// **Behavior**
    /// 1. A missing Deployment is `NotFound`.
    /// 2. `resource_version` changes on every write to the Deployment.
    async fn state(&self, name: &str) -> Result<DeploymentState>;

    /// Applies env changes to the main container.
    ///
    /// **Behavior**
    /// 1. With `precondition = Some(rv)`, applies only if the Deployment's resourceVersion is
    ///    still `rv`; otherwise [`crate::ErrorKind::Conflict`] and nothing changes.
    /// 2. Setting a variable to the value it already has, or unsetting a missing one, changes
    ///    nothing (idempotent) and succeeds.
    /// 3. Returns the state after the change.
    /// 4. `cause` says why (the incident and the purpose), for this call alone: an adapter
    ///    that can record it (Kubernetes' `kubernetes.io/change-cause`) does so with this
    ///    change; nothing of it is kept for a later call. An empty cause records none.
    async fn set_env(
        &self,
        name: &str,
        changes: &[EnvChange],
        precondition: Option<String>,
        cause: &ChangeCause,
    ) -> Result<DeploymentState>;

    /// Rolls back to the given revision's template, only if the resourceVersion is still
    /// `expected_resource_version`. Never a relative "undo".
    ///
    /// **Behavior**
    /// 1. A resourceVersion that changed is `Conflict`, nothing applied.
    /// 2. A paused Deployment, or a revision no longer in the history, is
    ///    [`crate::ErrorKind::Refused`], nothing applied.
    /// 3. On success the Deployment runs `to_revision`'s template (as a new revision number,
    ///    as Kubernetes does) and the new state is returned.
    /// 4. `cause` says why, for this call alone, as for [`DeploymentController::set_env`].
    async fn rollback(
        &self,
        name: &str,
        to_revision: u64,
        expected_resource_version: &str,
        cause: &ChangeCause,
    ) -> Result<DeploymentState>;

    /// Rollout progress, judged as `kubectl rollout status` does; does not wait.
    ///
    /// **Behavior**
    /// 1. `Complete` only when the controller observed the latest generation and all replicas
    ///    are updated and available.
    async fn rollout_status(&self, name: &str) -> Result<RolloutStatus>;
}
