#![doc = include_str!("../README.md")]

mod config;
mod error;
mod logs;
mod s3;

/// Re-exported so callers can build an [`aws_config::SdkConfig`] themselves.
pub use aws_config::SdkConfig;

pub use config::{AwsOptions, load_config};
pub use logs::CloudWatchLogSource;
pub use s3::S3BundleStore;
