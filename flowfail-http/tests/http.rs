//! The HTTP adapters against local HTTP servers (wiremock): the conformance suite for each,
//! hostile and malformed responses, one attempt per call, `Retry-After` on the error, and the
//! canary-secret test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::conformance;
use flowfail_core::{
    ErrorKind, Notification, Notifier, Page, Pager, Quota, QuotaChecker, StatusPage, VendorHealth,
};
use flowfail_http::{
    AnthropicQuota, HttpOptions, OpenAiQuota, PagerDuty, StatusPageConfig, StatusPages,
    VendorQuotas, Webhook,
};
use secrecy::SecretString;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CANARY: &str = "CANARY-sk-ant-api03-DO-NOT-LEAK-7f3a9c";

/// The defaults with a shorter timeout.
fn opts() -> HttpOptions {
    HttpOptions::default().timeout(Duration::from_secs(5))
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn ratelimit(limit: u64, remaining: u64) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header(
            "anthropic-ratelimit-tokens-limit",
            limit.to_string().as_str(),
        )
        .insert_header(
            "anthropic-ratelimit-tokens-remaining",
            remaining.to_string().as_str(),
        )
        .insert_header("anthropic-ratelimit-tokens-reset", "2025-11-13T10:01:00Z")
        .insert_header("anthropic-ratelimit-requests-limit", "1000")
        .insert_header("anthropic-ratelimit-requests-remaining", "999")
        .set_body_json(serde_json::json!({"input_tokens": 3}))
}

struct AnthropicFixture {
    server: MockServer,
    checker: Arc<AnthropicQuota>,
}

impl AnthropicFixture {
    async fn new() -> Self {
        let server = MockServer::start().await;
        let checker = Arc::new(AnthropicQuota::new(server.uri(), secret(CANARY), opts()).unwrap());
        AnthropicFixture { server, checker }
    }
}

#[async_trait]
impl conformance::QuotaFixture for AnthropicFixture {
    fn checker(&self) -> Arc<dyn QuotaChecker> {
        self.checker.clone()
    }
    fn vendor(&self) -> String {
        "anthropic".into()
    }
    async fn set_used(&self, used: f64) {
        self.server.reset().await;
        let limit = 100_000u64;
        let remaining = ((1.0 - used) * limit as f64).round() as u64;
        Mock::given(method("POST"))
            .and(path("/v1/messages/count_tokens"))
            .and(header("x-api-key", CANARY))
            .and(header("anthropic-version", "2023-06-01"))
            .respond_with(ratelimit(limit, remaining))
            .mount(&self.server)
            .await;
    }
    async fn set_unreadable(&self) {
        self.server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_string("<html>oops</html>"))
            .mount(&self.server)
            .await;
    }
}

#[tokio::test]
async fn anthropic_quota_passes_the_conformance_suite() {
    conformance::quota_checker(&AnthropicFixture::new().await).await;
}

#[tokio::test]
async fn anthropic_quota_reads_the_tightest_limit_and_reset() {
    let f = AnthropicFixture::new().await;
    conformance::QuotaFixture::set_used(&f, 0.86).await;
    let Quota::Known(u) = f.checker.quota("anthropic").await.unwrap() else {
        panic!()
    };
    assert_eq!(u.limit, Some(100_000));
    assert_eq!(u.remaining, Some(14_000));
    assert_eq!(
        u.reset_at.unwrap().to_rfc3339(),
        "2025-11-13T10:01:00+00:00"
    );
}

#[tokio::test]
async fn anthropic_admin_usage_report_against_a_budget() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/usage_report/messages"))
        .and(header("x-api-key", "admin-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "data": [{"results": [{"uncached_input_tokens": 600_000, "output_tokens": 200_000,
                       "cache_creation": {"ephemeral_5m_input_tokens": 50_000}, "cache_read_input_tokens": 0}]}],
            "has_more": false, "next_page": null})))
        .mount(&server)
        .await;
    let q = AnthropicQuota::new(server.uri(), secret("k"), opts())
        .unwrap()
        .admin_usage(secret("admin-key"), 1_000_000);
    let Quota::Known(u) = q.quota("anthropic").await.unwrap() else {
        panic!()
    };
    assert!((u.used_ratio - 0.85).abs() < 1e-9);
    assert_eq!(u.remaining, Some(150_000));
}

