//! The listener of `flowfail run`: alert webhooks, metrics, health, and the control calls.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /hooks/grafana` | webhook token or HMAC | Grafana unified-alerting webhook: a firing alert wakes the supervisor |
//! | `POST /hooks/alertmanager` | webhook token | Alertmanager webhook (version 4): same |
//! | `GET /metrics` | read token, when one is set | [`Metrics`] in the OpenMetrics text format |
//! | `GET /healthz` | none | the supervisor completed a pass recently (see [`Health`]) |
//! | `GET /readyz` | none | the config is loaded and the ledger answers |
//! | `POST /pause` | control token | `{"reason": "…", "by": "…", "deployment": "…"}`: automation of that Deployment paused on every replica (`deployment`, its scope or unique name, may be left out when the process watches one) |
//! | `POST /resume` | control token | `{"by": "…", "deployment": "…"}` |
//! | `POST /approve` | control token | `{"incident": "…", "action": "rollback", "by": "…"}` |
//! | `POST /reload` | control token | `{"by": "…"}` (optional): the config file read again, as `SIGHUP` does; 200 with what took effect, 400 with why it was refused (the running config stays) |
//! | `POST /deny` | control token | `{"incident": "…", "action": "rollback", "reason": "…", "by": "…"}`: not carried out, nor proposed again, in that incident |
//! | `GET /`, `GET /incidents/KEY` | a console session (read or control token), or the read or control token as a bearer | the web console: incidents, and one incident's record (see [`console`]) |
//! | `GET /login`, `POST /login`, `POST /logout` | the token, once | the console's sign-in: an HttpOnly, SameSite=Strict session cookie |
//! | `POST /console/{approve,deny,pause,resume}` | a control session and its CSRF token | the console's buttons |
//!
//! **An alert is a trigger, not a verdict.** A firing alert makes the supervisor read the
//! failure rate at once instead of at its next poll; it opens an incident only if its own read
//! fires (min sample, hysteresis), and the incident's record names the alert that woke it. A
//! resolved alert is counted and logged, nothing more.
//!
//! **Authentication.** Three secrets, each from the config's secret reference: the webhook
//! token (what Grafana and Alertmanager hold), the control token (pause, resume, approve: what
//! the operators hold), and an optional read token for `/metrics`. Whoever holds an alerting
//! credential cannot approve a rollback or pause automation. Tokens (`Authorization: Bearer …`)
//! are compared in constant time (as digests: their length does not leak). Grafana may sign
//! instead: HMAC-SHA256 of `timestamp:body`, with the contact point's timestamp header
//! (`X-Grafana-Alerting-Timestamp`, required, within five minutes of now) and the hex
//! signature in `X-Grafana-Alerting-Signature`, verified in constant time; each signature is
//! accepted once, so a captured request cannot be replayed. A request that carries neither a
//! token nor well-formed, fresh signature headers is refused before its body is read.
//!
//! **Bounds.** HTTP/1 only ([`listen`]): headers must arrive within 5 s and fit in 16 KiB, an
//! idle keep-alive connection is closed after 5 s, at most 512 connections are open (at the
//! cap, a new one closes the oldest that has not sent a request). At most 32 requests are handled at once across all routes; one more is
//! refused at once with 503, never queued. Every request has 10 s, body included (a slow
//! sender gets 408); bodies over the configured limit are refused (413). `/readyz` and
//! `/metrics` ask the ledger one query at a time and reuse the answer for 2 s, so probes cannot
//! take the supervisor's connections. Every refused call changes nothing and is counted in
//! `flowfail_requests_refused_total`; the log says so at most 10 times in 10 s, then how many it
//! left out. Malformed or unknown payloads get 400 with the reason and are never acted on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde::Deserialize;

use flowfail_core::ErrorKind;
use flowfail_core::Result;
use flowfail_core::control::Pause;
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::respond::{AlertTrigger, Wake};

use super::metrics::Metrics;

mod auth;
pub mod console;
mod listen;

