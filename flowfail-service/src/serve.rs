//! The listener of `flowfail run`: alert webhooks, metrics, health, and the control calls.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /hooks/grafana` | bearer or HMAC | Grafana unified-alerting webhook: a firing alert wakes the supervisor |
//! | `POST /hooks/alertmanager` | bearer | Alertmanager webhook (version 4): same |
//! | `GET /metrics` | none | [`Metrics`] in the OpenMetrics text format |
//! | `GET /healthz` | none | the process answers |
//! | `GET /readyz` | none | the config is loaded and the ledger answers |
//! | `POST /pause` | bearer | `{"reason": "…", "by": "…"}`: automation paused on every replica |
//! | `POST /resume` | bearer | `{"by": "…"}` |
//! | `POST /approve` | bearer | `{"incident": "…", "action": "rollback", "by": "…"}` |
//!
//! **An alert is a trigger, not a verdict.** A firing alert makes the supervisor read the
//! failure rate at once instead of at its next poll; it opens an incident only if its own read
//! fires (min sample, hysteresis), and the incident's record names the alert that woke it. A
//! resolved alert is counted and logged, nothing more.
//!
//! **Authentication.** The bearer token (`Authorization: Bearer …`) comes from the config's
//! secret reference and is compared in constant time (as digests: its length does not leak).
//! Grafana may sign instead: HMAC-SHA256 of `timestamp:body`, with the contact point's
//! timestamp header (`X-Grafana-Alerting-Timestamp`, required, within five minutes of now) and
//! the hex signature in `X-Grafana-Alerting-Signature`, verified in constant time; each
//! signature is accepted once, so a captured request cannot be replayed.
//!
//! **Bounds.** Every request has 10 s, body included (a slow sender gets 408); at most 32 are
//! handled at once; routes that take only the token refuse a request without it before reading
//! its body; bodies over the configured limit are refused (413). `/readyz` and `/metrics` ask
//! the ledger one query at a time and reuse the answer for 2 s, so probes cannot take the
//! supervisor's connections. Every refused call changes nothing and is counted in
//! `flowfail_requests_refused_total`;
//! malformed or unknown payloads get 400 with the reason and are never acted on.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
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
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Digest;
use subtle::ConstantTimeEq;

use flowfail_core::respond::{AlertTrigger, Wake};
use flowfail_core::{Error, ErrorKind, Result};

use super::metrics::Metrics;

/// What the listener asks of the running flowfail: readiness, and the control calls.
/// [`super::Live`] implements it; tests may fake it.
#[async_trait]
pub trait Control: Send + Sync + 'static {
    /// Whether the ledger answers (`GET /readyz`).
    async fn ready(&self) -> Result<()>;
    /// Whether automation is paused (the `flowfail_paused` gauge).
    async fn paused(&self) -> Result<bool>;
    /// Pauses automation on every replica.
    async fn pause(&self, reason: &str, by: &str) -> Result<()>;
    /// Resumes automation.
    async fn resume(&self, by: &str) -> Result<()>;
    /// Approves a gated action of an open incident; returns what was approved, in words.
    async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<String>;
}

/// How the listener authenticates and bounds requests.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The bearer token of every authenticated route.
    pub token: SecretString,
    /// Grafana's HMAC secret, when Grafana signs its webhook.
    pub grafana_hmac_secret: Option<SecretString>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl ServerOptions {
    /// Options with the default body limit (256 KiB) and no HMAC secret.
    pub fn new(token: SecretString) -> Self {
        ServerOptions {
            token,
            grafana_hmac_secret: None,
            max_body_bytes: 256 * 1024,
        }
    }
}

#[derive(Clone)]
struct AppState {
    opts: Arc<ServerOptions>,
    wake: Wake,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
    /// The ledger's last answers to `/readyz` and `/metrics`: one query at a time, reused for
    /// a few seconds, so probes cannot take the supervisor's connections.
    probes: Arc<tokio::sync::Mutex<Probes>>,
    /// Grafana signatures seen in the last five minutes (a signed request is accepted once).
    seen: Arc<Mutex<HashMap<[u8; 32], i64>>>,
}

#[derive(Default)]
struct Probes {
    ready: Option<(tokio::time::Instant, bool)>,
    paused: Option<(tokio::time::Instant, bool)>,
}

/// How long a probe's answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(2);
/// How long one request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled at once; more wait.
const MAX_IN_FLIGHT: usize = 32;
/// The most Grafana signatures remembered (replay protection).
const MAX_SEEN: usize = 10_000;