#[tokio::test]
async fn unreadable_quota_is_unknown_never_zero_or_full() {
    let server = MockServer::start().await;
    let q = AnthropicQuota::new(server.uri(), secret("k"), opts()).unwrap();
    let cases = vec![
        ResponseTemplate::new(200), // no headers
        ResponseTemplate::new(429), // throttled, no numbers
        ResponseTemplate::new(200)
            .insert_header("anthropic-ratelimit-tokens-limit", "lots")
            .insert_header("anthropic-ratelimit-tokens-remaining", "5"),
        ResponseTemplate::new(200)
            .insert_header("anthropic-ratelimit-tokens-limit", "10")
            .insert_header("anthropic-ratelimit-tokens-remaining", "50"),
        ResponseTemplate::new(200)
            .insert_header("anthropic-ratelimit-tokens-limit", "0")
            .insert_header("anthropic-ratelimit-tokens-remaining", "0"),
    ];
    for t in cases {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(t)
            .mount(&server)
            .await;
        assert!(matches!(
            q.quota("anthropic").await.unwrap(),
            Quota::Unknown { .. }
        ));
    }
    // Nothing listening at all.
    let dead = AnthropicQuota::new("http://127.0.0.1:9", secret("k"), opts()).unwrap();
    assert!(matches!(
        dead.quota("anthropic").await.unwrap(),
        Quota::Unknown { .. }
    ));
}

#[tokio::test]
async fn openai_quota_from_x_ratelimit_headers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", "Bearer sk-test"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-limit-requests", "500")
                .insert_header("x-ratelimit-remaining-requests", "499")
                .insert_header("x-ratelimit-reset-requests", "120ms")
                .insert_header("x-ratelimit-limit-tokens", "30000")
                .insert_header("x-ratelimit-remaining-tokens", "3000")
                .insert_header("x-ratelimit-reset-tokens", "6m0s"),
        )
        .mount(&server)
        .await;
    let q = OpenAiQuota::new(server.uri(), secret("sk-test"), opts()).unwrap();
    let Quota::Known(u) = q.quota("openai").await.unwrap() else {
        panic!()
    };
    assert!((u.used_ratio - 0.9).abs() < 1e-9);
    let reset_in = u.reset_at.unwrap() - chrono::Utc::now();
    assert!(
        reset_in > chrono::TimeDelta::seconds(350) && reset_in <= chrono::TimeDelta::seconds(360)
    );
    let routed = VendorQuotas::new().with("openai", Arc::new(q));
    assert!(routed.quota("openai").await.is_ok());
    assert_eq!(
        routed.quota("anthropic").await.unwrap_err().kind(),
        flowfail_core::ErrorKind::NotFound
    );
}

fn summary(component_status: &str) -> serde_json::Value {
    serde_json::json!({
        "page": {"id": "x", "name": "Anthropic"},
        "status": {"indicator": "major", "description": "Partial System Outage"},
        "components": [
            {"name": "Claude API", "status": component_status},
            {"name": "claude.ai", "status": "operational"}
        ],
        "incidents": [
            {"name": "Elevated errors", "status": "investigating", "created_at": "2025-11-13T09:41:00.000Z",
             "started_at": "2025-11-13T09:40:00.000Z", "components": [{"name": "Claude API"}]},
            {"name": "Old one", "status": "resolved", "created_at": "2025-11-01T00:00:00Z", "components": [{"name": "Claude API"}]}
        ]
    })
}

struct StatusFixture {
    server: MockServer,
    pages: Arc<StatusPages>,
}

