//! The runbook's nouns: task ids, tasks, log events, sizes, failure kinds, quota, vendor health
//! and deployment state.

use chrono::{DateTime, Utc};

/// Wall-clock time used throughout flowfail.
pub type Timestamp = DateTime<Utc>;

mod byte_size;
mod deployment;
mod failure;
mod task;
mod untrusted;
mod vendor;

pub use byte_size::ByteSize;
pub use deployment::{
    ChangeCause, DeploymentState, EnvChange, GitOpsOwner, GitOpsTool, RevisionInfo, RolloutStatus,
};
pub use failure::FailureKind;
pub use task::{
    FlowType, LogEvent, StatusCounts, TASK_ID_MAX_LEN, Task, TaskId, TaskStatus, extract_task_id,
};
pub(crate) use untrusted::describe_untrusted;
pub use untrusted::{describe_untrusted_pub, one_line, redact_url, sanitize};
pub use vendor::{Quota, QuotaUsage, VendorHealth, VendorStatus};

#[cfg(test)]
mod tests;
