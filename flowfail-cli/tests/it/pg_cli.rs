//! `flowfail triage` and `flowfail retry` against a real PostgreSQL TaskDB: what they do, and
//! how PostgreSQL's errors reach the terminal (message, SQLSTATE, hint, advice, exit code).

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskTable, connect};
use serde_json::Value;

use crate::support::{flowfail_cmd, fresh_schema};

fn url() -> String {
    flowfail_testkit::pg_url()
}

async fn seeded() -> Option<(PgTaskStore, String)> {
    let (pool, schema) = fresh_schema(module_path!(), "ff_cli", 2).await?;
    let s = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
    s.migrate().await.unwrap();
    let now = Utc::now();
    let mut tasks: Vec<Task> = (0..100)
        .map(|i| {
            Task::new(
                TaskId::parse(&format!("ok-{i}")).unwrap(),
                FlowType::Plan,
                TaskStatus::Succeeded,
                now - TimeDelta::minutes(5),
            )
        })
        .collect();
    tasks.push(
        Task::new(
            TaskId::parse("t-1").unwrap(),
            FlowType::Impl,
            TaskStatus::Failed,
            now - TimeDelta::minutes(1),
        )
        .with_error("Task timed out after 45.02 seconds", None),
    );
    tasks.push(
        Task::new(
            TaskId::parse("t-2").unwrap(),
            FlowType::Review,
            TaskStatus::Failed,
            now - TimeDelta::minutes(2),
        )
        .with_error("missing field `flow_type` at line 1 column 88", None),
    );
    tasks.push(
        Task::new(
            TaskId::parse("t-3").unwrap(),
            FlowType::Docs,
            TaskStatus::Failed,
            now - TimeDelta::minutes(3),
        )
        .with_error("overloaded", Some(529))
        .with_attempts(3),
    );
    s.insert(&tasks, &[]).await.unwrap();
    Some((s, schema))
}

fn flowfail(args: &[&str]) -> (i32, Value) {
    let (code, v, _) = flowfail_at(args, &url());
    (code, v)
}

/// Runs the binary with `FLOWFAIL_PG_URL=pg`: exit code, stdout as JSON, stderr.
fn flowfail_at(args: &[&str], pg: &str) -> (i32, Value, String) {
    let out = flowfail_cmd()
        .args(args)
        .env("FLOWFAIL_PG_URL", pg)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code,
        101,
        "a panic: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, v, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn triage_lists_failed_tasks_newest_first_classified() {
    let Some((_, schema)) = seeded().await else {
        return;
    };
    let (code, v) = flowfail(&["triage", "--schema", &schema, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(v["alert"]["firing"], true, "3 of 103 failed");
    let ids: Vec<&str> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t-1", "t-2", "t-3"]);
    assert_eq!(v["failed"][0]["kind"], "timeout");
    assert_eq!(v["failed"][1]["kind"], "validation");
    assert_eq!(v["failed"][2]["kind"], "model_api_5xx");
    assert_eq!(v["classification"]["timeout"], 1);
}

#[tokio::test]
async fn retry_schedules_once_and_refuses_what_the_runbook_forbids() {
    let Some((store, schema)) = seeded().await else {
        return;
    };
    let (code, v) = flowfail(&[
        "retry",
        "--task-id",
        "t-1",
        "--max-attempts",
        "3",
        "--schema",
        &schema,
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["result"]["outcome"], "scheduled");
    assert_eq!(
        store
            .get(&TaskId::parse("t-1").unwrap())
            .await
            .unwrap()
            .attempts,
        1
    );
    let (code, v) = flowfail(&["retry", "--task-id", "t-1", "--schema", &schema]);
    assert_eq!(code, 1, "not failed any more: {v}");
    let (code, v) = flowfail(&["retry", "--task-id", "t-2", "--schema", &schema]);
    assert_eq!(code, 1);
    assert!(v["reason"].as_str().unwrap().contains("validation"), "{v}");
    let (code, v) = flowfail(&[
        "retry",
        "--task-id",
        "t-3",
        "--max-attempts",
        "3",
        "--schema",
        &schema,
    ]);
    assert_eq!(code, 1);
    assert!(v["reason"].as_str().unwrap().contains("exhausted"), "{v}");
    let (code, _) = flowfail(&["retry", "--task-id", "../t-1", "--schema", &schema]);
    assert_ne!(code, 0);
}

/// `url` with the search path set to `schema` only, as a session whose TaskDB table lives
/// elsewhere sees it.
fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

#[tokio::test]
async fn postgres_errors_reach_the_terminal_in_the_servers_words_with_advice() {
    let Some((store, schema)) = seeded().await else {
        return;
    };
    let pool = connect(&url(), 1).unwrap();
    let c = pool.get().await.unwrap();
    // Forgot --schema: the table is not on the search path (here: an empty schema).
    let empty = format!("{schema}_empty");
    c.batch_execute(&format!("CREATE SCHEMA {empty}"))
        .await
        .unwrap();
    let (code, v, err) = flowfail_at(
        &["retry", "--task-id", "t-old", "--max-attempts", "3"],
        &with_search_path(&url(), &empty),
    );
    assert_eq!((code, v), (3, Value::Null), "{err}");
    let first = err.lines().next().unwrap();
    assert_eq!(
        first,
        "flowfail: unexpected in task.get (postgres): relation \"tasks\" does not exist (SQLSTATE 42P01)"
    );
    assert!(
        err.contains("advice: the TaskDB table is not on the search path: pass --schema SCHEMA"),
        "{err}"
    );
    // The same for triage, the other command on the TaskDB.
    let (code, _, err) = flowfail_at(&["triage"], &with_search_path(&url(), &empty));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("(SQLSTATE 42P01)") && err.contains("--schema SCHEMA"),
        "{err}"
    );

    // A table mapped with different column names: PostgreSQL's hint reaches the terminal.
    c.batch_execute(&format!(
        "ALTER TABLE {schema}.tasks RENAME COLUMN attempts TO attempt"
    ))
    .await
    .unwrap();
    let (code, _, err) = flowfail_at(&["retry", "--task-id", "t-1", "--schema", &schema], &url());
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("column \"attempts\" does not exist (SQLSTATE 42703)"),
        "{err}"
    );
    assert!(
        err.contains(
            "caused by: HINT: Perhaps you meant to reference the column \"tasks.attempt\"."
        ),
        "the server's hint: {err}"
    );
    assert!(err.contains("advice: the table lacks a column"), "{err}");

    // The table dropped: the schema given, the table not in it.
    c.batch_execute(&format!("DROP TABLE {schema}.tasks"))
        .await
        .unwrap();
    let (code, _, err) = flowfail_at(&["retry", "--task-id", "t-1", "--schema", &schema], &url());
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with(&format!(
            "flowfail: unexpected in task.get (postgres): relation \"{schema}.tasks\" does not exist (SQLSTATE 42P01)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "advice: there is no such table in schema {schema}: check --schema"
        )),
        "{err}"
    );
    drop(store);
}

#[tokio::test]
async fn a_task_that_is_not_there_is_the_input_found_wanting() {
    let Some((_, schema)) = seeded().await else {
        return;
    };
    let (code, v, err) = flowfail_at(
        &["retry", "--task-id", "t-nowhere", "--schema", &schema],
        &url(),
    );
    assert_eq!((code, v), (1, Value::Null), "{err}");
    assert_eq!(
        err.trim_end(),
        "flowfail: not_found in task.get (postgres): task t-nowhere not found"
    );
}
