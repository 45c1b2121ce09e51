//! The quota adapters (Anthropic, OpenAI, the per-vendor router) against local HTTP servers: the
//! conformance suite, the tightest limit and its reset, the admin usage report, unreadable quota.

use std::sync::Arc;

use async_trait::async_trait;
use flowfail_core::conformance;
use flowfail_core::{Quota, QuotaChecker};
use flowfail_http::{AnthropicQuota, OpenAiQuota, VendorQuotas};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{CANARY, ratelimit};
use crate::support::{opts, secret};

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
