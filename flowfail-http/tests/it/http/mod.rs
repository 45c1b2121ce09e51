//! The HTTP adapters against local HTTP servers (wiremock): the conformance suite for each,
//! hostile and malformed responses, one attempt per call, `Retry-After` on the error, and the
//! canary-secret test. One module per adapter or subject; the helpers they share are here.

use std::collections::BTreeMap;

use flowfail_http::PagerDuty;
use wiremock::{MockServer, ResponseTemplate};

use crate::support::{opts, secret};

const CANARY: &str = "CANARY-sk-ant-api03-DO-NOT-LEAK-7f3a9c";

mod dedup_memory;
mod one_call;
mod pager;
mod quota;
mod secrets;
mod status;
mod tracker;

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

async fn pagerduty(server: &MockServer) -> PagerDuty {
    let mut keys = BTreeMap::new();
    keys.insert("on_call".to_owned(), secret(CANARY));
    keys.insert("sre".to_owned(), secret("sre-routing-key"));
    PagerDuty::new(server.uri(), keys, opts()).unwrap()
}

/// How many requests `server` received.
async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}
