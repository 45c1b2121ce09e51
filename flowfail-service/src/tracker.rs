//! `[tracker]`: the incident tracker (GitHub Issues or Jira Cloud), kept in step with the
//! ledger by [`keep_in_step`] while `flowfail run` runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use flowfail_core::clock::Clock;
use flowfail_core::ports::Tracker;
use flowfail_core::report::Conduct;
use flowfail_core::tracking::{FileWhen, Synced, sync};
use flowfail_core::{Error, Result};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::SecretRef;
use crate::metrics::Metrics;
use crate::wire::Controls;

/// Which tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrackerKind {
    /// GitHub Issues (`repo`).
    Github,
    /// Jira Cloud (`project`, `issue_type`, `email`).
    Jira,
}

/// The incident tracker: one issue per acting incident, filed when it opens (or when it
/// closes, `file_when = "close"`), updated with the record when it settles, found again by the
/// incident key after a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TrackerConfig {
    /// `github` or `jira`.
    pub kind: TrackerKind,
    /// The API's base URL: GitHub's by default (`https://api.github.com`; a GitHub Enterprise
    /// Server's is `https://HOST/api/v3`); the Jira Cloud site (`https://example.atlassian.net`).
    pub url: Option<String>,
    /// GitHub: the repository, `owner/name`.
    pub repo: Option<String>,
    /// Jira: the project key (`OPS`).
    pub project: Option<String>,
    /// Jira: the issue type (default `Incident`).
    pub issue_type: Option<String>,
    /// Jira: the account's e-mail (its API token is `token`).
    pub email: Option<String>,
    /// The token, by reference: a GitHub token allowed to write issues, or the Jira account's
    /// API token.
    pub token: SecretRef,
    /// When an incident's issue is filed: `open` (default) or `close`.
    #[serde(default)]
    pub file_when: FileWhen,
}

impl TrackerConfig {
    /// The adapter: every value checked, the token resolved.
    pub fn build(&self) -> Result<Arc<dyn Tracker>> {
        let token = self.token.resolve("tracker.token")?;
        let opts = flowfail_http::HttpOptions::default();
        let need = |v: &Option<String>, key: &str| {
            v.clone().ok_or_else(|| {
                Error::invalid_input(format!("tracker.{key}: needed for this kind of tracker"))
            })
        };
        Ok(match self.kind {
            TrackerKind::Github => {
                let url = self.url.as_deref().unwrap_or("https://api.github.com");
                Arc::new(flowfail_http::GitHubIssues::new(
                    url,
                    &need(&self.repo, "repo")?,
                    token,
                    opts,
                )?)
            }
            TrackerKind::Jira => Arc::new(flowfail_http::JiraIssues::new(
                &need(&self.url, "url")?,
                &need(&self.project, "project")?,
                self.issue_type.as_deref().unwrap_or("Incident"),
                &need(&self.email, "email")?,
                &token,
                opts,
            )?),
        })
    }
}

/// How far back incidents are brought in step (one not settled in the tracker by then is
/// left as it is).
const LOOK_BACK: TimeDelta = TimeDelta::days(7);
/// Incidents read per round.
const PER_ROUND: usize = 50;
/// Keys remembered as settled in the tracker (the set is emptied when it is full: they are
/// found settled again by their key).
const REMEMBERED: usize = 4096;

/// Brings the tracker in step with the ledger every `every` until `stop`: each acting
/// incident of the last seven days gets its issue ([`sync`]). A tracker that fails is logged
/// and counted (`flowfail_data_gaps{port="tracker"}`) and tried again next round: the
/// responder never waits for it.
pub(crate) async fn keep_in_step(
    tracker: Arc<dyn Tracker>,
    controls: Controls,
    when: FileWhen,
    every: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut settled: HashSet<String> = HashSet::new();
    loop {
        round(tracker.as_ref(), &controls, when, &metrics, &mut settled).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One round of [`keep_in_step`].
async fn round(
    tracker: &dyn Tracker,
    controls: &Controls,
    when: FileWhen,
    metrics: &Metrics,
    settled: &mut HashSet<String>,
) {
    let since = Clock::system().now() - LOOK_BACK;
    let lines = match controls.incidents(false, Some(since), PER_ROUND).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "tracker: the ledger could not be read; next round");
            return;
        }
    };
    if settled.len() >= REMEMBERED {
        settled.clear();
    }
    for line in lines {
        if line.mode == Conduct::Shadow || settled.contains(&line.key) {
            continue;
        }
        let view = match controls.incident(&line.key).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(incident = %line.key, error = %e, "tracker: incident not readable; next round");
                continue;
            }
        };
        match sync(tracker, &view, when).await {
            Ok(Synced::Filed(i)) => {
                metrics.tracker_wrote("filed");
                tracing::info!(incident = %line.key, issue = %i.id, url = %i.url, settled = i.settled, "tracker: issue filed");
                if i.settled {
                    settled.insert(line.key);
                }
            }
            Ok(Synced::Settled(i)) => {
                metrics.tracker_wrote("settled");
                tracing::info!(incident = %line.key, issue = %i.id, url = %i.url, "tracker: issue updated with the settled record");
                settled.insert(line.key);
            }
            Ok(Synced::Unchanged(i)) if i.settled => {
                settled.insert(line.key);
            }
            Ok(_) => {}
            Err(e) => {
                metrics.tracker_failed();
                tracing::warn!(incident = %line.key, error = %e, "tracker: not brought in step; next round");
            }
        }
    }
}
