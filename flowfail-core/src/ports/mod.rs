//! The ports: every system the runbook touches, as an async trait.
//!
//! flowfail's engine never talks to CloudWatch, PostgreSQL, S3, Kubernetes or a vendor directly.
//! It talks to these traits, held as `Arc<dyn …>`, and each trait has
//!
//! - an in-memory implementation in [`crate::memory`], always compiled, for tests and replays;
//! - adapters in their own crates (`flowfail-aws`, `flowfail-pg`, `flowfail-k8s`, `flowfail-http`);
//! - a behavioural suite in `flowfail_core::conformance` (feature `conformance`) that every
//!   implementation runs, so the in-memory fakes and the real adapters agree.
//!
//! Each method's documentation ends with numbered **Behavior** rules: the contract the
//! conformance suite checks. Ids reach a port only as [`TaskId`](crate::model::TaskId); every
//! error is a [`crate::Error`] whose [`crate::ErrorKind`] the rules name.
//!
//! The traits are deliberately minimal (no provided methods): conveniences built on them live
//! in extension traits with blanket impls ([`crate::bundle::BundleStoreExt`]), not in
//! implementors' way.
//!
//! [`Ports`] bundles one implementation of each trait for the responder; build it with
//! [`Ports::builder`] from any mix of adapters and in-memory backends.

use std::fmt::Debug;
use std::sync::Arc;

use crate::error::Result;

mod bundles;
mod deployment;
mod incidents;
mod logs;
mod notifier;
mod op;
mod pager;
mod quota;
mod status;
mod tasks;
mod tracker;

pub use bundles::{Bundle, BundleMeta, BundleStore, BundleVersion};
pub use deployment::DeploymentController;
#[cfg(feature = "mock")]
pub use deployment::MockDeploymentController;
pub use incidents::{
    Epoch, IncidentListing, IncidentQuery, IncidentRecord, IncidentStore, TimelineEntry,
    TimelineKind,
};
pub use logs::{ERROR_PATTERN, LogBatch, LogQuery, LogSource};
pub use notifier::{Notification, Notifier};
pub use op::Op;
pub use pager::{Delivery, Page, Pager};
pub use quota::QuotaChecker;
pub use status::StatusPage;
#[cfg(feature = "mock")]
pub use tasks::MockTaskStore;
pub use tasks::{FailedRead, RetryOutcome, RetryRequest, TaskStore};
pub use tracker::{IssueText, Tracker, TrackerIssue};

/// Every port the responder uses, one implementation each.
///
/// ```
/// use std::sync::Arc;
/// use flowfail_core::memory::{MemoryTaskStore, World};
/// use flowfail_core::{Clock, Policy, ports::Ports};
///
/// let world = World::new(&Policy::default(), Clock::system());
/// // Start from any implementations; here the in-memory ones, with the TaskDB swapped.
/// let from_world = world.ports();
/// let ports = Ports::builder()
///     .logs(from_world.logs.clone())
///     .tasks(Arc::new(MemoryTaskStore::new()))
///     .bundles(from_world.bundles.clone())
///     .quota(from_world.quota.clone())
///     .deployment(from_world.deployment.clone())
///     .status(from_world.status.clone())
///     .pager(from_world.pager.clone())
///     .notifier(from_world.notifier.clone())
///     .incidents(from_world.incidents.clone())
///     .build()
///     .unwrap();
/// # let _ = ports;
///
/// // A missing port is named.
/// let e = Ports::builder().build().unwrap_err();
/// assert!(e.to_string().contains("logs"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ports {
    /// Error logs.
    pub logs: Arc<dyn LogSource>,
    /// The TaskDB.
    pub tasks: Arc<dyn TaskStore>,
    /// Context bundles.
    pub bundles: Arc<dyn BundleStore>,
    /// Vendor quota.
    pub quota: Arc<dyn QuotaChecker>,
    /// The Deployment.
    pub deployment: Arc<dyn DeploymentController>,
    /// Vendor status pages.
    pub status: Arc<dyn StatusPage>,
    /// The pager.
    pub pager: Arc<dyn Pager>,
    /// Stakeholder notifications.
    pub notifier: Arc<dyn Notifier>,
    /// The incident ledger.
    pub incidents: Arc<dyn IncidentStore>,
}

