//! CloudWatch Logs as the error-log source.

use async_trait::async_trait;
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use flowfail_core::{LogBatch, LogEvent, LogQuery, LogSource, Result};

use crate::error::sdk_err;

/// [`LogSource`] over CloudWatch Logs `FilterLogEvents`.
#[derive(Debug, Clone)]
pub struct CloudWatchLogSource {
    client: aws_sdk_cloudwatchlogs::Client,
    log_group: String,
    max_pages: usize,
}

impl CloudWatchLogSource {
    /// The runbook's log group, `/aws/lambda/flowengine`.
    pub const DEFAULT_LOG_GROUP: &'static str = "/aws/lambda/flowengine";

    /// A source reading `log_group`, at most 50 pages per query.
    pub fn new(config: &SdkConfig, log_group: impl Into<String>) -> Self {
        CloudWatchLogSource {
            client: aws_sdk_cloudwatchlogs::Client::new(config),
            log_group: log_group.into(),
            max_pages: 50,
        }
    }

    /// Bounds the pages read per query.
    pub fn max_pages(mut self, n: usize) -> Self {
        self.max_pages = n.max(1);
        self
    }

    /// The client, for setup in tests and tools.
    pub fn client(&self) -> &aws_sdk_cloudwatchlogs::Client {
        &self.client
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[async_trait]
impl LogSource for CloudWatchLogSource {
    async fn errors(&self, q: &LogQuery) -> Result<LogBatch> {
        let mut req = self
            .client
            .filter_log_events()
            .log_group_name(&self.log_group)
            .start_time(ms(q.start))
            // CloudWatch's end time is inclusive; the port's window is half-open.
            .end_time(ms(q.end) - 1)
            .limit(i32::try_from(q.max_events.clamp(1, 10_000)).unwrap_or(10_000));
        if !q.pattern.is_empty() {
            req = req.filter_pattern(&q.pattern);
        }
        let mut pages = req.into_paginator().send();
        let mut events = Vec::new();
        let mut truncated = false;
        let mut read = 0usize;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_err("logs.errors", "cloudwatch", e))?;
            read += 1;
            for e in page.events() {
                let (Some(ts), Some(msg)) = (e.timestamp(), e.message()) else {
                    continue;
                };
                let Some(at) = DateTime::<Utc>::from_timestamp_millis(ts) else {
                    continue;
                };
                if at < q.start || at >= q.end {
                    continue;
                }
                if events.len() == q.max_events {
                    truncated = true;
                    break;
                }
                events.push(LogEvent::new(at, msg));
            }
            if truncated {
                break;
            }
            if read >= self.max_pages {
                // More pages may remain: what we have is a sample, and says so.
                truncated = page.next_token().is_some();
                break;
            }
        }
        events.sort_by_key(|e| e.timestamp);
        Ok(LogBatch::new(events, truncated))
    }
}
