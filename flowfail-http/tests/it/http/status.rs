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

/// A recorded sample under `testdata/status/`.
fn sample(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/status")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One page served at `path` with `body`, read as `cfg` (its base URL set to the server's).
async fn read_page(
    path_: &str,
    body: Vec<u8>,
    cfg: impl FnOnce(String) -> StatusPageConfig,
) -> flowfail_core::Result<flowfail_core::VendorStatus> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(path_))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    let mut v = BTreeMap::new();
    v.insert("vendor".to_owned(), cfg(server.uri()));
    StatusPages::new(v, opts()).unwrap().read("vendor").await
}

/// The three formats the runbook's vendors publish, as recorded: a Statuspage page
/// (Anthropic's), incident.io's compatible page (OpenAI's) and Google Cloud's incidents feed.
#[tokio::test]
async fn recorded_pages_of_all_three_formats_read_as_their_vendors_say() {
    let anthropic = read_page(
        "/api/v2/summary.json",
        sample("statuspage-summary.json"),
        |u| StatusPageConfig::new(u, ["Claude API"]),
    )
    .await
    .unwrap();
    assert_eq!(anthropic.health, VendorHealth::PartialOutage);
    assert_eq!(
        anthropic.since.unwrap().to_rfc3339(),
        "2026-11-19T13:48:00+00:00"
    );
    // Only the configured components count: claude.ai is operational on the same page.
    let claude_ai = read_page(
        "/api/v2/summary.json",
        sample("statuspage-summary.json"),
        |u| StatusPageConfig::new(u, ["claude.ai"]),
    )
    .await
    .unwrap();
    assert_eq!(claude_ai.health, VendorHealth::Operational);

    let openai = read_page(
        "/api/v2/summary.json",
        sample("incidentio-summary.json"),
        |u| StatusPageConfig::new(u, ["API", "Chat Completions"]),
    )
    .await
    .unwrap();
    assert_eq!(openai.health, VendorHealth::MajorOutage, "full_outage");
    assert_eq!(
        openai.since.unwrap().to_rfc3339(),
        "2026-11-20T09:27:00+00:00"
    );
    let responses = read_page(
        "/api/v2/summary.json",
        sample("incidentio-summary.json"),
        |u| StatusPageConfig::new(u, ["Responses"]),
    )
    .await
    .unwrap();
    assert_eq!(responses.health, VendorHealth::Operational);

    // Google: the open Vertex Gemini API disruption counts; the BigQuery outage is another
    // product's, and the Online Prediction outage has ended.
    let google = read_page("/incidents.json", sample("google-incidents.json"), |u| {
        StatusPageConfig::google_cloud(u, flowfail_http::GOOGLE_PRODUCTS)
    })
    .await
    .unwrap();
    assert_eq!(google.health, VendorHealth::PartialOutage);
    assert_eq!(
        google.since.unwrap().to_rfc3339(),
        "2026-11-21T15:02:00+00:00"
    );
    let online_prediction = read_page("/incidents.json", sample("google-incidents.json"), |u| {
        StatusPageConfig::google_cloud(u, ["Vertex AI Online Prediction"])
    })
    .await
    .unwrap();
    assert_eq!(online_prediction.health, VendorHealth::Operational);
    assert!(online_prediction.since.is_none());
    // The products are matched without regard to case; no products: any product counts.
    let bigquery = read_page("/incidents.json", sample("google-incidents.json"), |u| {
        StatusPageConfig::google_cloud(u, ["google bigquery"])
    })
    .await
    .unwrap();
    assert_eq!(bigquery.health, VendorHealth::MajorOutage);
    let any = read_page("/incidents.json", sample("google-incidents.json"), |u| {
        StatusPageConfig::google_cloud(u, Vec::<String>::new())
    })
    .await
    .unwrap();
    assert_eq!(any.health, VendorHealth::MajorOutage);
    assert_eq!(any.since.unwrap().to_rfc3339(), "2026-11-21T13:40:00+00:00");
    // The defaults read Google from its feed.
    assert_eq!(
        StatusPageConfig::defaults()["google"].format,
        flowfail_http::PageFormat::GoogleCloud
    );
}