impl StatusFixture {
    async fn new() -> Self {
        let server = MockServer::start().await;
        let mut v = BTreeMap::new();
        v.insert(
            "anthropic".to_owned(),
            StatusPageConfig::new(server.uri(), ["Claude API"]),
        );
        StatusFixture {
            pages: Arc::new(StatusPages::new(v, opts()).unwrap()),
            server,
        }
    }
    async fn serve(&self, t: ResponseTemplate) {
        self.server.reset().await;
        Mock::given(method("GET"))
            .and(path("/api/v2/summary.json"))
            .respond_with(t)
            .mount(&self.server)
            .await;
    }
}

#[async_trait]
impl conformance::StatusFixture for StatusFixture {
    fn page(&self) -> Arc<dyn StatusPage> {
        self.pages.clone()
    }
    fn vendor(&self) -> String {
        "anthropic".into()
    }
    async fn set(&self, health: VendorHealth) {
        let s = match health {
            VendorHealth::Operational => "operational",
            VendorHealth::MajorOutage => "major_outage",
            VendorHealth::PartialOutage => "partial_outage",
            VendorHealth::DegradedPerformance => "degraded_performance",
            _ => "under_maintenance",
        };
        self.serve(ResponseTemplate::new(200).set_body_json(summary(s)))
            .await;
    }
    async fn set_unreadable(&self) {
        self.serve(ResponseTemplate::new(503)).await;
    }
}

#[tokio::test]
async fn status_pages_pass_the_conformance_suite() {
    conformance::status_page(&StatusFixture::new().await).await;
}

#[tokio::test]
async fn outage_start_comes_from_the_open_incident_and_incident_io_says_full_outage() {
    let f = StatusFixture::new().await;
    f.serve(ResponseTemplate::new(200).set_body_json(summary("full_outage")))
        .await;
    let s = f.pages.health("anthropic").await.unwrap();
    assert_eq!(s.health, VendorHealth::MajorOutage);
    assert_eq!(s.since.unwrap().to_rfc3339(), "2025-11-13T09:40:00+00:00");
}

#[tokio::test]
async fn malformed_and_hostile_status_pages_are_unknown() {
    let f = StatusFixture::new().await;
    let huge = format!(
        "{{\"components\": [{}]}}",
        vec!["{\"name\":\"x\",\"status\":\"operational\"}"; 100_000].join(",")
    );
    let cases = vec![
        ResponseTemplate::new(200).set_body_string("<html>maintenance page</html>"),
        ResponseTemplate::new(200).set_body_string("{\"components\": \"nope\"}"),
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"components": [{"name": "Something else", "status": "major_outage"}]})),
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"components": [{"name": "Claude API", "status": "on_fire"}]})),
        ResponseTemplate::new(200).set_body_string(huge),
        ResponseTemplate::new(200).set_body_string("[".repeat(100_000)),
        ResponseTemplate::new(404),
        ResponseTemplate::new(302).insert_header("location", "/elsewhere"),
    ];
    for t in cases {
        f.serve(t).await;
        assert_eq!(
            f.pages.health("anthropic").await.unwrap().health,
            VendorHealth::Unknown
        );
    }
    // A slow page times out into unknown.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(summary("operational"))
                .set_delay(Duration::from_millis(400)),
        )
        .mount(&server)
        .await;
    let mut v = BTreeMap::new();
    v.insert(
        "anthropic".to_owned(),
        StatusPageConfig::new(server.uri(), ["Claude API"]),
    );
    let slow = StatusPages::new(v, opts().timeout(Duration::from_millis(100))).unwrap();
    assert_eq!(
        slow.health("anthropic").await.unwrap().health,
        VendorHealth::Unknown
    );
}

async fn pagerduty(server: &MockServer) -> PagerDuty {
    let mut keys = BTreeMap::new();
    keys.insert("on_call".to_owned(), secret(CANARY));
    keys.insert("sre".to_owned(), secret("sre-routing-key"));
    PagerDuty::new(server.uri(), keys, opts()).unwrap()
}

