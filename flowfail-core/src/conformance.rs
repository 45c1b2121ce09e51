//! One behavioural suite per port, written once and run by every implementation: the in-memory
//! backends in flowfail's own `cargo test`, each adapter against its real server.
//!
//! Each suite takes a *fixture*: the implementation under test plus the few seeding operations
//! the port itself does not offer (a TaskDB is written by FlowEngine, not by flowfail). A suite
//! panics with the rule it found broken, so it is meant for tests:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use flowfail_core::conformance;
//! use flowfail_core::memory::MemoryBundleStore;
//! let store = MemoryBundleStore::new();
//! conformance::bundle_store(&store).await;
//! # });
//! ```
//!
//! Ids used by the suites are unique per run (`cf-<n>-…`), so a suite can share a database with
//! other tests.

// A conformance suite reports a broken rule by panicking, like any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};

use crate::error::ErrorKind;
use crate::memory::{
    MemoryBundleStore, MemoryDeployment, MemoryLogSource, MemoryQuota, MemoryStatusPage,
    MemoryTaskStore,
};
use crate::model::{
    ChangeCause, EnvChange, FlowType, LogEvent, Quota, QuotaUsage, RevisionInfo, RolloutStatus,
    Task, TaskId, TaskStatus, Timestamp, VendorHealth, VendorStatus,
};
use crate::operator::{Approval, Pause};
use crate::ports::{
    BundleStore, Delivery, DeploymentController, IncidentStore, IssueText, LogQuery, LogSource,
    Notification, Notifier, Page, Pager, QuotaChecker, RetryOutcome, RetryRequest, StatusPage,
    TaskStore, TimelineEntry, Tracker, TrackerIssue,
};

static RUN: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_subsec_nanos() % 100_000;
    format!("cf-{nanos}{n}-{prefix}")
}

fn id(s: &str) -> TaskId {
    TaskId::parse(s).unwrap_or_else(|e| panic!("conformance id {s}: {e}"))
}

// ---------------------------------------------------------------------------------------------

/// What the log suite needs besides the [`LogSource`].
#[async_trait]
pub trait LogFixture: Send + Sync {
    /// The source under test.
    fn source(&self) -> Arc<dyn LogSource>;
    /// Writes events (to a log group the source reads).
    async fn push(&self, events: &[LogEvent]);
}

/// The [`LogSource`] rules.
pub async fn log_source(f: &dyn LogFixture) {
    let src = f.source();
    let tag = unique("log");
    let base: Timestamp = Utc::now() - TimeDelta::minutes(30);
    let events: Vec<LogEvent> = (0..5)
        .map(|i| {
            LogEvent::new(
                base + TimeDelta::seconds(i * 10),
                format!("ERROR {tag} task_id=t-{i} boom"),
            )
        })
        .collect();
    let mut noise = vec![LogEvent::new(
        base + TimeDelta::seconds(5),
        format!("INFO {tag} fine"),
    )];
    noise.push(LogEvent::new(
        base - TimeDelta::hours(2),
        format!("ERROR {tag} too old"),
    ));
    f.push(&[events.clone(), noise].concat()).await;
    let q = LogQuery {
        start: base - TimeDelta::seconds(1),
        end: base + TimeDelta::minutes(5),
        pattern: format!("ERROR {tag}"),
        max_events: 100,
    };
    let b = src
        .errors(&q)
        .await
        .expect("rule 1: a window of events reads");
    let mine: Vec<_> = b
        .events
        .iter()
        .filter(|e| e.message.contains(&tag))
        .collect();
    assert_eq!(
        mine.len(),
        5,
        "rule 1: exactly the matching events in the window"
    );
    assert!(
        mine.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "rule 1: oldest first"
    );
    assert!(
        mine.iter()
            .all(|e| e.timestamp >= q.start && e.timestamp < q.end),
        "rule 1: inside the window"
    );
    assert!(!b.truncated, "rule 2: not truncated when everything fit");
    assert_eq!(
        mine[0].task_id.as_ref().map(TaskId::as_str),
        Some("t-0"),
        "rule 5: task id extracted"
    );
    let small = LogQuery {
        max_events: 2,
        ..q.clone()
    };
    let b = src.errors(&small).await.expect("bounded read");
    assert!(b.events.len() <= 2, "rule 2: at most max_events");
    assert!(b.truncated, "rule 2: truncated when more exist");
    let empty = LogQuery {
        start: base + TimeDelta::days(1),
        end: base + TimeDelta::days(1) + TimeDelta::minutes(1),
        ..q
    };
    let b = src
        .errors(&empty)
        .await
        .expect("rule 3: empty window is not an error");
    assert!(
        b.events.is_empty() && !b.truncated,
        "rule 3: empty, not truncated"
    );
}

