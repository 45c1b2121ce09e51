//! PagerDuty and the webhook remember the dedup keys they sent, for the life of the process:
//! at most their capacity, the least recently used forgotten first (issue 27 #16).

use flowfail_core::{Delivery, Notification, Notifier, Page, Pager};
use flowfail_http::{PagerDuty, Webhook};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{pagerduty, requests};
use crate::support::{opts, secret};

/// A server that accepts every POST.
async fn accepting() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

fn page(target: &str, key: &str) -> Page {
    Page::new(target, key, "s", serde_json::Value::Null)
}

#[tokio::test]
async fn pagerduty_remembers_at_most_its_capacity_of_dedup_keys() {
    let server = accepting().await;
    let pd = pagerduty(&server).await;
    let cap = PagerDuty::REMEMBERED;
    let kept = page("sre", "inc-0:page:sre:rollback_failed");
    assert_eq!(pd.page(&kept).await.unwrap(), Delivery::Sent);
    for i in 0..cap + 100 {
        let p = page("on_call", &format!("inc-{i}:page:on_call:new_failure_mode"));
        assert_eq!(pd.page(&p).await.unwrap(), Delivery::Sent, "key {i}");
        if i % 1000 == 0 {
            // Still being paged: a key in use is never the one forgotten.
            assert_eq!(pd.page(&kept).await.unwrap(), Delivery::Deduplicated);
        }
        assert!(
            pd.remembered() <= cap,
            "{} keys remembered after {} pages",
            pd.remembered(),
            i + 2
        );
    }
    assert_eq!(pd.remembered(), cap);
    let sent = requests(&server).await;
    assert_eq!(sent, cap + 101);

    // The most recent key and the one in use are still deduplicated: nothing sent.
    let last = page(
        "on_call",
        &format!("inc-{}:page:on_call:new_failure_mode", cap + 99),
    );
    assert_eq!(pd.page(&last).await.unwrap(), Delivery::Deduplicated);
    assert_eq!(pd.page(&kept).await.unwrap(), Delivery::Deduplicated);
    assert_eq!(requests(&server).await, sent);
    // Its resolve goes to the service it was paged on, and only there.
    pd.resolve("inc-0:page:sre:rollback_failed").await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), sent + 1);
    let body: serde_json::Value = serde_json::from_slice(&reqs[sent].body).unwrap();
    assert_eq!(body["event_action"], "resolve");
    assert_eq!(body["routing_key"], "sre-routing-key");

    // The oldest key is forgotten: its page is sent again, and the memory stays at the cap.
    let oldest = page("on_call", "inc-0:page:on_call:new_failure_mode");
    assert_eq!(pd.page(&oldest).await.unwrap(), Delivery::Sent);
    assert_eq!(pd.remembered(), cap);
}

#[tokio::test]
async fn the_webhook_remembers_at_most_its_capacity_of_dedup_keys() {
    let server = accepting().await;
    let hook = Webhook::new(secret(&format!("{}/hooks/x", server.uri())), opts()).unwrap();
    let cap = Webhook::REMEMBERED;
    let note = |key: String| Notification::new("stakeholders", key, "m");
    let kept = note("inc-0:notify:stakeholders:opened".to_owned());
    assert_eq!(hook.notify(&kept).await.unwrap(), Delivery::Sent);
    for i in 0..cap + 100 {
        let n = note(format!("inc-{i}:notify:stakeholders:update"));
        assert_eq!(hook.notify(&n).await.unwrap(), Delivery::Sent, "key {i}");
        if i % 1000 == 0 {
            assert_eq!(hook.notify(&kept).await.unwrap(), Delivery::Deduplicated);
        }
        assert!(
            hook.remembered() <= cap,
            "{} keys remembered after {} notifications",
            hook.remembered(),
            i + 2
        );
    }
    assert_eq!(hook.remembered(), cap);
    let sent = requests(&server).await;
    assert_eq!(sent, cap + 101);

    let last = note(format!("inc-{}:notify:stakeholders:update", cap + 99));
    assert_eq!(hook.notify(&last).await.unwrap(), Delivery::Deduplicated);
    assert_eq!(hook.notify(&kept).await.unwrap(), Delivery::Deduplicated);
    assert_eq!(requests(&server).await, sent, "nothing sent twice");

    let oldest = note("inc-0:notify:stakeholders:update".to_owned());
    assert_eq!(hook.notify(&oldest).await.unwrap(), Delivery::Sent);
    assert_eq!(hook.remembered(), cap);
}
