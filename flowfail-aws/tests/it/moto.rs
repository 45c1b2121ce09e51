//! flowfail-aws against a local AWS API (moto's server mode, `FLOWFAIL_AWS_ENDPOINT`, started
//! by `scripts/test-peers.sh`). Without one that answers, the tests skip with one line on stderr
//! (`skipped N tests in moto: no local AWS API …`), unless `FLOWFAIL_AWS_REQUIRED=1` (CI).
//!
//! moto implements `FilterLogEvents` (plain-term patterns), `HeadObject`, `GetObject`, and S3
//! conditional writes on `PutObject` (`If-None-Match: *`, `If-Match`): every path here runs
//! against it, none against a mock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{TimeDelta, Utc};
use flowfail_aws::{AwsOptions, CloudWatchLogSource, S3BundleStore, load_config};
use flowfail_core::bundle::{BundleStoreExt, PruneContextOutcome};
use flowfail_core::conformance;
use flowfail_core::memory::synthesize_bundle;
use flowfail_core::prune::PruneOptions;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, ByteSize, ErrorKind, LogEvent, LogQuery,
    LogSource, Result, TaskId,
};
use sha2::{Digest, Sha256};

static N: AtomicU32 = AtomicU32::new(0);

fn unique(p: &str) -> String {
    format!(
        "{p}-{}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn endpoint() -> Option<AwsOptions> {
    flowfail_testkit::aws_endpoint_in(module_path!()).map(AwsOptions::local)
}

async fn bucket_store() -> Option<S3BundleStore> {
    let opts = endpoint().await?;
    let cfg = load_config(&opts).await;
    let bucket = unique("bundles").to_lowercase();
    let s = S3BundleStore::new(&cfg, bucket.clone());
    s.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    Some(s)
}

struct LogFixture {
    source: CloudWatchLogSource,
    group: String,
}

#[async_trait]
impl conformance::LogFixture for LogFixture {
    fn source(&self) -> Arc<dyn LogSource> {
        Arc::new(self.source.clone())
    }
    async fn push(&self, events: &[LogEvent]) {
        let stream = unique("stream");
        let c = self.source.client();
        c.create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&stream)
            .send()
            .await
            .unwrap();
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|e| e.timestamp);
        let input: Vec<InputLogEvent> = sorted
            .iter()
            .map(|e| {
                InputLogEvent::builder()
                    .timestamp(e.timestamp.timestamp_millis())
                    .message(&e.message)
                    .build()
                    .unwrap()
            })
            .collect();
        c.put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&stream)
            .set_log_events(Some(input))
            .send()
            .await
            .unwrap();
    }
}

async fn log_fixture() -> Option<LogFixture> {
    let opts = endpoint().await?;
    let cfg = load_config(&opts).await;
    let group = format!("/aws/lambda/{}", unique("flowengine"));
    let source = CloudWatchLogSource::new(&cfg, group.clone());
    source
        .client()
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    Some(LogFixture { source, group })
}

struct S3Fixture(S3BundleStore);

