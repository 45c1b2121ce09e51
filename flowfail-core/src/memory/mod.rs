//! In-memory implementations of every port, always compiled.
//!
//! They back the scenario replay, flowfail's own tests, and users' unit tests. Each is `Clone`
//! with shared state (clones see the same data), records every call ([`CallLog`]), and can
//! inject faults ([`Faults`]): an error on the Nth call, added latency (tokio time, so paused
//! tests stay instant), or a *lost reply* — the effect applies but the caller sees an error, as
//! when a network drops the response.
//!
//! ```
//! use flowfail_core::memory::MemoryTaskStore;
//! use flowfail_core::{ErrorKind, Task, TaskId, TaskStatus, FlowType, TaskStore};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = MemoryTaskStore::new();
//! let id = TaskId::parse("t-1").unwrap();
//! store.insert(Task::new(id.clone(), FlowType::Plan, TaskStatus::Failed, chrono::Utc::now()));
//! store.faults().fail_nth("task.get", 1, ErrorKind::Unavailable);
//! assert!(store.get(&id).await.is_err()); // first call fails
//! assert!(store.get(&id).await.is_ok());  // second succeeds
//! # });
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    ChangeCause, DeploymentState, EnvChange, LogEvent, Quota, RevisionInfo, RolloutStatus,
    StatusCounts, Task, TaskId, TaskStatus, Timestamp, VendorStatus,
};
use crate::operator::{Approval, Pause};
use crate::policy::Policy;
use crate::ports::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Delivery, DeploymentController, Epoch,
    IncidentListing, IncidentQuery, IncidentRecord, IncidentStore, LogBatch, LogQuery, LogSource,
    Notification, Notifier, Page, Pager, Ports, PortsBuilder, QuotaChecker, RetryOutcome,
    RetryRequest, StatusPage, TaskStore, TimelineEntry,
};

const BACKEND: &str = "memory";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Faults and call logs

/// What a fault rule does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Fail the call with this kind, before any effect.
    Fail(ErrorKind),
    /// Apply the effect, then fail the call (the reply was lost).
    LoseReply,
    /// Wait this long (tokio time) before the call.
    Delay(Duration),
    /// Panic in the call, before any effect (a bug in an adapter, data it did not expect).
    Panic,
}

#[derive(Debug, Clone)]
struct FaultRule {
    op: String,
    /// 1-based call number to hit, or every call when `None`.
    nth: Option<u64>,
    action: FaultAction,
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<FaultRule>,
    calls: HashMap<String, u64>,
}

/// Fault injection for one in-memory backend. Operation names are the ones in [`CallLog`]
/// (`"task.get"`, `"bundle.put_if_version"`, …); `"*"` matches every operation.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

/// What the backend must do after the effect.
#[derive(Debug, Clone)]
struct Ticket {
    lose_reply: bool,
    /// The recorded call, marked applied when the backend finishes it.
    call: Option<(CallLog, usize)>,
}

impl Faults {
    /// Fails the `n`th call (1-based) of `op` with `kind`.
    pub fn fail_nth(&self, op: &str, n: u64, kind: ErrorKind) {
        self.push(op, Some(n), FaultAction::Fail(kind));
    }
    /// Fails every call of `op` with `kind` until [`Faults::clear`].
    pub fn fail_always(&self, op: &str, kind: ErrorKind) {
        self.push(op, None, FaultAction::Fail(kind));
    }
    /// Applies the `n`th call of `op`, then reports an error.
    pub fn lose_reply_nth(&self, op: &str, n: u64) {
        self.push(op, Some(n), FaultAction::LoseReply);
    }
    /// Delays the `n`th call (1-based) of `op`.
    pub fn delay_nth(&self, op: &str, n: u64, by: Duration) {
        self.push(op, Some(n), FaultAction::Delay(by));
    }
    /// Delays every call of `op`.
    pub fn delay(&self, op: &str, by: Duration) {
        self.push(op, None, FaultAction::Delay(by));
    }
    /// Panics in every call of `op` until [`Faults::clear`]: for tests of panic containment.
    pub fn panic_always(&self, op: &str) {
        self.push(op, None, FaultAction::Panic);
    }
    /// Removes every rule (call counts are kept).
    pub fn clear(&self) {
        lock(&self.0).rules.clear();
    }

    fn push(&self, op: &str, nth: Option<u64>, action: FaultAction) {
        lock(&self.0).rules.push(FaultRule {
            op: op.to_owned(),
            nth,
            action,
        });
    }

