//! The archive-then-conditional-write protocol of prune-context, with injected conflicts,
//! failed archives, lost replies and crashes: no bundle is ever lost.

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use flowfail_core::bundle::{BundleStoreExt, PruneContextOutcome};
use flowfail_core::memory::{MemoryBundleStore, synthesize_bundle};
use flowfail_core::prune::PruneOptions;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, ByteSize, ErrorKind, Result, TaskId,
};
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn id() -> TaskId {
    TaskId::parse("t-42").unwrap()
}

async fn run(store: &dyn BundleStore) -> Result<PruneContextOutcome> {
    store
        .prune_context(
            &id(),
            ByteSize::kb(180),
            ByteSize::mb(64),
            &PruneOptions::default(),
        )
        .await
}

/// A store where another writer replaces the bundle right before each of our conditional
/// writes, `writes` times.
#[derive(Debug)]
struct RacingWriter {
    inner: MemoryBundleStore,
    writes: AtomicU32,
}

#[async_trait]
impl BundleStore for RacingWriter {
    async fn head(&self, t: &TaskId) -> Result<BundleMeta> {
        self.inner.head(t).await
    }
    async fn get(&self, t: &TaskId, max: u64) -> Result<Bundle> {
        self.inner.get(t, max).await
    }
    async fn put_archive(&self, t: &TaskId, c: &str, b: &[u8]) -> Result<()> {
        self.inner.put_archive(t, c, b).await
    }
    async fn get_archive(&self, t: &TaskId, c: &str, max: u64) -> Result<Vec<u8>> {
        self.inner.get_archive(t, c, max).await
    }
    async fn put_if_version(
        &self,
        t: &TaskId,
        b: &[u8],
        v: &BundleVersion,
    ) -> Result<BundleVersion> {
        if self.writes.load(Ordering::SeqCst) > 0 {
            let n = self.writes.fetch_sub(1, Ordering::SeqCst);
            self.inner
                .put(t, synthesize_bundle(t, 600_000 + u64::from(n)));
        }
        self.inner.put_if_version(t, b, v).await
    }
}

#[tokio::test]
async fn prunes_after_archiving_and_verifying_the_original() {
    let s = MemoryBundleStore::new();
    let original = synthesize_bundle(&id(), 734_003);
    s.put(&id(), original.clone());
    let out = run(&s).await.unwrap();
    let PruneContextOutcome::Pruned {
        from_bytes,
        to_bytes,
        archive_checksum,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(from_bytes, 734_003);
    assert!(to_bytes <= 180_000);
    assert_eq!(archive_checksum, sha(&original));
    assert_eq!(s.archives(&id()), vec![(sha(&original), original)]);
    // The order of calls is the protocol.
    let ops: Vec<&str> = s.calls().calls().iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            "bundle.head",
            "bundle.get",
            "bundle.put_archive",
            "bundle.get_archive",
            "bundle.put_if_version"
        ]
    );
}

#[tokio::test]
async fn a_concurrent_writer_is_never_overwritten() {
    let inner = MemoryBundleStore::new();
    inner.put(&id(), synthesize_bundle(&id(), 734_003));
    let s = RacingWriter {
        inner: inner.clone(),
        writes: AtomicU32::new(1),
    };
    let out = run(&s).await.unwrap();
    // The first write lost the race; the second pruned what the other writer wrote.
    let PruneContextOutcome::Pruned { from_bytes, .. } = out else {
        panic!()
    };
    assert_eq!(
        from_bytes, 600_001,
        "pruned the concurrent writer's version, after re-reading it"
    );
    let archived: Vec<usize> = inner.archives(&id()).iter().map(|(_, b)| b.len()).collect();
    assert!(
        archived.contains(&734_003) && archived.contains(&600_001),
        "both versions archived: {archived:?}"
    );
}