#[async_trait]
impl conformance::BundleFixture for S3Fixture {
    fn store(&self) -> Arc<dyn BundleStore> {
        Arc::new(self.0.clone())
    }
    async fn put_live(&self, task: &TaskId, bytes: &[u8]) {
        self.0
            .client()
            .put_object()
            .bucket(self.0.bucket())
            .key(self.0.key(task))
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn cloudwatch_log_source_passes_the_conformance_suite() {
    let Some(f) = log_fixture().await else { return };
    conformance::log_source(&f).await;
}

#[tokio::test]
async fn cloudwatch_paginates_and_bounds_pages() {
    let Some(f) = log_fixture().await else { return };
    let now = Utc::now();
    let events: Vec<LogEvent> = (0..120)
        .map(|i| {
            LogEvent::new(
                now - TimeDelta::seconds(200 - i),
                format!("ERROR t-{i} Task timed out after 45.00 seconds"),
            )
        })
        .collect();
    conformance::LogFixture::push(&f, &events).await;
    let q =
        LogQuery::errors(now - TimeDelta::hours(1), now + TimeDelta::seconds(1)).max_events(1000);
    let all = f.source.errors(&q).await.unwrap();
    assert_eq!(all.events.len(), 120);
    assert!(!all.truncated);
    assert!(all.events.iter().all(|e| e.task_id.is_some()));
    assert!(
        all.events
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp)
    );
    let bounded = f.source.errors(&q.clone().max_events(50)).await.unwrap();
    assert_eq!(bounded.events.len(), 50);
    assert!(bounded.truncated);
}

#[tokio::test]
async fn cloudwatch_missing_group_is_an_error_not_an_empty_batch() {
    let Some(opts) = endpoint().await else { return };
    let cfg = load_config(&opts).await;
    let src = CloudWatchLogSource::new(&cfg, "/aws/lambda/does-not-exist-flowfail");
    let e = src
        .errors(&LogQuery::errors(
            Utc::now() - TimeDelta::hours(1),
            Utc::now(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn s3_bundle_store_passes_the_conformance_suite() {
    let Some(s) = bucket_store().await else {
        return;
    };
    conformance::bundle_store(&S3Fixture(s)).await;
}

#[tokio::test]
async fn s3_conditional_writes_are_enforced_by_the_local_api() {
    let Some(s) = bucket_store().await else {
        return;
    };
    let id = TaskId::parse("t-1").unwrap();
    conformance::BundleFixture::put_live(&S3Fixture(s.clone()), &id, b"{\"a\":1}").await;
    let meta = s.head(&id).await.unwrap();
    // If-Match with a stale ETag: 412 from the server, mapped to a conflict.
    s.put_if_version(&id, b"{\"a\":2}", &meta.version)
        .await
        .unwrap();
    let e = s
        .put_if_version(&id, b"{\"a\":3}", &meta.version)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(s.get(&id, 100).await.unwrap().bytes, b"{\"a\":2}");
    // If-None-Match: * on an existing archive: 412, mapped to already-exists.
    let sum = "a".repeat(64);
    s.put_archive(&id, &sum, b"x").await.unwrap();
    assert_eq!(
        s.put_archive(&id, &sum, b"y").await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.get_archive(&id, &sum, 10).await.unwrap(), b"x");
    // Keys come only from TaskId and hex checksums.
    assert!(s.get_archive(&id, "../../etc/passwd", 10).await.is_err());
    assert_eq!(s.key(&id), "t-1.json");
}

/// Another writer replaces the bundle right before our conditional write.
#[derive(Debug)]
struct Racer {
    inner: S3BundleStore,
    left: AtomicU32,
}

#[async_trait]
impl BundleStore for Racer {
    async fn head(&self, t: &TaskId) -> Result<BundleMeta> {
        self.inner.head(t).await
    }
    async fn get(&self, t: &TaskId, m: u64) -> Result<Bundle> {
        self.inner.get(t, m).await
    }
    async fn put_archive(&self, t: &TaskId, c: &str, b: &[u8]) -> Result<()> {
        self.inner.put_archive(t, c, b).await
    }
    async fn get_archive(&self, t: &TaskId, c: &str, m: u64) -> Result<Vec<u8>> {
        self.inner.get_archive(t, c, m).await
    }
    async fn put_if_version(
        &self,
        t: &TaskId,
        b: &[u8],
        v: &BundleVersion,
    ) -> Result<BundleVersion> {
        if self.left.load(Ordering::SeqCst) > 0 {
            let n = self.left.fetch_sub(1, Ordering::SeqCst);
            let other = synthesize_bundle(t, 650_000 + u64::from(n));
            self.inner
                .client()
                .put_object()
                .bucket(self.inner.bucket())
                .key(self.inner.key(t))
                .body(ByteStream::from(other))
                .send()
                .await
                .unwrap();
        }
        self.inner.put_if_version(t, b, v).await
    }
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[tokio::test]
async fn a_bundle_pruned_through_s3_is_never_lost_and_a_concurrent_writer_never_overwritten() {
    let Some(s) = bucket_store().await else {
        return;
    };
    let id = TaskId::parse("t-00000").unwrap();
    let original = synthesize_bundle(&id, 734_003);
    conformance::BundleFixture::put_live(&S3Fixture(s.clone()), &id, &original).await;
    let racer = Racer {
        inner: s.clone(),
        left: AtomicU32::new(1),
    };
    let out = racer
        .prune_context(
            &id,
            ByteSize::kb(180),
            ByteSize::mb(64),
            &PruneOptions::default(),
        )
        .await
        .unwrap();
    let PruneContextOutcome::Pruned {
        from_bytes,
        to_bytes,
        archive_checksum,
        ..
    } = out
    else {
        panic!()
    };
    assert_eq!(
        from_bytes, 650_001,
        "the concurrent writer's version was re-read and pruned, not overwritten"
    );
    assert!(to_bytes <= 180_000);
    // Both originals are archived and verify by checksum.
    assert_eq!(
        sha(&s.get_archive(&id, &sha(&original), 1 << 30).await.unwrap()),
        sha(&original)
    );
    let second = s
        .get_archive(&id, &archive_checksum, 1 << 30)
        .await
        .unwrap();
    assert_eq!(second.len(), 650_001);
    let live = s.get(&id, 1 << 30).await.unwrap();
    assert!(live.bytes.len() <= 180_000);
    // A writer that never stops: prune gives up, the writer's bundle stands.
    let racer = Racer {
        inner: s.clone(),
        left: AtomicU32::new(10),
    };
    conformance::BundleFixture::put_live(&S3Fixture(s.clone()), &id, &original).await;
    let e = racer
        .prune_context(
            &id,
            ByteSize::kb(180),
            ByteSize::mb(64),
            &PruneOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        s.head(&id).await.unwrap().size > 650_000,
        "the other writer's bundle stands"
    );
}

#[tokio::test]
async fn s3_get_refuses_bodies_over_the_limit() {
    let Some(s) = bucket_store().await else {
        return;
    };
    let id = TaskId::parse("big").unwrap();
    conformance::BundleFixture::put_live(&S3Fixture(s.clone()), &id, &vec![b'x'; 300_000]).await;
    assert_eq!(
        s.get(&id, 1000).await.unwrap_err().kind(),
        ErrorKind::TooLarge
    );
}

#[tokio::test]
async fn a_missing_bucket_is_told_apart_from_a_missing_bundle_in_the_servers_words() {
    let Some(s) = bucket_store().await else {
        return;
    };
    let id = TaskId::parse("t-1").unwrap();
    // The bucket exists, the bundle does not: NotFound with no cause.
    let e = s.head(&id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.message(), "bundle t-1 not found");
    assert!(std::error::Error::source(&e).is_none());
    // No such bucket: the HEAD's bare 404 is explained by the server's code and message.
    let Some(opts) = endpoint().await else {
        return;
    };
    let cfg = load_config(&opts).await;
    let gone = S3BundleStore::new(&cfg, unique("no-such-bucket").to_lowercase());
    for e in [
        gone.head(&id).await.unwrap_err(),
        gone.get(&id, 1 << 20).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(
            e.message(),
            "HTTP 404 NoSuchBucket: The specified bucket does not exist"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the SDK's error is kept"
        );
    }
}
