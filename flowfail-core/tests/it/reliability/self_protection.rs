//! G. Self-protection: a panicking action, slow dependencies, overlapping passes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::report::Outcome;
use flowfail_core::{Bundle, BundleMeta, BundleStore, BundleVersion, ErrorKind, Result, TaskId};

use super::{responder, setup};
use crate::support::{load, paused};

// ---------------------------------------------------------------- G. self-protection

/// A bundle store whose archive panics.
#[derive(Debug)]
struct Panicky(flowfail_core::memory::MemoryBundleStore);

#[async_trait]
impl BundleStore for Panicky {
    async fn head(&self, t: &TaskId) -> Result<BundleMeta> {
        self.0.head(t).await
    }
    async fn get(&self, t: &TaskId, m: u64) -> Result<Bundle> {
        self.0.get(t, m).await
    }
    async fn put_archive(&self, t: &TaskId, _: &str, _: &[u8]) -> Result<()> {
        panic!("adapter bug while archiving {t}");
    }
    async fn get_archive(&self, t: &TaskId, c: &str, m: u64) -> Result<Vec<u8>> {
        self.0.get_archive(t, c, m).await
    }
    async fn put_if_version(
        &self,
        t: &TaskId,
        b: &[u8],
        v: &BundleVersion,
    ) -> Result<BundleVersion> {
        self.0.put_if_version(t, b, v).await
    }
}

/// G1: a panic inside one action is contained: the pass goes on, the action is reported
/// failed, on-call is paged once, no bundle is touched.
#[test]
fn g1_a_panicking_action_is_contained_and_escalated() {
    paused(async {
        let s = setup(&load("pilot-timeout"));
        let mut ports = s.world.ports();
        ports.bundles = Arc::new(Panicky(s.world.bundles.clone()));
        let before: Vec<_> = ["t-00000", "t-00001", "t-00002"]
            .iter()
            .map(|i| s.world.bundles.bytes(&TaskId::parse(i).unwrap()))
            .collect();
        let r = responder(&s, ports)
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(r.actions.iter().any(|a| a.outcome == Outcome::Failed
            && a.detail.as_deref().is_some_and(|d| d.contains("panicked"))));
        let pages: Vec<_> = s.world.pager.pages();
        assert_eq!(
            pages
                .iter()
                .filter(|p| p.dedup_key.ends_with("action_panicked"))
                .count(),
            1
        );
        let after: Vec<_> = ["t-00000", "t-00001", "t-00002"]
            .iter()
            .map(|i| s.world.bundles.bytes(&TaskId::parse(i).unwrap()))
            .collect();
        assert_eq!(before, after, "no bundle touched");
        assert!(!r.resolved);
    });
}

/// G2: a quota API that hangs hits the step deadline: quota unknown, no breaker flip.
#[test]
fn g2_slow_dependencies_hit_the_step_deadline() {
    paused(async {
        let s = setup(&load("rate-limit"));
        s.world
            .quota
            .faults()
            .delay("quota.quota", Duration::from_secs(3600));
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(600))
            .await
            .unwrap();
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.set_env")
                .is_empty()
        );
        assert!(
            r.data_gaps.iter().any(|g| g.contains("quota")),
            "{:?}",
            r.data_gaps
        );
        assert!(
            r.not_taken
                .iter()
                .any(|n| n.skip.reason.contains("quota unknown"))
        );
    });
}

/// G3: passes never overlap: a second pass started while one runs is refused.
#[test]
fn g3_no_overlapping_passes() {
    paused(async {
        let mut s = setup(&load("pilot-timeout"));
        s.open_allowed();
        s.world
            .tasks
            .faults()
            .delay("task.counts", Duration::from_secs(1));
        let r = responder(&s, s.world.ports());
        let (a, b) = tokio::join!(r.pass(), r.pass());
        assert!(a.is_ok() != b.is_ok(), "exactly one pass ran");
        let e = a.err().or(b.err()).unwrap();
        assert_eq!(e.kind(), ErrorKind::Refused);
    });
}
