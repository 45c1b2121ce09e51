//! `flowfail triage --cloudwatch-log-group` and `flowfail prune-context --s3-bucket` against a
//! local AWS API (moto, `FLOWFAIL_AWS_ENDPOINT`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use flowfail_aws::{AwsOptions, load_config};
use flowfail_core::TaskId;
use flowfail_core::memory::synthesize_bundle;

fn endpoint() -> Option<String> {
    match std::env::var("FLOWFAIL_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            if std::env::var("FLOWFAIL_AWS_REQUIRED").is_ok_and(|v| v == "1") {
                panic!("FLOWFAIL_AWS_REQUIRED=1 but FLOWFAIL_AWS_ENDPOINT is not set");
            }
            None
        }
    }
}

fn flowfail(args: &[&str], endpoint: &str) -> (i32, serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowfail"))
        .args(args)
        .env("FLOWFAIL_AWS_ENDPOINT", endpoint)
        .env_remove("FLOWFAIL_PG_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_reads_cloudwatch_and_prune_context_works_on_s3() {
    let Some(ep) = endpoint() else { return };
    let cfg = load_config(&AwsOptions::local(ep.clone())).await;
    let n = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    // CloudWatch: three timeouts and a rate limit in the last hour.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&cfg);
    let group = format!("/aws/lambda/flowengine-cli-{n}");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("s")
        .send()
        .await
        .unwrap();
    let now = Utc::now().timestamp_millis();
    let events: Vec<InputLogEvent> = [
        "ERROR t-00000 Task timed out after 45.02 seconds",
        "ERROR t-00001 Task timed out after 45.02 seconds",
        "ERROR t-00002 Task timed out after 45.02 seconds",
        "ERROR t-00003 openai.RateLimitError: Error code: 429",
    ]
    .iter()
    .enumerate()
    .map(|(i, m)| {
        InputLogEvent::builder()
            .timestamp(now - 60_000 + i as i64)
            .message(*m)
            .build()
            .unwrap()
    })
    .collect();
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("s")
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
    let (code, v, err) = tokio::task::spawn_blocking({
        let (ep, group) = (ep.clone(), group.clone());
        move || flowfail(&["triage", "--json", "--cloudwatch-log-group", &group], &ep)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["logs"]["events"], 4);
    assert_eq!(v["logs"]["classification"]["timeout"], 3);
    assert_eq!(v["logs"]["classification"]["rate_limit"], 1);
    assert_eq!(v["logs"]["recent"][0]["task_id"], "t-00000");

    // S3: prune a 734 KB bundle to 180 KB; the original is archived.
    let bucket = format!("context-bundles-{n}");
    let s3 = flowfail_aws::S3BundleStore::new(&cfg, bucket.clone());
    s3.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let id = TaskId::parse("t-00000").unwrap();
    s3.client()
        .put_object()
        .bucket(&bucket)
        .key("t-00000.json")
        .body(ByteStream::from(synthesize_bundle(&id, 734_003)))
        .send()
        .await
        .unwrap();
    let (code, v, err) = tokio::task::spawn_blocking({
        let (ep, bucket) = (ep.clone(), bucket.clone());
        move || {
            flowfail(
                &[
                    "prune-context",
                    "--task-id",
                    "t-00000",
                    "--max-size",
                    "180KB",
                    "--s3-bucket",
                    &bucket,
                ],
                &ep,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["outcome"], "pruned");
    assert_eq!(v["from_bytes"], 734_003);
    let head = s3
        .client()
        .head_object()
        .bucket(&bucket)
        .key("t-00000.json")
        .send()
        .await
        .unwrap();
    assert!(head.content_length().unwrap() <= 180_000);
    let archive = format!(
        "archive/t-00000.{}.json",
        v["archive_sha256"].as_str().unwrap()
    );
    let a = s3
        .client()
        .head_object()
        .bucket(&bucket)
        .key(&archive)
        .send()
        .await
        .unwrap();
    assert_eq!(a.content_length(), Some(734_003));
}