#[tokio::test]
async fn pagerduty_passes_the_conformance_suite() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(
                serde_json::json!({"status": "success", "message": "Event processed"}),
            ),
        )
        .mount(&server)
        .await;
    conformance::pager(&pagerduty(&server).await, "on_call").await;
    let reqs = server.received_requests().await.unwrap();
    let first: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(first["event_action"], "trigger");
    assert_eq!(first["routing_key"], CANARY);
    assert_eq!(
        first["payload"]["severity"], "error",
        "the default severity: the runbook's alert is a P2"
    );
    assert!(
        first.get("links").is_none(),
        "no links configured, none sent"
    );
    assert!(first["dedup_key"].as_str().unwrap().len() <= 255);
    assert!(reqs.iter().any(
        |r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["event_action"]
            == "resolve"
    ));
}

#[tokio::test]
async fn pages_carry_the_configured_severity_and_links_and_no_other_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let pd = pagerduty(&server)
        .await
        .severity("warning")
        .unwrap()
        .link(
            "https://wiki.example.com/runbooks/flow-failure",
            "Runbook: Flow Failure Response",
        )
        .link(
            "https://grafana.example.com/d/flowengine",
            "Grafana: FlowEngine",
        );
    let page = Page::new(
        "on_call",
        "inc-1:page:on_call:new_failure_mode",
        "new failure mode",
        serde_json::json!({"failure_rate": 0.02}),
    );
    assert_eq!(pd.page(&page).await.unwrap(), flowfail_core::Delivery::Sent);
    let sre = Page::new(
        "sre",
        "inc-1:page:sre:rollback_failed",
        "s",
        serde_json::Value::Null,
    );
    assert_eq!(pd.page(&sre).await.unwrap(), flowfail_core::Delivery::Sent);
    pd.resolve("inc-1:page:on_call:new_failure_mode")
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 3, "two triggers and a resolve");
    let bodies: Vec<serde_json::Value> = reqs
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let links = serde_json::json!([
        {"href": "https://wiki.example.com/runbooks/flow-failure", "text": "Runbook: Flow Failure Response"},
        {"href": "https://grafana.example.com/d/flowengine", "text": "Grafana: FlowEngine"},
    ]);
    for (b, key) in bodies[..2].iter().zip([CANARY, "sre-routing-key"]) {
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["payload"]["severity"], "warning", "{b}");
        assert_eq!(b["links"], links, "{b}");
        assert_eq!(b["routing_key"], key);
    }
    assert_eq!(bodies[2]["event_action"], "resolve");
    assert!(bodies[2].get("links").is_none() && bodies[2].get("payload").is_none());
    // The routing key is in its own field and nowhere else: not in the URL, a header, or
    // another part of the body.
    for (r, b) in reqs.iter().zip(&bodies) {
        let mut rest = b.clone();
        let key = rest["routing_key"].as_str().unwrap().to_owned();
        rest.as_object_mut().unwrap().remove("routing_key");
        assert!(!rest.to_string().contains(&key), "{rest}");
        assert!(!rest.to_string().contains(CANARY), "{rest}");
        assert!(!r.url.as_str().contains(&key), "{}", r.url);
        for (name, value) in r.headers.iter() {
            let v = value.to_str().unwrap_or_default();
            assert!(!v.contains(&key) && !v.contains(CANARY), "header {name}");
        }
    }
    assert_eq!(
        b_keys(&bodies),
        [
            "dedup_key,event_action,links,payload,routing_key",
            "dedup_key,event_action,links,payload,routing_key",
            "dedup_key,event_action,routing_key"
        ]
    );
}

/// The top-level fields of each body, sorted and joined.
fn b_keys(bodies: &[serde_json::Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| {
            let mut k: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
            k.sort_unstable();
            k.join(",")
        })
        .collect()
}

#[tokio::test]
async fn an_unknown_severity_is_refused_and_every_known_one_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let e = pagerduty(&server).await.severity("fatal").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("\"fatal\"")
            && e.to_string().contains("critical, error, warning, info"),
        "{e}"
    );
    for (i, sev) in PagerDuty::SEVERITIES.iter().enumerate() {
        let pd = pagerduty(&server).await.severity(sev).unwrap();
        let page = Page::new("on_call", format!("k{i}"), "s", serde_json::Value::Null);
        pd.page(&page).await.unwrap();
        let reqs = server.received_requests().await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&reqs[i].body).unwrap();
        assert_eq!(body["payload"]["severity"], *sev);
    }
}

