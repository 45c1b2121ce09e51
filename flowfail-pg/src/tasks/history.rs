//! History for a backtest: every outcome of a period in one streaming read, and the failed
//! tasks of a window. Read-only transactions: never a write, never a lock beyond a plain read.

use flowfail_core::Result;
use flowfail_core::model::{Task, Timestamp};

use super::{PgTaskStore, Unusable, decode_task};
use crate::conn::{decode_err, pg_err};

/// Rows fetched per round trip of the outcome stream.
const BATCH: i32 = 20_000;

impl PgTaskStore {
    /// Every task of this store's rows finished in `[from, to)` (its finish time, or its
    /// creation time when it has none, as the alert window counts it), oldest first: `f(at,
    /// failed)` for each one that succeeded or failed; other statuses are not outcomes and are
    /// skipped. One read in a read-only transaction, fetched `BATCH` rows at a time through a
    /// portal, so memory stays flat however long the period; by the alert's expression index.
    /// Returns the outcomes given to `f`.
    pub async fn outcomes(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut f: impl FnMut(Timestamp, bool),
    ) -> Result<u64> {
        const OP: &str = "task.outcomes";
        let mut c = self.client(OP).await?;
        let tx = read_only(&mut c, OP).await?;
        // A month of tasks is one long read: the pool's per-statement limit is for the
        // supervisor's short queries.
        tx.batch_execute("SET LOCAL statement_timeout = '30min'")
            .await
            .map_err(|e| pg_err(OP, e))?;
        let stmt = tx
            .prepare(&self.sql.outcomes)
            .await
            .map_err(|e| pg_err(OP, e))?;
        let portal = tx
            .bind(&stmt, &[&from, &to])
            .await
            .map_err(|e| pg_err(OP, e))?;
        let mut n = 0u64;
        loop {
            let rows = tx
                .query_portal(&portal, BATCH)
                .await
                .map_err(|e| pg_err(OP, e))?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let at: Timestamp = r.try_get(0).map_err(|e| decode_err(OP, e))?;
                let ok: bool = r.try_get(1).map_err(|e| decode_err(OP, e))?;
                let bad: bool = r.try_get(2).map_err(|e| decode_err(OP, e))?;
                if ok || bad {
                    f(at, bad);
                    n += 1;
                }
            }
        }
        tx.commit().await.map_err(|e| pg_err(OP, e))?;
        Ok(n)
    }

    /// The failed tasks (failed, or given up since) of this store's rows finished in `[from,
    /// to)`, newest first, at most `limit`: what triage would have read in that window. Rows
    /// flowfail cannot read (an id that is not a task id, an unknown flow type) are counted,
    /// not returned. Read-only.
    pub async fn failed_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Task>, u64)> {
        const OP: &str = "task.failed_between";
        let mut c = self.client(OP).await?;
        let tx = read_only(&mut c, OP).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(&self.sql.failed_between, &[&from, &to, &limit])
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.commit().await.map_err(|e| pg_err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut unreadable = 0u64;
        for r in &rows {
            match decode_task(r, &self.table)? {
                Ok(t) => out.push(t),
                Err(Unusable::BadId(_) | Unusable::UnknownFlowOrStatus(_)) => unreadable += 1,
            }
        }
        Ok((out, unreadable))
    }
}

/// A read-only transaction on `c`: the server refuses any write in it.
async fn read_only<'a>(
    c: &'a mut deadpool_postgres::Object,
    op: &'static str,
) -> Result<deadpool_postgres::Transaction<'a>> {
    c.build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| pg_err(op, e))
}
