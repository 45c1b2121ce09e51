//! The TaskDB side: [`PgTaskStore`] over FlowEngine's `tasks` table, configured by
//! [`TaskTable`] and [`TaskColumns`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::Pool;
use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::ports::FailedRead;
use flowfail_core::{
    Error, ErrorKind, FlowType, Result, RetryOutcome, RetryRequest, StatusCounts, Task, TaskId,
    TaskStatus, TaskStore, Timestamp,
};

use crate::conn::{BACKEND, TASK_MIGRATION_LOCK, client, decode_err, pg_err};

mod columns;
mod filter;
mod history;
mod sql;
mod statuses;
mod window;

use sql::TaskSql;
use window::{Class, Part, Plan, ReadRow, WindowTally};

pub use filter::TaskFilter;
pub use statuses::TaskStatuses;

const OP_SCHEDULE: &str = "task.schedule_retries";

fn flow_str(f: FlowType) -> &'static str {
    match f {
        FlowType::Plan => "plan",
        FlowType::Impl => "impl",
        FlowType::Review => "review",
        FlowType::Docs => "docs",
        _ => "plan",
    }
}

fn parse_flow(s: &str) -> Option<FlowType> {
    Some(match s {
        "plan" => FlowType::Plan,
        "impl" => FlowType::Impl,
        "review" => FlowType::Review,
        "docs" => FlowType::Docs,
        _ => return None,
    })
}

/// Column names of FlowEngine's `tasks` table. Only ever taken from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskColumns {
    /// Task id (text, primary key).
    pub task_id: String,
    /// Flow type (text).
    pub flow_type: String,
    /// Status (text; its values: [`TaskTable::statuses`]).
    pub status: String,
    /// Last error message (text, nullable).
    pub error_message: String,
    /// HTTP status of the last failure (integer, nullable).
    pub http_status: String,
    /// Creation time (timestamptz).
    pub created_at: String,
    /// Finish time (timestamptz, nullable).
    pub finished_at: String,
    /// Retries so far (integer).
    pub attempts: String,
    /// The TaskObject (jsonb, nullable).
    pub task_object: String,
    /// Earliest time a scheduled retry may run (timestamptz, nullable).
    pub retry_not_before: String,
    /// Worker that claimed a retry (text, nullable).
    pub claimed_by: String,
}

impl Default for TaskColumns {
    fn default() -> Self {
        TaskColumns {
            task_id: "task_id".into(),
            flow_type: "flow_type".into(),
            status: "status".into(),
            error_message: "error_message".into(),
            http_status: "http_status".into(),
            created_at: "created_at".into(),
            finished_at: "finished_at".into(),
            attempts: "attempts".into(),
            task_object: "task_object".into(),
            retry_not_before: "retry_not_before".into(),
            claimed_by: "claimed_by".into(),
        }
    }
}

/// Where the TaskDB lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskTable {
    /// Schema (None: the search path).
    pub schema: Option<String>,
    /// Table name.
    pub table: String,
    /// Column names.
    pub columns: TaskColumns,
    /// FlowEngine's own names for flow types flowfail knows under another (`implementation`
    /// → [`FlowType::Impl`]). A failed row whose flow type is neither known nor mapped is left
    /// out of triage and reported ([`flowfail_core::ports::FailedRead`]).
    pub flow_types: std::collections::BTreeMap<String, FlowType>,
    /// FlowEngine's values of the status column, where they differ from flowfail's.
    pub statuses: TaskStatuses,
    /// Only the rows of one Deployment, in a TaskDB several share (default: every row).
    pub filter: Option<TaskFilter>,
}

impl Default for TaskTable {
    fn default() -> Self {
        TaskTable {
            schema: None,
            table: "tasks".into(),
            columns: TaskColumns::default(),
            flow_types: Default::default(),
            statuses: TaskStatuses::default(),
            filter: None,
        }
    }
}

impl TaskTable {
    /// The default table in `schema`.
    pub fn in_schema(schema: impl Into<String>) -> Self {
        TaskTable {
            schema: Some(schema.into()),
            ..Self::default()
        }
    }
}

