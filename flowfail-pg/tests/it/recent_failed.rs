//! Security review, finding 7, against a real PostgreSQL server (`FLOWFAIL_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; skipped without one unless
//! `FLOWFAIL_PG_REQUIRED=1`): `recent_failed` reports the rows it skips.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskTable};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::support::fresh_schema;

/// Writes a row as someone else (FlowEngine) would: raw SQL, any id.
async fn raw_row(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    (id, flow, status): (&str, &str, &str),
) {
    pool.get()
        .await
        .unwrap()
        .execute(
            &format!(
                "INSERT INTO {schema}.tasks (task_id, flow_type, status, created_at, attempts)
                 VALUES ($1, $2, $3, now(), 1)"
            ),
            &[&id, &flow, &status],
        )
        .await
        .unwrap();
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
async fn recent_failed_returns_the_good_rows_and_counts_the_skipped_ones() {
    // Alone in its process: `pg::hostile_ids_and_identifiers_never_reach_sql_text` hits the same
    // tracing callsite on another thread, which can make a scoped subscriber miss the event.
    if !flowfail_testkit::alone_in_a_child(
        module_path!(),
        "recent_failed_returns_the_good_rows_and_counts_the_skipped_ones",
    ) {
        return;
    }
    let Some((pool, schema)) = fresh_schema(module_path!(), "ff_test_recent", 4).await else {
        return;
    };
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
    tasks.migrate().await.unwrap();
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
    raw_row(&pool, &schema, ("../etc", "impl", "failed")).await;
    raw_row(&pool, &schema, ("odd-flow", "mystery", "failed")).await;

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

/// FlowEngine's own flow-type names, mapped in the config, are triaged under the flow type they
/// map to; a row neither known nor mapped, or with an id that is not a task id, is left out
/// and counted by why (the responder reports it as a data gap).
#[tokio::test]
async fn mapped_flow_types_are_read_and_what_is_left_out_is_counted_by_why() {
    let Some((pool, schema)) = fresh_schema(module_path!(), "ff_test_flowmap", 2).await else {
        return;
    };
    let mut table = TaskTable::in_schema(schema.clone());
    table
        .flow_types
        .insert("implementation".to_owned(), FlowType::Impl);
    let tasks = PgTaskStore::new(pool.clone(), &table).unwrap();
    tasks.migrate().await.unwrap();
    raw_row(&pool, &schema, ("mapped-1", "implementation", "failed")).await;
    raw_row(&pool, &schema, ("odd-1", "mystery", "failed")).await;
    raw_row(&pool, &schema, ("odd-2", "mystery", "failed")).await;
    raw_row(&pool, &schema, ("../etc", "impl", "failed")).await;
    let read = tasks.recent_failed_read(10).await.unwrap();
    let got: Vec<(&str, FlowType)> = read
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.flow_type))
        .collect();
    assert_eq!(got, [("mapped-1", FlowType::Impl)]);
    assert_eq!(read.unreadable_total(), 3);
    assert_eq!(
        read.unreadable.into_iter().collect::<Vec<_>>(),
        [
            (
                "flow type not known: map it under [postgres.flow_types]".to_owned(),
                2
            ),
            ("id not a valid task id".to_owned(), 1),
        ]
    );
    // The plain read returns the same tasks.
    assert_eq!(tasks.recent_failed(10).await.unwrap().len(), 1);
}
