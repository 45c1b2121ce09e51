//! [`JiraIssues`]: the incident tracker on Jira Cloud (REST API v3).

use async_trait::async_trait;
use flowfail_core::ports::{IssueText, Tracker, TrackerIssue};
use flowfail_core::tracking::incident_tag;
use flowfail_core::{Error, Result};
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{DUPLICATE_LABEL, LABEL, SETTLED_LABEL, body_cut, check_base, decode};
use crate::client::{BACKEND, Http, HttpOptions, cut};

/// The longest description sent (Jira refuses a field over 32,767 characters).
const MAX_BODY: usize = 30_000;

/// Jira Cloud: one issue per incident in a project, labelled `flowfail` and with the
/// incident's tag ([`incident_tag`], a label), found again by JQL on that label. A settled
/// incident's issue gets the `flowfail-settled` label and a comment (its workflow status is the
/// team's own: flowfail does not move it); a duplicate filed by a replica at the same time
/// loses the tag and gets `flowfail-duplicate`.
///
/// The description is the Markdown record as plain-text paragraphs of the Atlassian Document
/// Format: nothing in it is markup, so no text from a tenant can mention anyone or link.
/// Authentication is the account's e-mail and an API token (HTTP Basic).
#[derive(Debug)]
pub struct JiraIssues {
    http: Http,
    base: String,
    project: String,
    issue_type: String,
    email: String,
    token: SecretString,
    filed: std::sync::Mutex<crate::recent::Recent<Vec<u64>>>,
}

#[derive(Deserialize)]
struct Found {
    #[serde(default)]
    issues: Vec<FoundIssue>,
}

#[derive(Deserialize)]
struct FoundIssue {
    key: String,
    #[serde(default)]
    fields: Fields,
}

#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Deserialize)]
struct Created {
    /// Jira's numeric id, as a string.
    #[serde(default)]
    id: String,
    key: String,
}

/// Issues filed by this process, by incident tag (their numeric ids), for Jira's
/// read-after-write search: the search index may not hold an issue created a moment ago.
const RECONCILE: usize = 256;

/// A Jira project key (`OPS`) or issue key (`OPS-12`).
fn jira_key(s: &str, issue: bool) -> bool {
    let (project, number) = match (issue, s.rsplit_once('-')) {
        (true, Some((p, n))) => (p, Some(n)),
        (true, None) => return false,
        (false, _) => (s, None),
    };
    let b = project.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
        && number
            .is_none_or(|n| !n.is_empty() && n.len() <= 12 && n.bytes().all(|c| c.is_ascii_digit()))
}

/// Markdown as Atlassian Document Format: a heading per `#` line, a paragraph per other
/// non-empty line, every text plain.
fn adf(markdown: &str) -> serde_json::Value {
    let content: Vec<serde_json::Value> = markdown
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let level = l.bytes().take_while(|b| *b == b'#').count();
            match l.get(level..).and_then(|t| t.strip_prefix(' ')) {
                Some(t) if (1..=6).contains(&level) && !t.trim().is_empty() => serde_json::json!({
                    "type": "heading", "attrs": {"level": level},
                    "content": [{"type": "text", "text": t}],
                }),
                _ => serde_json::json!({
                    "type": "paragraph", "content": [{"type": "text", "text": l}],
                }),
            }
        })
        .collect();
    serde_json::json!({"type": "doc", "version": 1, "content": content})
}

