//! P8 in `docs/BENCHMARKS.md`: the live pass on PostgreSQL at scale. A dedicated schema is
//! seeded (in SQL, `generate_series`) with 1,000,000 task rows: 100,000 failed in the alert
//! window (the last hour), 900,000 over the 30 days before (mostly succeeded, 2 % failed long
//! ago, a few hundred still running). Then, each step repeated N times (after one warm-up):
//!
//! - the supervisor's idle check, `TaskStore::counts(now - 1h, now)` on `PgTaskStore`, right
//!   after the failures arrived (the history vacuumed, the new rows' pages not yet all-visible)
//!   and after `VACUUM`;
//! - the same idle check as the supervisor makes it, `TaskStore::window_counts`: polls 5 s
//!   apart while failures keep arriving (140 every 5 s, the incident hour's rate, and 5 of
//!   the window's failures retried and failing again), each checked against the plain count
//!   outside the timing; the first poll (a plain count), the full reads (the tally's first, then
//!   every 61st) and the incremental ones are
//!   shown apart;
//! - `recent_failed(triage_limit)`;
//! - one full `Responder::pass()` with `PgTaskStore` + `PgIncidentStore` and the in-memory
//!   backends for the other ports (it opens the incident and schedules the retry batch; the
//!   ledger and the retried rows are reset between repetitions, outside the timing);
//! - the idle check again in the common case: the 100,000 failures removed and a normal hour
//!   (3,000 tasks, 0.4 % failed) in the window.
//!
//! It prints median and p95 of each step, the `EXPLAIN (ANALYZE, BUFFERS)` plans of the two
//! queries, the process's peak RSS, and drops the schema.
//!
//! ```bash
//! FLOWFAIL_PG_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p flowfail-pg --example live_pass_scale -- 20
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::memory::World;
use flowfail_core::ports::Ports;
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, Policy, Quota, QuotaUsage, TaskStore, VendorHealth, VendorStatus};
use flowfail_pg::{PgIncidentStore, PgTaskStore, TaskTable, connect};

#[path = "../../examples/support/mod.rs"]
mod support;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The `counts` statement of `flowfail-pg/src/tasks.rs` for the default table, for EXPLAIN.
const COUNTS_SQL: &str = "SELECT w.succeeded, w.failed, f.in_flight FROM
   (SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status IN ('failed', 'failed_final')) AS failed
      FROM tasks
     WHERE coalesce(finished_at, created_at) >= $1 AND coalesce(finished_at, created_at) < $2) w,
   (SELECT count(*) AS in_flight FROM tasks WHERE status IN ('pending', 'running')) f";

/// The `window_counts` read of `flowfail-pg/src/tasks.rs` for the default table, for EXPLAIN.
const WINDOW_READ_SQL: &str = "SELECT task_id, coalesce(finished_at, created_at),
        CASE WHEN status = 'succeeded' THEN 1 WHEN status IN ('failed', 'failed_final') THEN 2
             WHEN status IN ('pending', 'running') THEN 0 ELSE 3 END::smallint, 0::smallint
   FROM tasks WHERE coalesce(finished_at, created_at) >= $1
 UNION ALL
 SELECT task_id, NULL::timestamptz, 0::smallint, 1::smallint FROM tasks WHERE status IN ('pending', 'running')
";

/// The `recent_failed` statement of `flowfail-pg/src/tasks.rs` for the default table.
const RECENT_FAILED_SQL: &str = "SELECT task_id, flow_type, status, error_message, http_status, \
    created_at, finished_at, attempts FROM tasks WHERE status = 'failed' \
    ORDER BY created_at DESC, task_id LIMIT $1";

/// 900,000 rows over the 30 days before the window: every 50th failed, every 997th failed for
/// good, every 4,500th still running (200 rows).
const SEED_HISTORY: &str = "INSERT INTO tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at)
SELECT 'h-' || lpad(i::text, 7, '0'), (ARRAY['plan','impl','review','docs'])[1 + i % 4],
  CASE WHEN i % 4500 = 7 THEN 'running' WHEN i % 50 = 0 THEN 'failed'
       WHEN i % 997 = 0 THEN 'failed_final' ELSE 'succeeded' END,
  CASE WHEN i % 50 = 0 OR i % 997 = 0 THEN 'HTTP 500 Internal Server Error' END,
  CASE WHEN i % 50 = 0 OR i % 997 = 0 THEN 500 END,
  c, CASE WHEN i % 4500 = 7 THEN NULL ELSE c + interval '30 seconds' END
