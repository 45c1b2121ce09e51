//! Helpers shared by the modules of this test binary: the PostgreSQL URL and a fresh schema,
//! with or without both stores migrated in it.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use flowfail_pg::{PgIncidentStore, PgTaskStore, TaskTable, connect};

static N: AtomicU64 = AtomicU64::new(0);

/// `FLOWFAIL_PG_URL`, or the default.
pub(crate) fn url() -> String {
    flowfail_testkit::pg_url()
}

/// A pool of `pool_size` connections and a fresh schema in it,
/// `{prefix}_{process}_{nanoseconds}_{n}`, or `None` (skip) when no server answers and none is
/// required, after the skip line of `module` (the caller's `module_path!()`).
pub(crate) async fn fresh_schema(
    module: &str,
    prefix: &str,
    pool_size: usize,
) -> Option<(deadpool_postgres::Pool, String)> {
    let pool = connect(&url(), pool_size).unwrap();
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            flowfail_testkit::pg_unreachable_in(module, &url(), &e);
            return None;
        }
    };
    let schema = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    drop(client);
    Some((pool, schema))
}

/// [`fresh_schema`] with both stores migrated in it.
pub(crate) async fn fresh_stores(
    module: &str,
    prefix: &str,
    pool_size: usize,
) -> Option<(
    PgTaskStore,
    PgIncidentStore,
    String,
    deadpool_postgres::Pool,
)> {
    let (pool, schema) = fresh_schema(module, prefix, pool_size).await?;
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
    let ledger = PgIncidentStore::new(pool.clone(), Some(&schema)).unwrap();
    tasks.migrate().await.unwrap();
    ledger.migrate().await.unwrap();
    Some((tasks, ledger, schema, pool))
}
