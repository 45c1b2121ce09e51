//! Running flowfail for real (feature `live`): `flowfail.toml` → real adapters → a
//! [`Supervisor`](flowfail_core::respond::Supervisor).
//!
//! ```no_run
//! # async fn f() -> flowfail::Result<()> {
//! use flowfail::live::Config;
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

mod check;
mod config;
pub mod metrics;
pub mod serve;
mod wire;

pub use config::{
    AwsConfig, Config, KubernetesConfig, Mode, NotifierConfig, PagerConfig, PostgresConfig,
    QuotaSource, SecretRef, ServerConfig, VendorConfig, VendorsConfig,
};
pub use wire::{Controls, Live, Probe};
