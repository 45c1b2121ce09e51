//! The canary-secret test, and errors that say why in the server's words without the key.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use flowfail_core::{
    ErrorKind, Notification, Notifier, Page, Pager, Quota, QuotaChecker, StatusPage, VendorHealth,
};
use flowfail_http::{AnthropicQuota, OpenAiQuota, StatusPageConfig, StatusPages, Webhook};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{CANARY, pagerduty, ratelimit};
use crate::support::{opts, secret};

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
    // Alone in its process: other tests hitting the adapters' tracing callsites on other
    // threads can make a scoped subscriber miss events.
    if !flowfail_testkit::alone_in_a_child(
        module_path!(),
        "canary_secrets_never_appear_in_logs_errors_or_debug_output",
    ) {
        return;
    }
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
