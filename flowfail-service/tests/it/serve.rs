//! The listener of `flowfail run`, route by route, in process: authentication (bearer, Grafana's
//! HMAC), body limits, malformed payloads refused with a reason and never acted on, a firing
//! alert waking the supervisor, metrics, health. The control calls are checked as interactions
//! with a recording fake (the real ones are driven against PostgreSQL in the CLI's e2e test).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hmac::{KeyInit, Mac};
use http_body_util::BodyExt;
use secrecy::SecretString;
use tower::ServiceExt;

use flowfail_core::control::Pause;
use flowfail_core::respond::Wake;
use flowfail_core::{Error, Result};
use flowfail_service::Mode;
use flowfail_service::metrics::Metrics;
use flowfail_service::serve::{Control, Health, ServerOptions, router};

const TOKEN: &str = "a-token-of-enough-length";
const CONTROL: &str = "a-control-token-of-enough-length";
const HMAC_SECRET: &str = "grafana-hmac-secret";
/// The one Deployment the fake control watches.
const SCOPE: &str = "default.flowengine";

/// Records every control call; `ready` fails when told to.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    unready: bool,
    ready_calls: Mutex<u32>,
}

#[async_trait]
impl Control for Fake {
    async fn ready(&self) -> Result<()> {
        *self.ready_calls.lock().unwrap() += 1;
        if self.unready {
            return Err(Error::new(
                flowfail_core::ErrorKind::Unavailable,
                "connection refused",
            ));
        }
        Ok(())
    }
    fn deployments(&self) -> Vec<String> {
        vec![SCOPE.into()]
    }
    async fn pauses(&self) -> Result<Vec<(String, Option<Pause>)>> {
        let paused = self
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("pause"));
        let pause = paused.then(|| Pause::new("r", "by", chrono::Utc::now()));
        Ok(vec![(SCOPE.into(), pause)])
    }
    async fn pause(&self, deployment: Option<&str>, reason: &str, by: &str) -> Result<String> {
        if reason.trim().is_empty() {
            return Err(Error::invalid_input("a reason is required"));
        }
        if deployment.is_some_and(|d| d != SCOPE) {
            return Err(Error::not_found("no such Deployment"));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("pause {reason} {by}"));
        Ok(SCOPE.into())
    }
    async fn resume(&self, _deployment: Option<&str>, by: &str) -> Result<String> {
        self.calls.lock().unwrap().push(format!("resume {by}"));
        Ok(SCOPE.into())
    }
    async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<String> {
        if incident != "flowengine-20261127T1000Z" {
            return Err(Error::not_found(format!("no incident {incident}")));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("approve {incident} {action} {by}"));
        Ok(format!("{action} approved"))
    }
}

struct App {
    router: axum::Router,
    wake: Wake,
    control: Arc<Fake>,
}

fn app_with(max_body: usize, unready: bool) -> App {
    let mut opts = ServerOptions::new(SecretString::from(TOKEN), SecretString::from(CONTROL));
    opts.grafana_hmac_secret = Some(SecretString::from(HMAC_SECRET));
    opts.max_body_bytes = max_body;
    let wake = Wake::new();
    let control = Arc::new(Fake {
        unready,
        ..Fake::default()
    });
    let metrics = Arc::new(Metrics::new(Mode::Act));
    metrics.deployment(SCOPE);
    let router = router(
        opts,
        wake.clone(),
        metrics,
        control.clone(),
        Health::new(std::time::Duration::from_secs(60)),
    );
    App {
        router,
        wake,
        control,
    }
}

fn app() -> App {
    app_with(64 * 1024, false)
}

async fn call(app: &App, req: Request<Body>) -> (StatusCode, String) {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, auth: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(body.into()).unwrap()
}

/// The webhook token.
fn bearer() -> Option<&'static str> {
    Some("Bearer a-token-of-enough-length")
}

/// The control token.
fn control() -> Option<&'static str> {
    Some("Bearer a-control-token-of-enough-length")
}