#[tokio::test]
async fn a_pager_answering_429_then_5xx_pages_exactly_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let pd = pagerduty(&server).await;
    let page = Page::new(
        "on_call",
        "inc-1:page:on_call:quota_critical",
        "quota critical",
        serde_json::Value::Null,
    );
    // One attempt per call: each refusal is a transient error, and the page is not taken as
    // sent, so the caller's retry sends it again.
    let e = pd.page(&page).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.is_transient(), "{e}");
    let e = pd.page(&page).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_transient(), "{e}");
    assert_eq!(pd.page(&page).await.unwrap(), flowfail_core::Delivery::Sent);
    assert_eq!(
        pd.page(&page).await.unwrap(),
        flowfail_core::Delivery::Deduplicated
    );
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 3, "429, 503, then accepted; nothing after");
    let keys: Vec<String> = reqs
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["dedup_key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        keys.iter()
            .all(|k| k == "inc-1:page:on_call:quota_critical"),
        "every attempt carries the same dedup key"
    );
    // A 400: an error, one request.
    let bad = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&bad)
        .await;
    let pd = pagerduty(&bad).await;
    assert!(pd.page(&page).await.is_err());
    assert_eq!(bad.received_requests().await.unwrap().len(), 1);
}

/// How many requests `server` received.
async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn one_request_per_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;

    // A notification: one POST, a transient error for the caller to retry or not.
    let hook = Webhook::new(
        secret(&format!("{}/hook", server.uri())),
        HttpOptions::default(),
    )
    .unwrap();
    let e = hook
        .notify(&Notification::new("stakeholders", "k", "m"))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(requests(&server).await, 1, "one webhook POST, no retry");

    // A page: one POST.
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;
    let mut keys = BTreeMap::new();
    keys.insert("on_call".to_owned(), secret("rk"));
    let pd = PagerDuty::new(server.uri(), keys, HttpOptions::default()).unwrap();
    let e = pd
        .page(&Page::new("on_call", "k", "s", serde_json::Value::Null))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.retry_after(), None, "no Retry-After was sent");
    assert_eq!(requests(&server).await, 1, "one PagerDuty POST, no retry");

    // A read: one GET; the responder's loop is the only one that retries it.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mut v = BTreeMap::new();
    v.insert(
        "anthropic".to_owned(),
        StatusPageConfig::new(server.uri(), ["Claude API"]),
    );
    let pages = StatusPages::new(v, HttpOptions::default()).unwrap();
    assert_eq!(
        pages.health("anthropic").await.unwrap().health,
        VendorHealth::Unknown
    );
    assert_eq!(requests(&server).await, 1, "one status page GET, no retry");
}

