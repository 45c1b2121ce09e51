//! AWS denies a permission, and the user reads which one: `flowfail prune-context` and
//! `flowfail triage --cloudwatch-log-group` with credentials of an IAM user that has no policy,
//! against the local AWS API (moto) with its IAM enforcement switched on.
//!
//! moto enforces IAM only when asked (`POST /moto-api/reset-auth`, a server-wide setting), so
//! this test runs alone among the tests of this binary that call the local AWS API (it holds
//! `support::local_aws_alone`, they hold `local_aws_shared`) and puts the previous setting back
//! when it ends, however it ends.

use std::io::{Read, Write};

use aws_sdk_s3::primitives::ByteStream;
use flowfail_aws::{AwsOptions, load_config};

use crate::support::{flowfail_cmd, local_aws_alone};

/// A plain HTTP/1.1 request to the local AWS API; returns the status and the body.
fn http(endpoint: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// An IAM Query API call, unsigned (moto does not check signatures before auth is on).
fn iam(endpoint: &str, params: &str) -> String {
    let (status, body) = http(
        endpoint,
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        &format!("{params}&Version=2010-05-08"),
    );
    assert_eq!(status, 200, "IAM {params}: {body}");
    body
}

fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..start + end]
}

/// IAM enforcement on; the previous setting back on drop.
struct Enforced {
    endpoint: String,
    previous: String,
}

impl Enforced {
    fn on(endpoint: &str) -> Self {
        let (status, body) = http(
            endpoint,
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain")],
            "0",
        );
        assert_eq!(status, 200, "reset-auth: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        Enforced {
            endpoint: endpoint.to_owned(),
            previous: v["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
                .as_str()
                .unwrap_or("inf")
                .to_owned(),
        }
    }
}

impl Drop for Enforced {
    fn drop(&mut self) {
        let (status, _) = http(
            &self.endpoint,
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain")],
            &self.previous,
        );
        if status != 200 {
            eprintln!("could not switch moto's IAM enforcement back off");
        }
    }
}

fn flowfail(args: &[&str], endpoint: &str, key: (&str, &str)) -> (i32, String, String) {
    let out = flowfail_cmd()
        .args(args)
        .env("FLOWFAIL_AWS_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env_remove("FLOWFAIL_PG_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_permission_is_named_with_the_servers_words() {
    // Before IAM enforcement goes on, and released after it is off again (`_enforced` is
    // dropped first).
    let _alone = local_aws_alone().await;
    let Some(ep) = flowfail_testkit::aws_endpoint_in(module_path!()) else {
        return;
    };
    let n = std::process::id();
    let cfg = load_config(&AwsOptions::local(ep.clone())).await;
    let bucket = format!("denied-bundles-{n}");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("t-1.json")
        .body(ByteStream::from_static(b"{\"messages\": [\"a\"]}"))
        .send()
        .await
        .unwrap();
    let group = format!("/aws/lambda/flowengine-denied-{n}");
    aws_sdk_cloudwatchlogs::Client::new(&cfg)
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    let user = format!("flowfail-denied-{n}");
    iam(&ep, &format!("Action=CreateUser&UserName={user}"));
    let created = iam(&ep, &format!("Action=CreateAccessKey&UserName={user}"));
    let (id, secret) = (
        element(&created, "AccessKeyId").to_owned(),
        element(&created, "SecretAccessKey").to_owned(),
    );

    let _enforced = Enforced::on(&ep);
    let run = |args: Vec<String>| {
        let (ep, id, secret) = (ep.clone(), id.clone(), secret.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            flowfail(&args, &ep, (&id, &secret))
        })
    };
    let (code, out, err) = run(vec![
        "prune-context".into(),
        "--task-id".into(),
        "t-1".into(),
        "--max-size".into(),
        "1KB".into(),
        "--s3-bucket".into(),
        bucket.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with(
            "flowfail: permission_denied in bundle.head (s3): HTTP 403 AccessDenied: Access Denied"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "advice: AWS denied bundle.head: the credentials need s3:GetObject on arn:aws:s3:::{bucket}/t-1.json"
        )),
        "{err}"
    );
    assert!(!err.contains(&secret) && !err.contains(&id), "{err}");

    let (code, _, err) = run(vec![
        "triage".into(),
        "--cloudwatch-log-group".into(),
        group.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with("flowfail: permission_denied in logs.errors (cloudwatch): HTTP 403"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "User: arn:aws:iam::123456789012:user/{user} is not authorized to perform: logs:FilterLogEvents"
        )),
        "the server's own words: {err}"
    );
    assert!(
        err.contains(&format!(
            "advice: AWS denied logs.errors: the credentials need logs:FilterLogEvents on arn:aws:logs:REGION:ACCOUNT:log-group:{group}:*"
        )),
        "{err}"
    );
    assert!(!err.contains(&secret) && !err.contains(&id), "{err}");
}
