//! `flowfail triage --cloudwatch-log-group` and `flowfail prune-context --s3-bucket` against a
//! local AWS API (moto, `FLOWFAIL_AWS_ENDPOINT`): what they do, and how their errors reach the
//! terminal (the AWS error code and message, advice, the exit code).

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use flowfail_aws::{AwsOptions, load_config};
use flowfail_core::TaskId;
use flowfail_core::memory::synthesize_bundle;

use crate::support::{flowfail_cmd, local_aws_shared};

fn endpoint() -> Option<String> {
    flowfail_testkit::aws_endpoint_in(module_path!())
}

fn flowfail(args: &[&str], endpoint: &str) -> (i32, serde_json::Value, String) {
    let out = flowfail_cmd()
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
    let _local_aws = local_aws_shared().await;
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

fn prune_context(bucket: &str, task: &str, ep: &str) -> (i32, serde_json::Value, String) {
    flowfail(
        &[
            "prune-context",
            "--task-id",
            task,
            "--max-size",
            "1KB",
            "--s3-bucket",
            bucket,
        ],
        ep,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_log_group_reaches_the_terminal_in_the_servers_words() {
    let _local_aws = local_aws_shared().await;
    let Some(ep) = endpoint() else { return };
    let n = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let bucket = format!("no-such-bundles-{n}");
    let (code, v, err) = tokio::task::spawn_blocking({
        let (ep, bucket) = (ep.clone(), bucket.clone());
        move || prune_context(&bucket, "t-1", &ep)
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "{err}");
    assert_eq!(v, serde_json::Value::Null, "nothing on stdout");
    // The HEAD of the bundle says only 404; the server's reason is asked for and shown.
    assert!(
        err.starts_with(
            "flowfail: not_found in bundle.head (s3): HTTP 404 NoSuchBucket: The specified bucket does not exist"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "advice: check --s3-bucket {bucket} and the region (AWS_REGION): the bucket is not there"
        )),
        "{err}"
    );

    // The bucket exists, the task's bundle does not: the input found wanting, exit 1.
    let cfg = load_config(&AwsOptions::local(ep.clone())).await;
    let s3 = flowfail_aws::S3BundleStore::new(&cfg, bucket.clone());
    s3.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let (code, _, err) = tokio::task::spawn_blocking({
        let (ep, bucket) = (ep.clone(), bucket.clone());
        move || prune_context(&bucket, "t-404", &ep)
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        "flowfail: not_found in bundle.head (s3): bundle t-404 not found"
    );

    let group = format!("/aws/lambda/no-such-group-{n}");
    let (code, _, err) = tokio::task::spawn_blocking({
        let (ep, group) = (ep.clone(), group.clone());
        move || flowfail(&["triage", "--cloudwatch-log-group", &group], &ep)
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with(
            "flowfail: not_found in logs.errors (cloudwatch): HTTP 400 ResourceNotFoundException: The specified log group does not exist."
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "advice: there is no log group {group} in this region: check --cloudwatch-log-group and AWS_REGION"
        )),
        "{err}"
    );
}
