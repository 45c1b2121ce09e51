//! `[postgres.statuses]` against a real PostgreSQL server (`FLOWFAIL_PG_URL`; skipped without
//! one unless `FLOWFAIL_PG_REQUIRED=1`): a TaskDB whose status values are FlowEngine's own is
//! counted, triaged, retried and given up on through the mapping, and the rows flowfail writes
//! carry FlowEngine's values.

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, RetryOutcome, RetryRequest, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskStatuses, TaskTable};

use crate::support::fresh_schema;

/// FlowEngine's spellings: upper case, several values for a status.
fn flowengine_statuses() -> TaskStatuses {
    let mut s = TaskStatuses::default();
    for (status, values) in [
        (TaskStatus::Pending, &["QUEUED", "RETRY_WAIT"][..]),
        (TaskStatus::Running, &["RUNNING"]),
        (TaskStatus::Succeeded, &["DONE", "success"]),
        (TaskStatus::Failed, &["FAILED", "error"]),
        (TaskStatus::FailedFinal, &["DEAD"]),
    ] {
        *s.values_mut(status) = values.iter().map(|v| (*v).to_owned()).collect();
    }
    s
}

async fn raw_status(pool: &deadpool_postgres::Pool, schema: &str, id: &str) -> (String, i32) {
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            &format!("SELECT status, attempts FROM {schema}.tasks WHERE task_id = $1"),
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn flowengine_status_values_are_counted_triaged_retried_and_written_back() {
    let Some((pool, schema)) = fresh_schema(module_path!(), "ff_test_statuses", 2).await else {
        return;
    };
    let mut table = TaskTable::in_schema(schema.clone());
    table.statuses = flowengine_statuses();
    let tasks = PgTaskStore::new(pool.clone(), &table).unwrap();
    tasks.migrate().await.unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO {schema}.tasks (task_id, flow_type, status, error_message, created_at, finished_at, attempts) VALUES
               ('f-1', 'impl', 'FAILED', 'timeout', now() - interval '2 minutes', now() - interval '1 minute', 1),
               ('f-2', 'plan', 'error', 'HTTP 500', now() - interval '3 minutes', now() - interval '1 minute', 1),
               ('d-1', 'plan', 'DEAD', 'gave up', now() - interval '4 minutes', now() - interval '1 minute', 3),
               ('s-1', 'plan', 'DONE', NULL, now() - interval '2 minutes', now() - interval '1 minute', 0),
               ('s-2', 'docs', 'success', NULL, now() - interval '2 minutes', now() - interval '1 minute', 0),
               ('q-1', 'plan', 'QUEUED', NULL, now(), NULL, 0),
               ('q-2', 'plan', 'RETRY_WAIT', NULL, now(), NULL, 1),
               ('r-1', 'plan', 'RUNNING', NULL, now(), NULL, 0),
               ('x-1', 'plan', 'failed', 'not a FlowEngine value here', now() - interval '2 minutes', now() - interval '1 minute', 1)"
        ))
        .await
        .unwrap();

    // The alert's counts read every mapped value, and only those.
    let now = Utc::now();
    let counts = tasks
        .counts(now - TimeDelta::minutes(10), now)
        .await
        .unwrap();
    assert_eq!(
        (counts.succeeded, counts.failed, counts.in_flight),
        (2, 3, 3)
    );
    // `x-1`'s `failed` is not a value of this TaskDB: in no count, but counted as unknown.
    assert_eq!(counts.unknown_status, 1);

    // Triage reads both failed values, newest first.
    let read = tasks.recent_failed_read(10).await.unwrap();
    let got: Vec<(&str, TaskStatus)> = read
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.status))
        .collect();
    assert_eq!(
        got,
        [("f-1", TaskStatus::Failed), ("f-2", TaskStatus::Failed)]
    );
    assert_eq!(read.unreadable_total(), 0);

    // A retry writes pending's first value; a queued task is not retryable; a task given up on
    // gets failed_final's value.
    let at = now + TimeDelta::seconds(30);
    let out = tasks
        .schedule_retries(&[
            RetryRequest::new(TaskId::parse("f-1").unwrap(), 1, at),
            RetryRequest::new(TaskId::parse("q-2").unwrap(), 1, at),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            RetryOutcome::Scheduled { attempts: 2 },
            RetryOutcome::NotRetryable {
                status: TaskStatus::Pending
            },
        ]
    );
    assert_eq!(
        raw_status(&pool, &schema, "f-1").await,
        ("QUEUED".into(), 2)
    );
    assert_eq!(
        raw_status(&pool, &schema, "q-2").await,
        ("RETRY_WAIT".into(), 1)
    );
    tasks
        .mark_final(&TaskId::parse("f-2").unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(raw_status(&pool, &schema, "f-2").await, ("DEAD".into(), 1));
    assert_eq!(
        tasks
            .get(&TaskId::parse("f-2").unwrap())
            .await
            .unwrap()
            .status,
        TaskStatus::FailedFinal
    );

    // Rows flowfail inserts (tests, seeds) carry FlowEngine's values.
    let t = Task::new(
        TaskId::parse("n-1").unwrap(),
        FlowType::Review,
        TaskStatus::Failed,
        now,
    );
    tasks.insert(&[t], &[]).await.unwrap();
    assert_eq!(
        raw_status(&pool, &schema, "n-1").await,
        ("FAILED".into(), 0)
    );

    // `check-config` names the one value left unmapped.
    let values = tasks.check_values(now - TimeDelta::days(1)).await.unwrap();
    assert_eq!(
        values,
        [
            "status values flowfail does not read: \"failed\" (1 rows) — not counted by the alert nor triaged: map them under [postgres.statuses]"
        ]
    );
}

