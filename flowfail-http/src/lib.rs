#![doc = include_str!("../README.md")]

mod client;
mod pager;
mod quota;
mod recent;
mod status;
mod tracker;
mod webhook;

pub use client::HttpOptions;
pub use pager::PagerDuty;
pub use quota::{AnthropicQuota, OpenAiQuota, VendorQuotas, parse_reset};
pub use status::{
    FEED_MAX_BYTES, GOOGLE_PRODUCTS, PageFormat, STATUS_REFRESH, StatusPageConfig, StatusPages,
};
pub use tracker::{GitHubIssues, JiraIssues};
pub use webhook::Webhook;