use auth::{bearer_ok, hmac_ok, signature_headers_ok};
pub use listen::{HEADER_READ_TIMEOUT, Health, MAX_CONNECTIONS, MAX_HEADER_BYTES, Tls, serve};

/// What the listener asks of the running flowfail: readiness, and the control calls, for the
/// Deployments it watches (named by ledger scope). [`super::Fleet`] implements it; tests may
/// fake it.
#[async_trait]
pub trait Control: Send + Sync + 'static {
    /// Whether the ledger answers (`GET /readyz`).
    async fn ready(&self) -> Result<()>;
    /// The Deployments watched, by ledger scope, in the config's order.
    fn deployments(&self) -> Vec<String>;
    /// Pauses automation of the Deployment `deployment` names (`None`: the only one) on every
    /// replica; returns its scope.
    async fn pause(&self, deployment: Option<&str>, reason: &str, by: &str) -> Result<String>;
    /// Resumes automation of the Deployment `deployment` names; returns its scope.
    async fn resume(&self, deployment: Option<&str>, by: &str) -> Result<String>;
    /// Approves a gated action of an open incident; returns what was approved, in words.
    async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<String>;
    /// Denies a gated action of an open incident, with the reason; returns what was denied, in
    /// words. The default: unsupported.
    async fn deny(&self, incident: &str, action: &str, reason: &str, by: &str) -> Result<String> {
        let _ = (incident, action, reason, by);
        Err(unsupported("deny"))
    }
    /// The incidents (acting and shadow) of every Deployment, newest first (the console's
    /// index). The default: unsupported.
    async fn incidents(&self, open_only: bool, limit: usize) -> Result<Vec<IncidentLine>> {
        let _ = (open_only, limit);
        Err(unsupported("incidents"))
    }
    /// One incident read back from the ledger (the console's incident page). The default:
    /// unsupported.
    async fn incident(&self, key: &str) -> Result<IncidentView> {
        let _ = key;
        Err(unsupported("incident"))
    }
    /// Each Deployment's pause in force, if any, in the order of [`Control::deployments`] (the
    /// `flowfail_paused` gauge, the console's banner).
    async fn pauses(&self) -> Result<Vec<(String, Option<Pause>)>>;
    /// Reads the config file again (`POST /reload`); returns what took effect, in words. The
    /// default: unsupported (no file to read again).
    async fn reload(&self, by: &str) -> Result<String> {
        let _ = by;
        Err(unsupported("reload"))
    }
}

fn unsupported(what: &str) -> flowfail_core::Error {
    flowfail_core::Error::new(
        ErrorKind::Unsupported,
        format!("{what}: not supported by this control"),
    )
}

/// How the listener authenticates and bounds requests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The bearer token of the alert webhooks.
    pub webhook_token: SecretString,
    /// The bearer token of the control calls (pause, resume, approve).
    pub control_token: SecretString,
    /// The bearer token of `/metrics`; `None`: metrics are open.
    pub read_token: Option<SecretString>,
    /// Grafana's HMAC secret, when Grafana signs its webhook.
    pub grafana_hmac_secret: Option<SecretString>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The console's session cookie is `Secure` (the listener serves TLS).
    pub secure_cookies: bool,
}

impl ServerOptions {
    /// Options with the default body limit (256 KiB), open metrics and no HMAC secret.
    pub fn new(webhook_token: SecretString, control_token: SecretString) -> Self {
        ServerOptions {
            webhook_token,
            control_token,
            read_token: None,
            grafana_hmac_secret: None,
            max_body_bytes: 256 * 1024,
            secure_cookies: false,
        }
    }
}

/// The supervisors a firing alert wakes. An alert whose labels name a watched Deployment
/// (`deployment`, and `namespace` when it has one) wakes that Deployment's supervisor; any
/// other alert wakes every one. An alert is a trigger, not a verdict: each supervisor woken
/// reads its own Deployment's failure rate, and only one whose own read fires opens an
/// incident.
#[derive(Debug, Clone, Default)]
pub struct Wakes(Vec<(Option<(String, String)>, Wake)>);