FROM generate_series(0, 899999) i,
  LATERAL (SELECT $1::timestamptz - interval '62 minutes' - interval '719 hours' * (i / 900000.0) AS c) t";

/// 100,000 failures in the last hour: timeouts, 503s, 500s and connection resets.
const SEED_WINDOW: &str = "INSERT INTO tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at)
SELECT 'w-' || lpad(i::text, 7, '0'), (ARRAY['plan','impl','review','docs'])[1 + i % 4], 'failed',
  (ARRAY['Task timed out after 45.00 seconds', 'HTTP 503 Service Unavailable',
         'HTTP 500 Internal Server Error', 'upstream connect error or disconnect/reset before headers'])[1 + i % 4],
  (ARRAY[NULL, 503, 500, NULL])[1 + i % 4],
  c, c + interval '20 seconds'
FROM generate_series(0, 99999) i,
  LATERAL (SELECT $1::timestamptz - interval '40 seconds' - interval '58 minutes' * (i / 100000.0) AS c) t";

/// A normal hour: 3,000 tasks, every 250th failed (0.4 %, under the 1 % alert).
const SEED_QUIET: &str = "INSERT INTO tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at)
SELECT 'q-' || lpad(i::text, 7, '0'), 'impl', CASE WHEN i % 250 = 0 THEN 'failed' ELSE 'succeeded' END,
  CASE WHEN i % 250 = 0 THEN 'HTTP 500 Internal Server Error' END, CASE WHEN i % 250 = 0 THEN 500 END,
  c, c + interval '20 seconds'
FROM generate_series(0, 2999) i,
  LATERAL (SELECT $1::timestamptz - interval '40 seconds' - interval '58 minutes' * (i / 3000.0) AS c) t";

fn main() -> Res<()> {
    let reps: usize = support::number_arg(20)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(reps.max(1)))
}

/// Median and p95 (nearest rank) of `d`, in milliseconds.
fn summary(name: &str, mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |i: usize| d[i.min(d.len() - 1)].as_secs_f64() * 1e3;
    let p95 = (d.len() * 95).div_ceil(100).max(1) - 1;
    format!(
        "{name}: median {:.2} ms, p95 {:.2} ms, min {:.2} ms, max {:.2} ms ({} runs)",
        ms(d.len() / 2),
        ms(p95),
        ms(0),
        ms(d.len() - 1),
        d.len()
    )
}

