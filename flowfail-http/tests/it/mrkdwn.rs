//! Issue 17 #14: everything a notification carries reaches Slack escaped for mrkdwn, read from
//! what the webhook server received.

use std::time::Duration;

use flowfail_core::{Notification, Notifier};
use flowfail_http::{HttpOptions, Webhook};
use secrecy::SecretString;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_hostile_notification_cannot_mention_link_or_format_in_slack() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let hook = Webhook::new(
        SecretString::from(format!("{}/hooks/T0/B0/x", server.uri())),
        HttpOptions::default().timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let message = "vendor <!channel> <!here|here> <@U024BE7LH> <#C024BE7LR> \
                   <https://evil.example/|click me> a & b > c @channel @Everyone \
                   \u{1b}[31mred\u{202E}desrever\nresolved: all good";
    hook.notify(&Notification::new("<!subteam^S1>", "k-1", message))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert_eq!(
        text,
        "[&lt;!subteam^S1&gt;] vendor &lt;!channel&gt; &lt;!here|here&gt; &lt;@U024BE7LH&gt; \
         &lt;#C024BE7LR&gt; &lt;https://evil.example/|click me&gt; a &amp; b &gt; c \
         \u{FF20}channel \u{FF20}Everyone \\u{1b}[31mreddesrever\\nresolved: all good"
    );
    for bad in ['<', '>', '\n', '\u{1b}', '\u{202E}'] {
        assert!(!text.contains(bad), "{bad:?} in {text}");
    }
    assert!(!text.contains("@channel") && !text.contains("@Everyone"));
}