impl JiraIssues {
    /// Issues of type `issue_type` (`Incident`, `Task`, …) in project `project` (`OPS`) of the
    /// Jira Cloud site at `base` (`https://example.atlassian.net`), as the account `email` with
    /// its API token.
    pub fn new(
        base: &str,
        project: &str,
        issue_type: &str,
        email: &str,
        token: &SecretString,
        opts: HttpOptions,
    ) -> Result<Self> {
        let bad = |msg: &str| Err(Error::invalid_input(msg.to_owned()).with_backend(BACKEND));
        if !jira_key(project, false) {
            return bad("tracker.project: not a Jira project key (OPS)");
        }
        if issue_type.trim().is_empty()
            || issue_type.len() > 60
            || issue_type.chars().any(char::is_control)
        {
            return bad("tracker.issue_type: not an issue type name");
        }
        if email.is_empty()
            || email.len() > 254
            || email.contains(':')
            || email.chars().any(char::is_control)
        {
            return bad("tracker.email: not an account e-mail");
        }
        Ok(JiraIssues {
            http: Http::new(opts)?,
            base: check_base("tracker.url", base)?,
            project: project.to_owned(),
            issue_type: issue_type.to_owned(),
            email: email.to_owned(),
            token: token.clone(),
            filed: std::sync::Mutex::new(crate::recent::Recent::new(RECONCILE)),
        })
    }

