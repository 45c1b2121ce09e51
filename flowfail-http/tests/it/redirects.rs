//! Security review finding 12: secrets never follow a redirect, and plain http goes only to a
//! loopback host. Two local servers (wiremock): the first answers with a redirect to the
//! second, which must receive nothing, neither the `x-api-key` header nor PagerDuty's routing
//! key in a POST body.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowfail_core::{ErrorKind, Notification, Notifier, Page, Pager};
use flowfail_http::{AnthropicQuota, HttpOptions, PagerDuty, Webhook};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{opts, secret};

const KEY: &str = "sk-ant-api03-REDIRECT-CANARY-5d1e";
const ROUTING: &str = "R0UTING-KEY-REDIRECT-CANARY-77aa";
const HOOK_TOKEN: &str = "T0KEN-IN-THE-HOOK-PATH-93bc";

/// `first` redirects every request with `status` to the same path on `second`, which answers
/// 200 to anything (so a followed redirect would succeed).
async fn redirecting(status: u16) -> (MockServer, MockServer) {
    let first = MockServer::start().await;
    let second = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&second)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(status).insert_header(
            "location",
            format!("{}/landing?from=redirect", second.uri()),
        ))
        .mount(&first)
        .await;
    (first, second)
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn a_307_carries_neither_the_api_key_nor_the_body_to_another_host() {
    for status in [301, 302, 303, 307, 308] {
        let (first, second) = redirecting(status).await;
        let q = AnthropicQuota::new(first.uri(), secret(KEY), opts()).unwrap();
        let e = q.read().await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("HTTP {status}")), "{text}");
        assert!(!text.contains(KEY), "{text}");
        assert_eq!(received(&first).await, 1, "{status}");
        assert_eq!(
            received(&second).await,
            0,
            "{status}: x-api-key followed the redirect"
        );

        let (first, second) = redirecting(status).await;
        let mut keys = BTreeMap::new();
        keys.insert("on_call".to_owned(), secret(ROUTING));
        let pd = PagerDuty::new(first.uri(), keys, opts()).unwrap();
        let e = pd
            .page(&Page::new("on_call", "k", "s", serde_json::Value::Null))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&format!("HTTP {status}")), "{e}");
        assert_eq!(received(&first).await, 1, "{status}");
        assert_eq!(
            received(&second).await,
            0,
            "{status}: the routing key in the body followed the redirect"
        );
    }
}

#[tokio::test]
async fn a_302_is_an_error_naming_the_status_and_host_never_the_path() {
    let first = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("http://localhost:9/elsewhere/{HOOK_TOKEN}?token={HOOK_TOKEN}"),
        ))
        .mount(&first)
        .await;
    let hook = Webhook::new(
        secret(&format!("{}/hooks/{HOOK_TOKEN}", first.uri())),
        opts(),
    )
    .unwrap();
    let e = hook
        .notify(&Notification::new("stakeholders", "k", "m"))
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(e.to_string().contains("HTTP 302"), "{text}");
    assert!(e.to_string().contains("localhost"), "{text}");
    assert!(!e.is_transient(), "{text}");
    assert!(!text.contains(HOOK_TOKEN), "{text}");
    // No Referer on the one request made.
    let reqs = first.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].headers.get("referer").is_none());
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_is_refused_before_connecting() {
    // 192.0.2.1 is TEST-NET-1: nothing answers there, so a connection attempt would hang until
    // the timeout. The refusal comes first, with no traffic.
    let long = HttpOptions::default().timeout(Duration::from_secs(30));
    let started = Instant::now();
    let q = AnthropicQuota::new("http://192.0.2.1", secret(KEY), long.clone()).unwrap();
    let e = q.read().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(e.to_string().contains("192.0.2.1"), "{e}");
    assert!(e.to_string().contains("https"), "{e}");
    assert!(!e.is_transient());

    let hook = Webhook::new(
        secret(&format!("http://192.0.2.1/hooks/{HOOK_TOKEN}")),
        long.clone(),
    )
    .unwrap();
    let started = Instant::now();
    let e = hook
        .notify(&Notification::new("stakeholders", "k", "m"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(!format!("{e} {e:?}").contains(HOOK_TOKEN), "{e}");
}

#[tokio::test]
async fn plain_http_to_loopback_is_allowed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(202).set_body_json(serde_json::json!({})))
        .mount(&server)
        .await;
    let port = server.address().port();
    for base in [
        server.uri(),
        format!("http://localhost:{port}"),
        format!("http://LocalHost:{port}"),
    ] {
        let hook = Webhook::new(secret(&format!("{base}/hooks/x")), opts()).unwrap();
        hook.notify(&Notification::new("stakeholders", "k", "m"))
            .await
            .unwrap_or_else(|e| panic!("{base}: {e}"));
    }
    // Other loopback addresses (127.0.0.0/8, ::1) pass the check; nothing listens there, so
    // the error is the connection's, not a refusal.
    for base in ["http://127.0.0.2:9", "http://[::1]:9"] {
        let hook = Webhook::new(secret(&format!("{base}/hooks/x")), opts()).unwrap();
        let e = hook
            .notify(&Notification::new("stakeholders", "k", "m"))
            .await
            .unwrap_err();
        assert_ne!(e.kind(), ErrorKind::Refused, "{base}: {e}");
    }
}