impl From<Wake> for Wakes {
    fn from(w: Wake) -> Self {
        Wakes(vec![(None, w)])
    }
}

impl Wakes {
    /// Each supervisor with its Deployment's namespace and name.
    pub fn named(w: Vec<(String, String, Wake)>) -> Self {
        Wakes(w.into_iter().map(|(ns, d, w)| (Some((ns, d)), w)).collect())
    }

    fn alert(&self, trigger: &AlertTrigger, labels: &BTreeMap<String, String>) {
        let names = |ns: &str, d: &str| {
            labels.get("deployment").is_some_and(|l| l == d)
                && labels.get("namespace").is_none_or(|l| l == ns)
        };
        let named: Vec<&Wake> = self
            .0
            .iter()
            .filter(|(n, _)| n.as_ref().is_some_and(|(ns, d)| names(ns, d)))
            .map(|(_, w)| w)
            .collect();
        let targets: Vec<&Wake> = if named.is_empty() {
            self.0.iter().map(|(_, w)| w).collect()
        } else {
            named
        };
        for w in targets {
            w.alert(trigger.clone());
        }
    }
}

#[derive(Clone)]
struct AppState {
    opts: Arc<ServerOptions>,
    wake: Wakes,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
    /// The ledger's last answers to `/readyz` and `/metrics`: one query at a time, reused for
    /// a few seconds, so probes cannot take the supervisor's connections.
    probes: Arc<tokio::sync::Mutex<Probes>>,
    /// Grafana signatures seen in the last five minutes (a signed request is accepted once).
    seen: Arc<Mutex<HashMap<[u8; 32], i64>>>,
    /// Requests in progress, across every route.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// How many refusals the log still says this window.
    log: Arc<Mutex<LogBudget>>,
    /// When the supervisor last completed a pass (`/healthz`).
    health: Health,
    /// The console's signed-in browsers.
    sessions: Arc<console::Sessions>,
    /// The console's turns to read the ledger (the supervisor's connections come first).
    console_reads: Arc<tokio::sync::Semaphore>,
}

/// At most [`LOG_BURST`] refusal lines per [`LOG_WINDOW`]; the rest are counted and said once.
#[derive(Debug, Default)]
struct LogBudget {
    window: Option<tokio::time::Instant>,
    logged: u32,
    left_out: u64,
}

impl LogBudget {
    /// Whether one more refusal may be logged now: `Some(n)`, with the `n` refusals left out
    /// of the log in the window before, or `None` (counted, left out).
    fn admit(&mut self, now: tokio::time::Instant) -> Option<u64> {
        let mut before = 0;
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= LOG_WINDOW)
        {
            before = std::mem::take(&mut self.left_out);
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            Some(before)
        } else {
            self.left_out += 1;
            None
        }
    }
}

/// The refusal lines one window may hold.
const LOG_BURST: u32 = 10;
/// The window of [`LOG_BURST`].
const LOG_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Probes {
    ready: Option<(tokio::time::Instant, bool)>,
    /// When the paused gauges were last read from the ledger.
    paused: Option<tokio::time::Instant>,
}

/// How long a probe's answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(2);
/// How long one request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled at once, across every route; one more is refused at once (503).
const MAX_IN_FLIGHT: usize = 32;
/// The most Grafana signatures remembered (replay protection).
const MAX_SEEN: usize = 10_000;

/// The routes. See the [module docs](self). A firing alert wakes every supervisor of `wake`;
/// `health` is what `/healthz` reports.
pub fn router(
    opts: ServerOptions,
    wake: impl Into<Wakes>,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
    health: Health,
) -> Router {
    let limit = opts.max_body_bytes;
    let state = AppState {
        opts: Arc::new(opts),
        wake: wake.into(),
        metrics,
        control,
        probes: Arc::default(),
        seen: Arc::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        log: Arc::default(),
        health,
        sessions: Arc::default(),
        console_reads: Arc::new(tokio::sync::Semaphore::new(console::LEDGER_READS)),
    };
    Router::new()
        .route("/hooks/grafana", post(grafana))
        .route("/hooks/alertmanager", post(alertmanager))
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/approve", post(approve))
        .route("/deny", post(deny))
        .route("/reload", post(reload))
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone())
        // Outside the router: one limit for every route (a layer on the router is per route).
        .layer(middleware::from_fn_with_state(state, gatekeeper))
}