async fn time_counts(tasks: &PgTaskStore, now: DateTime<Utc>, reps: usize) -> Res<Vec<Duration>> {
    let since = now - TimeDelta::hours(1);
    let warm = tasks.counts(since, now).await?;
    println!(
        "  counts: succeeded {}, failed {}, in flight {}",
        warm.succeeded, warm.failed, warm.in_flight
    );
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        tasks.counts(since, now).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// 140 failures finishing in `(at - 5 s, at]`, and 5 of the window's older failures retried
/// (back to pending) and failing again now: the incident hour's traffic between two polls.
const SEED_POLL: &str = "INSERT INTO tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at)
SELECT 'p-' || $2::text || '-' || i, 'impl', 'failed', 'Task timed out after 45.00 seconds', NULL,
  $1::timestamptz - interval '50 seconds', $1::timestamptz - interval '5 seconds' * (i / 140.0)
FROM generate_series(0, 139) i";
const RETRY_POLL: &str = "UPDATE tasks SET status = 'failed', attempts = attempts + 1, finished_at = $1::timestamptz
  WHERE task_id IN (SELECT task_id FROM tasks WHERE task_id LIKE 'w-%' AND attempts = 0 ORDER BY task_id LIMIT 5)";

/// The supervisor's idle check as it makes it: `window_counts` every 5 s of simulated time
/// while the failures keep coming; returns the first (whole-window) read, the incremental
/// reads and the full reads among them.
async fn time_window_counts(
    tasks: &PgTaskStore,
    admin: &deadpool_postgres::Object,
    now: DateTime<Utc>,
    polls: usize,
) -> Res<(Duration, Vec<Duration>, Vec<Duration>)> {
    let window = TimeDelta::hours(1);
    let at = |k: usize| now + TimeDelta::seconds(5 * k as i64);
    let t = Instant::now();
    let first = tasks.window_counts(at(0) - window, at(0)).await?;
    let first_read = t.elapsed();
    println!(
        "  window_counts, first poll (a plain count: the window's size is not known yet): succeeded {}, failed {}, in flight {}",
        first.succeeded, first.failed, first.in_flight
    );
    let (mut incremental, mut full) = (Vec::new(), Vec::new());
    for k in 1..=polls {
        admin.execute(SEED_POLL, &[&at(k), &k.to_string()]).await?;
        admin.execute(RETRY_POLL, &[&at(k)]).await?;
        let t = Instant::now();
        let kept = tasks.window_counts(at(k) - window, at(k)).await?;
        let took = t.elapsed();
        let plain = tasks.counts(at(k) - window, at(k)).await?;
        let same = (
            kept.succeeded,
            kept.failed,
            kept.in_flight,
            kept.unknown_status,
        ) == (
            plain.succeeded,
            plain.failed,
            plain.in_flight,
            plain.unknown_status,
        );
        if !same {
            return Err(format!("poll {k}: window_counts {kept:?}, counts {plain:?}").into());
        }
        // Every 61st read is the whole window again (REBUILD_EVERY).
        // The first poll counts the window in full (its size was not known), the second reads
        // it whole into the tally, and every 61st after that is a full read (REBUILD_EVERY).
        if k % 61 == 1 {
            full.push(took)
        } else {
            incremental.push(took)
        }
    }
    let from = at(polls) - TimeDelta::seconds(60);
    println!(
        "  plan of an incremental window_counts read (the last minute and the tasks in flight):"
    );
    // As window_counts reads it: no parallel workers.
    admin
        .batch_execute("SET max_parallel_workers_per_gather = 0")
        .await?;
    for r in admin
        .query(
            &format!("EXPLAIN (ANALYZE, BUFFERS) {WINDOW_READ_SQL}"),
            &[&from],
        )
        .await?
    {
        println!("    {}", r.try_get::<_, &str>(0)?);
    }
    admin
        .batch_execute("RESET max_parallel_workers_per_gather; DELETE FROM tasks WHERE task_id LIKE 'p-%'; UPDATE tasks SET attempts = 0 WHERE task_id LIKE 'w-%'")
        .await?;
    Ok((first_read, incremental, full))
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of `sql` on the table in `schema`, indented.
async fn explain(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Res<String> {
    let c = pool.get().await?;
    let sql = sql.replace("FROM tasks", &format!("FROM {schema}.tasks"));
    let rows = c
        .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), params)
        .await?;
    let mut out = String::new();
    for r in &rows {
        out.push_str("    ");
        out.push_str(r.try_get::<_, &str>(0)?);
        out.push('\n');
    }
    Ok(out)
}

/// One full pass on a fresh responder (PostgreSQL TaskDB and ledger, the rest in memory);
/// returns its wall time and the number of tasks it retried (read back from PostgreSQL).
async fn one_pass(
    tasks: &PgTaskStore,
    ledger: &PgIncidentStore,
    pool: &deadpool_postgres::Pool,
    schema: &str,
) -> Res<(Duration, i64)> {
    let policy = Policy::default();
    let world = World::new(&policy, Clock::system());
    world
        .quota
        .set("anthropic", Quota::Known(QuotaUsage::from_ratio(0.35)));
    world
        .status
        .set("anthropic", VendorStatus::new(VendorHealth::Operational));
    let ports = Ports::builder()
        .logs(Arc::new(world.logs.clone()))
        .tasks(Arc::new(tasks.clone()))
        .bundles(Arc::new(world.bundles.clone()))
        .quota(Arc::new(world.quota.clone()))
        .deployment(Arc::new(world.deployment.clone()))
        .status(Arc::new(world.status.clone()))
        .pager(Arc::new(world.pager.clone()))
        .notifier(Arc::new(world.notifier.clone()))
        .incidents(Arc::new(ledger.clone()))
        .build()?;
    let responder = Responder::builder()
        .ports(ports)
        .policy(policy)
        .clock(Clock::system())
        .name("live-pass-scale")
        .build()?;
    let t = Instant::now();
    responder.pass().await?;
    let elapsed = t.elapsed();
    let c = pool.get().await?;
    let retried: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {schema}.tasks WHERE attempts > 0"),
            &[],
        )
        .await?
        .try_get(0)?;
    // Back to the state before the pass, outside the timing.
    c.batch_execute(&format!(
        "UPDATE {schema}.tasks SET status = 'failed', attempts = 0, retry_not_before = NULL
           WHERE attempts > 0;
         DELETE FROM {schema}.flowfail_incident_timeline;
         DELETE FROM {schema}.flowfail_incidents;"
    ))
    .await?;
    Ok((elapsed, retried))
}