/// [`TaskStore`] over FlowEngine's `tasks` table.
///
/// Every value is a bound parameter; table and column names come only from [`TaskTable`]
/// (validated identifiers, quoted). Retries are scheduled in one statement for any number of
/// tasks (`unnest`), each fenced on its attempt count.
#[derive(Clone)]
pub struct PgTaskStore {
    pool: Pool,
    sql: Arc<TaskSql>,
    table: Arc<TaskTable>,
    /// The alert window's tally ([`TaskStore::window_counts`]).
    window: Arc<tokio::sync::Mutex<WindowTally>>,
}

impl std::fmt::Debug for PgTaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTaskStore").finish_non_exhaustive()
    }
}

/// Why a task row cannot be used by flowfail.
enum Unusable {
    /// The id is not a valid [`TaskId`] (kept, escaped and truncated, for a log line).
    BadId(String),
    /// The flow type or the status is one flowfail does not know.
    UnknownFlowOrStatus(TaskId),
}

/// A task row, or `None` (logged) for an id, flow type or status flowfail cannot use.
fn row_to_task(r: &tokio_postgres::Row, t: &TaskTable) -> Result<Option<Task>> {
    Ok(match decode_task(r, t)? {
        Ok(t) => Some(t),
        Err(Unusable::BadId(shown)) => {
            tracing::warn!(task_id = %shown, "skipping a task whose id is not a valid TaskId");
            None
        }
        Err(Unusable::UnknownFlowOrStatus(id)) => {
            tracing::warn!(task_id = %id, "skipping a task with an unknown flow type or status");
            None
        }
    })
}

/// A task row, or why flowfail cannot use it.
// Decode failures here go through `pg_err` (transient `Unavailable`), as they always have;
// the later `try_get` conversions use `decode_err` (permanent `Unexpected`).
fn decode_task(
    r: &tokio_postgres::Row,
    table: &TaskTable,
) -> Result<std::result::Result<Task, Unusable>> {
    let raw_id: String = r.try_get(0).map_err(|e| pg_err("task.decode", e))?;
    let Ok(id) = TaskId::parse(&raw_id) else {
        return Ok(Err(Unusable::BadId(describe(&raw_id))));
    };
    let flow: String = r.try_get(1).map_err(|e| pg_err("task.decode", e))?;
    let status: String = r.try_get(2).map_err(|e| pg_err("task.decode", e))?;
    let flow = parse_flow(&flow).or_else(|| table.flow_types.get(&flow).copied());
    let (Some(flow), Some(status)) = (flow, table.statuses.parse(&status)) else {
        return Ok(Err(Unusable::UnknownFlowOrStatus(id)));
    };
    let err: Option<String> = r.try_get(3).map_err(|e| pg_err("task.decode", e))?;
    let http: Option<i32> = r.try_get(4).map_err(|e| pg_err("task.decode", e))?;
    let created: DateTime<Utc> = r.try_get(5).map_err(|e| pg_err("task.decode", e))?;
    let fin: Option<DateTime<Utc>> = r.try_get(6).map_err(|e| pg_err("task.decode", e))?;
    let att: i32 = r.try_get(7).map_err(|e| pg_err("task.decode", e))?;
    let mut t = Task::new(id, flow, status, created).with_attempts(u32::try_from(att).unwrap_or(0));
    if let Some(m) = err {
        t = t.with_error(m, http.and_then(|h| u16::try_from(h).ok()));
    } else {
        t.http_status = http.and_then(|h| u16::try_from(h).ok());
    }
    t.finished_at = fin;
    Ok(Ok(t))
}

/// Rows of the alert window's reads (`sql::window_read_sql`).
fn decode_window_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<ReadRow<'_>>> {
    rows.iter()
        .map(|r| {
            Ok::<_, tokio_postgres::Error>(ReadRow {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                class: Class::from_sql(r.try_get(2)?),
                part: Part::from_sql(r.try_get(3)?),
            })
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| decode_err("task.window_counts", e))
}