/// Which token a route takes, if any.
fn required_token<'a>(s: &'a AppState, path: &str) -> Option<(&'static str, &'a SecretString)> {
    let o = &s.opts;
    match path {
        "/pause" => Some(("/pause", &o.control_token)),
        "/resume" => Some(("/resume", &o.control_token)),
        "/approve" => Some(("/approve", &o.control_token)),
        "/deny" => Some(("/deny", &o.control_token)),
        "/hooks/alertmanager" => Some(("/hooks/alertmanager", &o.webhook_token)),
        "/hooks/grafana" => Some(("/hooks/grafana", &o.webhook_token)),
        "/metrics" => o.read_token.as_ref().map(|t| ("/metrics", t)),
        _ => None,
    }
}

/// Before any body is read: the global in-flight limit (503 at once when reached), then the
/// route's token — a Grafana webhook without one must carry well-formed, fresh signature
/// headers, and its signature is verified once the body is read — then [`REQUEST_TIMEOUT`]
/// (a slow sender is cut off with 408).
async fn gatekeeper(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&s.in_flight).try_acquire_owned() else {
        return refuse(
            &s,
            "*",
            "busy",
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many requests in progress; try again".into(),
        );
    };
    if !console::body_allowed(&s, req.uri().path(), req.headers()) {
        return refuse(
            &s,
            "/console",
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated: sign in at /login".into(),
        );
    }
    if let Some((path, token)) = required_token(&s, req.uri().path())
        && !bearer_ok(req.headers(), token)
    {
        let signed = path == "/hooks/grafana"
            && s.opts.grafana_hmac_secret.is_some()
            && signature_headers_ok(req.headers());
        if !signed {
            return refuse(
                &s,
                path,
                "unauthenticated",
                StatusCode::UNAUTHORIZED,
                "unauthenticated: a bearer token is required".into(),
            );
        }
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
    }
}

/// `/healthz`: 200 while the supervisor completes passes, 503 once none has completed within
/// a few poll intervals (a stuck or dead supervisor).
async fn healthz(State(s): State<AppState>) -> Response {
    match s.health.stale_for() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(d) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: no supervisor pass completed in the last {} s\n",
                d.as_secs()
            ),
        )
            .into_response(),
    }
}

fn refuse(
    s: &AppState,
    path: &'static str,
    reason: &'static str,
    code: StatusCode,
    msg: String,
) -> Response {
    s.metrics.refused(path, reason);
    let left_out = s
        .log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(tokio::time::Instant::now());
    match left_out {
        Some(0) => tracing::warn!(path, reason, "request refused"),
        Some(n) => tracing::warn!(
            path,
            reason,
            left_out = n,
            "request refused (and {n} refusals the log left out in the last window)"
        ),
        None => {}
    }
    (code, format!("{msg}\n")).into_response()
}

/// One alert of a webhook payload (Grafana and Alertmanager share these fields).
#[derive(Debug, Deserialize)]
struct HookAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// A Grafana unified-alerting or Alertmanager webhook payload: the fields flowfail reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HookPayload {
    #[serde(default)]
    version: Option<String>,
    status: String,
    alerts: Vec<HookAlert>,
}

/// The most alerts one webhook call may carry.
const MAX_ALERTS: usize = 1000;