/// Google's feed as it goes wrong: the whole history over the usual 1 MiB limit is still read;
/// an open incident with a status nobody knows, a body that is not the feed, and an empty feed
/// say so (unknown, or operational for the empty one), never a guess.
#[tokio::test]
async fn googles_feed_is_read_whole_and_odd_feeds_are_explained() {
    let google = |u: String| StatusPageConfig::google_cloud(u, ["Vertex Gemini API"]);
    // Three thousand past incidents of the product before the open one: about 2 MB.
    let mut feed: Vec<serde_json::Value> =
        serde_json::from_slice(&sample("google-incidents.json")).unwrap();
    let past = feed[2].clone();
    for i in 0..3000 {
        let mut p = past.clone();
        p["id"] = serde_json::json!(format!("past-{i}"));
        p["affected_products"][0]["title"] = serde_json::json!("Vertex Gemini API");
        p["external_desc"] = serde_json::json!("x".repeat(600));
        feed.push(p);
    }
    let big = serde_json::to_vec(&feed).unwrap();
    assert!(big.len() > 1 << 20, "{} bytes", big.len());
    let s = read_page("/incidents.json", big, google).await.unwrap();
    assert_eq!(s.health, VendorHealth::PartialOutage);

    let mut odd = feed[..1].to_vec();
    odd[0]["most_recent_update"]["status"] = serde_json::json!("ON_FIRE");
    // The incident's impact answers for an update status nobody knows.
    let s = read_page("/incidents.json", serde_json::to_vec(&odd).unwrap(), google)
        .await
        .unwrap();
    assert_eq!(s.health, VendorHealth::PartialOutage);
    odd[0]["status_impact"] = serde_json::json!("ON_FIRE");
    odd[0]["affected_products"] = serde_json::json!(null);
    let any = |u: String| StatusPageConfig::google_cloud(u, Vec::<String>::new());
    let e = read_page("/incidents.json", serde_json::to_vec(&odd).unwrap(), any)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unrecognised status \"ON_FIRE\""),
        "{e}"
    );
    odd[0]["affected_products"] = serde_json::json!([{"title": "Vertex Gemini API"}]);
    let e = read_page("/incidents.json", serde_json::to_vec(&odd).unwrap(), google)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unrecognised status \"ON_FIRE\""),
        "{e}"
    );

    let e = read_page("/incidents.json", sample("statuspage-summary.json"), google)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("incidents.json is not the expected JSON"),
        "{e}"
    );

    let empty = read_page("/incidents.json", b"[]".to_vec(), google)
        .await
        .unwrap();
    assert_eq!(empty.health, VendorHealth::Operational);
}

/// With a refresh interval, a page read is kept that long: one request for many calls; an
/// unreadable page is not kept; without one, every call reads the page.
#[tokio::test]
async fn a_page_read_is_kept_for_its_refresh_interval_and_an_unreadable_one_is_not() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(summary("major_outage")))
        .mount(&server)
        .await;
    let pages = |refresh: Duration| {
        let mut v = BTreeMap::new();
        v.insert(
            "anthropic".to_owned(),
            StatusPageConfig::new(server.uri(), ["Claude API"]),
        );
        StatusPages::new(v, opts()).unwrap().refresh(refresh)
    };
    let kept = pages(Duration::from_secs(3600));
    for _ in 0..5 {
        assert_eq!(
            kept.health("anthropic").await.unwrap().health,
            VendorHealth::MajorOutage
        );
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let every = pages(Duration::ZERO);
    for _ in 0..3 {
        every.health("anthropic").await.unwrap();
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 4);

    // An unreadable page is read again at the next call.
    let broken = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&broken)
        .await;
    let mut v = BTreeMap::new();
    v.insert(
        "anthropic".to_owned(),
        StatusPageConfig::new(broken.uri(), ["Claude API"]),
    );
    let unknown = StatusPages::new(v, opts())
        .unwrap()
        .refresh(Duration::from_secs(3600));
    for _ in 0..2 {
        assert_eq!(
            unknown.health("anthropic").await.unwrap().health,
            VendorHealth::Unknown
        );
    }
    assert!(broken.received_requests().await.unwrap().len() >= 2);
}