impl PgTaskStore {
    /// A store over `table` using `pool`. Identifiers are validated here.
    pub fn new(pool: Pool, table: &TaskTable) -> Result<Self> {
        Ok(PgTaskStore {
            pool,
            sql: Arc::new(TaskSql::new(table)?),
            table: Arc::new(table.clone()),
            window: Arc::default(),
        })
    }

    /// Counts the alert window ([`TaskStore::window_counts`]) incrementally once it holds
    /// `rows` finished rows or more (default 20,000; below, every poll counts it in full, a
    /// few milliseconds at most). `0` tallies every window (the tests do).
    pub fn tally_window_above(mut self, rows: u64) -> Self {
        self.window = Arc::new(tokio::sync::Mutex::new(WindowTally::above(rows)));
        self
    }

    async fn client(&self, op: &'static str) -> Result<deadpool_postgres::Object> {
        client(&self.pool, op).await
    }

    /// Creates the table and its indexes if missing (for development and tests: in production
    /// the table is FlowEngine's). Idempotent.
    ///
    /// The indexes are what the queries need: `(status, created_at DESC)` for
    /// `recent_failed` and the tasks in flight, and an expression index on
    /// `coalesce(finished_at, created_at)` (INCLUDE status and both times, for an index-only
    /// scan) for the alert window of `counts`. On FlowEngine's real table they are created by
    /// its owners (`CREATE INDEX CONCURRENTLY`, same definitions); without the second one every
    /// idle check reads the whole table.
    pub async fn migrate(&self) -> Result<()> {
        let c = self.client("task.migrate").await?;
        c.batch_execute(&format!(
            "SELECT pg_advisory_lock({TASK_MIGRATION_LOCK}); {} SELECT pg_advisory_unlock({TASK_MIGRATION_LOCK});",
            self.sql.create
        ))
        .await
        .map_err(|e| pg_err("task.migrate", e))
    }

    /// Inserts or replaces tasks in one statement, with optional TaskObjects (for tests,
    /// backfills and replays).
    pub async fn insert(
        &self,
        tasks: &[Task],
        objects: &[(TaskId, serde_json::Value)],
    ) -> Result<u64> {
        let c = self.client("task.insert").await?;
        let obj = |id: &TaskId| {
            objects
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, o)| o.clone())
        };
        let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
        let flows: Vec<&str> = tasks.iter().map(|t| flow_str(t.flow_type)).collect();
        let sts: Vec<&str> = tasks
            .iter()
            .map(|t| self.table.statuses.written(t.status))
            .collect();
        let errs: Vec<Option<&str>> = tasks.iter().map(|t| t.error_message.as_deref()).collect();
        let https: Vec<Option<i32>> = tasks.iter().map(|t| t.http_status.map(i32::from)).collect();
        let created: Vec<DateTime<Utc>> = tasks.iter().map(|t| t.created_at).collect();
        let fin: Vec<Option<DateTime<Utc>>> = tasks.iter().map(|t| t.finished_at).collect();
        let att: Vec<i32> = tasks
            .iter()
            .map(|t| i32::try_from(t.attempts).unwrap_or(i32::MAX))
            .collect();
        let objs: Vec<Option<serde_json::Value>> = tasks.iter().map(|t| obj(&t.task_id)).collect();
        c.execute(
            &self.sql.insert,
            &[
                &ids, &flows, &sts, &errs, &https, &created, &fin, &att, &objs,
            ],
        )
        .await
        .map_err(|e| pg_err("task.insert", e))
    }

    /// Schedules retries one statement per task (what a naive implementation does). Same
    /// semantics as [`TaskStore::schedule_retries`]; kept to measure the batched path against.
    pub async fn schedule_retries_row_by_row(
        &self,
        requests: &[RetryRequest],
    ) -> Result<Vec<RetryOutcome>> {
        let c = self.client(OP_SCHEDULE).await?;
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            let expected = i32::try_from(r.expected_attempts).unwrap_or(i32::MAX);
            let rows = c
                .query(
                    &self.sql.schedule_one,
                    &[&r.task_id.as_str(), &expected, &r.not_before],
                )
                .await
                .map_err(|e| pg_err(OP_SCHEDULE, e))?;
            if let Some(row) = rows.first() {
                let a: i32 = row.try_get(0).map_err(|e| decode_err(OP_SCHEDULE, e))?;
                out.push(RetryOutcome::Scheduled {
                    attempts: u32::try_from(a).unwrap_or(0),
                });
                continue;
            }
            let cur = c
                .query_opt(&self.sql.current, &[&r.task_id.as_str()])
                .await
                .map_err(|e| pg_err(OP_SCHEDULE, e))?;
            let cur = cur
                .map(|row| status_and_attempts(&row, 0, OP_SCHEDULE))
                .transpose()?;
            out.push(outcome_without_update(
                cur,
                r.expected_attempts,
                &self.table.statuses,
            ));
        }
        Ok(out)
    }
}

