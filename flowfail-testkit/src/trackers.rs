//! Local servers that answer as GitHub Issues and Jira Cloud do ([`FakeGitHub`],
//! [`FakeJira`]): stateful, for the tracker adapters' conformance suite and the end-to-end
//! tests, in the shapes of the recorded samples under `testdata/tracker/`. Each keeps what it
//! was sent, so a test asserts on the tracker's state, not on flowfail's report.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

const GITHUB_ISSUE: &str = include_str!("../../testdata/tracker/github-issue.json");
const GITHUB_PULL: &str = include_str!("../../testdata/tracker/github-pull-request-in-issues.json");
const JIRA_CREATED: &str = include_str!("../../testdata/tracker/jira-create-issue.json");
const JIRA_SEARCH: &str = include_str!("../../testdata/tracker/jira-search-jql.json");
const JIRA_ERROR: &str = include_str!("../../testdata/tracker/jira-error.json");

fn sample(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One issue as [`FakeGitHub`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubIssue {
    /// Its number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body (Markdown).
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    /// Why it was closed.
    pub state_reason: Option<String>,
    /// Label names.
    pub labels: Vec<String>,
    /// Comment bodies, oldest first.
    pub comments: Vec<String>,
}

#[derive(Default)]
struct GitHubState {
    issues: Vec<GitHubIssue>,
    requests: usize,
    fail_next: Vec<u16>,
}

/// GitHub's REST API for the issues of one repository: list (with `labels`, `state`, `page`,
/// `per_page`), create, update, comment; a pull request (from the sample) is listed among the
/// issues, as GitHub does. Every request needs `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct FakeGitHub {
    server: Arc<MockServer>,
    state: Arc<Mutex<GitHubState>>,
    repo: String,
    token: String,
}

impl FakeGitHub {
    /// A server for `repo` (`owner/name`) accepting `token`.
    pub async fn start(repo: &str, token: &str) -> Self {
        let f = FakeGitHub {
            server: Arc::new(MockServer::start().await),
            state: Arc::default(),
            repo: repo.to_owned(),
            token: token.to_owned(),
        };
        Mock::given(any())
            .respond_with(f.clone())
            .mount(&f.server)
            .await;
        f
    }
    /// The API's base URL.
    pub fn uri(&self) -> String {
        self.server.uri()
    }
    /// Every issue, in filing order.
    pub fn issues(&self) -> Vec<GitHubIssue> {
        lock(&self.state).issues.clone()
    }
    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        lock(&self.state).requests
    }
    /// A person closes issue `number` in GitHub's UI (state only; labels and body stay).
    pub fn close_by_hand(&self, number: u64) {
        if let Some(i) = lock(&self.state)
            .issues
            .iter_mut()
            .find(|i| i.number == number)
        {
            i.state = "closed".into();
            i.state_reason = Some("completed".into());
        }
    }

    /// The next request is answered with this status (and GitHub's error body).
    pub fn fail_next(&self, status: u16) {
        lock(&self.state).fail_next.push(status);
    }

    fn json(i: &GitHubIssue) -> Value {
        let mut v = sample(GITHUB_ISSUE);
        v["number"] = json!(i.number);
        v["id"] = json!(1_000_000 + i.number);
        v["html_url"] = json!(format!(
            "https://github.com/example/repo/issues/{}",
            i.number
        ));
        v["title"] = json!(i.title);
        v["body"] = json!(i.body);
        v["state"] = json!(i.state);
        v["state_reason"] = json!(i.state_reason);
        v["labels"] = i
            .labels
            .iter()
            .map(|l| json!({"id": 1, "name": l, "color": "ededed", "default": false}))
            .collect();
        v
    }

    /// `GET /repos/{repo}/issues`: the sample's pull request, then the issues with every label
    /// asked for, a page of them.
    fn list(s: &GitHubState, req: &Request) -> ResponseTemplate {
        let q = |k: &str| {
            req.url
                .query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        let labels: Vec<String> = q("labels")
            .map(|l| l.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let per: usize = q("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
            .min(100);
        let page: usize = q("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
        let mut all: Vec<Value> = vec![sample(GITHUB_PULL)];
        all.extend(
            s.issues
                .iter()
                .filter(|i| labels.iter().all(|l| i.labels.contains(l)))
                .map(Self::json),
        );
        let pageful: Vec<Value> = all.into_iter().skip((page - 1) * per).take(per).collect();
        ResponseTemplate::new(200).set_body_json(pageful)
    }

    fn answer(&self, req: &Request) -> ResponseTemplate {
        let err = |status: u16, msg: &str| {
            ResponseTemplate::new(status).set_body_json(json!({
                "message": msg,
                "documentation_url": "https://docs.github.com/rest",
                "status": status.to_string(),
            }))
        };
        let mut s = lock(&self.state);
        s.requests += 1;
        if let Some(status) = s.fail_next.pop() {
            return err(status, "Server Error");
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {}", self.token)) {
            return err(401, "Bad credentials");
        }
        let Some(rest) = req
            .url
            .path()
            .strip_prefix(&format!("/repos/{}/issues", self.repo))
        else {
            return err(404, "Not Found");
        };
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", []) => Self::list(&s, req),
            ("POST", []) => {
                let (Some(title), Some(text)) = (body["title"].as_str(), body["body"].as_str())
                else {
                    return err(422, "Validation Failed");
                };
                let i = GitHubIssue {
                    number: s.issues.len() as u64 + 1,
                    title: title.to_owned(),
                    body: text.to_owned(),
                    state: "open".into(),
                    state_reason: None,
                    labels: string_list(&body["labels"]),
                    comments: Vec::new(),
                };
                s.issues.push(i.clone());
                ResponseTemplate::new(201).set_body_json(Self::json(&i))
            }
            ("PATCH", [n]) => {
                let Some(i) = s.issues.iter_mut().find(|i| i.number.to_string() == *n) else {
                    return err(404, "Not Found");
                };
                if let Some(t) = body["title"].as_str() {
                    i.title = t.to_owned();
                }
                if let Some(t) = body["body"].as_str() {
                    i.body = t.to_owned();
                }
                if let Some(t) = body["state"].as_str() {
                    i.state = t.to_owned();
                }
                if let Some(t) = body["state_reason"].as_str() {
                    i.state_reason = Some(t.to_owned());
                }
                if body["labels"].is_array() {
                    i.labels = string_list(&body["labels"]);
                }
                ResponseTemplate::new(200).set_body_json(Self::json(i))
            }
            ("POST", [n, "comments"]) => {
                let Some(i) = s.issues.iter_mut().find(|i| i.number.to_string() == *n) else {
                    return err(404, "Not Found");
                };
                let Some(text) = body["body"].as_str() else {
                    return err(422, "Validation Failed");
                };
                i.comments.push(text.to_owned());
                ResponseTemplate::new(201).set_body_json(json!({"id": 1, "body": text}))
            }
            _ => err(404, "Not Found"),
        }
    }
}

impl Respond for FakeGitHub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.answer(req)
    }
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One issue as [`FakeJira`] keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct JiraIssue {
    /// `PROJECT-n`.
    pub key: String,
    /// Summary.
    pub summary: String,
    /// Description (Atlassian Document Format).
    pub description: Value,
    /// Labels.
    pub labels: Vec<String>,
    /// Comment bodies (ADF), oldest first.
    pub comments: Vec<Value>,
}

impl JiraIssue {
    /// The description's text, one line per paragraph or heading.
    pub fn description_text(&self) -> String {
        adf_text(&self.description)
    }
}

/// The text of an ADF document, one line per block.
pub fn adf_text(doc: &Value) -> String {
    doc["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| {
                    b["content"]
                        .as_array()
                        .map(|t| {
                            t.iter()
                                .filter_map(|n| n["text"].as_str())
                                .collect::<String>()
                        })
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[derive(Default)]
struct JiraState {
    issues: Vec<JiraIssue>,
    requests: usize,
    reconciled: Vec<Vec<u64>>,
}

/// Jira Cloud's REST API v3 for one project: create an issue, search by JQL (the
/// `project = "P" AND labels = "L" ORDER BY created ASC, key ASC` form only), edit (fields and label
/// add/remove), comment. Every request needs HTTP Basic with the account's e-mail and token;
/// a label with a space, an unknown issue type, or a description that is not an ADF document
/// is refused with Jira's error body.
#[derive(Clone)]
pub struct FakeJira {
    server: Arc<MockServer>,
    state: Arc<Mutex<JiraState>>,
    project: String,
    basic: String,
}

impl FakeJira {
    /// A site with project `project`, accepting `email` with `token`.
    pub async fn start(project: &str, email: &str, token: &str) -> Self {
        let f = FakeJira {
            server: Arc::new(MockServer::start().await),
            state: Arc::default(),
            project: project.to_owned(),
            basic: format!("{email}:{token}"),
        };
        Mock::given(any())
            .respond_with(f.clone())
            .mount(&f.server)
            .await;
        f
    }
    /// The site's base URL.
    pub fn uri(&self) -> String {
        self.server.uri()
    }
    /// Every issue, in creation order.
    pub fn issues(&self) -> Vec<JiraIssue> {
        lock(&self.state).issues.clone()
    }
    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        lock(&self.state).requests
    }

    /// `POST /rest/api/3/issue`, checked as Jira checks it.
    fn create(&self, s: &mut JiraState, body: &Value) -> ResponseTemplate {
        let err = jira_err;
        let f = &body["fields"];
        if f["project"]["key"] != json!(self.project) {
            return err(400, json!({"project": "valid project is required"}), &[]);
        }
        if !matches!(
            f["issuetype"]["name"].as_str(),
            Some("Incident" | "Task" | "Bug")
        ) {
            return err(400, json!({"issuetype": "Specify a valid issue type"}), &[]);
        }
        if f["description"]["type"] != "doc" {
            return err(
                400,
                json!({"description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"}),
                &[],
            );
        }
        let labels = string_list(&f["labels"]);
        if labels.iter().any(|l| l.contains(' ')) {
            return err(
                400,
                json!({"labels": "The label 'x y' contains spaces which is invalid."}),
                &[],
            );
        }
        let n = s.issues.len() + 1;
        let key = format!("{}-{n}", self.project);
        s.issues.push(JiraIssue {
            key: key.clone(),
            summary: f["summary"].as_str().unwrap_or("").to_owned(),
            description: f["description"].clone(),
            labels,
            comments: Vec::new(),
        });
        let mut v = sample(JIRA_CREATED);
        v["id"] = json!((10_000 + n).to_string());
        v["key"] = json!(key);
        v["self"] = json!(format!("{}/rest/api/3/issue/{}", self.uri(), 10_000 + n));
        ResponseTemplate::new(201).set_body_json(v)
    }

    fn answer(&self, req: &Request) -> ResponseTemplate {
        let err = jira_err;
        let missing = || {
            err(
                404,
                json!({}),
                &["Issue does not exist or you do not have permission to see it."],
            )
        };
        let mut s = lock(&self.state);
        s.requests += 1;
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(unbase64);
        if auth.as_deref() != Some(self.basic.as_bytes()) {
            return ResponseTemplate::new(401)
                .set_body_string("Client must be authenticated to access this resource.");
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let path = req.url.path();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("POST", ["rest", "api", "3", "issue"]) => self.create(&mut s, &body),
            ("POST", ["rest", "api", "3", "search", "jql"]) => {
                let jql = body["jql"].as_str().unwrap_or("");
                let ids = body["reconcileIssues"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                s.reconciled.push(ids);
                let Some((project, label)) = parse_jql(jql) else {
                    return err(
                        400,
                        json!({}),
                        &["Error in the JQL Query: the fake understands one form only."],
                    );
                };
                let mut v = sample(JIRA_SEARCH);
                v["issues"] = s
                    .issues
                    .iter()
                    .filter(|i| project == self.project && i.labels.contains(&label))
                    .enumerate()
                    .map(|(n, i)| {
                        json!({"expand": "", "id": (20_000 + n).to_string(), "self": "", "key": i.key, "fields": {"labels": i.labels}})
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(v)
            }
            ("PUT", ["rest", "api", "3", "issue", key]) => {
                let Some(i) = s.issues.iter_mut().find(|i| i.key == *key) else {
                    return missing();
                };
                if let Some(t) = body["fields"]["summary"].as_str() {
                    i.summary = t.to_owned();
                }
                if body["fields"]["description"].is_object() {
                    i.description = body["fields"]["description"].clone();
                }
                for op in body["update"]["labels"].as_array().into_iter().flatten() {
                    if let Some(l) = op["add"].as_str()
                        && !i.labels.iter().any(|x| x == l)
                    {
                        i.labels.push(l.to_owned());
                    }
                    if let Some(l) = op["remove"].as_str() {
                        i.labels.retain(|x| x != l);
                    }
                }
                ResponseTemplate::new(204)
            }
            ("POST", ["rest", "api", "3", "issue", key, "comment"]) => {
                let Some(i) = s.issues.iter_mut().find(|i| i.key == *key) else {
                    return missing();
                };
                i.comments.push(body["body"].clone());
                ResponseTemplate::new(201)
                    .set_body_json(json!({"id": "10000", "body": body["body"]}))
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({"errorMessages": ["Not found"]})),
        }
    }
}

impl Respond for FakeJira {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.answer(req)
    }
}

/// Jira's error body with these field errors and messages.
fn jira_err(status: u16, errors: Value, messages: &[&str]) -> ResponseTemplate {
    let mut v = sample(JIRA_ERROR);
    v["errors"] = errors;
    v["errorMessages"] = json!(messages);
    ResponseTemplate::new(status).set_body_json(v)
}

/// `project = "P" AND labels = "L" ORDER BY created ASC, key ASC` → `(P, L)`.
fn parse_jql(jql: &str) -> Option<(String, String)> {
    let rest = jql.strip_prefix("project = \"")?;
    let (project, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(" AND labels = \"")?;
    let (label, rest) = rest.split_once('"')?;
    (rest == " ORDER BY created ASC, key ASC").then(|| (project.to_owned(), label.to_owned()))
}

/// Standard base64 decoded (the fake reads credentials as Jira does), `None` if it is not.
fn unbase64(text: &str) -> Option<Vec<u8>> {
    const T: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let t = text.trim_end_matches('=');
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in t.chars() {
        bits = (bits << 6) | u32::try_from(T.find(c)?).ok()?;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    Some(out)
}