#[tokio::test]
async fn retry_after_travels_on_the_error_capped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let pd = pagerduty(&server).await;
    let e = pd
        .page(&Page::new("on_call", "k", "s", serde_json::Value::Null))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        requests(&server).await,
        1,
        "no wait and retry inside the adapter"
    );

    // A longer wait is capped at `retry_after_cap` (60 s by default).
    let hook = Webhook::new(secret(&format!("{}/hook", server.uri())), opts()).unwrap();
    let e = hook
        .notify(&Notification::new("stakeholders", "k", "m"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn webhook_passes_the_conformance_suite_with_a_slack_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/T000/B000/secret"))
        .and(body_partial_json(
            serde_json::json!({"audience": "stakeholders"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let hook = Webhook::new(
        secret(&format!("{}/hooks/T000/B000/secret", server.uri())),
        opts(),
    )
    .unwrap();
    conformance::notifier(&hook).await;
    let body: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("[stakeholders] ")
    );
}

/// Collects everything tracing writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn canary_secrets_never_appear_in_logs_errors_or_debug_output() {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut seen: Vec<String> = Vec::new();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages/count_tokens"))
        .respond_with(ratelimit(1000, 100))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad routing key"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;

    let quota = AnthropicQuota::new(server.uri(), secret(CANARY), opts())
        .unwrap()
        .admin_usage(secret(CANARY), 1000);
    seen.push(format!("{quota:?}"));
    seen.push(format!("{:?}", quota.quota("anthropic").await));
    let quota = AnthropicQuota::new(server.uri(), secret(CANARY), opts()).unwrap();
    seen.push(format!("{:?}", quota.quota("anthropic").await));
    seen.push(format!("{:?}", quota.quota("anthropic").await));
    let openai = OpenAiQuota::new(server.uri(), secret(CANARY), opts()).unwrap();
    seen.push(format!("{openai:?} {:?}", openai.quota("openai").await));
    let pd = pagerduty(&server).await;
    seen.push(format!("{pd:?}"));
    let e = pd
        .page(&Page::new("on_call", "k", "s", serde_json::Value::Null))
        .await
        .unwrap_err();
    seen.push(format!("{e} {e:?}"));
    let hook = Webhook::new(secret(&format!("{}/hooks/{CANARY}", server.uri())), opts()).unwrap();
    seen.push(format!("{hook:?}"));
    let e = hook
        .notify(&Notification::new("stakeholders", "k", "m"))
        .await
        .unwrap_err();
    seen.push(format!("{e} {e:?} {:?}", std::error::Error::source(&e)));
    let dead = Webhook::new(
        secret(&format!("http://127.0.0.1:9/hooks/{CANARY}")),
        opts(),
    )
    .unwrap();
    let e = dead
        .notify(&Notification::new("stakeholders", "k2", "m"))
        .await
        .unwrap_err();
    seen.push(format!(
        "{e} {e:?} {:?}",
        std::error::Error::source(&e).map(|s| s.to_string())
    ));
    let bad_header =
        AnthropicQuota::new(server.uri(), secret(&format!("{CANARY}\n")), opts()).unwrap();
    seen.push(format!("{:?}", bad_header.quota("anthropic").await));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "tracing output was captured");
    assert!(!logs.contains(CANARY), "canary in logs:\n{logs}");
    for s in &seen {
        assert!(!s.contains(CANARY), "canary in output: {s}");
    }
}

#[tokio::test]
async fn an_unknown_quota_or_status_says_why_in_the_servers_words_without_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "type": "error",
            "error": {"type": "authentication_error", "message": format!("invalid x-api-key {CANARY}")}
        })))
        .mount(&server)
        .await;
    let q = AnthropicQuota::new(server.uri(), secret(CANARY), opts()).unwrap();
    let e = q.read().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.message(),
        "HTTP 401: authentication_error: invalid x-api-key [redacted]"
    );
    let Quota::Unknown { reason } = q.quota("anthropic").await.unwrap() else {
        panic!("a refused key is unknown quota")
    };
    assert!(
        reason.contains("HTTP 401: authentication_error"),
        "{reason}"
    );
    assert!(!reason.contains("CANARY"), "{reason}");

    // Nothing listening: the cause chain goes down to the OS error.
    let dead = AnthropicQuota::new("http://127.0.0.1:9", secret(CANARY), opts()).unwrap();
    let e = dead.read().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let os = std::iter::successors(std::error::Error::source(&e), |c| c.source())
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .expect("the chain reaches the OS error");
    assert_eq!(os.kind(), std::io::ErrorKind::ConnectionRefused);
    let Quota::Unknown { reason } = dead.quota("anthropic").await.unwrap() else {
        panic!()
    };
    assert!(reason.contains("Connection refused"), "{reason}");

    // A status page answering 503 with a body: status and excerpt.
    let page = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream\n  overloaded"))
        .mount(&page)
        .await;
    let mut cfg = BTreeMap::new();
    cfg.insert(
        "anthropic".to_owned(),
        StatusPageConfig::new(page.uri(), ["Claude API"]),
    );
    let pages = StatusPages::new(cfg, opts()).unwrap();
    let e = pages.read("anthropic").await.unwrap_err();
    assert_eq!(e.message(), "HTTP 503: upstream overloaded");
    assert!(e.is_transient());
    assert_eq!(
        pages.health("anthropic").await.unwrap().health,
        VendorHealth::Unknown
    );
}