fn parse_hook(body: &[u8], version: Option<&str>) -> std::result::Result<HookPayload, String> {
    let p: HookPayload = serde_json::from_slice(body).map_err(|e| {
        format!(
            "malformed payload: {}",
            flowfail_core::model::sanitize(&e.to_string(), 200)
        )
    })?;
    if let Some(want) = version
        && p.version.as_deref() != Some(want)
    {
        return Err(format!(
            "unknown payload version {:?} (expected {want:?})",
            p.version
                .as_deref()
                .map(|v| flowfail_core::model::sanitize(v, 20))
        ));
    }
    if !matches!(p.status.as_str(), "firing" | "resolved") {
        return Err("status must be \"firing\" or \"resolved\"".into());
    }
    if p.alerts.is_empty() || p.alerts.len() > MAX_ALERTS {
        return Err(format!("alerts: between 1 and {MAX_ALERTS} expected"));
    }
    if let Some(a) = p
        .alerts
        .iter()
        .find(|a| !matches!(a.status.as_str(), "firing" | "resolved"))
    {
        return Err(format!(
            "alert status {:?}: must be \"firing\" or \"resolved\"",
            flowfail_core::model::sanitize(&a.status, 20)
        ));
    }
    Ok(p)
}

async fn hook(
    s: &AppState,
    source: &'static str,
    path: &'static str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    allow_hmac: bool,
) -> Response {
    let hmac = allow_hmac
        .then_some(s.opts.grafana_hmac_secret.as_ref())
        .flatten()
        .is_some_and(|secret| hmac_ok(s, headers, body, secret));
    if !hmac && !bearer_ok(headers, &s.opts.webhook_token) {
        return refuse(
            s,
            path,
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated: a bearer token (or Grafana's HMAC signature) is required".into(),
        );
    }
    let payload = match parse_hook(body, version) {
        Ok(p) => p,
        Err(why) => return refuse(s, path, "malformed", StatusCode::BAD_REQUEST, why),
    };
    let firing: Vec<&HookAlert> = payload
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .collect();
    let resolved = payload.alerts.len() - firing.len();
    if let Some(a) = firing.first() {
        let name = a.labels.get("alertname").map_or("unnamed", String::as_str);
        let trigger = AlertTrigger::new(source, name, a.fingerprint.as_deref());
        tracing::info!(alert = %trigger.describe(), firing = firing.len(), "alert firing: waking the supervisor");
        s.metrics.alert(source, "firing");
    }
    // Each firing alert wakes the Deployment its labels name (or every one).
    for a in &firing {
        let name = a.labels.get("alertname").map_or("unnamed", String::as_str);
        let trigger = AlertTrigger::new(source, name, a.fingerprint.as_deref());
        s.wake.alert(&trigger, &a.labels);
    }
    if resolved > 0 {
        tracing::info!(
            source,
            resolved,
            "alert resolved (noted; flowfail reads the failure rate itself)"
        );
        s.metrics.alert(source, "resolved");
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({
            "accepted": true,
            "firing": firing.len(),
            "resolved": resolved,
        })),
    )
        .into_response()
}

async fn grafana(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    hook(&s, "grafana", "/hooks/grafana", None, &headers, &body, true).await
}

async fn alertmanager(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    hook(
        &s,
        "alertmanager",
        "/hooks/alertmanager",
        Some("4"),
        &headers,
        &body,
        false,
    )
    .await
}

/// How long `/readyz` and `/metrics` wait for the ledger.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn scrape(State(s): State<AppState>) -> Response {
    let mut probes = s.probes.lock().await;
    let fresh = probes.paused.is_some_and(|at| at.elapsed() < PROBE_TTL);
    if !fresh && let Ok(Ok(pauses)) = tokio::time::timeout(PROBE_TIMEOUT, s.control.pauses()).await
    {
        probes.paused = Some(tokio::time::Instant::now());
        for (scope, p) in pauses {
            s.metrics.set_paused(&scope, p.is_some());
        }
    }
    drop(probes);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    let mut probes = s.probes.lock().await;
    let ready = match probes.ready {
        Some((at, ready)) if at.elapsed() < PROBE_TTL => ready,
        _ => {
            let ready = match tokio::time::timeout(PROBE_TIMEOUT, s.control.ready()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "not ready: the ledger does not answer");
                    false
                }
                Err(_) => {
                    tracing::warn!("not ready: the ledger did not answer in time");
                    false
                }
            };
            probes.ready = Some((tokio::time::Instant::now(), ready));
            ready
        }
    };
    if ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        // The reason is in flowfail's log, not in an unauthenticated answer.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the incident ledger does not answer\n",
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: String,
    #[serde(default)]
    by: Option<String>,
    /// The Deployment (its scope, or its name when unique); may be left out when one is
    /// watched.
    #[serde(default)]
    deployment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    deployment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    #[serde(default)]
    by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    incident: String,
    action: String,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    incident: String,
    action: String,
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

