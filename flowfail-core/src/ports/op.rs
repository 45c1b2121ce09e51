//! The port operations the responder makes, by name: each call's name in errors, logs and
//! metrics comes from here, not from a string at the call site.

/// One operation on a port (`task.get`, `deployment.set_env`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`super::TaskStore::counts`].
    TaskCounts,
    /// [`super::TaskStore::recent_failed`].
    TaskRecentFailed,
    /// [`super::TaskStore::get`].
    TaskGet,
    /// [`super::TaskStore::get_many`].
    TaskGetMany,
    /// [`super::TaskStore::task_object`].
    TaskObject,
    /// [`super::TaskStore::schedule_retries`].
    TaskScheduleRetries,
    /// [`super::LogSource::errors`].
    LogsErrors,
    /// [`super::DeploymentController::state`].
    DeploymentState,
    /// [`super::DeploymentController::set_env`].
    DeploymentSetEnv,
    /// [`super::DeploymentController::rollback`].
    DeploymentRollback,
    /// [`super::DeploymentController::rollout_status`].
    DeploymentRolloutStatus,
    /// [`super::BundleStore::head`].
    BundleHead,
    /// A context bundle's prune (read, archive, conditional write).
    PruneContext,
    /// [`super::QuotaChecker::quota`].
    Quota,
    /// [`super::StatusPage::health`].
    StatusHealth,
    /// [`super::Pager::page`].
    PagerPage,
    /// [`super::Pager::resolve`].
    PagerResolve,
    /// [`super::Notifier::notify`].
    NotifierNotify,
    /// [`super::IncidentStore::open`].
    IncidentOpen,
    /// [`super::IncidentStore::get`].
    IncidentGet,
    /// [`super::IncidentStore::find_open`].
    IncidentFindOpen,
    /// [`super::IncidentStore::latest_closed`].
    IncidentLatestClosed,
    /// [`super::IncidentStore::claim`].
    IncidentClaim,
    /// [`super::IncidentStore::check_epoch`].
    IncidentCheckEpoch,
    /// [`super::IncidentStore::append`].
    IncidentAppend,
    /// [`super::IncidentStore::save_state`].
    IncidentSaveState,
    /// [`super::IncidentStore::reserve_effect`].
    IncidentReserveEffect,
    /// [`super::IncidentStore::close`].
    IncidentClose,
    /// [`super::IncidentStore::pause_flag`].
    IncidentPauseFlag,
    /// [`super::IncidentStore::approvals`].
    IncidentApprovals,
}

impl Op {
    /// Its name: `port.method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::TaskCounts => "task.counts",
            Op::TaskRecentFailed => "task.recent_failed",
            Op::TaskGet => "task.get",
            Op::TaskGetMany => "task.get_many",
            Op::TaskObject => "task.task_object",
            Op::TaskScheduleRetries => "task.schedule_retries",
            Op::LogsErrors => "logs.errors",
            Op::DeploymentState => "deployment.state",
            Op::DeploymentSetEnv => "deployment.set_env",
            Op::DeploymentRollback => "deployment.rollback",
            Op::DeploymentRolloutStatus => "deployment.rollout_status",
            Op::BundleHead => "bundle.head",
            Op::PruneContext => "prune_context",
            Op::Quota => "quota.quota",
            Op::StatusHealth => "status.health",
            Op::PagerPage => "pager.page",
            Op::PagerResolve => "pager.resolve",
            Op::NotifierNotify => "notifier.notify",
            Op::IncidentOpen => "incident.open",
            Op::IncidentGet => "incident.get",
            Op::IncidentFindOpen => "incident.find_open",
            Op::IncidentLatestClosed => "incident.latest_closed",
            Op::IncidentClaim => "incident.claim",
            Op::IncidentCheckEpoch => "incident.check_epoch",
            Op::IncidentAppend => "incident.append",
            Op::IncidentSaveState => "incident.save_state",
            Op::IncidentReserveEffect => "incident.reserve_effect",
            Op::IncidentClose => "incident.close",
            Op::IncidentPauseFlag => "incident.pause_flag",
            Op::IncidentApprovals => "incident.approvals",
        }
    }

    /// The port whose reads count in a pass's numbers (`tasks`, `logs`, `deployment`,
    /// `bundles`, `quota`, `status`); `None` for the ledger, pages and notifications.
    pub fn read_port(self) -> Option<&'static str> {
        Some(match self {
            Op::TaskCounts
            | Op::TaskRecentFailed
            | Op::TaskGet
            | Op::TaskGetMany
            | Op::TaskObject
            | Op::TaskScheduleRetries => "tasks",
            Op::LogsErrors => "logs",
            Op::DeploymentState
            | Op::DeploymentSetEnv
            | Op::DeploymentRollback
            | Op::DeploymentRolloutStatus => "deployment",
            Op::BundleHead => "bundles",
            Op::Quota => "quota",
            Op::StatusHealth => "status",
            _ => return None,
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Op> for &'static str {
    fn from(op: Op) -> Self {
        op.as_str()
    }
}