fn grafana_payload(status: &str) -> String {
    serde_json::json!({
        "receiver": "flowfail", "status": status, "orgId": 1, "version": "1",
        "groupKey": "{}:{alertname=\"FlowFailureRate\"}", "title": "[FIRING:1] FlowFailureRate",
        "state": "alerting", "message": "failure rate above 1%",
        "externalURL": "https://grafana.internal/",
        "commonLabels": {"alertname": "FlowFailureRate"},
        "alerts": [{
            "status": status,
            "labels": {"alertname": "FlowFailureRate", "deployment": "flowengine"},
            "annotations": {"summary": "flows failing"},
            "startsAt": "2026-11-27T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "3f2a9c", "generatorURL": "https://grafana.internal/alerting/1",
            "values": {"A": 0.031}
        }]
    })
    .to_string()
}

fn alertmanager_payload(version: &str) -> String {
    serde_json::json!({
        "version": version, "groupKey": "{}:{alertname=\"FlowFailureRate\"}",
        "status": "firing", "receiver": "flowfail", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "FlowFailureRate"},
        "commonLabels": {"alertname": "FlowFailureRate"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing", "labels": {"alertname": "FlowFailureRate"},
            "annotations": {}, "startsAt": "2026-11-27T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
            "fingerprint": "77aa01"
        }]
    })
    .to_string()
}

