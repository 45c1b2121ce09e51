//! `flowfail triage` with quota and vendor health from local HTTP servers: what it reports, and
//! how an HTTP failure reaches the terminal (status, a key-free body excerpt, the OS error).

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::flowfail_cmd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_shows_quota_and_vendor_health() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages/count_tokens"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("anthropic-ratelimit-tokens-limit", "1000")
                .insert_header("anthropic-ratelimit-tokens-remaining", "140"),
        )
        .mount(&api)
        .await;
    let status = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "components": [{"name": "Claude API", "status": "major_outage"}],
            "incidents": [{"status": "investigating", "started_at": "2025-11-13T09:40:00Z", "components": [{"name": "Claude API"}]}]
        })))
        .mount(&status)
        .await;
    let dead = "http://127.0.0.1:9";
    let key = "sk-ant-canary-in-env-only";
    let out = tokio::task::spawn_blocking({
        let (api, status) = (api.uri(), status.uri());
        move || {
            flowfail_cmd()
                .args([
                    "triage",
                    "--json",
                    "--quota-anthropic",
                    "--anthropic-url",
                    &api,
                    "--status",
                ])
                .args([
                    "--status-url",
                    &format!("anthropic={status}"),
                    "--status-url",
                    &format!("openai={dead}"),
                    "--status-url",
                    &format!("google={dead}"),
                ])
                .env_remove("FLOWFAIL_PG_URL")
                .env("ANTHROPIC_API_KEY", key)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains(key) && !String::from_utf8_lossy(&out.stderr).contains(key));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["quota"]["anthropic"]["state"], "known");
    assert!((v["quota"]["anthropic"]["used_ratio"].as_f64().unwrap() - 0.86).abs() < 1e-9);
    assert_eq!(v["vendors"]["anthropic"]["health"], "major_outage");
    assert_eq!(v["vendors"]["anthropic"]["since"], "2025-11-13T09:40:00Z");
    assert_eq!(
        v["vendors"]["openai"]["health"], "unknown",
        "an unreachable page is unknown, not an outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_failures_reach_the_terminal_with_status_body_and_advice() {
    let key = "sk-ant-api03-canary0123456789abcdefKEY";
    let api = MockServer::start().await;
    // The vendor refuses the key and, as some do, quotes part of it back.
    Mock::given(method("POST"))
        .and(path("/v1/messages/count_tokens"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "type": "error",
            "error": {"type": "authentication_error", "message": format!("invalid x-api-key {key}")}
        })))
        .mount(&api)
        .await;
    let status = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_string("<html><body>upstream connect error</body></html>"),
        )
        .mount(&status)
        .await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = tokio::task::spawn_blocking({
        let (api, status) = (api.uri(), status.uri());
        move || {
            flowfail_cmd()
                .args([
                    "triage",
                    "--json",
                    "--quota-anthropic",
                    "--anthropic-url",
                    &api,
                    "--status",
                ])
                .args(["--status-url", &format!("anthropic={status}")])
                .args(["--status-url", &format!("openai={dead}")])
                .args(["--status-url", &format!("google={dead}")])
                .env_remove("FLOWFAIL_PG_URL")
                .env("ANTHROPIC_API_KEY", key)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Unknown is a finding, not a failure: the triage goes on and exits 0.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stdout.contains("canary") && !stderr.contains("canary"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "flowfail: warning: quota anthropic unknown: permission_denied in quota.anthropic (http): HTTP 401: authentication_error: invalid x-api-key [redacted]"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("advice: the API refused the key in ANTHROPIC_API_KEY"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "flowfail: warning: vendor anthropic status unknown: unavailable in status.summary (http) [transient]: HTTP 503: <html><body>upstream connect error</body></html>"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("flowfail: warning: vendor openai status unknown: unavailable in status.summary (http) [transient]: error sending request"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(
        stderr.contains("advice: nothing answers there: check --status-url VENDOR=URL"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["quota"]["anthropic"]["state"], "unknown");
    assert!(
        v["quota"]["anthropic"]["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 401: authentication_error"),
        "{v}"
    );
    assert_eq!(v["vendors"]["openai"]["health"], "unknown");
    assert!(
        v["vendors"]["openai"]["reason"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{v}"
    );
}
