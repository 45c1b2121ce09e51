#![doc = include_str!("../README.md")]

pub use flowfail_core::*;

/// PostgreSQL adapters: the TaskDB and the incident ledger (feature `pg`).
#[cfg(feature = "pg")]
pub use flowfail_pg as pg;

/// HTTP adapters: vendor quota, status pages, PagerDuty, webhooks (feature `http`).
#[cfg(feature = "http")]
pub use flowfail_http as http;

/// AWS adapters: CloudWatch Logs and S3 context bundles (feature `aws`).
#[cfg(feature = "aws")]
pub use flowfail_aws as aws;

/// Kubernetes adapter: the FlowEngine Deployment (feature `k8s`).
#[cfg(feature = "k8s")]
pub use flowfail_k8s as k8s;

/// Running flowfail for real: `flowfail.toml`, the adapters wired, the supervisor and its
/// listener (feature `live`; the crate `flowfail-service`).
#[cfg(feature = "live")]
pub use flowfail_service as live;
