//! PagerDuty and the webhook against local HTTP servers: the conformance suites, severities,
//! links, one page for a pager answering 429 then 5xx.

use flowfail_core::conformance;
use flowfail_core::{ErrorKind, Page, Pager};
use flowfail_http::{PagerDuty, Webhook};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{CANARY, pagerduty};
use crate::support::{opts, secret};

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