    async fn enter(&self, op: &'static str) -> Result<Ticket> {
        let actions: Vec<FaultAction> = {
            let mut s = lock(&self.0);
            let n = {
                let c = s.calls.entry(op.to_owned()).or_insert(0);
                *c += 1;
                *c
            };
            s.rules
                .iter()
                .filter(|r| (r.op == op || r.op == "*") && r.nth.is_none_or(|k| k == n))
                .map(|r| r.action.clone())
                .collect()
        };
        let mut ticket = Ticket {
            lose_reply: false,
            call: None,
        };
        for a in actions {
            match a {
                FaultAction::Delay(d) => tokio::time::sleep(d).await,
                FaultAction::Fail(kind) => {
                    // A fault of a kind that real backends report for passing trouble is
                    // injected as transient, every other kind as permanent.
                    let transient = matches!(
                        kind,
                        ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::RateLimited
                    );
                    return Err(Error::new(kind, "injected fault")
                        .transient_if(transient)
                        .with_operation(op)
                        .with_backend(BACKEND));
                }
                FaultAction::LoseReply => ticket.lose_reply = true,
                // The fault this variant exists to inject: a test of panic containment.
                #[allow(clippy::panic)]
                FaultAction::Panic => panic!("injected panic in {op}"),
            }
        }
        Ok(ticket)
    }
}

impl Ticket {
    fn finish<T>(self, op: &'static str, value: T) -> Result<T> {
        if let Some((log, i)) = &self.call {
            log.mark_applied(*i, self.lose_reply);
        }
        if self.lose_reply {
            Err(Error::new(
                ErrorKind::Unavailable,
                "injected fault: reply lost after the effect applied",
            )
            .transient()
            .with_operation(op)
            .with_backend(BACKEND))
        } else {
            Ok(value)
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Call {
    /// Operation name (`"deployment.rollback"`).
    pub op: &'static str,
    /// Arguments, rendered for humans and assertions.
    pub detail: String,
    /// Whether the operation changes anything.
    pub mutation: bool,
    /// Whether the backend carried the call out (its effect applied, even when the reply was
    /// then lost); `false` for a call refused before any effect (an injected fault, a failed
    /// precondition, an unknown id).
    pub applied: bool,
    /// Whether the effect applied and its reply was then lost (an injected fault): the caller
    /// saw an error and cannot know the call landed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reply_lost: bool,
    /// The change cause a Deployment mutation carried; `None` for every other call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<ChangeCause>,
}

/// Every call an in-memory backend received, in order.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    fn record(
        &self,
        op: &'static str,
        mutation: bool,
        detail: String,
        cause: Option<ChangeCause>,
    ) -> usize {
        let mut calls = lock(&self.0);
        calls.push(Call {
            op,
            detail,
            mutation,
            applied: false,
            reply_lost: false,
            cause,
        });
        calls.len() - 1
    }
    fn mark_applied(&self, i: usize, reply_lost: bool) {
        if let Some(c) = lock(&self.0).get_mut(i) {
            c.applied = true;
            c.reply_lost = reply_lost;
        }
    }
    /// Calls whose effect applied (see [`Call::applied`]).
    pub fn applied(&self) -> Vec<Call> {
        lock(&self.0)
            .iter()
            .filter(|c| c.applied)
            .cloned()
            .collect()
    }
    /// All calls so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.0).clone()
    }
    /// Calls that change state.
    pub fn mutations(&self) -> Vec<Call> {
        lock(&self.0)
            .iter()
            .filter(|c| c.mutation)
            .cloned()
            .collect()
    }
    /// Calls of one operation.
    pub fn of(&self, op: &str) -> Vec<Call> {
        lock(&self.0)
            .iter()
            .filter(|c| c.op == op)
            .cloned()
            .collect()
    }
}

macro_rules! common_accessors {
    () => {
        /// Fault injection for this backend.
        pub fn faults(&self) -> &Faults {
            &self.faults
        }
        /// The calls this backend received.
        pub fn calls(&self) -> &CallLog {
            &self.log
        }
    };
}

async fn enter(
    log: &CallLog,
    faults: &Faults,
    op: &'static str,
    mutation: bool,
    detail: impl FnOnce() -> String,
) -> Result<Ticket> {
    enter_caused(log, faults, op, mutation, None, detail).await
}

