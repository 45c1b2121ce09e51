//! The alert window counted incrementally (`window_counts`) against the plain count, on
//! PostgreSQL, over a random history of what FlowEngine does to tasks: two Deployments sharing
//! one table by an `environment` filter, finishes committed late or stamped by a clock ahead,
//! retries that keep or clear the finish time, give-ups.

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::TaskStore;
use flowfail_pg::{PgTaskStore, TaskFilter, TaskTable};

use crate::support::fresh_schema;

/// xorshift64*, fixed seed: the same history every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[tokio::test]
async fn the_incremental_window_count_equals_the_plain_count_at_every_poll() {
    let Some((pool, schema)) = fresh_schema(module_path!(), "ff_test_window", 2).await else {
        return;
    };
    let store = |env: &str| {
        let mut t = TaskTable::in_schema(schema.clone());
        t.filter = Some(TaskFilter::new("environment", env));
        // Every window tallied, however small.
        PgTaskStore::new(pool.clone(), &t)
            .unwrap()
            .tally_window_above(0)
    };
    let stores = [store("prod"), store("staging")];
    stores[0].migrate().await.unwrap();
    let client = pool.get().await.unwrap();
    // Nanoseconds that PostgreSQL does not keep: the tally must compare as PostgreSQL does.
    let mut now = DateTime::<Utc>::from_timestamp(1_800_000_000, 123_456_789).unwrap();
    let window = TimeDelta::seconds(300);
    // (id, environment, status) of every task, to pick the next one to change.
    let mut tasks: Vec<(String, &str, &str)> = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Tasks retried with their finish time cleared: not failed without a time afterwards (a
    // documented limit of the tally).
    let mut cleared = std::collections::HashSet::new();
    let (mut polls, mut max_failed) = (0, 0);
    for step in 0..1500 {
        let env = ["prod", "staging"][rng.below(2) as usize];
        let pick = |tasks: &[(String, &str, &str)], st: &str, r: u64| {
            let m: Vec<usize> = (0..tasks.len())
                .filter(|k| tasks[*k].1 == env && tasks[*k].2 == st)
                .collect();
            (!m.is_empty()).then(|| m[r as usize % m.len()])
        };
        let r = rng.below(1 << 20);
        let sql = match rng.below(13) {
            0..=2 => {
                let id = format!("t-{step}");
                tasks.push((id.clone(), env, "pending"));
                Some(format!(
                    "INSERT INTO {schema}.tasks (task_id, flow_type, status, created_at, environment)
                     VALUES ('{id}', 'plan', 'pending', $1, '{env}')"
                ))
            }
            3..=4 => pick(&tasks, "pending", r).map(|k| {
                tasks[k].2 = "running";
                format!("UPDATE {schema}.tasks SET status = 'running' WHERE task_id = '{}'", tasks[k].0)
            }),
            5..=7 => pick(&tasks, "running", r).map(|k| {
                let st = if r.is_multiple_of(3) { "succeeded" } else { "failed" };
                tasks[k].2 = st;
                // Committed up to 59 s after the finish time it writes, or with a finish time
                // up to 20 s ahead (a clock ahead of flowfail's).
                format!(
                    "UPDATE {schema}.tasks SET status = '{st}', finished_at = greatest(created_at, $1::timestamptz - interval '{} seconds') WHERE task_id = '{}'",
                    (r % 80) as i64 - 20,
                    tasks[k].0
                )
            }),
            8 => pick(&tasks, "failed", r).map(|k| {
                tasks[k].2 = "pending";
                let fin = if r.is_multiple_of(2) { "finished_at" } else { "NULL" };
                if fin == "NULL" {
                    cleared.insert(tasks[k].0.clone());
                }
                format!("UPDATE {schema}.tasks SET status = 'pending', finished_at = {fin}, attempts = attempts + 1 WHERE task_id = '{}'", tasks[k].0)
            }),
            9 => pick(&tasks, "failed", r).map(|k| {
                tasks[k].2 = "failed_final";
                format!("UPDATE {schema}.tasks SET status = 'failed_final' WHERE task_id = '{}'", tasks[k].0)
            }),
            10 => {
                // Gaps between polls up to 80 s: longer than the lookback.
                now += TimeDelta::seconds(1 + rng.below(80) as i64);
                None
            }
            11 if r.is_multiple_of(2) => pick(&tasks, "running", r)
                .filter(|k| !cleared.contains(&tasks[*k].0))
                .map(|k| {
                // Failed without a finish time: it counts by its creation time.
                tasks[k].2 = "failed";
                format!("UPDATE {schema}.tasks SET status = 'failed' WHERE task_id = '{}'", tasks[k].0)
            }),
            _ => Some(String::new()),
        };
        if let Some(sql) = sql
            && !sql.is_empty()
        {
            let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] =
                if sql.contains("$1") { &[&now] } else { &[] };
            client.execute(&sql, params).await.unwrap();
            continue;
        }
        // A poll of both Deployments.
        polls += 1;
        let (since, until) = (now - window, now + TimeDelta::milliseconds(1));
        for s in &stores {
            let kept = s.window_counts(since, until).await.unwrap();
            let plain = s.counts(since, until).await.unwrap();
            assert_eq!(
                (
                    kept.succeeded,
                    kept.failed,
                    kept.in_flight,
                    kept.unknown_status
                ),
                (
                    plain.succeeded,
                    plain.failed,
                    plain.in_flight,
                    plain.unknown_status
                ),
                "poll {polls} at step {step}"
            );
            max_failed = max_failed.max(plain.failed);
        }
    }
    assert!(polls > 100, "{polls} polls");
    assert!(
        max_failed > 10,
        "the window held at most {max_failed} failures"
    );
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
