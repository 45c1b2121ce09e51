//! flowfail-pg against a real PostgreSQL server (`FLOWFAIL_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test works in a fresh schema. Without a
//! server the tests skip with one line on stderr (`skipped N tests in pg: no PostgreSQL at URL
//! …`), unless `FLOWFAIL_PG_REQUIRED=1` (CI), where they fail.

use chrono::{TimeDelta, Utc};
use flowfail_core::conformance;
use flowfail_core::{
    ErrorKind, FlowType, IncidentStore, RetryOutcome, RetryRequest, Task, TaskId, TaskStatus,
    TaskStore,
};
use flowfail_pg::{PgIncidentStore, PgTaskStore, TaskColumns, TaskTable, connect};

use crate::support::{fresh_stores, url};

struct Fixture(PgTaskStore);

#[async_trait::async_trait]
impl conformance::TaskFixture for Fixture {
    fn store(&self) -> std::sync::Arc<dyn TaskStore> {
        std::sync::Arc::new(self.0.clone())
    }
    async fn seed(&self, tasks: &[Task], objects: &[(TaskId, serde_json::Value)]) {
        self.0.insert(tasks, objects).await.unwrap();
    }
}

fn failed(n: usize, prefix: &str) -> Vec<Task> {
    let now = Utc::now();
    (0..n)
        .map(|i| {
            Task::new(
                TaskId::parse(&format!("{prefix}-{i}")).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::seconds(i as i64),
            )
            .with_error("Task timed out after 45.00 seconds", None)
        })
        .collect()
}

