//! `flowfail triage` and `flowfail retry` against a real PostgreSQL TaskDB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskTable, connect};
use serde_json::Value;

fn url() -> String {
    std::env::var("FLOWFAIL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn seeded() -> Option<(PgTaskStore, String)> {
    let pool = connect(&url(), 2).unwrap();
    let Ok(c) = pool.get().await else {
        if std::env::var("FLOWFAIL_PG_REQUIRED").is_ok_and(|v| v == "1") {
            panic!(
                "FLOWFAIL_PG_REQUIRED=1 but PostgreSQL is unreachable at {}",
                url()
            );
        }
        eprintln!("skipping: PostgreSQL unreachable");
        return None;
    };
    let schema = format!(
        "ff_cli_{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos()
    );
    c.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
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
    let out = Command::new(env!("CARGO_BIN_EXE_flowfail"))
        .args(args)
        .env("FLOWFAIL_PG_URL", url())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
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