/// [`enter`] for a Deployment mutation, recording the change cause it carries.
async fn enter_caused(
    log: &CallLog,
    faults: &Faults,
    op: &'static str,
    mutation: bool,
    cause: Option<ChangeCause>,
    detail: impl FnOnce() -> String,
) -> Result<Ticket> {
    let i = log.record(op, mutation, detail(), cause);
    let mut ticket = faults.enter(op).await?;
    ticket.call = Some((log.clone(), i));
    Ok(ticket)
}

mod bundles;
mod deployment;
mod incidents;
mod logs;
mod pager;
mod tasks;
mod tracker;
mod vendors;

pub use bundles::{MemoryBundleStore, synthesize_bundle};
pub use deployment::MemoryDeployment;
pub use incidents::MemoryIncidentStore;
pub use logs::MemoryLogSource;
pub use pager::{MemoryNotifier, MemoryPager};
pub use tasks::MemoryTaskStore;
pub use tracker::{MemoryIssue, MemoryTracker};
pub use vendors::{MemoryQuota, MemoryStatusPage};

fn not_found(op: &'static str, what: String) -> Error {
    Error::not_found(format!("{what} not found"))
        .with_operation(op)
        .with_backend(BACKEND)
}

// ---------------------------------------------------------------------------------------------
// A whole world

/// A world of in-memory backends, one per port, sharing a clock: for replays, examples and
/// tests. Keep the `World` to seed it and to inspect what the responder did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct World {
    /// Logs.
    pub logs: MemoryLogSource,
    /// TaskDB.
    pub tasks: MemoryTaskStore,
    /// Bundles.
    pub bundles: MemoryBundleStore,
    /// Quota.
    pub quota: MemoryQuota,
    /// Deployment.
    pub deployment: MemoryDeployment,
    /// Status pages.
    pub status: MemoryStatusPage,
    /// Pager.
    pub pager: MemoryPager,
    /// Notifier.
    pub notifier: MemoryNotifier,
    /// Ledger.
    pub incidents: MemoryIncidentStore,
}

impl World {
    /// An empty world: the policy's Deployment at revision 1 with no history, no tasks, no
    /// vendors.
    pub fn new(policy: &Policy, clock: Clock) -> Self {
        World {
            logs: MemoryLogSource::new(),
            tasks: MemoryTaskStore::new(),
            bundles: MemoryBundleStore::new(),
            quota: MemoryQuota::new(),
            deployment: MemoryDeployment::new(
                &policy.deployment,
                1,
                None,
                BTreeMap::new(),
                Vec::new(),
                clock,
            ),
            status: MemoryStatusPage::new(),
            pager: MemoryPager::new(policy.page_targets.iter().cloned()),
            notifier: MemoryNotifier::new(),
            incidents: MemoryIncidentStore::new(),
        }
    }

    /// The ports, sharing this world's state.
    pub fn ports(&self) -> Ports {
        self.ports_builder()
            .build()
            .unwrap_or_else(|_| unreachable!("every port is set"))
    }

    /// A [`PortsBuilder`] with every port set to this world's backends: replace the ones a test
    /// wants to wrap or swap, then build.
    pub fn ports_builder(&self) -> PortsBuilder {
        Ports::builder()
            .logs(Arc::new(self.logs.clone()))
            .tasks(Arc::new(self.tasks.clone()))
            .bundles(Arc::new(self.bundles.clone()))
            .quota(Arc::new(self.quota.clone()))
            .deployment(Arc::new(self.deployment.clone()))
            .status(Arc::new(self.status.clone()))
            .pager(Arc::new(self.pager.clone()))
            .notifier(Arc::new(self.notifier.clone()))
            .incidents(Arc::new(self.incidents.clone()))
    }

    /// Every mutating call any backend received, in backend order.
    pub fn mutations(&self) -> Vec<Call> {
        [
            self.logs.calls().mutations(),
            self.tasks.calls().mutations(),
            self.bundles.calls().mutations(),
            self.quota.calls().mutations(),
            self.deployment.calls().mutations(),
            self.status.calls().mutations(),
            self.pager.calls().mutations(),
            self.notifier.calls().mutations(),
            self.incidents.calls().mutations(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesized_bundles_are_valid_json_of_the_asked_size() {
        let id = TaskId::parse("t-1").unwrap();
        for size in [256u64, 500, 4_000, 734_003, 736_003, 1_000_000] {
            let b = synthesize_bundle(&id, size);
            assert_eq!(b.len() as u64, size, "size {size}");
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()));
        }
    }
}
