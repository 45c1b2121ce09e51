#![doc = include_str!("../README.md")]

pub mod backtest;
pub mod breaker;
pub mod bundle;
pub mod classify;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod control;
pub mod decide;
pub mod detect;
pub mod error;
pub mod history;
pub mod invariants;
pub mod memory;
pub mod model;
pub mod operator;
pub mod policy;
pub mod ports;
mod prefilter;
pub mod prune;
pub mod replay;
pub mod report;
pub mod respond;
pub mod schema;
pub mod templates;
mod text;
pub mod tracking;
pub mod triage;

pub use bundle::{BundleStoreExt, PruneContextOutcome};
pub use classify::{Classification, RuleSet, classify, classify_failures, classify_lines};
pub use clock::Clock;
pub use error::{Error, ErrorKind, Result, Retry};
pub use model::{
    ByteSize, ChangeCause, DeploymentState, EnvChange, FailureKind, FlowType, LogEvent, Quota,
    QuotaUsage, RevisionInfo, RolloutStatus, StatusCounts, Task, TaskId, TaskStatus, Timestamp,
    VendorHealth, VendorStatus,
};
pub use policy::{Fallback, Policy};
pub use ports::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Delivery, DeploymentController, Epoch,
    IncidentRecord, IncidentStore, LogBatch, LogQuery, LogSource, Notification, Notifier, Page,
    Pager, Ports, PortsBuilder, QuotaChecker, RetryOutcome, RetryRequest, StatusPage, TaskStore,
    TimelineEntry, TimelineKind, Tracker,
};
