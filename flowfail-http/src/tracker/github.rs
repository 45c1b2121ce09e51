//! [`GitHubIssues`]: the incident tracker on GitHub Issues (REST API, 2022-11-28).

use async_trait::async_trait;
use flowfail_core::ports::{IssueText, Tracker, TrackerIssue};
use flowfail_core::tracking::incident_tag;
use flowfail_core::{Error, Result};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use secrecy::SecretString;
use serde::Deserialize;

use super::{DUPLICATE_LABEL, LABEL, SETTLED_LABEL, body_cut, check_base, decode, issue_number};
use crate::client::{BACKEND, Http, HttpOptions, bearer};

/// The longest body sent (GitHub refuses over 65,536 characters).
const MAX_BODY: usize = 60_000;
/// Issues one lookup reads (one page): more for one incident is an error, never a guess.
const PER_PAGE: usize = 100;

/// GitHub Issues: one issue per incident in `owner/name`, labelled `flowfail` and with the
/// incident's tag ([`incident_tag`]) as a label, found again by both labels and a marker
/// comment at the top of its body (`<!-- flowfail-incident flowfail-<hash> -->`). A settled
/// incident's issue gets the `flowfail-settled` label and is closed with a comment (closing
/// it by hand does not stop the record from being written); a duplicate filed by a replica at
/// the same time loses the tag and is closed as not planned, labelled `flowfail-duplicate`.
///
/// The body is flowfail's Markdown record, in which every text from outside is escaped; `@`
/// is sent as a full-width `＠` so that no text from a tenant can mention a person or a team.
#[derive(Debug)]
pub struct GitHubIssues {
    http: Http,
    api: String,
    repo: String,
    token: SecretString,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    html_url: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

impl GitHubIssues {
    /// Issues of `repo` (`owner/name`) through the API at `api` (`https://api.github.com`, or
    /// a GitHub Enterprise Server's `https://HOST/api/v3`), with a token allowed to write
    /// issues there.
    pub fn new(api: &str, repo: &str, token: SecretString, opts: HttpOptions) -> Result<Self> {
        let ok = |part: &str| {
            !part.is_empty()
                && part.len() <= 100
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && part != "."
                && part != ".."
        };
        match repo.split_once('/') {
            Some((owner, name)) if ok(owner) && ok(name) => {}
            _ => {
                return Err(Error::invalid_input(
                    "tracker.repo: not an owner/name GitHub repository",
                )
                .with_backend(BACKEND));
            }
        }
        Ok(GitHubIssues {
            http: Http::new(opts)?,
            api: check_base("tracker.url", api)?,
            repo: repo.to_owned(),
            token,
        })
    }

    fn issues_url(&self) -> String {
        format!("{}/repos/{}/issues", self.api, self.repo)
    }