/// A mapping that could not be used is refused when the store is built (at `check-config`),
/// before any SQL runs.
#[test]
fn a_value_under_two_statuses_is_refused_when_the_store_is_built() {
    let mut table = TaskTable::default();
    *table.statuses.values_mut(TaskStatus::Failed) = vec!["failed".into(), "DONE".into()];
    *table.statuses.values_mut(TaskStatus::Succeeded) = vec!["DONE".into()];
    let pool = deadpool_postgres::Config {
        url: Some("postgres://postgres@127.0.0.1:1/none".into()),
        ..Default::default()
    }
    .create_pool(None, tokio_postgres::NoTls)
    .unwrap();
    let e = PgTaskStore::new(pool, &table).unwrap_err().to_string();
    assert!(
        e.contains("postgres.statuses.failed") && e.contains("already read as succeeded"),
        "{e}"
    );
}

/// Two Deployments' tasks in one table, each store filtered to its own (`environment`): counts,
/// triage, reads and retries never cross, and rows a store inserts carry its value.
#[tokio::test]
async fn a_filtered_store_sees_and_retries_only_its_own_deployments_tasks() {
    let Some((pool, schema)) = fresh_schema(module_path!(), "ff_test_filter", 2).await else {
        return;
    };
    let store = |env: &str| {
        let mut t = TaskTable::in_schema(schema.clone());
        t.filter = Some(flowfail_pg::TaskFilter::new("environment", env));
        PgTaskStore::new(pool.clone(), &t).unwrap()
    };
    let (prod, staging) = (store("prod"), store("staging"));
    prod.migrate().await.unwrap();
    staging.migrate().await.unwrap();
    let now = Utc::now();
    let task = |id: &str, st: TaskStatus| {
        let mut t = Task::new(
            TaskId::parse(id).unwrap(),
            FlowType::Plan,
            st,
            now - TimeDelta::minutes(1),
        )
        .with_error("HTTP 500", Some(500));
        t.finished_at = Some(now - TimeDelta::minutes(1));
        t
    };
    prod.insert(
        &[
            task("p-1", TaskStatus::Failed),
            task("p-2", TaskStatus::Succeeded),
        ],
        &[],
    )
    .await
    .unwrap();
    staging
        .insert(
            &[
                task("s-1", TaskStatus::Failed),
                task("s-2", TaskStatus::Failed),
            ],
            &[],
        )
        .await
        .unwrap();
    let envs: Vec<(String, String)> = pool
        .get()
        .await
        .unwrap()
        .query(
            &format!("SELECT task_id, environment FROM {schema}.tasks ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        envs,
        [
            ("p-1".into(), "prod".into()),
            ("p-2".into(), "prod".into()),
            ("s-1".into(), "staging".into()),
            ("s-2".into(), "staging".into()),
        ]
    );
    let window = (now - TimeDelta::minutes(10), now);
    let c = prod.counts(window.0, window.1).await.unwrap();
    assert_eq!((c.succeeded, c.failed), (1, 1));
    let c = staging.counts(window.0, window.1).await.unwrap();
    assert_eq!((c.succeeded, c.failed), (0, 2));
    let ids = |v: Vec<Task>| {
        v.into_iter()
            .map(|t| t.task_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(prod.recent_failed(10).await.unwrap()), ["p-1"]);
    // Another Deployment's task is not found, not retried, not given up on.
    let s1 = TaskId::parse("s-1").unwrap();
    assert_eq!(
        prod.get(&s1).await.unwrap_err().kind(),
        flowfail_core::ErrorKind::NotFound
    );
    let out = prod
        .schedule_retries(&[RetryRequest::new(s1.clone(), 0, now)])
        .await
        .unwrap();
    assert_eq!(out, [RetryOutcome::NotFound]);
    assert!(prod.mark_final(&s1, 0).await.is_err());
    assert_eq!(staging.get(&s1).await.unwrap().status, TaskStatus::Failed);
    assert_eq!(staging.get(&s1).await.unwrap().attempts, 0);
    // An insert by prod of an id staging already has leaves staging's row as it is.
    let n = prod
        .insert(&[task("s-2", TaskStatus::Succeeded)], &[])
        .await
        .unwrap();
    assert_eq!(n, 0);
    let s2 = staging.get(&TaskId::parse("s-2").unwrap()).await.unwrap();
    assert_eq!(s2.status, TaskStatus::Failed);
    assert!(prod.check_columns().await.unwrap().is_empty());
    assert!(
        prod.check_values(now - TimeDelta::days(1))
            .await
            .unwrap()
            .is_empty()
    );
}
