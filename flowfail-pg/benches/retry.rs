//! Scheduling retries for 10,000 failed tasks against the local PostgreSQL: one batched
//! statement (`unnest`) next to one statement per task, in the same criterion group.
//!
//! `FLOWFAIL_PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p flowfail-pg --bench retry`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeDelta, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flowfail_core::{FlowType, RetryRequest, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskTable, connect};

const N: usize = 10_000;

fn bench(c: &mut Criterion) {
    let url = std::env::var("FLOWFAIL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = connect(&url, 2).unwrap();
    let schema = format!("ff_bench_{}", std::process::id());
    let store = rt.block_on(async {
        let client = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("PostgreSQL unreachable at {url}: {e}; nothing to measure");
                return None;
            }
        };
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap();
        let s = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
        s.migrate().await.unwrap();
        let now = Utc::now();
        let tasks: Vec<Task> = (0..N)
            .map(|i| {
                Task::new(
                    TaskId::parse(&format!("t-{i}")).unwrap(),
                    FlowType::Impl,
                    TaskStatus::Failed,
                    now - TimeDelta::seconds(i as i64),
                )
                .with_error("Task timed out after 45.00 seconds", None)
            })
            .collect();
        s.insert(&tasks, &[]).await.unwrap();
        Some(s)
    });
    let Some(store) = store else { return };
    let reqs: Vec<RetryRequest> = (0..N)
        .map(|i| RetryRequest::new(TaskId::parse(&format!("t-{i}")).unwrap(), 0, Utc::now()))
        .collect();
    let reset = || {
        rt.block_on(async {
            let c = pool.get().await.unwrap();
            c.batch_execute(&format!(
                "UPDATE {schema}.tasks SET status = 'failed', attempts = 0, retry_not_before = NULL"
            ))
            .await
            .unwrap();
        })
    };
    let mut g = c.benchmark_group("schedule_retries_10k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("batched_unnest", |b| {
        b.iter_batched(
            reset,
            |_| rt.block_on(store.schedule_retries(&reqs)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("row_by_row", |b| {
        b.iter_batched(
            reset,
            |_| {
                rt.block_on(store.schedule_retries_row_by_row(&reqs))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    rt.block_on(async {
        let c = pool.get().await.unwrap();
        let _ = c
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
