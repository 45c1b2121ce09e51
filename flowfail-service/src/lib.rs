//! flowfail as a service: `flowfail.toml` → real adapters → a
//! [`Supervisor`](flowfail_core::respond::Supervisor), with the listener (alert webhooks,
//! metrics, health, control calls) beside it. The facade re-exports this crate as
//! `flowfail::live` (feature `live`); `flowfail run` is [`run`].
//!
//! ```no_run
//! # async fn f() -> flowfail_core::Result<()> {
//! use flowfail_service::Config;
//! use tokio_util::sync::CancellationToken;
//!
//! let config = Config::load("flowfail.toml".as_ref())?; // validated, nothing connected yet
//! let live = config.connect().await?;                    // real adapters, lazily connected
//! live.prepare().await?;                                 // the ledger's tables
//! for p in live.check().await {                          // read-only probes
//!     println!("{} {}: {}", if p.ok { "ok  " } else { "FAIL" }, p.port, p.detail);
//! }
//! let supervisor = live.supervisor(false)?;              // the config's mode
//! let stop = CancellationToken::new();
//! let task = tokio::spawn({
//!     let stop = stop.clone();
//!     async move { supervisor.run(stop).await }
//! });
//! stop.cancel(); // on shutdown
//! task.await.ok();
//! # Ok(()) }
//! ```
//!
//! Or all of it, listener included, until a shutdown signal:
//!
//! ```no_run
//! # async fn f() -> flowfail_core::Result<()> {
//! let live = flowfail_service::Config::load("flowfail.toml".as_ref())?.connect().await?;
//! live.prepare().await?;
//! flowfail_service::run(live, false, async { /* SIGTERM */ }).await
//! # }
//! ```

mod backtest;
mod check;
mod config;
mod fleet;
mod members;
pub mod metrics;
mod mode;
mod reload;
mod run;
mod schemas;
mod secret;
pub mod serve;
mod statuses;
mod tracker;
mod tracker_sync;
mod wire;

pub use backtest::{BacktestOptions, MAX_PERIOD};
pub use config::{
    AwsConfig, Config, DeploymentConfig, KILL_SWITCH_VAR, KubernetesConfig, Mode, NotifierConfig,
    PagerConfig, PostgresConfig, QuotaSource, SecretRef, ServerConfig, VendorConfig, VendorsConfig,
    kill_switch_env,
};
pub use fleet::Fleet;
pub use run::run;
pub use schemas::{SchemaSources, SchemasConfig};
pub use statuses::{StatusValues, TaskFilterConfig};
pub use tracker::{TrackerConfig, TrackerKind};
pub use wire::{Controls, Live, Probe};
