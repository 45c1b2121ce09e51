//! One attempt per call, and `Retry-After` on the error (capped).

use std::collections::BTreeMap;
use std::time::Duration;

use flowfail_core::{ErrorKind, Notification, Notifier, Page, Pager, StatusPage, VendorHealth};
use flowfail_http::{HttpOptions, PagerDuty, StatusPageConfig, StatusPages, Webhook};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{pagerduty, requests};
use crate::support::{opts, secret};

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
