//! `flowfail retry` asks the responder's own gates (`decide::manual_retry`): with an open
//! incident in the ledger beside the TaskDB, a rate-limited task is refused while the
//! incident's breaker is open, and a 5xx task while flowfail routes around an outage. Against a
//! real PostgreSQL; the assertions read the task's row. The responder's guard applies as well:
//! the operator's pause, and the claim on the open incident.

use chrono::{TimeDelta, Utc};
use flowfail_core::breaker::Breaker;
use flowfail_core::decide::{EnvRecord, IncidentState};
use flowfail_core::operator::Pause;
use flowfail_core::{
    ErrorKind, FlowType, IncidentStore, Policy, Task, TaskId, TaskStatus, TaskStore,
    detect::alert_from_counts,
};
use flowfail_pg::{PgIncidentStore, PgTaskStore, TaskTable};

use crate::support::{flowfail_cmd, fresh_schema};

fn url() -> String {
    flowfail_testkit::pg_url()
}

async fn stores() -> Option<(PgTaskStore, PgIncidentStore, String)> {
    let (pool, schema) = fresh_schema(module_path!(), "ff_cli_gates", 2).await?;
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
    tasks.migrate().await.unwrap();
    let ledger = PgIncidentStore::new(pool, Some(&schema)).unwrap();
    ledger.migrate().await.unwrap();
    let old = Utc::now() - TimeDelta::minutes(10);
    tasks
        .insert(
            &[
                Task::new(TaskId::parse("rl-1").unwrap(), FlowType::Impl, TaskStatus::Failed, old)
                    .with_error(
                        r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
                        Some(429),
                    ),
                Task::new(TaskId::parse("x5-1").unwrap(), FlowType::Plan, TaskStatus::Failed, old)
                    .with_error(
                        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                        Some(529),
                    ),
            ],
            &[],
        )
        .await
        .unwrap();
    Some((tasks, ledger, schema))
}

fn retry(id: &str, schema: &str) -> (Option<i32>, serde_json::Value) {
    let out = flowfail_cmd()
        .args([
            "retry",
            "--task-id",
            id,
            "--max-attempts",
            "3",
            "--schema",
            schema,
        ])
        .env("FLOWFAIL_PG_URL", url())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v)
}

#[tokio::test]
async fn retry_honours_the_open_incidents_breaker_and_outage_hold() {
    let Some((tasks, ledger, schema)) = stores().await else {
        return;
    };
    let policy = Policy::default();
    let now = Utc::now();
    let mut state = IncidentState::open(
        format!("{}-gates", policy.deployment),
        now,
        alert_from_counts(90, 10, false, &policy),
        Default::default(),
        None,
    );
    state.breaker = Breaker::open(now, 600);
    state.env_changes.insert(
        policy.fallback_env.clone(),
        serde_json::from_value::<EnvRecord>(serde_json::json!({
            "value": "gpt-4o", "previous": null, "at": now
        }))
        .unwrap(),
    );
    let json = serde_json::to_value(&state).unwrap();
    ledger
        .open(&policy.deployment, &state.key, now, &json)
        .await
        .unwrap();

    let (code, v) = retry("rl-1", &schema);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["outcome"], "refused");
    assert!(v["reason"].as_str().unwrap().contains("breaker"), "{v}");
    let (code, v) = retry("x5-1", &schema);
    assert_eq!(code, Some(1), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("outage"), "{v}");
    // Nothing reached the TaskDB.
    for id in ["rl-1", "x5-1"] {
        let t = tasks.get(&TaskId::parse(id).unwrap()).await.unwrap();
        assert_eq!((t.status, t.attempts), (TaskStatus::Failed, 0), "{id}");
    }

    // The incident closes: the same retries go through, once each.
    let epoch = ledger.claim(&state.key).await.unwrap();
    ledger
        .close(&state.key, epoch, now, &serde_json::json!({}))
        .await
        .unwrap();
    for id in ["rl-1", "x5-1"] {
        let (code, v) = retry(id, &schema);
        assert_eq!(code, Some(0), "{id}: {v}");
        let t = tasks.get(&TaskId::parse(id).unwrap()).await.unwrap();
        assert_eq!((t.status, t.attempts), (TaskStatus::Pending, 1), "{id}");
    }
}

/// The responder's guard applies too: an operator's pause refuses the retry (nothing written),
/// and a retry made during an open incident claims it, so a responder's pass holding the
/// earlier claim can no longer write.
#[tokio::test]
async fn retry_passes_the_guard_the_pause_and_the_claim() {
    let Some((tasks, ledger, schema)) = stores().await else {
        return;
    };
    let policy = Policy::default();
    let now = Utc::now();
    let state = IncidentState::open(
        format!("{}-guard", policy.deployment),
        now,
        alert_from_counts(90, 10, false, &policy),
        Default::default(),
        None,
    );
    let json = serde_json::to_value(&state).unwrap();
    ledger
        .open(&policy.deployment, &state.key, now, &json)
        .await
        .unwrap();
    let id = TaskId::parse("x5-1").unwrap();

    let pause = Pause::new("database migration", "sre-on-call", now);
    ledger
        .set_pause(&policy.deployment, Some(&pause))
        .await
        .unwrap();
    let (code, v) = retry("x5-1", &schema);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["outcome"], "paused", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("database migration"),
        "{v}"
    );
    let t = tasks.get(&id).await.unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Failed, 0));

    ledger.set_pause(&policy.deployment, None).await.unwrap();
    let responders = ledger.claim(&state.key).await.unwrap();
    let (code, v) = retry("x5-1", &schema);
    assert_eq!(code, Some(0), "{v}");
    let t = tasks.get(&id).await.unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Pending, 1));
    let e = ledger
        .check_epoch(&state.key, responders)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
}