/// The routes. See the [module docs](self).
pub fn router(
    opts: ServerOptions,
    wake: Wake,
    metrics: Arc<Metrics>,
    control: Arc<dyn Control>,
) -> Router {
    let limit = opts.max_body_bytes;
    let state = AppState {
        opts: Arc::new(opts),
        wake,
        metrics,
        control,
        probes: Arc::default(),
        seen: Arc::default(),
    };
    Router::new()
        .route("/hooks/grafana", post(grafana))
        .route("/hooks/alertmanager", post(alertmanager))
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/approve", post(approve))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), gatekeeper))
        .layer(tower::limit::ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .with_state(state)
}

/// Before any body is read: routes that take only the bearer token refuse a request without
/// it; every request gets [`REQUEST_TIMEOUT`] (a slow sender is cut off with 408).
async fn gatekeeper(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = match req.uri().path() {
        "/pause" => Some("/pause"),
        "/resume" => Some("/resume"),
        "/approve" => Some("/approve"),
        "/hooks/alertmanager" => Some("/hooks/alertmanager"),
        "/hooks/grafana" if s.opts.grafana_hmac_secret.is_none() => Some("/hooks/grafana"),
        _ => None,
    };
    if let Some(path) = path
        && !bearer_ok(req.headers(), &s.opts.token)
    {
        return refuse(
            &s,
            path,
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "unauthenticated: a bearer token is required".into(),
        );
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("listener: {e}")))
}

fn refuse(
    s: &AppState,
    path: &'static str,
    reason: &'static str,
    code: StatusCode,
    msg: String,
) -> Response {
    s.metrics.refused(path, reason);
    tracing::warn!(path, reason, "request refused");
    (code, format!("{msg}\n")).into_response()
}

fn bearer_ok(headers: &HeaderMap, token: &SecretString) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Digests of equal length: the comparison says nothing about the token's length.
    let given = sha2::Sha256::digest(given.as_bytes());
    let want = sha2::Sha256::digest(token.expose_secret().as_bytes());
    given.as_slice().ct_eq(want.as_slice()).into()
}

/// How far Grafana's signed timestamp may be from now.
const HMAC_SKEW_S: u64 = 300;

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = s.strip_prefix("sha256=").unwrap_or(s);
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Grafana's signature: HMAC-SHA256 of `timestamp:body`, the timestamp within five minutes of
/// now, each signature accepted once (a captured request cannot be replayed).
fn hmac_ok(s: &AppState, headers: &HeaderMap, body: &[u8], secret: &SecretString) -> bool {
    let Some(sig) = headers
        .get("x-grafana-alerting-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(hex_decode)
    else {
        return false;
    };
    let Some(ts) = headers.get("x-grafana-alerting-timestamp") else {
        return false;
    };
    let Some(t) = ts.to_str().ok().and_then(|t| t.trim().parse::<i64>().ok()) else {
        return false;
    };
    let now = chrono::Utc::now().timestamp();
    if now.abs_diff(t) > HMAC_SKEW_S {
        return false;
    }
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
    else {
        return false;
    };
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    if mac.verify_slice(&sig).is_err() {
        return false;
    }
    let Ok(key) = <[u8; 32]>::try_from(sig.as_slice()) else {
        return false;
    };
    let mut seen = s.seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|_, at| now.abs_diff(*at) <= HMAC_SKEW_S);
    if seen.len() >= MAX_SEEN || seen.insert(key, t).is_some() {
        return false;
    }
    true
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
    if !hmac && !bearer_ok(headers, &s.opts.token) {
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
        s.wake.alert(trigger);
        s.metrics.alert(source, "firing");
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
    let fresh = probes
        .paused
        .is_some_and(|(at, _)| at.elapsed() < PROBE_TTL);
    if !fresh && let Ok(Ok(p)) = tokio::time::timeout(PROBE_TIMEOUT, s.control.paused()).await {
        probes.paused = Some((tokio::time::Instant::now(), p));
        s.metrics.set_paused(p);
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
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

/// The body of a control call, or the response refusing it.
fn control_body<T: serde::de::DeserializeOwned>(
    s: &AppState,
    path: &'static str,
    headers: &HeaderMap,
    body: &[u8],
    empty: Option<T>,
) -> std::result::Result<T, Box<Response>> {
    if !bearer_ok(headers, &s.opts.token) {
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

/// Who made a control call, as the caller says, marked as said over HTTP (one token is
/// shared: the name is a claim, not an identity).
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
    let r = s.control.pause(&b.reason, &by).await.map(|()| {
        s.metrics.set_paused(true);
        format!("paused by {by}")
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
    let r = s.control.resume(&by).await.map(|()| {
        s.metrics.set_paused(false);
        format!("resumed by {by}")
    });
    control_result(&s, "/resume", r)
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