#[async_trait]
impl LogFixture for MemoryLogSource {
    fn source(&self) -> Arc<dyn LogSource> {
        Arc::new(self.clone())
    }
    async fn push(&self, events: &[LogEvent]) {
        for e in events {
            MemoryLogSource::push(self, e.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// What the TaskDB suite needs besides the [`TaskStore`].
#[async_trait]
pub trait TaskFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn TaskStore>;
    /// Inserts tasks (as FlowEngine would), with optional TaskObjects.
    async fn seed(&self, tasks: &[Task], objects: &[(TaskId, serde_json::Value)]);
}

/// The [`TaskStore`] rules. The store should hold no other failed tasks newer than the seeded
/// ones (use a fresh database or schema).
pub async fn task_store(f: &dyn TaskFixture) {
    let s = f.store();
    let p = unique("t");
    let now = Utc::now();
    let mk = |i: i64, status: TaskStatus| {
        Task::new(
            id(&format!("{p}-{i}")),
            FlowType::Impl,
            status,
            now - TimeDelta::minutes(i),
        )
        .with_error(format!("error {i}"), Some(500))
    };
    let tasks = vec![
        mk(1, TaskStatus::Failed),
        mk(2, TaskStatus::Succeeded),
        mk(3, TaskStatus::Failed),
        mk(4, TaskStatus::Running),
        mk(5, TaskStatus::Failed),
        mk(90, TaskStatus::Failed), // outside a 1 h window
    ];
    let obj = serde_json::json!({"schema_version": "2.0.0", "task_id": format!("{p}-1")});
    f.seed(&tasks, &[(id(&format!("{p}-1")), obj.clone())])
        .await;

    let failed = s.recent_failed(10).await.expect("recent_failed");
    let mine: Vec<&str> = failed
        .iter()
        .map(|t| t.task_id.as_str())
        .filter(|t| t.starts_with(&p))
        .collect();
    let want: Vec<String> = [1, 3, 5, 90].iter().map(|i| format!("{p}-{i}")).collect();
    assert_eq!(
        mine, want,
        "recent_failed rule 1: only failed, newest first"
    );
    assert!(
        failed.iter().all(|t| t.status == TaskStatus::Failed),
        "recent_failed rule 1"
    );
    assert_eq!(
        s.recent_failed(2).await.expect("limit").len(),
        2,
        "recent_failed rule 2: limit"
    );
    assert!(
        s.recent_failed(0).await.expect("limit 0").is_empty(),
        "recent_failed rule 2: limit 0"
    );

    let c = s
        .counts(now - TimeDelta::hours(1), now + TimeDelta::seconds(1))
        .await
        .expect("counts");
    assert!(c.failed >= 3 && c.succeeded >= 1, "counts rule 1: {c:?}");
    let c_empty = s
        .counts(now + TimeDelta::days(1), now + TimeDelta::days(2))
        .await
        .expect("counts of an empty window");
    assert_eq!(
        (c_empty.failed, c_empty.succeeded),
        (0, 0),
        "counts rule 1: empty window"
    );
    // The alert window as the supervisor reads it, poll after poll: what `counts` says.
    for k in 0..3 {
        let at = now + TimeDelta::seconds(k);
        let (since, until) = (at - TimeDelta::hours(1), at + TimeDelta::seconds(1));
        let w = s.window_counts(since, until).await.expect("window_counts");
        let c = s.counts(since, until).await.expect("counts");
        assert_eq!(
            (w.succeeded, w.failed, w.in_flight, w.unknown_status),
            (c.succeeded, c.failed, c.in_flight, c.unknown_status),
            "window_counts: what counts says (poll {k})"
        );
    }

    let t1 = id(&format!("{p}-1"));
    let got = s.get(&t1).await.expect("get");
    assert_eq!(got.error_message.as_deref(), Some("error 1"));
    assert_eq!(got.http_status, Some(500));
    let missing = id(&format!("{p}-missing"));
    assert_eq!(
        s.get(&missing).await.map(|_| ()).unwrap_err().kind(),
        ErrorKind::NotFound,
        "get rule 1"
    );
    let t2 = id(&format!("{p}-2"));
    let t4 = id(&format!("{p}-4"));
    let mut many = s
        .get_many(&[
            t4.clone(),
            missing.clone(),
            t1.clone(),
            t2.clone(),
            t1.clone(),
        ])
        .await
        .expect("get_many");
    many.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let statuses: Vec<(&str, TaskStatus)> = many
        .iter()
        .map(|t| (t.task_id.as_str(), t.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (t1.as_str(), TaskStatus::Failed),
            (t2.as_str(), TaskStatus::Succeeded),
            (t4.as_str(), TaskStatus::Running)
        ],
        "get_many rule 1: each stored task once, missing ids left out, nothing else"
    );
    assert_eq!(many[0], got, "get_many returns a task as get does");
    assert!(
        s.get_many(&[]).await.expect("get_many of none").is_empty(),
        "get_many rule 2"
    );
    assert_eq!(
        s.task_object(&t1).await.expect("task_object"),
        Some(obj),
        "task_object"
    );
    assert_eq!(
        s.task_object(&id(&format!("{p}-3"))).await.expect("none"),
        None,
        "task_object rule 1: none"
    );
    assert_eq!(
        s.task_object(&missing)
            .await
            .map(|_| ())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "task_object rule 1: missing task"
    );

    let t3 = id(&format!("{p}-3"));
    let t5 = id(&format!("{p}-5"));
    let reqs = vec![
        RetryRequest::new(t1.clone(), 0, now),
        RetryRequest::new(t3.clone(), 7, now),
        RetryRequest::new(t2.clone(), 0, now),
        RetryRequest::new(missing.clone(), 0, now),
    ];
    let out = s.schedule_retries(&reqs).await.expect("schedule_retries");
    assert_eq!(out.len(), 4, "one outcome per request");
    assert_eq!(
        out[0],
        RetryOutcome::Scheduled { attempts: 1 },
        "rule 1: scheduled with attempts+1"
    );
    assert_eq!(
        out[1],
        RetryOutcome::Conflict {
            current_attempts: 0
        },
        "rule 1: fenced on attempts"
    );
    assert!(
        matches!(out[2], RetryOutcome::NotRetryable { .. }),
        "rule 1: only failed tasks"
    );
    assert_eq!(out[3], RetryOutcome::NotFound);
    let again = s.schedule_retries(&reqs[..1]).await.expect("again");
    assert_eq!(
        again[0],
        RetryOutcome::Conflict {
            current_attempts: 1
        },
        "rule 2: the same request schedules once"
    );
    let t1_now = s.get(&t1).await.expect("get");
    assert_eq!(t1_now.attempts, 1);
    assert_ne!(
        t1_now.status,
        TaskStatus::Failed,
        "rule 1: no longer failed once scheduled"
    );

    s.mark_final(&t5, 0).await.expect("mark_final");
    assert_eq!(
        s.get(&t5).await.expect("get").status,
        TaskStatus::FailedFinal
    );
    s.mark_final(&t5, 0)
        .await
        .expect("mark_final rule 2: idempotent");
    assert_eq!(
        s.mark_final(&t3, 9).await.unwrap_err().kind(),
        ErrorKind::Conflict,
        "mark_final rule 1"
    );
    let after = s
        .schedule_retries(&[RetryRequest::new(t5.clone(), 0, now)])
        .await
        .expect("retry final");
    assert!(
        matches!(after[0], RetryOutcome::NotRetryable { .. }),
        "a final task is not retried"
    );
}

#[async_trait]
impl TaskFixture for MemoryTaskStore {
    fn store(&self) -> Arc<dyn TaskStore> {
        Arc::new(self.clone())
    }
    async fn seed(&self, tasks: &[Task], objects: &[(TaskId, serde_json::Value)]) {
        for t in tasks {
            self.insert(t.clone());
        }
        for (i, o) in objects {
            self.set_task_object(i, o.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// What the bundle suite needs besides the [`BundleStore`].
#[async_trait]
pub trait BundleFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn BundleStore>;
    /// Writes a live bundle (as FlowEngine would).
    async fn put_live(&self, task: &TaskId, bytes: &[u8]);
}

/// The [`BundleStore`] rules.
pub async fn bundle_store(f: &dyn BundleFixture) {
    let s = f.store();
    let t = id(&unique("b"));
    let missing = id(&unique("b-missing"));
    assert_eq!(
        s.head(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "head rule 1"
    );
    assert_eq!(
        s.get(&missing, 100).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "get rule 1"
    );
    let original = br#"{"messages": ["a", "b", "c"]}"#.to_vec();
    f.put_live(&t, &original).await;
    let meta = s.head(&t).await.expect("head");
    assert_eq!(meta.size, original.len() as u64, "head: size");
    let b = s.get(&t, 1 << 20).await.expect("get");
    assert_eq!(b.bytes, original, "get: bytes");
    assert_eq!(
        b.version, meta.version,
        "get rule 2: version of the bytes returned"
    );
    assert_eq!(
        s.get(&t, 5).await.unwrap_err().kind(),
        ErrorKind::TooLarge,
        "get rule 1: bound"
    );

    let sum = "0".repeat(63) + "1";
    s.put_archive(&t, &sum, &original).await.expect("archive");
    assert_eq!(
        s.put_archive(&t, &sum, b"other").await.unwrap_err().kind(),
        ErrorKind::AlreadyExists,
        "put_archive rule 1: create-only"
    );
    assert_eq!(
        s.get_archive(&t, &sum, 1 << 20).await.expect("get_archive"),
        original,
        "archive untouched"
    );
    assert_eq!(
        s.get(&t, 1 << 20).await.expect("live").bytes,
        original,
        "put_archive rule 2: live untouched"
    );
    let other_sum = "0".repeat(63) + "2";
    assert_eq!(
        s.get_archive(&t, &other_sum, 100).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let v2 = s
        .put_if_version(&t, b"{}", &meta.version)
        .await
        .expect("put_if_version");
    assert_ne!(v2, meta.version, "put_if_version rule 3: new version");
    assert_eq!(s.get(&t, 100).await.expect("get").bytes, b"{}");
    assert_eq!(
        s.put_if_version(&t, b"[1]", &meta.version)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict,
        "put_if_version rule 1: stale version"
    );
    assert_eq!(
        s.get(&t, 100).await.expect("get").bytes,
        b"{}",
        "rule 1: untouched on conflict"
    );
    assert_eq!(
        s.put_if_version(&missing, b"{}", &meta.version)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "put_if_version rule 2: never creates"
    );
    f.put_live(&t, b"[2]").await;
    assert_ne!(
        s.head(&t).await.expect("head").version,
        v2,
        "head rule 2: version changes with the bytes"
    );
}

#[async_trait]
impl BundleFixture for MemoryBundleStore {
    fn store(&self) -> Arc<dyn BundleStore> {
        Arc::new(self.clone())
    }
    async fn put_live(&self, task: &TaskId, bytes: &[u8]) {
        self.put(task, bytes.to_vec());
    }
}

// ---------------------------------------------------------------------------------------------

/// What the quota suite needs.
#[async_trait]
pub trait QuotaFixture: Send + Sync {
    /// The checker under test, configured for `vendor` only.
    fn checker(&self) -> Arc<dyn QuotaChecker>;
    /// The configured vendor.
    fn vendor(&self) -> String;
    /// Makes the vendor report `used` of its quota.
    async fn set_used(&self, used: f64);
    /// Makes the vendor's quota unreadable (garbage, errors).
    async fn set_unreadable(&self);
}

/// The [`QuotaChecker`] rules.
pub async fn quota_checker(f: &dyn QuotaFixture) {
    let c = f.checker();
    let v = f.vendor();
    f.set_used(0.86).await;
    match c.quota(&v).await.expect("quota") {
        Quota::Known(u) => assert!(
            (u.used_ratio - 0.86).abs() < 0.011,
            "rule 2: ratio {}",
            u.used_ratio
        ),
        other => panic!("readable quota must be known: {other:?}"),
    }
    f.set_unreadable().await;
    assert!(
        matches!(
            c.quota(&v)
                .await
                .expect("rule 1: unreadable is not an error"),
            Quota::Unknown { .. }
        ),
        "rule 1"
    );
    assert_eq!(
        c.quota("no-such-vendor").await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "rule 3"
    );
}

/// A [`MemoryQuota`] fixture for one vendor.
#[derive(Debug, Clone, Default)]
pub struct MemoryQuotaFixture(pub MemoryQuota);

#[async_trait]
impl QuotaFixture for MemoryQuotaFixture {
    fn checker(&self) -> Arc<dyn QuotaChecker> {
        Arc::new(self.0.clone())
    }
    fn vendor(&self) -> String {
        "anthropic".into()
    }
    async fn set_used(&self, used: f64) {
        self.0
            .set("anthropic", Quota::Known(QuotaUsage::from_ratio(used)));
    }
    async fn set_unreadable(&self) {
        self.0.set(
            "anthropic",
            Quota::Unknown {
                reason: "unreadable".into(),
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// What the status-page suite needs.
#[async_trait]
pub trait StatusFixture: Send + Sync {
    /// The status page under test, configured for `vendor` only.
    fn page(&self) -> Arc<dyn StatusPage>;
    /// The configured vendor.
    fn vendor(&self) -> String;
    /// Makes the vendor report `health`.
    async fn set(&self, health: VendorHealth);
    /// Makes the page unreadable.
    async fn set_unreadable(&self);
}

/// The [`StatusPage`] rules.
pub async fn status_page(f: &dyn StatusFixture) {
    let p = f.page();
    let v = f.vendor();
    for h in [
        VendorHealth::Operational,
        VendorHealth::MajorOutage,
        VendorHealth::PartialOutage,
    ] {
        f.set(h).await;
        assert_eq!(p.health(&v).await.expect("health").health, h);
    }
    f.set_unreadable().await;
    assert_eq!(
        p.health(&v).await.expect("rule 1").health,
        VendorHealth::Unknown,
        "rule 1: unreadable is unknown"
    );
    assert_eq!(
        p.health("no-such-vendor").await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "rule 2"
    );
}

/// A [`MemoryStatusPage`] fixture for one vendor.
#[derive(Debug, Clone, Default)]
pub struct MemoryStatusFixture(pub MemoryStatusPage);

#[async_trait]
impl StatusFixture for MemoryStatusFixture {
    fn page(&self) -> Arc<dyn StatusPage> {
        Arc::new(self.0.clone())
    }
    fn vendor(&self) -> String {
        "anthropic".into()
    }
    async fn set(&self, health: VendorHealth) {
        self.0.set("anthropic", VendorStatus::new(health));
    }
    async fn set_unreadable(&self) {
        self.0
            .set("anthropic", VendorStatus::new(VendorHealth::Unknown));
    }
}

// ---------------------------------------------------------------------------------------------

/// What the deployment suite needs: a Deployment at revision 3 with revisions 1 and 2 in its
/// history and `MODE=a` in its env, freshly created for each call.
#[async_trait]
pub trait DeploymentFixture: Send + Sync {
    /// A new Deployment; returns the controller and its name.
    async fn create(&self) -> (Arc<dyn DeploymentController>, String);
    /// Pauses its rollouts (as a human would).
    async fn pause(&self, name: &str);
    /// The change cause of the Deployment's latest change, as the backend records it
    /// (Kubernetes: the `kubernetes.io/change-cause` annotation); `None` when it has none.
    async fn change_cause(&self, name: &str) -> Option<String>;
}

/// The [`DeploymentController`] rules.
pub async fn deployment_controller(f: &dyn DeploymentFixture) {
    let none = ChangeCause::default();
    let breaker = ChangeCause::for_incident(
        "flowengine-20251113T1000Z",
        "conformance: enable circuit breaker",
    );
    let (c, name) = f.create().await;
    assert_eq!(
        c.state("no-such-deployment").await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "state rule 1"
    );
    let s0 = c.state(&name).await.expect("state");
    assert_eq!(s0.env.get("MODE").map(String::as_str), Some("a"));
    assert!(s0.previous_revision().is_some(), "history present");

    // set_env, idempotent, with and without precondition
    let s1 = c
        .set_env(
            &name,
            &[EnvChange::set("ENABLE_CIRCUIT_BREAKER", "true")],
            Some(s0.resource_version.clone()),
            &breaker,
        )
        .await
        .expect("set_env");
    let cause = f.change_cause(&name).await.unwrap_or_default();
    assert!(
        cause.contains("incident flowengine-20251113T1000Z")
            && cause.contains("conformance: enable circuit breaker"),
        "set_env rule 4: the change carries its cause: {cause:?}"
    );
    assert_eq!(
        s1.env.get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
        Some("true")
    );
    assert_ne!(s1.resource_version, s0.resource_version, "state rule 2");
    let err = c
        .set_env(
            &name,
            &[EnvChange::set("X", "1")],
            Some(s0.resource_version.clone()),
            &none,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "set_env rule 1: stale precondition"
    );
    assert!(
        !c.state(&name).await.expect("state").env.contains_key("X"),
        "set_env rule 1: nothing changed"
    );
    let s2 = c
        .set_env(
            &name,
            &[EnvChange::set("ENABLE_CIRCUIT_BREAKER", "true")],
            None,
            &breaker,
        )
        .await
        .expect("set_env rule 2: idempotent");
    assert_eq!(
        s2.env.get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
        Some("true")
    );
    let s3 = c
        .set_env(&name, &[EnvChange::unset("NOT_THERE")], None, &none)
        .await
        .expect("set_env rule 2: unsetting a missing var");
    assert!(!s3.env.contains_key("NOT_THERE"));

    // rollback guards
    let cur = c.state(&name).await.expect("state");
    let target = cur.previous_revision().expect("a previous revision");
    assert_eq!(
        c.rollback(&name, target, &s0.resource_version, &none)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict,
        "rollback rule 1: stale resourceVersion"
    );
    assert_eq!(
        c.rollback(&name, 999, &cur.resource_version, &none)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Refused,
        "rollback rule 2: revision gone"
    );
    let rolled = ChangeCause::for_incident("flowengine-20251113T1100Z", "conformance: roll back");
    let rb = c
        .rollback(&name, target, &cur.resource_version, &rolled)
        .await
        .expect("rollback rule 3");
    let cause = f.change_cause(&name).await.unwrap_or_default();
    assert!(
        cause.contains("incident flowengine-20251113T1100Z")
            && cause.contains("conformance: roll back")
            && !cause.contains("flowengine-20251113T1000Z"),
        "rollback rule 4: the rollback carries its own cause: {cause:?}"
    );
    assert_ne!(
        rb.revision, cur.revision,
        "rollback rule 3: a new revision runs"
    );
    assert!(
        !rb.history.iter().any(|h| h.revision == target),
        "rollback rule 3: the target's template now runs under the new revision number"
    );
    let mut complete = false;
    for _ in 0..50 {
        if c.rollout_status(&name).await.expect("rollout_status") == RolloutStatus::Complete {
            complete = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(complete, "rollout_status rule 1: the rollout completes");

    let (c2, name2) = f.create().await;
    // Two changes at once, each for its own incident: each keeps its own cause.
    let (a, b) = (
        ChangeCause::for_incident("incident-a", "conformance: first"),
        ChangeCause::for_incident("incident-b", "conformance: second"),
    );
    let (ea, eb) = (
        [EnvChange::set("CONCURRENT", "a")],
        [EnvChange::set("CONCURRENT", "b")],
    );
    let (ra, rb) = tokio::join!(
        c.set_env(&name, &ea, None, &a),
        c2.set_env(&name2, &eb, None, &b),
    );
    ra.expect("set_env");
    rb.expect("set_env");
    for (n, own, other) in [
        (&name, "incident-a", "incident-b"),
        (&name2, "incident-b", "incident-a"),
    ] {
        let cause = f.change_cause(n).await.unwrap_or_default();
        assert!(
            cause.contains(own) && !cause.contains(other),
            "set_env rule 4: concurrent changes keep their own causes: {cause:?}"
        );
    }
    f.pause(&name2).await;
    let st = c2.state(&name2).await.expect("state");
    assert!(st.paused);
    let prev = st.previous_revision().expect("previous");
    assert_eq!(
        c2.rollback(&name2, prev, &st.resource_version, &none)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Refused,
        "rollback rule 2: paused"
    );
}

/// A [`MemoryDeployment`] fixture.
#[derive(Debug, Default)]
pub struct MemoryDeploymentFixture {
    made: std::sync::Mutex<BTreeMap<String, MemoryDeployment>>,
}

#[async_trait]
impl DeploymentFixture for MemoryDeploymentFixture {
    async fn create(&self) -> (Arc<dyn DeploymentController>, String) {
        let name = unique("dep");
        let mut env = BTreeMap::new();
        env.insert("MODE".to_owned(), "a".to_owned());
        let now = Utc::now();
        let d = MemoryDeployment::new(
            &name,
            3,
            Some(now),
            env,
            vec![
                RevisionInfo::new(1, Some(now)),
                RevisionInfo::new(2, Some(now)),
            ],
            crate::Clock::system(),
        );
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), d.clone());
        (Arc::new(d), name)
    }
    async fn pause(&self, name: &str) {
        if let Some(d) = self
            .made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            d.set_paused(true);
        }
    }
    async fn change_cause(&self, name: &str) -> Option<String> {
        let d = self
            .made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()?;
        d.calls()
            .applied()
            .into_iter()
            .rev()
            .find_map(|c| c.cause)
            .map(|c| c.to_string())
    }
}

// ---------------------------------------------------------------------------------------------

/// The [`Pager`] rules. `target` must be configured in the pager.
pub async fn pager(p: &dyn Pager, target: &str) {
    let key = unique("page");
    let page = Page::new(
        target,
        key.clone(),
        "conformance page",
        serde_json::json!({"k": 1}),
    );
    assert_eq!(
        p.page(&page).await.expect("page"),
        Delivery::Sent,
        "page delivered"
    );
    assert_eq!(
        p.page(&page).await.expect("page again"),
        Delivery::Deduplicated,
        "rule 1: dedup by key"
    );
    let rogue = Page::new(
        "not-a-configured-target",
        unique("page"),
        "x",
        serde_json::Value::Null,
    );
    assert_eq!(
        p.page(&rogue).await.unwrap_err().kind(),
        ErrorKind::Refused,
        "rule 2: unknown target"
    );
    p.resolve(&key).await.expect("resolve");
    p.resolve(&key).await.expect("resolve rule 1: twice");
    p.resolve(&unique("never-paged"))
        .await
        .expect("resolve rule 1: unknown key");
}

/// The [`Notifier`] rules.
pub async fn notifier(n: &dyn Notifier) {
    let note = Notification::new("stakeholders", unique("notify"), "conformance");
    assert_eq!(n.notify(&note).await.expect("notify"), Delivery::Sent);
    assert_eq!(
        n.notify(&note).await.expect("notify again"),
        Delivery::Deduplicated,
        "rule 1"
    );
}

/// The [`Tracker`] rules.
pub async fn tracker(t: &dyn Tracker) {
    let key = unique("inc:2026-12-07T10:00:00Z");
    assert!(
        t.find(&key).await.expect("find").is_empty(),
        "find rule 1: nothing filed yet"
    );
    let open = IssueText::new(
        &key,
        format!("Incident {key}"),
        "## So far\n\n*open*",
        false,
    );
    let first = t.file(&open).await.expect("file");
    assert_eq!(first.incident_key, key);
    let found = t.find(&key).await.expect("find");
    assert_eq!(found, std::slice::from_ref(&first), "file rule 1");
    assert!(!found[0].settled, "file rule 1: not settled");
    for other in [format!("{key}x"), key[..key.len() - 1].to_owned()] {
        assert!(
            t.find(&other).await.expect("find other").is_empty(),
            "find rule 1: {other} is another key"
        );
    }
    let settled = IssueText::new(&key, format!("Incident {key}: resolved"), "## Record", true);
    let updated = t.update(&first, &settled).await.expect("update");
    assert!(updated.settled, "update rule 1");
    let found = t.find(&key).await.expect("find after update");
    assert!(
        found.len() == 1 && found[0].settled,
        "update rule 1: {found:?}"
    );
    // An id of the tracker's own shape (its digits replaced) that names no issue.
    let missing_id = format!(
        "{}987654321",
        first.id.trim_end_matches(|c: char| c.is_ascii_digit())
    );
    let missing = TrackerIssue::new(missing_id, "", &key, false);
    let e = t
        .update(&missing, &settled)
        .await
        .expect_err("update rule 2");
    assert_eq!(e.kind(), ErrorKind::NotFound, "update rule 2: {e}");
    // A replica filed the same incident at the same time: the second is retired.
    let second = t.file(&open).await.expect("file a duplicate");
    let found = t.find(&key).await.expect("find both");
    assert_eq!(
        found.iter().map(|i| &i.id).collect::<Vec<_>>(),
        [&first.id, &second.id],
        "find: the first filed first"
    );
    t.retire(&second, &first).await.expect("retire");
    let found = t.find(&key).await.expect("find after retire");
    assert_eq!(
        found.iter().map(|i| &i.id).collect::<Vec<_>>(),
        [&first.id],
        "retire rule 1"
    );
}

// ---------------------------------------------------------------------------------------------

/// The [`IncidentStore`] rules.
pub async fn incident_store(s: &dyn IncidentStore) {
    let scope = unique("scope");
    let key = unique("inc");
    let now = Utc::now();
    let st = serde_json::json!({"n": 1});
    let (r, created) = s.open(&scope, &key, now, &st).await.expect("open");
    assert!(created && r.key == key && r.closed_at.is_none());
    let (r2, created2) = s
        .open(&scope, &unique("inc-other"), now, &st)
        .await
        .expect("open again");
    assert!(
        !created2 && r2.key == key,
        "open rule 1: one open incident per scope"
    );
    assert_eq!(
        s.get(&unique("nope")).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "get rule 1"
    );
    let found = s.find_open(&scope).await.expect("find_open");
    assert_eq!(found.map(|r| r.key), Some(key.clone()), "find_open rule 1");
    assert!(
        s.find_open(&unique("empty-scope"))
            .await
            .expect("find_open")
            .is_none(),
        "find_open rule 1: none"
    );

    let e1 = s.claim(&key).await.expect("claim");
    let e2 = s.claim(&key).await.expect("claim");
    assert!(e2 > e1, "claim rule 1");
    assert_eq!(
        s.claim(&unique("nope")).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "claim rule 2"
    );

    let entry = TimelineEntry::new(now, "action", serde_json::json!({"a": 1}));
    assert_eq!(
        s.append(&key, e1, std::slice::from_ref(&entry))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict,
        "append rule 2"
    );
    s.append(&key, e2, std::slice::from_ref(&entry))
        .await
        .expect("append");
    s.append(
        &key,
        e2,
        &[TimelineEntry::new(
            now,
            "action",
            serde_json::json!({"a": 2}),
        )],
    )
    .await
    .expect("append");
    let got = s.get(&key).await.expect("get");
    assert_eq!(got.timeline.len(), 2);
    assert_eq!(got.timeline[0].detail["a"], 1, "append rule 1: order");

    assert_eq!(
        s.save_state(&key, e1, &serde_json::json!({"n": 2}))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict,
        "save_state rule 1"
    );
    s.save_state(&key, e2, &serde_json::json!({"n": 3}))
        .await
        .expect("save_state");
    assert_eq!(s.get(&key).await.expect("get").state["n"], 3);

    assert!(
        s.reserve_effect(&key, e2, "rollback")
            .await
            .expect("reserve"),
        "reserve: first"
    );
    assert!(
        !s.reserve_effect(&key, e2, "rollback")
            .await
            .expect("reserve"),
        "reserve rule 1: once"
    );
    assert_eq!(
        s.reserve_effect(&key, e1, "page").await.unwrap_err().kind(),
        ErrorKind::Conflict,
        "reserve rule 2"
    );

    assert_eq!(
        s.check_epoch(&key, e1).await.unwrap_err().kind(),
        ErrorKind::Conflict,
        "check_epoch rule 1: superseded"
    );
    s.check_epoch(&key, e2)
        .await
        .expect("check_epoch rule 1: current");
    assert_eq!(
        s.check_epoch("no-such-incident", e2)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "check_epoch rule 2"
    );

    assert_eq!(
        s.close(&key, e1, now, &serde_json::json!({}))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict,
        "close rule 1"
    );
    s.close(&key, e2, now, &serde_json::json!({"root_cause": "x"}))
        .await
        .expect("close");
    s.close(&key, e2, now, &serde_json::json!({"root_cause": "y"}))
        .await
        .expect("close rule 2: twice");
    let closed = s.get(&key).await.expect("get");
    assert!(closed.closed_at.is_some());
    assert_eq!(
        closed.post_incident.expect("record")["root_cause"],
        "x",
        "close rule 2: first record kept"
    );
    assert!(
        s.find_open(&scope).await.expect("find_open").is_none(),
        "find_open rule 1: closed"
    );
    // A closed incident is over: it cannot be claimed, and no pass fences on it or saves its
    // state (a responder that joined before another closed it must stop, not act).
    for (what, r) in [
        ("claim", s.claim(&key).await.map(|_| ())),
        ("check_epoch", s.check_epoch(&key, e2).await),
        ("save_state", s.save_state(&key, e2, &st).await),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Conflict, "closed rule: {what}: {e}");
    }
    incident_store_latest_closed(s, &scope, &key, e2).await;
    let (r3, created3) = s
        .open(&scope, &unique("inc-next"), now, &st)
        .await
        .expect("open after close");
    assert!(
        created3 && r3.key != key,
        "open rule 2: a closed incident does not block"
    );
    let (r4, created4) = s
        .open(&unique("scope-x"), &key, now, &st)
        .await
        .expect("reopen closed key");
    assert!(!created4 && r4.closed_at.is_some(), "open rule 3");

    // Concurrent opens in a fresh scope create exactly one incident.
    let scope2 = unique("scope");
    let opens = (0..8).map(|_| {
        let k = unique("race");
        let scope2 = scope2.clone();
        let st = st.clone();
        async move { s.open(&scope2, &k, now, &st).await }
    });
    let results = futures_util::future::join_all(opens).await;
    let created: usize = results
        .iter()
        .filter(|r| matches!(r, Ok((_, true))))
        .count();
    assert_eq!(created, 1, "open rule 1: concurrent opens create one");

    incident_store_control(s).await;
    incident_store_list(s).await;
}

/// The rules of [`IncidentStore::list`].
async fn incident_store_list(s: &dyn IncidentStore) {
    use crate::ports::IncidentQuery;
    let (a, b) = (unique("list-a"), unique("list-b"));
    let t0 = Utc::now() - chrono::TimeDelta::hours(3);
    let at = |h: i64| t0 + chrono::TimeDelta::hours(h);
    let st = serde_json::json!({});
    // Scope a: an incident closed at hour 0, one open from hour 2; scope b: open from hour 1.
    let (old, new, other) = (unique("list-old"), unique("list-new"), unique("list-other"));
    s.open(&a, &old, at(0), &st).await.expect("open");
    let e = s.claim(&old).await.expect("claim");
    let outcome = |o: &str| {
        TimelineEntry::new(
            at(0),
            "action",
            serde_json::json!({"action": {}, "outcome": o}),
        )
    };
    s.append(
        &old,
        e,
        &[
            outcome("applied"),
            outcome("applied"),
            outcome("failed"),
            outcome("dry_run"),
            outcome("skipped"),
            TimelineEntry::new(at(0), "finding", serde_json::json!({"outcome": "applied"})),
        ],
    )
    .await
    .expect("append");
    s.close(&old, e, at(1), &serde_json::json!({"status": "resolved"}))
        .await
        .expect("close");
    s.open(&a, &new, at(2), &st).await.expect("open");
    s.open(&b, &other, at(1), &st).await.expect("open");

    let keys = |l: Vec<crate::ports::IncidentListing>| -> Vec<String> {
        l.into_iter().map(|l| l.record.key).collect()
    };
    let both = IncidentQuery::scopes([a.clone(), b.clone()]);
    let all = s.list(&both).await.expect("list");
    assert_eq!(
        keys(all.clone()),
        vec![new.clone(), other.clone(), old.clone()],
        "list rule 1: newest first"
    );
    let o = all.iter().find(|l| l.record.key == old).expect("old");
    assert_eq!(
        (o.applied, o.failed, o.decided),
        (2, 1, 2),
        "list rule 3: actions by outcome (findings not counted)"
    );
    assert!(o.record.timeline.is_empty() && o.record.closed_at.is_some());
    assert_eq!(
        o.record.post_incident.as_ref().expect("record")["status"],
        "resolved"
    );
    assert_eq!(
        keys(s.list(&both.clone().limit(2)).await.expect("list")),
        vec![new.clone(), other.clone()],
        "list rule 1: the limit keeps the newest"
    );
    assert_eq!(
        keys(
            s.list(&IncidentQuery::scopes([a.clone()]))
                .await
                .expect("list")
        ),
        vec![new.clone(), old.clone()],
        "list rule 2: scopes"
    );
    assert_eq!(
        keys(s.list(&both.clone().open_only(true)).await.expect("list")),
        vec![new.clone(), other.clone()],
        "list rule 2: open only"
    );
    assert_eq!(
        keys(
            s.list(&both.clone().since(Some(at(1))))
                .await
                .expect("list")
        ),
        vec![new.clone(), other.clone()],
        "list rule 2: since (inclusive)"
    );
}

/// The rules of [`IncidentStore::latest_closed`], and effects reserved on a closed incident;
/// `key`, of `scope`, was just closed at `epoch`.
async fn incident_store_latest_closed(s: &dyn IncidentStore, scope: &str, key: &str, epoch: u64) {
    let latest = |scope: String| async move {
        s.latest_closed(&scope)
            .await
            .expect("latest_closed")
            .map(|r| r.key)
    };
    assert_eq!(
        latest(scope.to_owned()).await.as_deref(),
        Some(key),
        "latest_closed: the closed incident"
    );
    assert_eq!(
        latest(unique("empty-scope")).await,
        None,
        "latest_closed rule 1: none closed; rule 2: scopes are independent"
    );
    // A later incident of another scope: open (never returned), then closed after an earlier one.
    let other = unique("scope");
    let now = Utc::now();
    let (first, second) = (unique("inc-a"), unique("inc-b"));
    let st = serde_json::json!({"n": 1});
    s.open(&other, &first, now, &st).await.expect("open");
    assert_eq!(
        latest(other.clone()).await,
        None,
        "latest_closed rule 1: open"
    );
    let e = s.claim(&first).await.expect("claim");
    s.close(&first, e, now + TimeDelta::seconds(1), &st)
        .await
        .expect("close");
    s.open(&other, &second, now + TimeDelta::seconds(2), &st)
        .await
        .expect("open");
    let e = s.claim(&second).await.expect("claim");
    s.close(&second, e, now + TimeDelta::seconds(3), &st)
        .await
        .expect("close");
    assert_eq!(
        latest(other.clone()).await,
        Some(second),
        "latest_closed: the one closed last"
    );
    assert_eq!(
        latest(scope.to_owned()).await.as_deref(),
        Some(key),
        "latest_closed rule 2"
    );
    // Rule 3: the end of a cool-down, reserved on the closed incident at its epoch.
    assert!(
        s.reserve_effect(key, epoch, "cooldown_over")
            .await
            .expect("reserve on a closed incident"),
        "latest_closed rule 3"
    );
    let rec = s
        .latest_closed(scope)
        .await
        .expect("latest_closed")
        .expect("closed");
    assert!(rec.effects.iter().any(|e| e == "cooldown_over"), "{rec:?}");
    assert!(rec.closed_at.is_some() && rec.epoch == epoch);
    assert!(
        !s.reserve_effect(key, epoch, "cooldown_over")
            .await
            .expect("reserve"),
        "reserve rule 1 on a closed incident"
    );
}

/// The pause and approval rules of [`IncidentStore`].
async fn incident_store_control(s: &dyn IncidentStore) {
    let now = Utc::now();
    let (scope, other) = (unique("scope"), unique("scope"));
    assert_eq!(s.pause_flag(&scope).await.expect("pause_flag"), None);
    s.set_pause(&scope, None)
        .await
        .expect("set_pause rule 2: lifting no pause succeeds");
    let p1 = Pause::new("deploy freeze", "alice", now);
    s.set_pause(&scope, Some(&p1)).await.expect("set_pause");
    let got = s.pause_flag(&scope).await.expect("pause_flag");
    let same = |a: &Pause, b: &Pause| {
        a.reason == b.reason && a.by == b.by && (a.since - b.since).num_milliseconds().abs() < 1
    };
    assert!(
        got.as_ref().is_some_and(|g| same(g, &p1)),
        "set_pause rule 1: {got:?}"
    );
    assert_eq!(
        s.pause_flag(&other).await.expect("pause_flag"),
        None,
        "set_pause rule 3: scopes are independent"
    );
    let p2 = Pause::new("still frozen", "bob", now + TimeDelta::seconds(5));
    s.set_pause(&scope, Some(&p2)).await.expect("set_pause");
    let got = s.pause_flag(&scope).await.expect("pause_flag");
    assert!(
        got.as_ref().is_some_and(|g| same(g, &p2)),
        "set_pause rule 1: a second pause replaces the first"
    );
    s.set_pause(&scope, None).await.expect("lift");
    assert_eq!(
        s.pause_flag(&scope).await.expect("pause_flag"),
        None,
        "set_pause rule 1: lifted"
    );

    let nope = unique("nope");
    let a = Approval::new(&nope, "rollback", "alice", now);
    assert_eq!(
        s.add_approval(&nope, &a).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "add_approval rule 1: unknown key"
    );
    assert_eq!(
        s.approvals(&nope).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "approvals rule 1: unknown key"
    );
    let key = unique("inc");
    let st = serde_json::json!({});
    s.open(&unique("scope"), &key, now, &st)
        .await
        .expect("open");
    assert!(
        s.approvals(&key).await.expect("approvals").is_empty(),
        "approvals rule 1: none yet"
    );
    let first = Approval::new(&key, "rollback", "alice", now);
    let second = Approval::new(&key, "manual_review", "bob", now + TimeDelta::seconds(1));
    let no = Approval::denial(&key, "prune_context", "dan", "bundles are evidence", now);
    s.add_approval(&key, &first).await.expect("add_approval");
    s.add_approval(&key, &second).await.expect("add_approval");
    s.add_approval(&key, &no)
        .await
        .expect("add_approval: a denial");
    let got = s.approvals(&key).await.expect("approvals");
    let names: Vec<(&str, &str)> = got
        .iter()
        .map(|a| (a.action.as_str(), a.by.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("rollback", "alice"),
            ("manual_review", "bob"),
            ("prune_context", "dan")
        ],
        "add_approval rule 2: in order"
    );
    assert_eq!(
        (got[2].denied, got[2].reason.as_deref()),
        (true, Some("bundles are evidence")),
        "add_approval rule 2: a denial kept with its reason"
    );
    assert!(!got[0].denied && got[0].reason.is_none());
    assert!(got.iter().all(|a| a.incident == key));
    let e = s.claim(&key).await.expect("claim");
    s.close(&key, e, now, &st).await.expect("close");
    assert_eq!(
        s.add_approval(&key, &Approval::new(&key, "rollback", "carol", now))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Refused,
        "add_approval rule 1: closed incident"
    );
    assert_eq!(
        s.approvals(&key).await.expect("approvals").len(),
        3,
        "add_approval rule 1: a refused approval writes nothing"
    );
}
