//! P9 in `docs/BENCHMARKS.md`: alert to first action on the live stack, poll-triggered. The
//! `Supervisor` runs with `PgTaskStore` + `PgIncidentStore` (a dedicated schema) and the
//! in-memory backends for the other ports. For each of N incidents a supervisor starts and
//! settles into its idle polls; at a different phase of the poll each time the program inserts
//! 200 failed tasks (HTTP 503) into a window of 1,000 succeeded ones — the alert condition
//! becomes true when that INSERT commits — and measures the time until the first retry reaches
//! PostgreSQL (an attempt count above 0, watched every 2 ms). Then FlowEngine "runs the
//! retries" (the tasks become succeeded) and the supervisor resolves the incident. Each
//! incident has its own supervisor and Deployment name: incident keys have minute resolution,
//! so two incidents of one Deployment within a minute would share a key. Poll intervals 1 s and
//! 5 s.
//!
//! ```bash
//! FLOWFAIL_PG_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p flowfail-pg --example alert_to_action -- 20
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowfail_core::memory::World;
use flowfail_core::ports::Ports;
use flowfail_core::respond::{Responder, Supervisor};
use flowfail_core::{Clock, Policy, Quota, QuotaUsage, VendorHealth, VendorStatus};
use flowfail_pg::{PgIncidentStore, PgTaskStore, TaskTable, connect};
use tokio_util::sync::CancellationToken;

#[path = "../../examples/support/mod.rs"]
mod support;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let n: usize = support::number_arg(20)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(n.max(1)))
}

async fn run(n: usize) -> Res<()> {
    let url = std::env::var("FLOWFAIL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool = connect(&url, 8)?;
    let schema = format!("ff_p9_{}", std::process::id());
    let admin = pool.get().await?;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await?;
    let mut result = Ok(());
    for poll in [1, 5] {
        result = incidents(&pool, &schema, poll, n).await;
        if result.is_err() {
            break;
        }
    }
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    result
}

/// Min, median, p95 (nearest rank) and max of `d`, in milliseconds.
fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |i: usize| d[i.min(d.len() - 1)].as_secs_f64() * 1e3;
    let p95 = (d.len() * 95).div_ceil(100).max(1) - 1;
    format!(
        "min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} incidents)",
        ms(0),
        ms(d.len() / 2),
        ms(p95),
        ms(d.len() - 1),
        d.len()
    )
}

/// A fresh task table in `schema` with a normal hour so far (1,000 succeeded tasks), then `n`
/// incidents, one after the other, with a supervisor polling every `poll_s` seconds.
async fn incidents(pool: &deadpool_postgres::Pool, schema: &str, poll_s: u64, n: usize) -> Res<()> {
    let c = pool.get().await?;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {schema}.tasks, {schema}.flowfail_incident_timeline, {schema}.flowfail_incidents, {schema}.flowfail_migrations"
    ))
    .await?;
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema))?;
    let ledger = PgIncidentStore::new(pool.clone(), Some(schema))?;
    tasks.migrate().await?;
    ledger.migrate().await?;
    c.batch_execute(&format!(
        "INSERT INTO {schema}.tasks (task_id, flow_type, status, created_at, finished_at)
         SELECT 'ok-' || i, 'impl', 'succeeded', now() - interval '50 minutes' * (i / 1000.0),
                now() - interval '50 minutes' * (i / 1000.0) + interval '20 seconds'
         FROM generate_series(1, 1000) i"
    ))
    .await?;
    c.batch_execute(&format!("VACUUM ANALYZE {schema}.tasks"))
        .await?;
    let (mut latencies, mut settle) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for k in 0..n {
        let (l, s) = one_incident(&tasks, &ledger, &c, schema, poll_s, k).await?;
        latencies.push(l);
        settle.push(s);
    }
    println!(
        "poll {poll_s} s: alert to first retry in PostgreSQL: {}",
        summary(latencies.clone())
    );
    let all: Vec<String> = latencies
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect();
    println!("  each (ms): {}", all.join(", "));
    println!("  first retry to incident closed: {}", summary(settle));
    let rows = c
        .query(
            &format!(
                "SELECT coalesce(post_incident->>'status', 'open'), count(*) FROM {schema}.flowfail_incidents GROUP BY 1 ORDER BY 1"
            ),
            &[],
        )
        .await?;
    for r in &rows {
        let (status, count): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        println!("  incidents {status}: {count}");
    }
    Ok(())
}

/// Incident `k`: a supervisor (its own Deployment name, so that its incident has its own
/// ledger key — keys have minute resolution) watching in its idle polls; failures inserted at
/// a different phase of the poll each time. Returns the time from the INSERT's commit to the
/// first retry in PostgreSQL, and from that retry to the incident closed in the ledger.
async fn one_incident(
    tasks: &PgTaskStore,
    ledger: &PgIncidentStore,
    c: &deadpool_postgres::Object,
    schema: &str,
    poll_s: u64,
    k: usize,
) -> Res<(Duration, Duration)> {
    let mut policy = Policy::default();
    policy.poll_interval_s = poll_s;
    policy.deployment = format!("flowengine-p{poll_s}-{k:02}");
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
    let supervisor = Supervisor::builder()
        .responder(
            Responder::builder()
                .ports(ports)
                .policy(policy)
                .clock(Clock::system())
                .name("alert-to-action"),
        )
        .build()?;
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { supervisor.run(stop).await }
    });
    let measured = measure(c, schema, poll_s, k).await;
    stop.cancel();
    running.await??;
    measured
}

/// Inserts incident `k`'s failures, waits for the first retry, lets the retries succeed and
/// waits for the incident to close.
async fn measure(
    c: &deadpool_postgres::Object,
    schema: &str,
    poll_s: u64,
    k: usize,
) -> Res<(Duration, Duration)> {
    // The supervisor's first idle poll runs at start; then a different phase of the poll for
    // each incident (golden-ratio steps).
    let poll = Duration::from_secs(poll_s);
    let phase = (k as f64 * 0.618_034).fract();
    tokio::time::sleep(Duration::from_millis(200) + poll.mul_f64(phase)).await;
    let prefix = format!("i{poll_s}-{k:02}-");
    c.execute(
        &format!(
            "INSERT INTO {schema}.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at)
             SELECT $1 || i, 'impl', 'failed', 'HTTP 503 Service Unavailable', 503,
                    now() - interval '30 seconds', now()
             FROM generate_series(1, 200) i"
        ),
        &[&prefix],
    )
    .await?;
    let t0 = Instant::now();
    let retried = format!(
        "SELECT count(*) FROM {schema}.tasks WHERE task_id LIKE $1 || '%' AND attempts > 0"
    );
    loop {
        let r: i64 = c.query_one(&retried, &[&prefix]).await?.try_get(0)?;
        if r > 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(format!("incident {k}: no retry within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let latency = t0.elapsed();
    let t1 = Instant::now();
    // FlowEngine runs the retries and they succeed: the alert clears.
    c.execute(
        &format!(
            "UPDATE {schema}.tasks SET status = 'succeeded', finished_at = now() WHERE task_id LIKE $1 || '%'"
        ),
        &[&prefix],
    )
    .await?;
    let open = format!("SELECT count(*) FROM {schema}.flowfail_incidents WHERE closed_at IS NULL");
    loop {
        let r: i64 = c.query_one(&open, &[]).await?.try_get(0)?;
        if r == 0 {
            break;
        }
        if t1.elapsed() > Duration::from_secs(60) {
            return Err(format!("incident {k}: not closed within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((latency, t1.elapsed()))
}
