//! The status-page adapter against local HTTP servers: the conformance suite, the outage start,
//! malformed and hostile pages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::conformance;
use flowfail_core::{StatusPage, VendorHealth};
use flowfail_http::{StatusPageConfig, StatusPages};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::summary;
use crate::support::opts;

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