fn sign(body: &str, timestamp: Option<&str>) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    if let Some(t) = timestamp {
        mac.update(t.as_bytes());
        mac.update(b":");
    }
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_firing_grafana_alert_with_the_token_wakes_the_supervisor() {
    let app = app();
    let (code, body) = call(
        &app,
        post("/hooks/grafana", bearer(), grafana_payload("firing")),
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let t = app.wake.pending().expect("woken");
    assert_eq!(
        t.describe(),
        "grafana alert \"FlowFailureRate\" (fingerprint 3f2a9c)"
    );
}

#[tokio::test]
async fn a_resolved_alert_is_noted_and_wakes_nothing() {
    let app = app();
    let (code, body) = call(
        &app,
        post("/hooks/grafana", bearer(), grafana_payload("resolved")),
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert!(body.contains("\"resolved\":1"), "{body}");
    assert!(app.wake.pending().is_none());
}

#[tokio::test]
async fn unauthenticated_webhooks_are_refused_and_change_nothing() {
    let app = app();
    let body = grafana_payload("firing");
    for auth in [
        None,
        Some("Bearer wrong-token-of-enough-length"),
        Some("Bearer a-token-of-enough-lengt"),
        Some("Bearer a-token-of-enough-length-and-more"),
        Some("Basic YTpi"),
        Some("bearer a-token-of-enough-length"),
    ] {
        let (code, _) = call(&app, post("/hooks/grafana", auth, body.clone())).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{auth:?}");
        let (code, _) = call(
            &app,
            post("/hooks/alertmanager", auth, alertmanager_payload("4")),
        )
        .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    assert!(app.wake.pending().is_none());
    let (_, metrics) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        metrics.contains(
            "flowfail_requests_refused_total{path=\"/hooks/grafana\",reason=\"unauthenticated\"} 6"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn grafana_hmac_signatures_are_verified() {
    let app = app();
    let body = grafana_payload("firing");
    let signed = |sig: String, ts: Option<String>| {
        let mut b = Request::post("/hooks/grafana").header("x-grafana-alerting-signature", sig);
        if let Some(t) = ts {
            b = b.header("x-grafana-alerting-timestamp", t);
        }
        b.body(Body::from(body.clone())).unwrap()
    };
    // A wrong signature, a signature of another body, a stale or future timestamp: refused.
    let now = chrono::Utc::now().timestamp();
    let refused = [
        signed("00".repeat(32), None),
        signed(sign("{}", None), None),
        signed(
            sign(&body, Some(&(now - 600).to_string())),
            Some((now - 600).to_string()),
        ),
        signed(
            sign(&body, Some(&(now + 600).to_string())),
            Some((now + 600).to_string()),
        ),
        signed(
            sign(&body, Some(&now.to_string())),
            Some((now + 1).to_string()),
        ),
        signed("not hex".into(), None),
    ];
    for req in refused {
        let (code, _) = call(&app, req).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }
    assert!(app.wake.pending().is_none());
    // Without the timestamp header a signature could be replayed forever: refused.
    let (code, _) = call(&app, signed(sign(&body, None), None)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(app.wake.pending().is_none());
    let t = now.to_string();
    let (code, _) = call(&app, signed(sign(&body, Some(&t)), Some(t.clone()))).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert!(app.wake.pending().is_some());
    // The same signed request again (a replay): refused.
    let (code, _) = call(&app, signed(sign(&body, Some(&t)), Some(t.clone()))).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // A hostile timestamp neither panics nor passes.
    let (code, _) = call(
        &app,
        signed(
            sign(&body, Some("-9223372036854775808")),
            Some("-9223372036854775808".into()),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // Alertmanager cannot sign: HMAC is Grafana's only.
    let am = alertmanager_payload("4");
    let req = Request::post("/hooks/alertmanager")
        .header("x-grafana-alerting-signature", sign(&am, None))
        .body(Body::from(am.clone()))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_or_unknown_payloads_get_400_with_a_reason_and_wake_nothing() {
    let app = app();
    let cases: [(&str, String, &str); 7] = [
        ("/hooks/grafana", "{not json".into(), "malformed payload"),
        ("/hooks/grafana", "[]".into(), "malformed payload"),
        (
            "/hooks/grafana",
            r#"{"status":"firing","alerts":[]}"#.into(),
            "alerts",
        ),
        (
            "/hooks/grafana",
            r#"{"status":"exploded","alerts":[{"status":"firing"}]}"#.into(),
            "status",
        ),
        (
            "/hooks/grafana",
            r#"{"status":"firing","alerts":[{"status":"\u001b[31mfiring"}]}"#.into(),
            "alert status",
        ),
        (
            "/hooks/alertmanager",
            alertmanager_payload("3"),
            "unknown payload version",
        ),
        (
            "/hooks/alertmanager",
            grafana_payload("firing"),
            "unknown payload version",
        ),
    ];
    for (path, body, reason) in cases {
        let (code, text) = call(&app, post(path, bearer(), body.clone())).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path} {body}: {text}");
        assert!(text.contains(reason), "{text}");
        assert!(!text.contains('\u{1b}'), "escape echoed: {text:?}");
    }
    assert!(app.wake.pending().is_none());
    // An Alertmanager v4 payload is accepted.
    let (code, _) = call(
        &app,
        post("/hooks/alertmanager", bearer(), alertmanager_payload("4")),
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(
        app.wake.pending().unwrap().describe(),
        "alertmanager alert \"FlowFailureRate\" (fingerprint 77aa01)"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let app = app_with(2048, false);
    let big = format!(
        r#"{{"status":"firing","alerts":[{{"status":"firing","labels":{{"x":"{}"}}}}]}}"#,
        "a".repeat(4096)
    );
    let (code, _) = call(&app, post("/hooks/grafana", bearer(), big.clone())).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    let (code, _) = call(&app, post("/pause", control(), big.clone())).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    // Without the token, the body is never read: 401, not 413 — Grafana's route included
    // (its HMAC is configured, but a request without signature headers is not a signed one).
    let (code, _) = call(&app, post("/pause", None, big.clone())).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = call(&app, post("/hooks/grafana", None, big.clone())).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = call(&app, post("/hooks/alertmanager", None, big)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(app.wake.pending().is_none());
    assert!(app.control.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn control_calls_need_the_token_and_a_well_formed_body() {
    let app = app();
    let refused = [
        post("/pause", None, r#"{"reason":"deploy freeze"}"#),
        post(
            "/pause",
            Some("Bearer nope"),
            r#"{"reason":"deploy freeze"}"#,
        ),
        post("/resume", None, ""),
        // The webhook token does not open the control calls.
        post("/pause", bearer(), r#"{"reason":"deploy freeze"}"#),
        post("/resume", bearer(), ""),
        post(
            "/approve",
            None,
            r#"{"incident":"flowengine-20261127T1000Z","action":"rollback"}"#,
        ),
    ];
    for req in refused {
        assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);
    }
    let malformed = [
        post("/pause", control(), ""),
        post("/pause", control(), r#"{"why":"x"}"#),
        post("/pause", control(), r#"{"reason":"x","extra":1}"#),
        post(
            "/approve",
            control(),
            r#"{"incident":"flowengine-20261127T1000Z"}"#,
        ),
        post("/resume", control(), "{"),
    ];
    for req in malformed {
        assert_eq!(call(&app, req).await.0, StatusCode::BAD_REQUEST);
    }
    // The fake refuses an empty reason and an unknown incident: 400, 404.
    assert_eq!(
        call(&app, post("/pause", control(), r#"{"reason":"  "}"#))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(
            &app,
            post(
                "/approve",
                control(),
                r#"{"incident":"nope","action":"rollback"}"#
            )
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert!(app.control.calls.lock().unwrap().is_empty());
    // Well formed: one call each, `by` defaulting to "http".
    let (code, text) = call(
        &app,
        post(
            "/pause",
            control(),
            r#"{"reason":"deploy freeze","by":"alice"}"#,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert_eq!(
        call(&app, post("/resume", control(), "")).await.0,
        StatusCode::OK
    );
    let (code, text) = call(
        &app,
        post(
            "/approve",
            control(),
            r#"{"incident":"flowengine-20261127T1000Z","action":"rollback"}"#,
        ),
    )
    .await;
    assert_eq!((code, text.trim()), (StatusCode::OK, "rollback approved"));
    assert_eq!(
        *app.control.calls.lock().unwrap(),
        [
            "pause deploy freeze http:alice",
            "resume http",
            "approve flowengine-20261127T1000Z rollback http"
        ]
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = app();
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/readyz")).await.0, StatusCode::OK);
    let down = app_with(1024, true);
    let (code, text) = call(&down, get("/readyz")).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    // The ledger's error stays in flowfail's log, not in an unauthenticated answer.
    assert!(!text.contains("connection refused"), "{text}");
    // Probes share one ledger query every 2 s, however many arrive.
    for _ in 0..20 {
        assert_eq!(
            call(&down, get("/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(*down.control.ready_calls.lock().unwrap(), 1);
    let (code, m) = call(&app, get("/metrics")).await;
    assert_eq!(code, StatusCode::OK);
    for line in [
        "flowfail_mode{mode=\"act\"} 1",
        "flowfail_mode{mode=\"shadow\"} 0",
        "flowfail_paused{deployment=\"default.flowengine\"} 0",
        "flowfail_incidents_open{deployment=\"default.flowengine\"} 0",
        "flowfail_breaker_open{deployment=\"default.flowengine\"} 0",
        "# EOF",
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    let (code, said) = call(&app, post("/pause", control(), r#"{"reason":"x"}"#)).await;
    assert_eq!(code, StatusCode::OK, "{said}");
    assert!(said.contains("default.flowengine paused by http"), "{said}");
    let (_, m) = call(&app, get("/metrics")).await;
    assert!(
        m.contains("flowfail_paused{deployment=\"default.flowengine\"} 1"),
        "{m}"
    );
    // A Deployment this process does not watch: refused, nothing paused there.
    let (code, said) = call(
        &app,
        post(
            "/pause",
            control(),
            r#"{"reason":"x","deployment":"staging.flowengine"}"#,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{said}");
}

/// Every metric the Grafana dashboard in deploy/ queries is one flowfail serves.
#[tokio::test]
async fn the_dashboard_queries_only_metrics_that_exist() {
    use flowfail_core::respond::{ActionStat, PassKind, PassStats, ReadStat};
    let metrics = Arc::new(Metrics::new(Mode::Shadow));
    let mut s = PassStats::new(
        PassKind::Incident,
        chrono::Utc::now(),
        std::time::Duration::from_millis(12),
    );
    s.failure_rate = Some(0.03);
    s.incident = Some("flowengine-20261127T1000Z".into());
    s.breaker_open = Some(true);
    s.reads = vec![ReadStat::new("tasks", true), ReadStat::new("logs", false)];
    s.actions = vec![ActionStat::new("retry_task", "applied")];
    s.unreadable_tasks = Some(2);
    metrics.deployment(SCOPE).observe_pass(&s);
    let wake = Wake::new();
    let r = router(
        ServerOptions::new(SecretString::from(TOKEN), SecretString::from(CONTROL)),
        wake,
        metrics.clone(),
        Arc::new(Fake::default()),
        Health::new(std::time::Duration::from_secs(60)),
    );
    let app = App {
        router: r,
        wake: Wake::new(),
        control: Arc::new(Fake::default()),
    };
    call(
        &app,
        post("/hooks/grafana", bearer(), grafana_payload("firing")),
    )
    .await;
    call(&app, post("/hooks/grafana", None, "{}")).await;
    let (_, text) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    for line in [
        "flowfail_failure_rate{deployment=\"default.flowengine\"} 0.03",
        "flowfail_tasks_unreadable{deployment=\"default.flowengine\"} 2",
        "flowfail_incidents_open{deployment=\"default.flowengine\"} 1",
        "flowfail_breaker_open{deployment=\"default.flowengine\"} 1",
        "flowfail_actions_total{deployment=\"default.flowengine\",kind=\"retry_task\",outcome=\"applied\"} 1",
        "flowfail_data_gaps_total{deployment=\"default.flowengine\",port=\"logs\"} 1",
        "flowfail_passes_total{deployment=\"default.flowengine\",kind=\"incident\"} 1",
        "flowfail_alerts_received_total{source=\"grafana\",status=\"firing\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    let served: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("flowfail_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                queried += 1;
                assert!(
                    served.contains(n),
                    "the dashboard queries {n}, which is not served:\n{text}"
                );
            }
        }
    }
    assert!(queried >= 14, "{queried}");
}

/// A control whose `pause` waits until released: requests that hold the listener.
struct Slow {
    release: tokio::sync::Notify,
    entered: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Control for Slow {
    async fn ready(&self) -> Result<()> {
        Ok(())
    }
    fn deployments(&self) -> Vec<String> {
        vec![SCOPE.into()]
    }
    async fn pauses(&self) -> Result<Vec<(String, Option<Pause>)>> {
        Ok(vec![(SCOPE.into(), None)])
    }
    async fn pause(&self, _: Option<&str>, _: &str, _: &str) -> Result<String> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.release.notified().await;
        Ok(SCOPE.into())
    }
    async fn resume(&self, _: Option<&str>, _: &str) -> Result<String> {
        Ok(SCOPE.into())
    }
    async fn approve(&self, _: &str, _: &str, _: &str) -> Result<String> {
        Ok(String::new())
    }
}

/// One limit of 32 requests in progress across every route; the 33rd is refused at once
/// (503), whatever its route, never queued behind the slow ones; a signed webhook goes through
/// again as soon as one finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_in_flight_limit_for_every_route_and_excess_refused_at_once() {
    let slow = Arc::new(Slow {
        release: tokio::sync::Notify::new(),
        entered: Default::default(),
    });
    let opts = ServerOptions::new(SecretString::from(TOKEN), SecretString::from(CONTROL));
    let metrics = Arc::new(Metrics::new(Mode::Act));
    let app = router(
        opts,
        Wake::new(),
        Arc::clone(&metrics),
        slow.clone(),
        Health::new(std::time::Duration::from_secs(60)),
    );
    let mut held = Vec::new();
    for _ in 0..32 {
        let app = app.clone();
        held.push(tokio::spawn(async move {
            app.oneshot(post("/pause", control(), r#"{"reason":"hold"}"#))
                .await
                .unwrap()
                .status()
        }));
    }
    while slow.entered.load(std::sync::atomic::Ordering::SeqCst) < 32 {
        tokio::task::yield_now().await;
    }
    for req in [
        post("/hooks/grafana", bearer(), grafana_payload("firing")),
        Request::get("/healthz").body(Body::empty()).unwrap(),
        post("/pause", control(), r#"{"reason":"one more"}"#),
    ] {
        let started = std::time::Instant::now();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }
    assert_eq!(slow.entered.load(std::sync::atomic::Ordering::SeqCst), 32);
    slow.release.notify_waiters();
    for h in held {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    let res = app
        .clone()
        .oneshot(post("/hooks/grafana", bearer(), grafana_payload("firing")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let m = metrics.encode();
    assert!(
        m.contains("flowfail_requests_refused_total{path=\"*\",reason=\"busy\"} 3"),
        "{m}"
    );
}

/// With a read token, `/metrics` takes it (and only it); `/healthz` and `/readyz` stay open.
#[tokio::test]
async fn a_read_token_guards_the_metrics() {
    let mut opts = ServerOptions::new(SecretString::from(TOKEN), SecretString::from(CONTROL));
    opts.read_token = Some(SecretString::from("a-read-token-of-enough-length"));
    let app = App {
        router: router(
            opts,
            Wake::new(),
            Arc::new(Metrics::new(Mode::Act)),
            Arc::new(Fake::default()),
            Health::new(std::time::Duration::from_secs(60)),
        ),
        wake: Wake::new(),
        control: Arc::new(Fake::default()),
    };
    let get = |p: &str, auth: Option<&str>| {
        let mut r = Request::get(p);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::empty()).unwrap()
    };
    for auth in [None, bearer(), control()] {
        assert_eq!(
            call(&app, get("/metrics", auth)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (code, m) = call(
        &app,
        get("/metrics", Some("Bearer a-read-token-of-enough-length")),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert!(m.contains("# EOF"));
    assert_eq!(call(&app, get("/healthz", None)).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/readyz", None)).await.0, StatusCode::OK);
}

/// `/healthz` fails once no supervisor pass has completed within its tolerance (a dead or
/// stuck supervisor), and recovers with the next pass.
#[tokio::test(start_paused = true)]
async fn healthz_fails_when_no_pass_completes() {
    let health = Health::new(std::time::Duration::from_secs(60));
    let app = App {
        router: router(
            ServerOptions::new(SecretString::from(TOKEN), SecretString::from(CONTROL)),
            Wake::new(),
            Arc::new(Metrics::new(Mode::Act)),
            Arc::new(Fake::default()),
            health.clone(),
        ),
        wake: Wake::new(),
        control: Arc::new(Fake::default()),
    };
    let get = || Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(call(&app, get()).await.0, StatusCode::OK);
    tokio::time::advance(std::time::Duration::from_secs(45)).await;
    health.pass_done();
    tokio::time::advance(std::time::Duration::from_secs(45)).await;
    assert_eq!(call(&app, get()).await.0, StatusCode::OK);
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    let (code, text) = call(&app, get()).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("no supervisor pass completed"), "{text}");
    health.pass_done();
    assert_eq!(call(&app, get()).await.0, StatusCode::OK);
}

/// With several Deployments, an alert whose labels name one wakes that one's supervisor; an
/// alert that names none of them wakes every supervisor (each reads its own failure rate).
#[tokio::test]
async fn an_alert_wakes_the_deployment_its_labels_name() {
    use flowfail_service::serve::Wakes;
    let (prod, staging) = (Wake::new(), Wake::new());
    let r = router(
        ServerOptions::new(SecretString::from(TOKEN), SecretString::from(CONTROL)),
        Wakes::named(vec![
            ("default".into(), "flowengine".into(), prod.clone()),
            ("staging".into(), "flowengine".into(), staging.clone()),
        ]),
        Arc::new(Metrics::new(Mode::Act)),
        Arc::new(Fake::default()),
        Health::new(std::time::Duration::from_secs(60)),
    );
    let app = App {
        router: r,
        wake: Wake::new(),
        control: Arc::new(Fake::default()),
    };
    let labelled = grafana_payload("firing").replace(
        r#""deployment":"flowengine""#,
        r#""deployment":"flowengine","namespace":"staging""#,
    );
    assert!(labelled.contains("staging"));
    let (code, _) = call(&app, post("/hooks/grafana", bearer(), labelled)).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert!(staging.pending().is_some());
    assert!(prod.pending().is_none());
    // `deployment` alone names both: both wake, as for an alert that names neither.
    let unlabelled = grafana_payload("firing").replace(r#","deployment":"flowengine""#, "");
    assert!(!unlabelled.contains(r#""deployment""#));
    call(&app, post("/hooks/grafana", bearer(), unlabelled)).await;
    assert!(prod.pending().is_some());
}