    async fn call(
        &self,
        op: &'static str,
        method: reqwest::Method,
        url: String,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>> {
        let auth = bearer(&self.token)?;
        let r = self
            .http
            .send(op, |c| {
                let b = c
                    .request(method.clone(), &url)
                    .header(AUTHORIZATION, auth.clone())
                    .header(ACCEPT, "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28");
                match &body {
                    Some(j) => b.json(j),
                    None => b,
                }
            })
            .await?;
        if !(200..300).contains(&r.status) {
            return Err(self.http.status_err(op, &r));
        }
        Ok(r.body)
    }

    fn body(text: &IssueText) -> String {
        let md = text.body.replace('@', "＠");
        format!(
            "{}\n\n{}",
            marker(&text.incident_key),
            body_cut(&md, MAX_BODY)
        )
    }

    async fn comment(&self, number: u64, text: &str) -> Result<()> {
        let url = format!("{}/{number}/comments", self.issues_url());
        let body = serde_json::json!({ "body": text });
        self.call("tracker.comment", reqwest::Method::POST, url, Some(body))
            .await
            .map(drop)
    }

    fn tracker_issue(&self, i: &Issue, key: &str) -> TrackerIssue {
        TrackerIssue::new(
            i.number.to_string(),
            i.html_url.clone(),
            key,
            i.labels.iter().any(|l| l.name == SETTLED_LABEL),
        )
    }
}

/// The marker line an incident's issue starts with.
fn marker(incident_key: &str) -> String {
    format!("<!-- flowfail-incident {} -->", incident_tag(incident_key))
}

#[async_trait]
impl Tracker for GitHubIssues {
    async fn find(&self, incident_key: &str) -> Result<Vec<TrackerIssue>> {
        const OP: &str = "tracker.find";
        let tag = incident_tag(incident_key);
        let marker = marker(incident_key);
        let url = format!(
            "{}?labels={LABEL},{tag}&state=all&sort=created&direction=asc&per_page={PER_PAGE}",
            self.issues_url()
        );
        let body = self.call(OP, reqwest::Method::GET, url, None).await?;
        let issues: Vec<Issue> = decode(OP, &body)?;
        if issues.len() >= PER_PAGE {
            return Err(Error::new(
                flowfail_core::ErrorKind::Unexpected,
                format!("{PER_PAGE} or more issues carry one incident's tag: not guessing which"),
            )
            .with_operation(OP)
            .with_backend(BACKEND));
        }
        Ok(issues
            .iter()
            .filter(|i| i.pull_request.is_none())
            .filter(|i| {
                !i.labels.iter().any(|l| l.name == DUPLICATE_LABEL)
                    && i.labels.iter().any(|l| l.name == tag)
            })
            .filter(|i| {
                i.body
                    .as_deref()
                    .is_some_and(|b| b.lines().next() == Some(marker.as_str()))
            })
            .map(|i| self.tracker_issue(i, incident_key))
            .collect())
    }

    async fn file(&self, text: &IssueText) -> Result<TrackerIssue> {
        const OP: &str = "tracker.file";
        let body = serde_json::json!({
            "title": text.title,
            "body": Self::body(text),
            "labels": [LABEL, incident_tag(&text.incident_key)],
        });
        let got = self
            .call(OP, reqwest::Method::POST, self.issues_url(), Some(body))
            .await?;
        let issue: Issue = decode(OP, &got)?;
        let filed = self.tracker_issue(&issue, &text.incident_key);
        if text.settled {
            return self.update(&filed, text).await;
        }
        Ok(filed)
    }

    async fn update(&self, issue: &TrackerIssue, text: &IssueText) -> Result<TrackerIssue> {
        const OP: &str = "tracker.update";
        let number = issue_number(OP, &issue.id)?;
        let mut body = serde_json::json!({
            "title": text.title,
            "body": Self::body(text),
        });
        if text.settled {
            body["state"] = "closed".into();
            body["state_reason"] = "completed".into();
            body["labels"] =
                serde_json::json!([LABEL, incident_tag(&text.incident_key), SETTLED_LABEL]);
        }
        let url = format!("{}/{number}", self.issues_url());
        let got = self
            .call(OP, reqwest::Method::PATCH, url, Some(body))
            .await?;
        let updated: Issue = decode(OP, &got)?;
        if text.settled && !issue.settled {
            self.comment(
                number,
                "flowfail: the incident has settled; the record above is final.",
            )
            .await?;
        }
        Ok(self.tracker_issue(&updated, &text.incident_key))
    }

    async fn retire(&self, duplicate: &TrackerIssue, of: &TrackerIssue) -> Result<()> {
        const OP: &str = "tracker.retire";
        let number = issue_number(OP, &duplicate.id)?;
        let first = issue_number(OP, &of.id)?;
        self.comment(
            number,
            &format!("Duplicate of #{first}: filed at the same time by another flowfail replica."),
        )
        .await?;
        let body = serde_json::json!({
            "state": "closed",
            "state_reason": "not_planned",
            "labels": [LABEL, DUPLICATE_LABEL],
        });
        let url = format!("{}/{number}", self.issues_url());
        self.call(OP, reqwest::Method::PATCH, url, Some(body))
            .await
            .map(drop)
    }
}