async fn run(reps: usize) -> Res<()> {
    let url = std::env::var("FLOWFAIL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool = connect(&url, 8)?;
    let schema = format!("ff_p8_{}", std::process::id());
    let admin = pool.get().await?;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await?;
    let result = measure(&pool, &admin, &schema, reps).await;
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    result?;
    println!("peak RSS {} KiB", support::peak_rss_kib());
    Ok(())
}

async fn measure(
    pool: &deadpool_postgres::Pool,
    admin: &deadpool_postgres::Object,
    schema: &str,
    reps: usize,
) -> Res<()> {
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema))?;
    let ledger = PgIncidentStore::new(pool.clone(), Some(schema))?;
    tasks.migrate().await?;
    ledger.migrate().await?;
    let now = Utc::now();
    let t = Instant::now();
    admin
        .execute(&format!("SET search_path = {schema}"), &[])
        .await?;
    admin.execute(SEED_HISTORY, &[&now]).await?;
    // The history has been vacuumed long ago; the failures of the last hour have not.
    admin.batch_execute("VACUUM ANALYZE tasks").await?;
    admin.execute(SEED_WINDOW, &[&now]).await?;
    admin.batch_execute("ANALYZE tasks").await?;
    println!(
        "seeded 1,000,000 tasks (100,000 failed in the last hour) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let since = now - TimeDelta::hours(1);
    let explain_counts = |title: &'static str| async move {
        Res::Ok(format!(
            "  plan of counts ({title}):\n{}",
            explain(pool, schema, COUNTS_SQL, &[&since, &now]).await?
        ))
    };

    println!("incident hour, right after the failures arrived (their pages not yet all-visible):");
    println!("{}", explain_counts("before VACUUM").await?);
    let d = time_counts(&tasks, now, reps).await?;
    println!("  {}", summary("idle check counts(now - 1h, now)", d));

    admin.batch_execute("VACUUM ANALYZE tasks").await?;
    println!("incident hour, after VACUUM:");
    println!("{}", explain_counts("after VACUUM").await?);
    let d = time_counts(&tasks, now, reps).await?;
    println!("  {}", summary("idle check counts(now - 1h, now)", d));

    let (first, incremental, full) = time_window_counts(&tasks, admin, now, reps.max(130)).await?;
    println!(
        "  window_counts: first poll {:.2} ms; every read equal to the plain count",
        first.as_secs_f64() * 1e3
    );
    println!(
        "  {}",
        summary("idle check window_counts, incremental", incremental)
    );
    println!(
        "  {}",
        summary(
            "idle check window_counts, full reads (the tally's first, then every 61st)",
            full
        )
    );

    let limit = Policy::default().triage_limit;
    println!(
        "  plan of recent_failed({limit}):\n{}",
        explain(pool, schema, RECENT_FAILED_SQL, &[&(limit as i64)]).await?
    );
    tasks.recent_failed(limit).await?;
    let mut d = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        tasks.recent_failed(limit).await?;
        d.push(t.elapsed());
    }
    println!("  {}", summary(&format!("recent_failed({limit})"), d));

    let (_, retried) = one_pass(&tasks, &ledger, pool, schema).await?;
    let mut d = Vec::with_capacity(reps);
    for _ in 0..reps {
        d.push(one_pass(&tasks, &ledger, pool, schema).await?.0);
    }
    println!(
        "  {} ({retried} tasks retried in PostgreSQL per pass)",
        summary("full triage pass", d)
    );

    admin
        .batch_execute("DELETE FROM tasks WHERE task_id LIKE 'w-%'")
        .await?;
    admin.execute(SEED_QUIET, &[&now]).await?;
    // Rebuilt so that the window's index pages hold the normal hour only, not the husks of
    // the 100,000 deleted entries.
    admin.batch_execute("VACUUM ANALYZE tasks").await?;
    admin
        .batch_execute(&format!("REINDEX INDEX {schema}.tasks_done_at_idx"))
        .await?;
    println!("a normal hour in the window (3,000 tasks, 0.4 % failed), after VACUUM:");
    println!("{}", explain_counts("normal hour").await?);
    let d = time_counts(&tasks, now, reps).await?;
    println!("  {}", summary("idle check counts(now - 1h, now)", d));
    Ok(())
}
