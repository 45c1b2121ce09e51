//! Security review, finding 7, against a real PostgreSQL server (`FLOWFAIL_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; skipped without one unless
//! `FLOWFAIL_PG_REQUIRED=1`): claiming due retries leaves rows with an invalid id untouched,
//! claims of a dead worker expire, and `recent_failed` reports the rows it skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::{FlowType, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskTable, connect};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

static N: AtomicU64 = AtomicU64::new(0);

/// A fresh schema with the task table migrated, or `None` (skip) when no server answers and
/// none is required.
async fn fresh() -> Option<(PgTaskStore, String, deadpool_postgres::Pool)> {
    let url = flowfail_testkit::pg_url();
    let pool = connect(&url, 4).unwrap();
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            flowfail_testkit::pg_unreachable(&url, &e);
            return None;
        }
    };
    let schema = format!(
        "ff_claims_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    drop(client);
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
    tasks.migrate().await.unwrap();
    Some((tasks, schema, pool))
}

/// Writes a row as someone else (FlowEngine, a worker) would: raw SQL, any id.
async fn raw_row(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    (id, flow, status): (&str, &str, &str),
    claimed_by: Option<&str>,
    not_before: Option<DateTime<Utc>>,
) {
    pool.get()
        .await
        .unwrap()
        .execute(
            &format!(
                "INSERT INTO {schema}.tasks
                   (task_id, flow_type, status, created_at, attempts, claimed_by, retry_not_before)
                 VALUES ($1, $2, $3, now(), 1, $4, $5)"
            ),
            &[&id, &flow, &status, &claimed_by, &not_before],
        )
        .await
        .unwrap();
}