/// The status (text) and attempt count (integer) in columns `first` and `first + 1` of `row`.
fn status_and_attempts(
    row: &tokio_postgres::Row,
    first: usize,
    op: &'static str,
) -> Result<(String, i32)> {
    let status: String = row.try_get(first).map_err(|e| decode_err(op, e))?;
    let attempts: i32 = row.try_get(first + 1).map_err(|e| decode_err(op, e))?;
    Ok((status, attempts))
}

/// The outcome of a request whose fenced update matched no row: a moved attempt count is a
/// conflict (someone else retried), otherwise the task is not in a retryable state.
fn outcome_without_update(
    current: Option<(String, i32)>,
    expected: u32,
    statuses: &TaskStatuses,
) -> RetryOutcome {
    match current {
        None => RetryOutcome::NotFound,
        Some((st, att)) => {
            let att = u32::try_from(att).unwrap_or(0);
            match statuses.parse(&st) {
                _ if att != expected => RetryOutcome::Conflict {
                    current_attempts: att,
                },
                Some(TaskStatus::Failed) => RetryOutcome::Conflict {
                    current_attempts: att,
                },
                Some(s) => RetryOutcome::NotRetryable { status: s },
                None => RetryOutcome::NotRetryable {
                    status: TaskStatus::Running,
                },
            }
        }
    }
}

#[async_trait]
impl TaskStore for PgTaskStore {
    /// See [`TaskStore::recent_failed_read`]: the rows it leaves out are not returned here.
    async fn recent_failed(&self, limit: usize) -> Result<Vec<Task>> {
        Ok(self.recent_failed_read(limit).await?.tasks)
    }

    /// Rows flowfail cannot use (an id that is not a valid [`TaskId`], a flow type neither
    /// known nor mapped in [`TaskTable::flow_types`]) are left out and counted by why, and
    /// their number logged as one warning (no raw values); the list may then be shorter than
    /// `limit` though more failed tasks exist.
    async fn recent_failed_read(&self, limit: usize) -> Result<FailedRead> {
        let c = self.client("task.recent_failed").await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `query` collects every row before returning: a connection lost mid-read is an error,
        // never a shorter list.
        let rows = c
            .query(&self.sql.recent_failed, &[&limit])
            .await
            .map_err(|e| pg_err("task.recent_failed", e))?;
        let mut out = Vec::with_capacity(rows.len());
        let (mut bad_id, mut unknown) = (0usize, 0usize);
        for r in &rows {
            match decode_task(r, &self.table)? {
                Ok(t) => out.push(t),
                Err(Unusable::BadId(_)) => bad_id += 1,
                Err(Unusable::UnknownFlowOrStatus(_)) => unknown += 1,
            }
        }
        if bad_id + unknown > 0 {
            tracing::warn!(
                skipped = bad_id + unknown,
                invalid_id = bad_id,
                unknown_flow_or_status = unknown,
                returned = out.len(),
                "recent_failed skipped {} failed tasks flowfail cannot read",
                bad_id + unknown
            );
        }
        Ok(FailedRead::new(out)
            .with_unreadable("id not a valid task id", bad_id as u64)
            .with_unreadable(
                "flow type not known: map it under [postgres.flow_types]",
                unknown as u64,
            ))
    }