impl Ports {
    /// A builder; every port is required.
    pub fn builder() -> PortsBuilder {
        PortsBuilder::default()
    }
}

/// Builds [`Ports`]. Every port is required: [`PortsBuilder::build`] names the ones missing.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct PortsBuilder {
    logs: Option<Arc<dyn LogSource>>,
    tasks: Option<Arc<dyn TaskStore>>,
    bundles: Option<Arc<dyn BundleStore>>,
    quota: Option<Arc<dyn QuotaChecker>>,
    deployment: Option<Arc<dyn DeploymentController>>,
    status: Option<Arc<dyn StatusPage>>,
    pager: Option<Arc<dyn Pager>>,
    notifier: Option<Arc<dyn Notifier>>,
    incidents: Option<Arc<dyn IncidentStore>>,
}

impl PortsBuilder {
    /// Error logs (CloudWatch Logs in production).
    pub fn logs(mut self, p: Arc<dyn LogSource>) -> Self {
        self.logs = Some(p);
        self
    }
    /// The TaskDB (PostgreSQL in production).
    pub fn tasks(mut self, p: Arc<dyn TaskStore>) -> Self {
        self.tasks = Some(p);
        self
    }
    /// Context bundles (S3 in production).
    pub fn bundles(mut self, p: Arc<dyn BundleStore>) -> Self {
        self.bundles = Some(p);
        self
    }
    /// Vendor quota.
    pub fn quota(mut self, p: Arc<dyn QuotaChecker>) -> Self {
        self.quota = Some(p);
        self
    }
    /// The Deployment (Kubernetes in production).
    pub fn deployment(mut self, p: Arc<dyn DeploymentController>) -> Self {
        self.deployment = Some(p);
        self
    }
    /// Vendor status pages.
    pub fn status(mut self, p: Arc<dyn StatusPage>) -> Self {
        self.status = Some(p);
        self
    }
    /// The pager (PagerDuty in production).
    pub fn pager(mut self, p: Arc<dyn Pager>) -> Self {
        self.pager = Some(p);
        self
    }
    /// Stakeholder notifications (a webhook in production).
    pub fn notifier(mut self, p: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(p);
        self
    }
    /// The incident ledger (PostgreSQL in production).
    pub fn incidents(mut self, p: Arc<dyn IncidentStore>) -> Self {
        self.incidents = Some(p);
        self
    }

    /// The ports, or an [`crate::ErrorKind::InvalidInput`] error naming every missing one.
    pub fn build(self) -> Result<Ports> {
        let missing: Vec<&str> = [
            ("logs", self.logs.is_none()),
            ("tasks", self.tasks.is_none()),
            ("bundles", self.bundles.is_none()),
            ("quota", self.quota.is_none()),
            ("deployment", self.deployment.is_none()),
            ("status", self.status.is_none()),
            ("pager", self.pager.is_none()),
            ("notifier", self.notifier.is_none()),
            ("incidents", self.incidents.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        match (
            self.logs,
            self.tasks,
            self.bundles,
            self.quota,
            self.deployment,
            self.status,
            self.pager,
            self.notifier,
            self.incidents,
        ) {
            (
                Some(logs),
                Some(tasks),
                Some(bundles),
                Some(quota),
                Some(deployment),
                Some(status),
                Some(pager),
                Some(notifier),
                Some(incidents),
            ) => Ok(Ports {
                logs,
                tasks,
                bundles,
                quota,
                deployment,
                status,
                pager,
                notifier,
                incidents,
            }),
            _ => Err(
                crate::Error::invalid_input(format!("ports missing: {}", missing.join(", ")))
                    .with_operation("ports.build"),
            ),
        }
    }
}

#[allow(dead_code, clippy::too_many_arguments)]
fn _dyn_compatible(
    _: &dyn LogSource,
    _: &dyn TaskStore,
    _: &dyn BundleStore,
    _: &dyn QuotaChecker,
    _: &dyn DeploymentController,
    _: &dyn StatusPage,
    _: &dyn Pager,
    _: &dyn Notifier,
    _: &dyn IncidentStore,
) {
}