#[tokio::test]
async fn a_writer_that_keeps_writing_wins_and_nothing_is_lost() {
    let inner = MemoryBundleStore::new();
    inner.put(&id(), synthesize_bundle(&id(), 734_003));
    let s = RacingWriter {
        inner: inner.clone(),
        writes: AtomicU32::new(10),
    };
    let e = run(&s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let live = inner.bytes(&id()).unwrap();
    assert!(live.len() > 600_000, "the other writer's bundle stands");
    assert!(
        inner
            .archives(&id())
            .iter()
            .any(|(_, b)| b.len() == 734_003),
        "the original is archived"
    );
}

#[tokio::test]
async fn a_failed_archive_means_no_prune() {
    let s = MemoryBundleStore::new();
    let original = synthesize_bundle(&id(), 734_003);
    s.put(&id(), original.clone());
    s.faults()
        .fail_nth("bundle.put_archive", 1, ErrorKind::Unavailable);
    let e = run(&s).await.unwrap_err();
    assert!(e.to_string().contains("not pruned"), "{e}");
    assert_eq!(s.bytes(&id()).unwrap(), original, "live bundle untouched");
    assert!(s.calls().of("bundle.put_if_version").is_empty());
}

#[tokio::test]
async fn an_unverifiable_archive_means_no_prune() {
    let s = MemoryBundleStore::new();
    let original = synthesize_bundle(&id(), 734_003);
    s.put(&id(), original.clone());
    s.faults()
        .fail_nth("bundle.get_archive", 1, ErrorKind::Unavailable);
    assert!(run(&s).await.is_err());
    assert_eq!(s.bytes(&id()).unwrap(), original);
    // A corrupt archive already stored under the original's checksum is detected too.
    let s = MemoryBundleStore::new();
    s.put(&id(), original.clone());
    s.put_archive(&id(), &sha(&original), b"garbage")
        .await
        .unwrap();
    let e = run(&s).await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_eq!(s.bytes(&id()).unwrap(), original);
}

#[tokio::test]
async fn a_crash_between_archive_and_replace_converges_on_restart() {
    let s = MemoryBundleStore::new();
    let original = synthesize_bundle(&id(), 734_003);
    s.put(&id(), original.clone());
    // "Crash": the replace never happens.
    s.faults()
        .fail_nth("bundle.put_if_version", 1, ErrorKind::Unavailable);
    assert!(run(&s).await.is_err());
    assert_eq!(s.bytes(&id()).unwrap(), original);
    assert_eq!(s.archives(&id()).len(), 1);
    // Restart: the archive exists (create-only says AlreadyExists), is verified, and the prune completes.
    let out = run(&s).await.unwrap();
    assert!(matches!(out, PruneContextOutcome::Pruned { .. }));
    assert_eq!(s.archives(&id()).len(), 1);
    // And again: nothing to do.
    assert!(matches!(
        run(&s).await.unwrap(),
        PruneContextOutcome::AlreadySmall { .. }
    ));
}

#[tokio::test]
async fn a_lost_reply_is_recognised_as_applied() {
    let s = MemoryBundleStore::new();
    s.put(&id(), synthesize_bundle(&id(), 734_003));
    s.faults().lose_reply_nth("bundle.put_if_version", 1);
    let out = run(&s).await.unwrap();
    assert!(matches!(out, PruneContextOutcome::Pruned { .. }));
    assert_eq!(
        s.calls().of("bundle.put_if_version").len(),
        1,
        "not written twice"
    );
}

#[tokio::test]
async fn hostile_bundles_are_refused_and_kept() {
    for bytes in [
        b"{\"messages\": [".repeat(20_000),
        "[".repeat(200_000).into_bytes(),
        [b"{\"a\": \"".as_slice(), &[0xff; 600_000], b"\"}"].concat(),
    ] {
        let s = MemoryBundleStore::new();
        s.put(&id(), bytes.clone());
        assert!(run(&s).await.is_err());
        assert_eq!(s.bytes(&id()).unwrap(), bytes, "nothing half-written");
        assert!(s.calls().of("bundle.put_if_version").is_empty());
    }
    // Over the read limit: refused before reading the body.
    let s = MemoryBundleStore::new();
    s.put(&id(), synthesize_bundle(&id(), 2_000_000));
    let e = s
        .prune_context(
            &id(),
            ByteSize::kb(180),
            ByteSize::mb(1),
            &PruneOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
}

/// Two pruners of one bundle (two replicas, or a replica and a human's `prune-context`): the
/// second reads the size before the first writes and the bundle after it. It finds the bundle
/// already pruned and leaves it alone — the model test found the second replacing it again
/// (the same content, a second archive and a second write in one incident).
#[tokio::test(start_paused = true)]
async fn a_bundle_pruned_by_another_between_the_two_reads_is_left_alone() {
    let store = MemoryBundleStore::new();
    store.put(&id(), synthesize_bundle(&id(), 500_000));
    store
        .faults()
        .delay("bundle.get", std::time::Duration::from_secs(2));
    let first = run(&store);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        run(&store).await
    };
    let (a, b) = tokio::join!(first, second);
    assert!(matches!(a.unwrap(), PruneContextOutcome::Pruned { .. }));
    assert!(
        matches!(b.unwrap(), PruneContextOutcome::AlreadySmall { .. }),
        "the second pruner replaced the pruned bundle"
    );
    assert_eq!(store.calls().of("bundle.put_if_version").len(), 1);
    assert_eq!(store.calls().of("bundle.put_archive").len(), 1);
}