    async fn counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts> {
        let c = self.client("task.counts").await?;
        let r = c
            .query_one(&self.sql.counts, &[&since, &until])
            .await
            .map_err(|e| pg_err("task.counts", e))?;
        let n = |i: usize| -> Result<u64> {
            let v: i64 = r.try_get(i).map_err(|e| decode_err("task.counts", e))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let mut s = StatusCounts::new(n(0)?, n(1)?);
        s.in_flight = n(2)?;
        s.unknown_status = n(3)?;
        Ok(s)
    }

    /// The sliding alert window, counted incrementally once it holds 20,000 finished rows
    /// or more (see `tasks/window.rs`): the rows that finished since the last poll, the tasks
    /// in flight and those that were, read in one statement, update a tally of the window's
    /// rows; the window is read whole when it is new, when it did not slide forward, and
    /// every 60 reads (a difference from the tally kept is logged). A smaller window is
    /// counted as [`TaskStore::counts`] counts it.
    async fn window_counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts> {
        // As PostgreSQL compares them: to the microsecond (what the plain count sends).
        let (since, until) = (since.trunc_subsecs(6), until.trunc_subsecs(6));
        let mut tally = self.window.lock().await;
        let plan = tally.plan(since, until);
        let Plan::Read { from, .. } = &plan else {
            let c = self.counts(since, until).await?;
            tally.counted(c.succeeded + c.failed + c.unknown_status);
            return Ok(c);
        };
        let mut c = self.client("task.window_counts").await?;
        let err = |e| pg_err("task.window_counts", e);
        // One snapshot for both statements. A few thousand rows over two index scans:
        // launching parallel workers for them costs more than the reads (15 ms against 2 ms,
        // P8). Rolled back on an error.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(err)?;
        tx.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
            .await
            .map_err(err)?;
        let rows = tx
            .query(&self.sql.window_read, &[from])
            .await
            .map_err(err)?;
        let mut read = decode_window_rows(&rows)?;
        let left = tally.left_flight(&read);
        let looked_up = if left.is_empty() {
            Vec::new()
        } else {
            tx.query(&self.sql.window_lookup, &[&left])
                .await
                .map_err(err)?
        };
        tx.commit().await.map_err(err)?;
        read.extend(decode_window_rows(&looked_up)?);
        if let Some(d) = tally.apply(&plan, since, until, &read) {
            tracing::warn!(
                succeeded = d[0],
                failed = d[1],
                unknown_status = d[2],
                "the alert window's tally differed from a full read (a row changed in a way the incremental read does not see); corrected"
            );
        }
        let (succeeded, failed, unknown, in_flight) = tally.counts();
        let mut s = StatusCounts::new(succeeded, failed);
        s.in_flight = in_flight;
        s.unknown_status = unknown;
        Ok(s)
    }

    async fn get(&self, task_id: &TaskId) -> Result<Task> {
        let c = self.client("task.get").await?;
        let row = c
            .query_opt(&self.sql.get, &[&task_id.as_str()])
            .await
            .map_err(|e| pg_err("task.get", e))?;
        row.as_ref()
            .map(|r| row_to_task(r, &self.table))
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                Error::not_found(format!("task {task_id} not found"))
                    .with_operation("task.get")
                    .with_backend(BACKEND)
            })
    }

    /// One query by primary key for all `ids`; a row flowfail cannot use is left out (and
    /// logged), as by [`TaskStore::get`].
    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Task>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(TaskId::as_str).collect();
        let c = self.client("task.get_many").await?;
        let rows = c
            .query(&self.sql.get_many, &[&ids])
            .await
            .map_err(|e| pg_err("task.get_many", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(t) = row_to_task(r, &self.table)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn task_object(&self, task_id: &TaskId) -> Result<Option<serde_json::Value>> {
        let c = self.client("task.task_object").await?;
        let row = c
            .query_opt(&self.sql.task_object, &[&task_id.as_str()])
            .await
            .map_err(|e| pg_err("task.task_object", e))?
            .ok_or_else(|| {
                Error::not_found(format!("task {task_id} not found"))
                    .with_operation("task.task_object")
                    .with_backend(BACKEND)
            })?;
        row.try_get::<_, Option<serde_json::Value>>(0)
            .map_err(|e| pg_err("task.task_object", e))
    }

    async fn schedule_retries(&self, requests: &[RetryRequest]) -> Result<Vec<RetryOutcome>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // The same task twice in one batch: only its first request may apply.
        let mut seen = HashSet::new();
        let firsts: Vec<bool> = requests
            .iter()
            .map(|r| seen.insert(r.task_id.clone()))
            .collect();
        let ids: Vec<&str> = requests
            .iter()
            .zip(&firsts)
            .map(|(r, f)| if *f { r.task_id.as_str() } else { "" })
            .collect();
        let exp: Vec<i32> = requests
            .iter()
            .map(|r| i32::try_from(r.expected_attempts).unwrap_or(i32::MAX))
            .collect();
        let nb: Vec<DateTime<Utc>> = requests.iter().map(|r| r.not_before).collect();
        let c = self.client(OP_SCHEDULE).await?;
        let rows = c
            .query(&self.sql.schedule_batch, &[&ids, &exp, &nb])
            .await
            .map_err(|e| pg_err(OP_SCHEDULE, e))?;
        // Position (1-based, from `WITH ORDINALITY`) -> attempts after the update.
        let mut updated: Vec<Option<u32>> = vec![None; requests.len()];
        for row in &rows {
            let ord: i64 = row.try_get(0).map_err(|e| decode_err(OP_SCHEDULE, e))?;
            let attempts: i32 = row.try_get(1).map_err(|e| decode_err(OP_SCHEDULE, e))?;
            let slot = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| updated.get_mut(i))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unexpected,
                        "retry batch returned a position outside the batch",
                    )
                    .with_operation(OP_SCHEDULE)
                    .with_backend(BACKEND)
                })?;
            *slot = Some(u32::try_from(attempts).unwrap_or(0));
        }
        // Why the others were not scheduled: their current state, read once for all.
        let missed: Vec<&str> = requests
            .iter()
            .zip(&firsts)
            .zip(&updated)
            .filter(|((_, first), u)| **first && u.is_none())
            .map(|((r, _), _)| r.task_id.as_str())
            .collect();
        let mut current = HashMap::new();
        if !missed.is_empty() {
            let rows = c
                .query(&self.sql.current_many, &[&missed])
                .await
                .map_err(|e| pg_err(OP_SCHEDULE, e))?;
            for row in &rows {
                let id: String = row.try_get(0).map_err(|e| decode_err(OP_SCHEDULE, e))?;
                current.insert(id, status_and_attempts(row, 1, OP_SCHEDULE)?);
            }
        }
        let mut out = Vec::with_capacity(requests.len());
        for ((req, first), upd) in requests.iter().zip(&firsts).zip(updated) {
            out.push(match (first, upd) {
                (true, Some(attempts)) => RetryOutcome::Scheduled { attempts },
                (false, _) => RetryOutcome::Conflict {
                    current_attempts: req.expected_attempts + 1,
                },
                (true, None) => outcome_without_update(
                    current.remove(req.task_id.as_str()),
                    req.expected_attempts,
                    &self.table.statuses,
                ),
            });
        }
        Ok(out)
    }

    async fn mark_final(&self, task_id: &TaskId, expected_attempts: u32) -> Result<()> {
        let c = self.client("task.mark_final").await?;
        let exp = i32::try_from(expected_attempts).unwrap_or(i32::MAX);
        let rows = c
            .query(&self.sql.mark_final, &[&task_id.as_str(), &exp])
            .await
            .map_err(|e| pg_err("task.mark_final", e))?;
        if !rows.is_empty() {
            return Ok(());
        }
        let cur = c
            .query_opt(&self.sql.current, &[&task_id.as_str()])
            .await
            .map_err(|e| pg_err("task.mark_final", e))?;
        let cur = cur
            .map(|r| status_and_attempts(&r, 0, "task.mark_final"))
            .transpose()?;
        Err(match cur {
            None => Error::not_found(format!("task {task_id} not found")),
            Some((status, attempts)) => Error::conflict(format!(
                "task {task_id} is {status} with {attempts} attempts, expected failed with {expected_attempts}"
            )),
        }
        .with_operation("task.mark_final")
        .with_backend(BACKEND))
    }
}