/// (status, claimed_by, retry_not_before) of a row, read with raw SQL.
async fn raw_state(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    id: &str,
) -> (String, Option<String>, Option<DateTime<Utc>>) {
    let r = pool
        .get()
        .await
        .unwrap()
        .query_one(
            &format!(
                "SELECT status, claimed_by, retry_not_before FROM {schema}.tasks WHERE task_id = $1"
            ),
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Records every event (its fields, as `name=value` lines) on the thread it is set on.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn due_retries_with_an_invalid_id_are_left_untouched_and_counted() {
    let Some((tasks, schema, pool)) = fresh().await else {
        return;
    };
    let due = Utc::now() - TimeDelta::minutes(1);
    let dead = Utc::now() - TimeDelta::hours(1);
    raw_row(
        &pool,
        &schema,
        ("../etc", "impl", "pending"),
        None,
        Some(due),
    )
    .await;
    raw_row(&pool, &schema, ("x y", "impl", "pending"), None, None).await;
    raw_row(
        &pool,
        &schema,
        ("../dead", "impl", "running"),
        Some("gone"),
        Some(dead),
    )
    .await;
    raw_row(
        &pool,
        &schema,
        ("../failed", "impl", "failed"),
        None,
        Some(due),
    )
    .await;
    raw_row(&pool, &schema, ("ok-1", "impl", "pending"), None, Some(due)).await;
    let before = [
        raw_state(&pool, &schema, "../etc").await,
        raw_state(&pool, &schema, "x y").await,
        raw_state(&pool, &schema, "../dead").await,
        raw_state(&pool, &schema, "../failed").await,
    ];

    let capture = Capture::default();
    let guard = tracing::subscriber::set_default(capture.clone());
    let got = tasks.claim_due_retries(10, "w", Utc::now()).await.unwrap();
    drop(guard);

    assert_eq!(got, vec![(TaskId::parse("ok-1").unwrap(), 1)]);
    let after = [
        raw_state(&pool, &schema, "../etc").await,
        raw_state(&pool, &schema, "x y").await,
        raw_state(&pool, &schema, "../dead").await,
        raw_state(&pool, &schema, "../failed").await,
    ];
    assert_eq!(after, before, "rows with an invalid id are untouched");
    assert_eq!(after[0].0, "pending");
    assert_eq!(raw_state(&pool, &schema, "ok-1").await.0, "running");
    let events = capture.events();
    let warned: Vec<_> = events
        .iter()
        .filter(|e| e.starts_with("WARN") && e.contains("skipped=3"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning with the count: {events:?}");
    for e in &events {
        assert!(
            !e.contains("etc") && !e.contains("x y") && !e.contains("dead"),
            "no raw id in the log: {e}"
        );
    }
}

#[tokio::test]
async fn a_claim_of_a_dead_worker_expires_after_the_lease() {
    let Some((tasks, schema, pool)) = fresh().await else {
        return;
    };
    let now = Utc::now();
    let hour_ago = now - TimeDelta::hours(1);
    let minute_ago = now - TimeDelta::minutes(1);
    raw_row(
        &pool,
        &schema,
        ("dead-1", "impl", "running"),
        Some("dead"),
        Some(hour_ago),
    )
    .await;
    raw_row(
        &pool,
        &schema,
        ("live-1", "impl", "running"),
        Some("alive"),
        Some(minute_ago),
    )
    .await;
    // Set running by FlowEngine itself, never claimed: not a lease.
    raw_row(
        &pool,
        &schema,
        ("engine-1", "impl", "running"),
        None,
        Some(hour_ago),
    )
    .await;

    let got = tasks.claim_due_retries(10, "w2", now).await.unwrap();
    assert_eq!(got, vec![(TaskId::parse("dead-1").unwrap(), 1)]);
    let (st, by, at) = raw_state(&pool, &schema, "dead-1").await;
    assert_eq!((st.as_str(), by.as_deref()), ("running", Some("w2")));
    assert_eq!(
        at.map(|t| t.timestamp_micros()),
        Some(now.timestamp_micros())
    );
    let (st, by, _) = raw_state(&pool, &schema, "live-1").await;
    assert_eq!((st.as_str(), by.as_deref()), ("running", Some("alive")));
    assert_eq!(raw_state(&pool, &schema, "engine-1").await.1, None);

    // The new claim holds: nothing is due again at once.
    assert!(
        tasks
            .claim_due_retries(10, "w3", Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    // A shorter lease lets the minute-old claim go too.
    let short = tasks.clone().with_claim_lease(Duration::from_secs(30));
    let got = short.claim_due_retries(10, "w4", Utc::now()).await.unwrap();
    assert_eq!(got, vec![(TaskId::parse("live-1").unwrap(), 1)]);
}

#[tokio::test]
async fn a_claim_made_through_the_store_expires_and_is_taken_over() {
    let Some((tasks, schema, pool)) = fresh().await else {
        return;
    };
    let hour_ago = Utc::now() - TimeDelta::hours(1);
    raw_row(
        &pool,
        &schema,
        ("t-1", "plan", "pending"),
        None,
        Some(hour_ago),
    )
    .await;
    let first = tasks.claim_due_retries(10, "a", hour_ago).await.unwrap();
    assert_eq!(first, vec![(TaskId::parse("t-1").unwrap(), 1)]);
    // Worker a dies; an hour later worker b takes the task over.
    let second = tasks.claim_due_retries(10, "b", Utc::now()).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(
        raw_state(&pool, &schema, "t-1").await.1.as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn recent_failed_returns_the_good_rows_and_counts_the_skipped_ones() {
    let Some((tasks, schema, pool)) = fresh().await else {
        return;
    };
    let now = Utc::now();
    let good: Vec<Task> = (0..3)
        .map(|i| {
            Task::new(
                TaskId::parse(&format!("good-{i}")).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::hours(1) - TimeDelta::seconds(i),
            )
        })
        .collect();
    tasks.insert(&good, &[]).await.unwrap();
    raw_row(&pool, &schema, ("../etc", "impl", "failed"), None, None).await;
    raw_row(
        &pool,
        &schema,
        ("odd-flow", "mystery", "failed"),
        None,
        None,
    )
    .await;

    let capture = Capture::default();
    let guard = tracing::subscriber::set_default(capture.clone());
    let got = tasks.recent_failed(10).await.unwrap();
    drop(guard);

    let ids: Vec<&str> = got.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["good-0", "good-1", "good-2"]);
    let events = capture.events();
    let warned: Vec<_> = events
        .iter()
        .filter(|e| {
            e.starts_with("WARN")
                && e.contains("skipped=2")
                && e.contains("invalid_id=1")
                && e.contains("unknown_flow_or_status=1")
        })
        .collect();
    assert_eq!(warned.len(), 1, "one warning with the counts: {events:?}");
    for e in &events {
        assert!(
            !e.contains("etc") && !e.contains("odd-flow") && !e.contains("mystery"),
            "no raw value in the log: {e}"
        );
    }
}
