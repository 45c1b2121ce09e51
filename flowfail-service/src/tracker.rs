//! `[tracker]`: the incident tracker (GitHub Issues or Jira Cloud), kept in step with the
//! ledger by `tracker_sync` while `flowfail run` runs.

use std::sync::Arc;

use flowfail_core::ports::Tracker;
use flowfail_core::tracking::FileWhen;
use flowfail_core::{Error, Result};
use serde::Deserialize;

use crate::secret::SecretRef;

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