    async fn call(
        &self,
        op: &'static str,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .send(op, |c| {
                c.request(method.clone(), &url)
                    // reqwest marks the header sensitive.
                    .basic_auth(&self.email, Some(self.token.expose_secret()))
                    .header(ACCEPT, "application/json")
                    .json(&body)
            })
            .await?;
        if !(200..300).contains(&r.status) {
            return Err(self.http.status_err(op, &r));
        }
        Ok(r.body)
    }

    fn issue(&self, key: &str, incident_key: &str, settled: bool) -> TrackerIssue {
        TrackerIssue::new(
            key,
            format!("{}/browse/{key}", self.base),
            incident_key,
            settled,
        )
    }

    fn checked<'a>(op: &'static str, issue: &'a TrackerIssue) -> Result<&'a str> {
        if jira_key(&issue.id, true) {
            Ok(&issue.id)
        } else {
            Err(
                Error::invalid_input(format!("{} is not a Jira issue key", cut(&issue.id, 40)))
                    .with_operation(op)
                    .with_backend(BACKEND),
            )
        }
    }

    async fn comment(&self, key: &str, text: &str) -> Result<()> {
        let body = serde_json::json!({ "body": adf(text) });
        self.call(
            "tracker.comment",
            reqwest::Method::POST,
            &format!("/rest/api/3/issue/{key}/comment"),
            body,
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl Tracker for JiraIssues {
    async fn find(&self, incident_key: &str) -> Result<Vec<TrackerIssue>> {
        const OP: &str = "tracker.find";
        let tag = incident_tag(incident_key);
        // Both values are checked (a project key, a hex tag): nothing to escape in the JQL.
        let jql = format!(
            "project = \"{}\" AND labels = \"{tag}\" ORDER BY created ASC, key ASC",
            self.project
        );
        // Issues this process filed for the incident are asked for by id too: Jira's search
        // index may not hold them yet (`reconcileIssues`, read-after-write).
        let reconcile: Vec<u64> = self
            .filed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&tag)
            .cloned()
            .unwrap_or_default();
        let body = serde_json::json!({
            "jql": jql, "fields": ["labels"], "maxResults": 50, "reconcileIssues": reconcile,
        });
        let got = self
            .call(OP, reqwest::Method::POST, "/rest/api/3/search/jql", body)
            .await?;
        let found: Found = decode(OP, &got)?;
        Ok(found
            .issues
            .iter()
            .filter(|i| jira_key(&i.key, true))
            .filter(|i| i.fields.labels.contains(&tag))
            .filter(|i| !i.fields.labels.iter().any(|l| l == DUPLICATE_LABEL))
            .map(|i| {
                let settled = i.fields.labels.iter().any(|l| l == SETTLED_LABEL);
                self.issue(&i.key, incident_key, settled)
            })
            .collect())
    }

    async fn file(&self, text: &IssueText) -> Result<TrackerIssue> {
        const OP: &str = "tracker.file";
        let mut labels = vec![LABEL.to_owned(), incident_tag(&text.incident_key)];
        if text.settled {
            labels.push(SETTLED_LABEL.to_owned());
        }
        let body = serde_json::json!({"fields": {
            "project": {"key": self.project},
            "issuetype": {"name": self.issue_type},
            "summary": cut(&text.title, 250),
            "description": adf(&body_cut(&text.body, MAX_BODY)),
            "labels": labels,
        }});
        let got = self
            .call(OP, reqwest::Method::POST, "/rest/api/3/issue", body)
            .await?;
        let created: Created = decode(OP, &got)?;
        if !jira_key(&created.key, true) {
            return Err(Error::new(
                flowfail_core::ErrorKind::Unexpected,
                "the tracker answered with an issue key that is not one",
            )
            .with_operation(OP)
            .with_backend(BACKEND));
        }
        if let Ok(id) = created.id.parse::<u64>() {
            let tag = incident_tag(&text.incident_key);
            let mut filed = self
                .filed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut ids = filed.get(&tag).cloned().unwrap_or_default();
            ids.push(id);
            filed.insert(tag, ids);
        }
        Ok(self.issue(&created.key, &text.incident_key, text.settled))
    }

    async fn update(&self, issue: &TrackerIssue, text: &IssueText) -> Result<TrackerIssue> {
        const OP: &str = "tracker.update";
        let key = Self::checked(OP, issue)?;
        let mut body = serde_json::json!({"fields": {
            "summary": cut(&text.title, 250),
            "description": adf(&body_cut(&text.body, MAX_BODY)),
        }});
        if text.settled {
            body["update"] = serde_json::json!({"labels": [{"add": SETTLED_LABEL}]});
        }
        self.call(
            OP,
            reqwest::Method::PUT,
            &format!("/rest/api/3/issue/{key}"),
            body,
        )
        .await?;
        if text.settled && !issue.settled {
            self.comment(
                key,
                "flowfail: the incident has settled; the description is its final record.",
            )
            .await?;
        }
        Ok(self.issue(key, &text.incident_key, text.settled || issue.settled))
    }

    async fn retire(&self, duplicate: &TrackerIssue, of: &TrackerIssue) -> Result<()> {
        const OP: &str = "tracker.retire";
        let key = Self::checked(OP, duplicate)?;
        let first = Self::checked(OP, of)?;
        self.comment(
            key,
            &format!("Duplicate of {first}: filed at the same time by another flowfail replica."),
        )
        .await?;
        let body = serde_json::json!({"update": {"labels": [
            {"remove": incident_tag(&duplicate.incident_key)},
            {"add": DUPLICATE_LABEL},
        ]}});
        self.call(
            OP,
            reqwest::Method::PUT,
            &format!("/rest/api/3/issue/{key}"),
            body,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(jira_key("OPS", false) && jira_key("OPS-12", true) && jira_key("A_1-3", true));
        for bad in ["ops", "", "1OPS", "O\"PS", "OPS-1"] {
            assert!(!jira_key(bad, false), "{bad}");
        }
        for bad in ["OPS-", "OPS-1x", "OPS", "ops-1", "-1"] {
            assert!(!jira_key(bad, true), "{bad}");
        }
        assert!(!jira_key("OPS-12/../x", true));
    }

    #[test]
    fn the_record_is_plain_text_paragraphs_and_headings() {
        let d = adf("# Title\n\n- **Root cause:** <@here> [x](http://e)\n#nothing\n");
        let c = d["content"].as_array().unwrap_or(&Vec::new()).clone();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["type"], "heading");
        assert_eq!(c[0]["content"][0]["text"], "Title");
        assert_eq!(c[1]["type"], "paragraph");
        assert_eq!(
            c[1]["content"][0]["text"],
            "- **Root cause:** <@here> [x](http://e)"
        );
        assert_eq!(c[2]["type"], "paragraph");
    }
}