#[tokio::test]
async fn task_store_passes_the_conformance_suite() {
    let Some((tasks, ..)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    conformance::task_store(&Fixture(tasks)).await;
}

#[tokio::test]
async fn incident_store_passes_the_conformance_suite() {
    let Some((_, ledger, ..)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    conformance::incident_store(&ledger).await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_concurrently() {
    let Some((tasks, ledger, schema, pool)) = fresh_stores(module_path!(), "ff_test", 8).await
    else {
        return;
    };
    tasks.migrate().await.unwrap();
    ledger.migrate().await.unwrap();
    let other = PgIncidentStore::new(pool.clone(), Some(&schema)).unwrap();
    let (a, b) = tokio::join!(ledger.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    let c = pool.get().await.unwrap();
    // Each version once: 1 (incidents, timeline), 2 (pause flag, approvals), 3 (the index of
    // closed incidents by scope, for `latest_closed`), 4 (the index for `list`, denials).
    let versions: Vec<i32> = c
        .query(
            &format!("SELECT version FROM {schema}.flowfail_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retry_scheduling_applies_each_retry_once() {
    let Some((tasks, _, schema, _)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let all = failed(300, "r");
    tasks.insert(&all, &[]).await.unwrap();
    let reqs: Vec<RetryRequest> = all
        .iter()
        .map(|t| RetryRequest::new(t.task_id.clone(), 0, Utc::now()))
        .collect();
    let other =
        PgTaskStore::new(connect(&url(), 2).unwrap(), &TaskTable::in_schema(schema)).unwrap();
    let (ra, rb) = tokio::join!(tasks.schedule_retries(&reqs), other.schedule_retries(&reqs));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    for (a, b) in ra.iter().zip(&rb) {
        let scheduled = [a, b]
            .iter()
            .filter(|o| matches!(o, RetryOutcome::Scheduled { .. }))
            .count();
        assert_eq!(scheduled, 1, "{a:?} / {b:?}");
    }
    for t in &all {
        assert_eq!(tasks.get(&t.task_id).await.unwrap().attempts, 1);
    }
}

#[tokio::test]
async fn a_stale_epoch_is_rejected_across_stores() {
    let Some((_, ledger, schema, pool)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let other = PgIncidentStore::new(pool, Some(&schema)).unwrap();
    let now = Utc::now();
    ledger
        .open("flowengine", "inc-1", now, &serde_json::json!({}))
        .await
        .unwrap();
    let old = ledger.claim("inc-1").await.unwrap();
    let new = other.claim("inc-1").await.unwrap();
    assert!(new > old);
    for r in [
        ledger
            .save_state("inc-1", old, &serde_json::json!({"x": 1}))
            .await
            .map(|_| ()),
        ledger
            .reserve_effect("inc-1", old, "rollback")
            .await
            .map(|_| ()),
        ledger
            .append(
                "inc-1",
                old,
                &[flowfail_core::TimelineEntry::new(
                    now,
                    "x",
                    serde_json::json!(1),
                )],
            )
            .await,
        ledger
            .close("inc-1", old, now, &serde_json::json!({}))
            .await,
    ] {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Conflict);
    }
    assert!(
        other
            .reserve_effect("inc-1", new, "rollback")
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .reserve_effect("inc-1", new, "rollback")
            .await
            .unwrap(),
        "one rollback per incident"
    );
}

#[tokio::test]
async fn hostile_ids_and_identifiers_never_reach_sql_text() {
    let Some((tasks, _, schema, pool)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    // Identifiers come only from configuration, and are validated.
    for bad in ["tasks; DROP TABLE x", "t\"x", "", "a b", "x--"] {
        let mut t = TaskTable::in_schema(schema.clone());
        t.table = bad.into();
        assert_eq!(
            PgTaskStore::new(pool.clone(), &t).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
    assert!(PgIncidentStore::new(pool.clone(), Some("x'; --")).is_err());
    // A hostile id written by someone else into the table is read as data and skipped.
    let c = pool.get().await.unwrap();
    let hostile = "x'); DROP TABLE tasks; --";
    c.execute(
        &format!("INSERT INTO {schema}.tasks (task_id, flow_type, status, created_at) VALUES ($1, 'plan', 'failed', now())"),
        &[&hostile],
    )
    .await
    .unwrap();
    tasks.insert(&failed(2, "ok"), &[]).await.unwrap();
    let got = tasks.recent_failed(10).await.unwrap();
    assert_eq!(got.len(), 2, "the invalid id is skipped, the rest read");
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {schema}.tasks"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "nothing dropped");
    // Ids that parse are only ever bound parameters: a quote-free but odd id round-trips.
    let odd = TaskId::parse("a--b_c").unwrap();
    tasks
        .insert(
            &[Task::new(
                odd.clone(),
                FlowType::Docs,
                TaskStatus::Failed,
                Utc::now(),
            )],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(tasks.get(&odd).await.unwrap().task_id, odd);
}

#[tokio::test]
async fn configurable_table_and_column_names() {
    let Some((_, _, schema, pool)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let mut cols = TaskColumns::default();
    cols.task_id = "id".into();
    cols.status = "state".into();
    cols.attempts = "retries".into();
    let mut t = TaskTable::in_schema(schema.clone());
    t.table = "flow_tasks".into();
    t.columns = cols;
    let s = PgTaskStore::new(pool, &t).unwrap();
    s.migrate().await.unwrap();
    s.insert(&failed(3, "k"), &[]).await.unwrap();
    assert_eq!(s.recent_failed(10).await.unwrap().len(), 3);
    let out = s
        .schedule_retries(&[RetryRequest::new(
            TaskId::parse("k-0").unwrap(),
            0,
            Utc::now(),
        )])
        .await
        .unwrap();
    assert_eq!(out[0], RetryOutcome::Scheduled { attempts: 1 });
}

#[tokio::test]
async fn a_column_of_an_unexpected_type_is_an_error_not_a_panic() {
    let Some((tasks, ledger, schema, pool)) = fresh_stores(module_path!(), "ff_test", 8).await
    else {
        return;
    };
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER TABLE {schema}.tasks ALTER COLUMN attempts TYPE BIGINT;
             ALTER TABLE {schema}.flowfail_incidents
               ALTER COLUMN effects DROP DEFAULT,
               ALTER COLUMN effects TYPE TEXT USING array_to_string(effects, ',');"
        ))
        .await
        .unwrap();
    let pending = Task::new(
        TaskId::parse("p-0").unwrap(),
        FlowType::Impl,
        TaskStatus::Pending,
        Utc::now(),
    );
    tasks.insert(&[pending], &[]).await.unwrap();
    // Not retryable: the task's current status and attempts are read to say why.
    let req = RetryRequest::new(TaskId::parse("p-0").unwrap(), 0, Utc::now());
    let e = tasks.schedule_retries(&[req]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert!(!e.is_transient(), "{e}");
    let e = ledger
        .open("scope", "inc-1", Utc::now(), &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert!(!e.is_transient(), "{e}");
}

#[tokio::test]
async fn batched_retries_scale_to_ten_thousand_tasks() {
    let Some((tasks, ..)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let all = failed(10_000, "b");
    tasks.insert(&all, &[]).await.unwrap();
    let mut reqs: Vec<RetryRequest> = all
        .iter()
        .map(|t| RetryRequest::new(t.task_id.clone(), 0, Utc::now()))
        .collect();
    reqs.push(RetryRequest::new(
        TaskId::parse("b-0").unwrap(),
        0,
        Utc::now(),
    )); // duplicate in one batch
    let out = tasks.schedule_retries(&reqs).await.unwrap();
    assert_eq!(out.len(), 10_001);
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, RetryOutcome::Scheduled { attempts: 1 }))
            .count(),
        10_000
    );
    assert!(
        matches!(out[10_000], RetryOutcome::Conflict { .. }),
        "the duplicate does not apply twice"
    );
    let c = tasks
        .counts(Utc::now() - TimeDelta::hours(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(c.in_flight, 10_000);
    // The row-by-row path agrees.
    let again = tasks.schedule_retries_row_by_row(&reqs[..3]).await.unwrap();
    assert!(
        again.iter().all(|o| *o
            == RetryOutcome::Conflict {
                current_attempts: 1
            }),
        "{again:?}"
    );
}

#[tokio::test]
async fn counts_follow_the_window_and_finish_times() {
    let Some((tasks, ..)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let now = Utc::now();
    let mut t = Vec::new();
    for (i, (st, mins)) in [
        (TaskStatus::Succeeded, 5),
        (TaskStatus::Failed, 10),
        (TaskStatus::FailedFinal, 20),
        (TaskStatus::Succeeded, 90),
        (TaskStatus::Running, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut task = Task::new(
            TaskId::parse(&format!("w-{i}")).unwrap(),
            FlowType::Plan,
            st,
            now - TimeDelta::hours(3),
        );
        task.finished_at = Some(now - TimeDelta::minutes(mins));
        t.push(task);
    }
    tasks.insert(&t, &[]).await.unwrap();
    let c = tasks.counts(now - TimeDelta::hours(1), now).await.unwrap();
    assert_eq!((c.succeeded, c.failed, c.in_flight), (1, 2, 1));
}

/// A TCP proxy that forwards the client's bytes and cuts the connection after the server has
/// sent `limit` bytes.
async fn cutting_proxy(limit: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target: tokio_postgres::Config = url().parse().unwrap();
    let host = match &target.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = target.get_ports().first().copied().unwrap_or(5432);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut server = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .unwrap();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || sent + n > limit {
                            break;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    let db = target.get_dbname().unwrap_or("postgres").to_owned();
    let user = target.get_user().unwrap_or("postgres").to_owned();
    format!("postgres://{user}@{addr}/{db}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_read_is_an_error_not_a_short_list() {
    let Some((tasks, _, schema, _)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let mut many = failed(5_000, "d");
    for t in &mut many {
        t.error_message = Some("x".repeat(200));
    }
    tasks.insert(&many, &[]).await.unwrap();
    // Enough for the startup and the first rows, not for 5,000 rows of 200+ bytes.
    let proxy = cutting_proxy(64 * 1024).await;
    let cut = PgTaskStore::new(connect(&proxy, 1).unwrap(), &TaskTable::in_schema(schema)).unwrap();
    let r = cut.recent_failed(5_000).await;
    let e = r.expect_err("a cut connection must not return a partial list");
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn server_errors_keep_the_servers_words_sqlstate_and_hint() {
    let Some((tasks, _, schema, pool)) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let c = pool.get().await.unwrap();
    let id = TaskId::parse("t-1").unwrap();
    c.batch_execute(&format!(
        "ALTER TABLE {schema}.tasks RENAME COLUMN attempts TO attempt"
    ))
    .await
    .unwrap();
    let e = tasks.get(&id).await.unwrap_err();
    assert_eq!(
        e.message(),
        "column \"attempts\" does not exist (SQLSTATE 42703)"
    );
    assert_eq!(flowfail_pg::sql_state(&e), Some("42703"));
    // The cause is the server's own error, with its hint.
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(
        cause.contains("HINT: Perhaps you meant to reference the column \"tasks.attempt\"."),
        "{cause}"
    );
    c.batch_execute(&format!("DROP TABLE {schema}.tasks"))
        .await
        .unwrap();
    let e = tasks.get(&id).await.unwrap_err();
    assert_eq!(
        e.message(),
        format!("relation \"{schema}.tasks\" does not exist (SQLSTATE 42P01)")
    );
    assert_eq!(flowfail_pg::sql_state(&e), Some("42P01"));
    assert_eq!(e.kind(), ErrorKind::Unexpected);
    assert!(!e.is_transient());
}

#[tokio::test]
async fn a_stopped_server_is_a_transient_error_down_to_the_os() {
    // A port nothing listens on answers like a stopped server: the OS refuses the connection.
    let Some(_) = fresh_stores(module_path!(), "ff_test", 8).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"), 1).unwrap();
    let tasks = PgTaskStore::new(pool, &TaskTable::default()).unwrap();
    let e = tasks.get(&TaskId::parse("t-1").unwrap()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_transient());
    let os = std::iter::successors(std::error::Error::source(&e), |c| c.source())
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .expect("the chain reaches the OS error");
    assert_eq!(os.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// `check_columns` reads the table's columns, read-only: nothing to say about the table
/// flowfail creates; a column gone or of another type is named with what was expected.
#[tokio::test]
async fn check_columns_names_what_is_missing_or_of_another_type() {
    let Some((tasks, _ledger, schema, pool)) =
        crate::support::fresh_stores(module_path!(), "ff_test_columns", 2).await
    else {
        return;
    };
    assert_eq!(tasks.check_columns().await.unwrap(), Vec::<String>::new());
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER TABLE {schema}.tasks DROP COLUMN claimed_by;
             ALTER TABLE {schema}.tasks ALTER COLUMN http_status TYPE text USING http_status::text"
        ))
        .await
        .unwrap();
    assert_eq!(
        tasks.check_columns().await.unwrap(),
        [
            "column \"http_status\" (http_status) is text, expected integer or smallint or bigint",
            "column \"claimed_by\" (claimed_by) is missing",
        ]
    );
    let elsewhere = flowfail_pg::PgTaskStore::new(
        pool.clone(),
        &flowfail_pg::TaskTable::in_schema(format!("{schema}_none")),
    )
    .unwrap();
    assert_eq!(
        elsewhere.check_columns().await.unwrap(),
        ["table \"tasks\" not found"]
    );
}

/// `check_values` names the status and flow-type values of recent tasks that flowfail does not
/// read, with their counts; a mapped flow type is read.
#[tokio::test]
async fn check_values_names_the_statuses_and_flow_types_flowfail_does_not_read() {
    let Some((pool, schema)) =
        crate::support::fresh_schema(module_path!(), "ff_test_values", 2).await
    else {
        return;
    };
    let mut table = flowfail_pg::TaskTable::in_schema(schema.clone());
    table
        .flow_types
        .insert("implementation".to_owned(), flowfail_core::FlowType::Impl);
    let tasks = flowfail_pg::PgTaskStore::new(pool.clone(), &table).unwrap();
    tasks.migrate().await.unwrap();
    let since = chrono::Utc::now() - chrono::TimeDelta::days(1);
    assert_eq!(
        tasks.check_values(since).await.unwrap(),
        Vec::<String>::new()
    );
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO {schema}.tasks (task_id, flow_type, status, created_at, attempts) VALUES
               ('a', 'plan', 'error', now(), 0), ('b', 'plan', 'error', now(), 0),
               ('c', 'mystery', 'failed', now(), 0), ('d', 'implementation', 'failed', now(), 0)"
        ))
        .await
        .unwrap();
    assert_eq!(
        tasks.check_values(since).await.unwrap(),
        [
            "status values flowfail does not read: \"error\" (2 rows) — not counted by the alert nor triaged: map them under [postgres.statuses]",
            "flow type values flowfail does not read: \"mystery\" (1 rows) — counted by the alert, left out of triage: map them under [postgres.flow_types]",
        ]
    );
}

/// A Deployment's scope changed (from its name alone to `NAMESPACE.DEPLOYMENT`): its open
/// incident, closed ones, shadow incidents and pause carry over, once; an open incident already
/// under the new scope stays, and so does the legacy one beside it.
#[tokio::test]
async fn adopt_scope_carries_incidents_and_the_pause_over_once() {
    let Some((_, ledger, _schema, _pool)) = fresh_stores(module_path!(), "ff_test", 2).await else {
        return;
    };
    let now = Utc::now();
    let json = serde_json::json!({});
    ledger
        .open("flowengine", "old-closed", now - TimeDelta::hours(2), &json)
        .await
        .unwrap();
    let e = ledger.claim("old-closed").await.unwrap();
    ledger
        .close("old-closed", e, now - TimeDelta::hours(1), &json)
        .await
        .unwrap();
    ledger
        .open("flowengine", "old-open", now, &json)
        .await
        .unwrap();
    ledger
        .open("flowengine:shadow", "old-shadow", now, &json)
        .await
        .unwrap();
    let pause = flowfail_core::operator::Pause::new("freeze", "alice", now);
    ledger.set_pause("flowengine", Some(&pause)).await.unwrap();

    assert_eq!(
        ledger
            .adopt_scope("flowengine", "default.flowengine")
            .await
            .unwrap(),
        4
    );
    let open = ledger
        .find_open("default.flowengine")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.key, "old-open");
    assert_eq!(
        ledger
            .latest_closed("default.flowengine")
            .await
            .unwrap()
            .unwrap()
            .key,
        "old-closed"
    );
    assert_eq!(
        ledger
            .find_open("default.flowengine:shadow")
            .await
            .unwrap()
            .unwrap()
            .key,
        "old-shadow"
    );
    assert_eq!(
        ledger
            .pause_flag("default.flowengine")
            .await
            .unwrap()
            .map(|p| p.by),
        Some("alice".to_owned())
    );
    assert!(ledger.find_open("flowengine").await.unwrap().is_none());
    assert!(ledger.pause_flag("flowengine").await.unwrap().is_none());
    assert_eq!(
        ledger
            .adopt_scope("flowengine", "default.flowengine")
            .await
            .unwrap(),
        0
    );

    // Where the new scope already has an open incident, the legacy open one stays put.
    ledger
        .open("staging-old", "legacy-open", now, &json)
        .await
        .unwrap();
    ledger
        .open("staging.flowengine", "new-open", now, &json)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .adopt_scope("staging-old", "staging.flowengine")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ledger.find_open("staging-old").await.unwrap().unwrap().key,
        "legacy-open"
    );
}