/// The body of a control call, or the response refusing it.
fn control_body<T: serde::de::DeserializeOwned>(
    s: &AppState,
    path: &'static str,
    headers: &HeaderMap,
    body: &[u8],
    empty: Option<T>,
) -> std::result::Result<T, Box<Response>> {
    if !bearer_ok(headers, &s.opts.control_token) {
        return Err(Box::new(refuse(
            s,
            path,
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated: a bearer token is required".into(),
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(e) = empty
    {
        return Ok(e);
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(refuse(
            s,
            path,
            "malformed",
            StatusCode::BAD_REQUEST,
            format!(
                "malformed body: {}",
                flowfail_core::model::sanitize(&e.to_string(), 200)
            ),
        ))
    })
}

/// Who made a control call, as the caller says, marked as said over HTTP (the operators share
/// the control token: the name is a claim, not an identity).
fn who(by: Option<&str>) -> String {
    let by = by.map_or_else(String::new, |b| flowfail_core::model::sanitize(b, 80));
    if by.trim().is_empty() {
        "http".to_owned()
    } else {
        format!("http:{}", by.trim())
    }
}

fn control_result(s: &AppState, path: &'static str, r: Result<String>) -> Response {
    match r {
        Ok(msg) => (StatusCode::OK, format!("{msg}\n")).into_response(),
        Err(e) => {
            let (code, reason) = match e.kind() {
                ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid"),
                ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                ErrorKind::Conflict | ErrorKind::Refused => (StatusCode::CONFLICT, "refused"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            };
            refuse(s, path, reason, code, e.to_string())
        }
    }
}

async fn pause(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: PauseBody = match control_body(&s, "/pause", &headers, &body, None) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let by = who(b.by.as_deref());
    let r = s
        .control
        .pause(b.deployment.as_deref(), &b.reason, &by)
        .await
        .map(|scope| {
            s.metrics.set_paused(&scope, true);
            format!("{scope} paused by {by}")
        });
    control_result(&s, "/pause", r)
}

async fn resume(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: ResumeBody =
        match control_body(&s, "/resume", &headers, &body, Some(ResumeBody::default())) {
            Ok(b) => b,
            Err(r) => return *r,
        };
    let by = who(b.by.as_deref());
    let r = s
        .control
        .resume(b.deployment.as_deref(), &by)
        .await
        .map(|scope| {
            s.metrics.set_paused(&scope, false);
            format!("{scope} resumed by {by}")
        });
    control_result(&s, "/resume", r)
}

async fn reload(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: ReloadBody =
        match control_body(&s, "/reload", &headers, &body, Some(ReloadBody::default())) {
            Ok(b) => b,
            Err(r) => return *r,
        };
    let by = who(b.by.as_deref());
    let r = s.control.reload(&by).await;
    control_result(&s, "/reload", r)
}

async fn approve(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: ApproveBody = match control_body(&s, "/approve", &headers, &body, None) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let by = who(b.by.as_deref());
    let r = s.control.approve(&b.incident, &b.action, &by).await;
    control_result(&s, "/approve", r)
}

async fn deny(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let b: DenyBody = match control_body(&s, "/deny", &headers, &body, None) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let by = who(b.by.as_deref());
    let r = s.control.deny(&b.incident, &b.action, &b.reason, &by).await;
    control_result(&s, "/deny", r)
}
