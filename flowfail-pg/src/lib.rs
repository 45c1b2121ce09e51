#![doc = include_str!("../README.md")]

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::{
    Epoch, Error, ErrorKind, FlowType, IncidentRecord, IncidentStore, Result, RetryOutcome,
    RetryRequest, StatusCounts, Task, TaskId, TaskStatus, TaskStore, TimelineEntry, Timestamp,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

const BACKEND: &str = "postgres";

/// Connects a pool to `url` (`postgres://user@host:port/db`). No TLS: use a local socket or a
/// trusted network, or put a TLS-terminating proxy in front.
pub fn connect(url: &str, max_size: usize) -> Result<Pool> {
    let cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        Error::invalid_input(format!("invalid PostgreSQL URL: {e}")).with_backend(BACKEND)
    })?;
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(max_size.max(1))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("could not build the pool: {e}"),
            )
            .with_backend(BACKEND)
        })
}

fn pg_err(op: &'static str, e: tokio_postgres::Error) -> Error {
    let (kind, transient) = match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            (ErrorKind::Conflict, true)
        }
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => (ErrorKind::AlreadyExists, false),
        Some(c) if *c == SqlState::QUERY_CANCELED => (ErrorKind::Timeout, true),
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => (ErrorKind::PermissionDenied, false),
        Some(c)
            if c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::TOO_MANY_CONNECTIONS =>
        {
            (ErrorKind::Unavailable, true)
        }
        Some(_) => (ErrorKind::Unexpected, false),
        None if e.is_closed() => (ErrorKind::Unavailable, true),
        None => (ErrorKind::Unavailable, true),
    };
    Error::new(kind, e.to_string())
        .with_operation(op)
        .with_backend(BACKEND)
        .with_source(e)
        .transient_if(transient)
}

fn pool_err(op: &'static str, e: deadpool_postgres::PoolError) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("no database connection: {e}"),
    )
    .with_operation(op)
    .with_backend(BACKEND)
    .transient()
}

/// A SQL identifier from configuration: `^[A-Za-z_][A-Za-z0-9_]{0,62}$`, quoted.
fn ident(s: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphabetic() | (s.as_bytes()[0] == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(format!("\"{s}\""))
    } else {
        Err(
            Error::invalid_input(format!("invalid SQL identifier {}", describe(s)))
                .with_backend(BACKEND),
        )
    }
}

fn qualified(schema: Option<&str>, name: &str) -> Result<String> {
    Ok(match schema {
        Some(s) => format!("{}.{}", ident(s)?, ident(name)?),
        None => ident(name)?,
    })
}

fn status_str(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "succeeded",
        TaskStatus::Failed => "failed",
        TaskStatus::FailedFinal => "failed_final",
        _ => "failed",
    }
}

fn parse_status(s: &str) -> Option<TaskStatus> {
    Some(match s {
        "pending" | "queued" => TaskStatus::Pending,
        "running" => TaskStatus::Running,
        "succeeded" | "success" | "completed" => TaskStatus::Succeeded,
        "failed" => TaskStatus::Failed,
        "failed_final" => TaskStatus::FailedFinal,
        _ => return None,
    })
}

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

// ---------------------------------------------------------------------------------------------
// TaskDB

/// Column names of FlowEngine's `tasks` table. Only ever taken from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskColumns {
    /// Task id (text, primary key).
    pub task_id: String,
    /// Flow type (text).
    pub flow_type: String,
    /// Status (text: pending, running, succeeded, failed, failed_final).
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
}

impl Default for TaskTable {
    fn default() -> Self {
        TaskTable {
            schema: None,
            table: "tasks".into(),
            columns: TaskColumns::default(),
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

/// Every SQL statement of the task store, built once from the validated configuration.
#[derive(Debug)]
struct TaskSql {
    create: String,
    recent_failed: String,
    counts: String,
    get: String,
    task_object: String,
    schedule_batch: String,
    current_many: String,
    schedule_one: String,
    current: String,
    mark_final: String,
    claim_due: String,
    insert: String,
}

impl TaskSql {
    fn new(t: &TaskTable) -> Result<Self> {
        let tbl = qualified(t.schema.as_deref(), &t.table)?;
        let c = &t.columns;
        let (id, flow, st, err, http, created, fin, att, obj, nb, by) = (
            ident(&c.task_id)?,
            ident(&c.flow_type)?,
            ident(&c.status)?,
            ident(&c.error_message)?,
            ident(&c.http_status)?,
            ident(&c.created_at)?,
            ident(&c.finished_at)?,
            ident(&c.attempts)?,
            ident(&c.task_object)?,
            ident(&c.retry_not_before)?,
            ident(&c.claimed_by)?,
        );
        let idx = ident(&format!(
            "{}_status_created_idx",
            t.table.chars().take(40).collect::<String>()
        ))?;
        let select_cols = format!("{id}, {flow}, {st}, {err}, {http}, {created}, {fin}, {att}");
        Ok(TaskSql {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {tbl} (
                    {id} TEXT PRIMARY KEY, {flow} TEXT NOT NULL, {st} TEXT NOT NULL,
                    {err} TEXT, {http} INTEGER, {created} TIMESTAMPTZ NOT NULL, {fin} TIMESTAMPTZ,
                    {att} INTEGER NOT NULL DEFAULT 0, {obj} JSONB, {nb} TIMESTAMPTZ, {by} TEXT);
                 CREATE INDEX IF NOT EXISTS {idx} ON {tbl} ({st}, {created} DESC);"
            ),
            recent_failed: format!(
                "SELECT {select_cols} FROM {tbl} WHERE {st} = 'failed' ORDER BY {created} DESC, {id} LIMIT $1"
            ),
            counts: format!(
                "SELECT
                   count(*) FILTER (WHERE {st} = 'succeeded' AND coalesce({fin}, {created}) >= $1 AND coalesce({fin}, {created}) < $2),
                   count(*) FILTER (WHERE {st} IN ('failed', 'failed_final') AND coalesce({fin}, {created}) >= $1 AND coalesce({fin}, {created}) < $2),
                   count(*) FILTER (WHERE {st} IN ('pending', 'running'))
                 FROM {tbl}
                 WHERE coalesce({fin}, {created}) >= $1 OR {st} IN ('pending', 'running')"
            ),
            get: format!("SELECT {select_cols} FROM {tbl} WHERE {id} = $1"),
            task_object: format!("SELECT {obj} FROM {tbl} WHERE {id} = $1"),
            // One UPDATE joined to the request arrays, returning the request's position. No
            // join between CTEs: with statistics that lag the table (all rows just flipped from
            // failed to pending), PostgreSQL plans such a join as a nested loop over the CTE,
            // quadratic in the batch — seconds for 10,000 tasks.
            schedule_batch: format!(
                "UPDATE {tbl} t SET {st} = 'pending', {att} = t.{att} + 1, {nb} = r.nb, {by} = NULL
                 FROM unnest($1::text[], $2::int[], $3::timestamptz[]) WITH ORDINALITY AS r(tid, expected, nb, ord)
                 WHERE t.{id} = r.tid AND t.{att} = r.expected AND t.{st} = 'failed'
                 RETURNING r.ord, t.{att}"
            ),
            current_many: format!(
                "SELECT {id}, {st}, {att} FROM {tbl} WHERE {id} = ANY($1::text[])"
            ),
            schedule_one: format!(
                "UPDATE {tbl} SET {st} = 'pending', {att} = {att} + 1, {nb} = $3, {by} = NULL
                 WHERE {id} = $1 AND {att} = $2 AND {st} = 'failed' RETURNING {att}"
            ),
            current: format!("SELECT {st}, {att} FROM {tbl} WHERE {id} = $1"),
            mark_final: format!(
                "UPDATE {tbl} SET {st} = 'failed_final' WHERE {id} = $1 AND {att} = $2 AND {st} IN ('failed', 'failed_final') RETURNING {att}"
            ),
            claim_due: format!(
                "UPDATE {tbl} SET {st} = 'running', {by} = $2
                 WHERE {id} IN (
                   SELECT {id} FROM {tbl}
                   WHERE {st} = 'pending' AND ({nb} IS NULL OR {nb} <= $3)
                   ORDER BY {nb} NULLS FIRST, {id}
                   LIMIT $1
                   FOR UPDATE SKIP LOCKED)
                 RETURNING {id}, {att}"
            ),
            insert: format!(
                "INSERT INTO {tbl} ({id}, {flow}, {st}, {err}, {http}, {created}, {fin}, {att}, {obj})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[], $8::int[], $9::jsonb[])
                 ON CONFLICT ({id}) DO UPDATE SET {flow} = EXCLUDED.{flow}, {st} = EXCLUDED.{st}, {err} = EXCLUDED.{err},
                   {http} = EXCLUDED.{http}, {created} = EXCLUDED.{created}, {fin} = EXCLUDED.{fin}, {att} = EXCLUDED.{att}, {obj} = EXCLUDED.{obj}"
            ),
        })
    }
}

/// [`TaskStore`] over FlowEngine's `tasks` table.
///
/// Every value is a bound parameter; table and column names come only from [`TaskTable`]
/// (validated identifiers, quoted). Retries are scheduled in one statement for any number of
/// tasks (`unnest`), each fenced on its attempt count; workers claim due retries with
/// `FOR UPDATE SKIP LOCKED`, so two claimers never take the same task.
#[derive(Clone)]
pub struct PgTaskStore {
    pool: Pool,
    sql: Arc<TaskSql>,
}

impl std::fmt::Debug for PgTaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTaskStore").finish_non_exhaustive()
    }
}

fn row_to_task(r: &tokio_postgres::Row) -> Result<Option<Task>> {
    let raw_id: String = r.try_get(0).map_err(|e| pg_err("task.decode", e))?;
    let Ok(id) = TaskId::parse(&raw_id) else {
        tracing::warn!(task_id = %describe(&raw_id), "skipping a task whose id is not a valid TaskId");
        return Ok(None);
    };
    let flow: String = r.try_get(1).map_err(|e| pg_err("task.decode", e))?;
    let status: String = r.try_get(2).map_err(|e| pg_err("task.decode", e))?;
    let (Some(flow), Some(status)) = (parse_flow(&flow), parse_status(&status)) else {
        tracing::warn!(task_id = %id, "skipping a task with an unknown flow type or status");
        return Ok(None);
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
    Ok(Some(t))
}

impl PgTaskStore {
    /// A store over `table` using `pool`. Identifiers are validated here.
    pub fn new(pool: Pool, table: &TaskTable) -> Result<Self> {
        Ok(PgTaskStore {
            pool,
            sql: Arc::new(TaskSql::new(table)?),
        })
    }

    async fn client(&self, op: &'static str) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| pool_err(op, e))
    }

    /// Creates the table and its index if missing (for development and tests: in production
    /// the table is FlowEngine's). Idempotent.
    pub async fn migrate(&self) -> Result<()> {
        let c = self.client("task.migrate").await?;
        c.batch_execute(&format!(
            "SELECT pg_advisory_lock(7355608); {} SELECT pg_advisory_unlock(7355608);",
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
        let sts: Vec<&str> = tasks.iter().map(|t| status_str(t.status)).collect();
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

    /// Claims up to `limit` due retries for `worker` (`FOR UPDATE SKIP LOCKED`): they become
    /// `running`. Two claimers never receive the same task. Returns (task, attempts).
    pub async fn claim_due_retries(
        &self,
        limit: usize,
        worker: &str,
        now: Timestamp,
    ) -> Result<Vec<(TaskId, u32)>> {
        let c = self.client("task.claim_due_retries").await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .query(&self.sql.claim_due, &[&limit, &worker, &now])
            .await
            .map_err(|e| pg_err("task.claim_due_retries", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id: String = r.get(0);
                let att: i32 = r.get(1);
                TaskId::parse(&id)
                    .ok()
                    .map(|i| (i, u32::try_from(att).unwrap_or(0)))
            })
            .collect())
    }

    /// Schedules retries one statement per task (what a naive implementation does). Same
    /// semantics as [`TaskStore::schedule_retries`]; kept to measure the batched path against.
    pub async fn schedule_retries_row_by_row(
        &self,
        requests: &[RetryRequest],
    ) -> Result<Vec<RetryOutcome>> {
        let c = self.client("task.schedule_retries").await?;
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            let expected = i32::try_from(r.expected_attempts).unwrap_or(i32::MAX);
            let rows = c
                .query(
                    &self.sql.schedule_one,
                    &[&r.task_id.as_str(), &expected, &r.not_before],
                )
                .await
                .map_err(|e| pg_err("task.schedule_retries", e))?;
            if let Some(row) = rows.first() {
                let a: i32 = row.get(0);
                out.push(RetryOutcome::Scheduled {
                    attempts: u32::try_from(a).unwrap_or(0),
                });
                continue;
            }
            let cur = c
                .query_opt(&self.sql.current, &[&r.task_id.as_str()])
                .await
                .map_err(|e| pg_err("task.schedule_retries", e))?;
            out.push(outcome_without_update(
                cur.map(|row| (row.get::<_, String>(0), row.get::<_, i32>(1))),
                r.expected_attempts,
            ));
        }
        Ok(out)
    }
}

/// The outcome of a request whose fenced update matched no row: a moved attempt count is a
/// conflict (someone else retried), otherwise the task is not in a retryable state.
fn outcome_without_update(current: Option<(String, i32)>, expected: u32) -> RetryOutcome {
    match current {
        None => RetryOutcome::NotFound,
        Some((st, att)) => {
            let att = u32::try_from(att).unwrap_or(0);
            match parse_status(&st) {
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
    async fn recent_failed(&self, limit: usize) -> Result<Vec<Task>> {
        let c = self.client("task.recent_failed").await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `query` collects every row before returning: a connection lost mid-read is an error,
        // never a shorter list.
        let rows = c
            .query(&self.sql.recent_failed, &[&limit])
            .await
            .map_err(|e| pg_err("task.recent_failed", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(t) = row_to_task(r)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn counts(&self, since: Timestamp, until: Timestamp) -> Result<StatusCounts> {
        let c = self.client("task.counts").await?;
        let r = c
            .query_one(&self.sql.counts, &[&since, &until])
            .await
            .map_err(|e| pg_err("task.counts", e))?;
        let n = |i: usize| -> u64 { u64::try_from(r.get::<_, i64>(i)).unwrap_or(0) };
        let mut s = StatusCounts::new(n(0), n(1));
        s.in_flight = n(2);
        Ok(s)
    }

    async fn get(&self, task_id: &TaskId) -> Result<Task> {
        let c = self.client("task.get").await?;
        let row = c
            .query_opt(&self.sql.get, &[&task_id.as_str()])
            .await
            .map_err(|e| pg_err("task.get", e))?;
        row.as_ref()
            .map(row_to_task)
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                Error::not_found(format!("task {task_id} not found"))
                    .with_operation("task.get")
                    .with_backend(BACKEND)
            })
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
        let mut seen = std::collections::HashSet::new();
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
        let c = self.client("task.schedule_retries").await?;
        let rows = c
            .query(&self.sql.schedule_batch, &[&ids, &exp, &nb])
            .await
            .map_err(|e| pg_err("task.schedule_retries", e))?;
        // Position (1-based, from `WITH ORDINALITY`) -> attempts after the update.
        let mut updated: Vec<Option<u32>> = vec![None; requests.len()];
        for row in &rows {
            let ord: i64 = row.get(0);
            let attempts: i32 = row.get(1);
            let slot = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| updated.get_mut(i))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unexpected,
                        "retry batch returned a position outside the batch",
                    )
                    .with_operation("task.schedule_retries")
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
        let mut current = std::collections::HashMap::new();
        if !missed.is_empty() {
            let rows = c
                .query(&self.sql.current_many, &[&missed])
                .await
                .map_err(|e| pg_err("task.schedule_retries", e))?;
            for row in &rows {
                current.insert(
                    row.get::<_, String>(0),
                    (row.get::<_, String>(1), row.get::<_, i32>(2)),
                );
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
        Err(match cur {
            None => Error::not_found(format!("task {task_id} not found")),
            Some(r) => Error::conflict(format!(
                "task {task_id} is {} with {} attempts, expected failed with {expected_attempts}",
                r.get::<_, String>(0),
                r.get::<_, i32>(1)
            )),
        }
        .with_operation("task.mark_final")
        .with_backend(BACKEND))
    }
}

// ---------------------------------------------------------------------------------------------
// Incident ledger

#[derive(Debug)]
struct IncidentSql {
    migrate: String,
    insert: String,
    by_key: String,
    open_in_scope: String,
    claim: String,
    epoch_for_share: String,
    save_state: String,
    reserve: String,
    append: String,
    timeline: String,
    close: String,
}

impl IncidentSql {
    fn new(schema: Option<&str>) -> Result<Self> {
        let inc = qualified(schema, "flowfail_incidents")?;
        let tl = qualified(schema, "flowfail_incident_timeline")?;
        let mig = qualified(schema, "flowfail_migrations")?;
        let schema_stmt = match schema {
            Some(s) => format!("CREATE SCHEMA IF NOT EXISTS {};", ident(s)?),
            None => String::new(),
        };
        let cols = "key, scope, epoch, opened_at, state, effects, closed_at, post_incident";
        Ok(IncidentSql {
            migrate: format!(
                "{schema_stmt}
                 CREATE TABLE IF NOT EXISTS {mig} (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS {inc} (
                   key TEXT PRIMARY KEY,
                   scope TEXT NOT NULL,
                   epoch BIGINT NOT NULL DEFAULT 0,
                   opened_at TIMESTAMPTZ NOT NULL,
                   state JSONB NOT NULL,
                   effects TEXT[] NOT NULL DEFAULT '{{}}',
                   closed_at TIMESTAMPTZ,
                   post_incident JSONB);
                 CREATE UNIQUE INDEX IF NOT EXISTS flowfail_incidents_one_open ON {inc} (scope) WHERE closed_at IS NULL;
                 CREATE TABLE IF NOT EXISTS {tl} (
                   id BIGSERIAL PRIMARY KEY,
                   key TEXT NOT NULL REFERENCES {inc} (key),
                   at TIMESTAMPTZ NOT NULL,
                   kind TEXT NOT NULL,
                   detail JSONB NOT NULL);
                 CREATE INDEX IF NOT EXISTS flowfail_incident_timeline_key ON {tl} (key, id);
                 INSERT INTO {mig} (version) VALUES (1) ON CONFLICT DO NOTHING;"
            ),
            insert: format!(
                "INSERT INTO {inc} (key, scope, epoch, opened_at, state) VALUES ($1, $2, 0, $3, $4)
                 ON CONFLICT DO NOTHING RETURNING {cols}"
            ),
            by_key: format!("SELECT {cols} FROM {inc} WHERE key = $1"),
            open_in_scope: format!("SELECT {cols} FROM {inc} WHERE scope = $1 AND closed_at IS NULL"),
            claim: format!("UPDATE {inc} SET epoch = epoch + 1 WHERE key = $1 RETURNING epoch"),
            epoch_for_share: format!("SELECT epoch FROM {inc} WHERE key = $1 FOR SHARE"),
            save_state: format!("UPDATE {inc} SET state = $3 WHERE key = $1 AND epoch <= $2 RETURNING 1"),
            reserve: format!(
                "UPDATE {inc} SET effects = array_append(effects, $3) WHERE key = $1 AND epoch <= $2 AND NOT ($3 = ANY(effects)) RETURNING 1"
            ),
            append: format!(
                "INSERT INTO {tl} (key, at, kind, detail)
                 SELECT $1, at, kind, detail FROM unnest($2::timestamptz[], $3::text[], $4::jsonb[]) WITH ORDINALITY AS e(at, kind, detail, ord) ORDER BY ord"
            ),
            timeline: format!("SELECT at, kind, detail FROM {tl} WHERE key = $1 ORDER BY id"),
            close: format!(
                "UPDATE {inc} SET closed_at = coalesce(closed_at, $3), post_incident = coalesce(post_incident, $4)
                 WHERE key = $1 AND epoch <= $2 RETURNING 1"
            ),
        })
    }
}

/// [`IncidentStore`] on PostgreSQL: one row per incident (a partial unique index keeps one open
/// incident per scope), an append-only timeline table, epochs checked in the same statement as
/// every write.
#[derive(Clone)]
pub struct PgIncidentStore {
    pool: Pool,
    sql: Arc<IncidentSql>,
}

impl std::fmt::Debug for PgIncidentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgIncidentStore").finish_non_exhaustive()
    }
}

fn row_to_incident(r: &tokio_postgres::Row) -> IncidentRecord {
    let mut rec = IncidentRecord::new(
        r.get::<_, String>(0),
        r.get::<_, String>(1),
        r.get(3),
        r.get(4),
    );
    rec.epoch = u64::try_from(r.get::<_, i64>(2)).unwrap_or(0);
    rec.effects = r.get(5);
    rec.closed_at = r.get(6);
    rec.post_incident = r.get(7);
    rec
}

impl PgIncidentStore {
    /// A ledger in `schema` (None: the search path).
    pub fn new(pool: Pool, schema: Option<&str>) -> Result<Self> {
        Ok(PgIncidentStore {
            pool,
            sql: Arc::new(IncidentSql::new(schema)?),
        })
    }

    async fn client(&self, op: &'static str) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| pool_err(op, e))
    }

    /// Creates the ledger's schema, tables and indexes if missing; records the migration
    /// version. Idempotent and safe to run from several replicas at once.
    pub async fn migrate(&self) -> Result<()> {
        let mut c = self.client("incident.migrate").await?;
        let tx = c
            .transaction()
            .await
            .map_err(|e| pg_err("incident.migrate", e))?;
        tx.execute("SELECT pg_advisory_xact_lock(7355609)", &[])
            .await
            .map_err(|e| pg_err("incident.migrate", e))?;
        tx.batch_execute(&self.sql.migrate)
            .await
            .map_err(|e| pg_err("incident.migrate", e))?;
        tx.commit().await.map_err(|e| pg_err("incident.migrate", e))
    }

    fn stale(op: &'static str, key: &str, epoch: Epoch) -> Error {
        Error::conflict(format!(
            "stale writer: epoch {epoch} is older than incident {}'s",
            describe(key)
        ))
        .with_operation(op)
        .with_backend(BACKEND)
    }

    async fn exists(
        &self,
        c: &deadpool_postgres::Object,
        key: &str,
        op: &'static str,
    ) -> Result<bool> {
        Ok(c.query_opt(&self.sql.by_key, &[&key])
            .await
            .map_err(|e| pg_err(op, e))?
            .is_some())
    }

    async fn epoch_failure(
        &self,
        c: &deadpool_postgres::Object,
        key: &str,
        epoch: Epoch,
        op: &'static str,
    ) -> Error {
        match self.exists(c, key, op).await {
            Ok(true) => Self::stale(op, key, epoch),
            Ok(false) => Error::not_found(format!("incident {} not found", describe(key)))
                .with_operation(op)
                .with_backend(BACKEND),
            Err(e) => e,
        }
    }
}

fn epoch_param(e: Epoch) -> i64 {
    i64::try_from(e).unwrap_or(i64::MAX)
}

#[async_trait]
impl IncidentStore for PgIncidentStore {
    async fn open(
        &self,
        scope: &str,
        key: &str,
        opened_at: Timestamp,
        state: &serde_json::Value,
    ) -> Result<(IncidentRecord, bool)> {
        let c = self.client("incident.open").await?;
        for _ in 0..5 {
            let inserted = c
                .query_opt(&self.sql.insert, &[&key, &scope, &opened_at, state])
                .await
                .map_err(|e| pg_err("incident.open", e))?;
            if let Some(r) = inserted {
                return Ok((row_to_incident(&r), true));
            }
            if let Some(r) = c
                .query_opt(&self.sql.by_key, &[&key])
                .await
                .map_err(|e| pg_err("incident.open", e))?
            {
                return Ok((row_to_incident(&r), false));
            }
            if let Some(r) = c
                .query_opt(&self.sql.open_in_scope, &[&scope])
                .await
                .map_err(|e| pg_err("incident.open", e))?
            {
                return Ok((row_to_incident(&r), false));
            }
            // The open incident closed between our insert and our read: try again.
        }
        Err(Error::conflict("incident kept changing while opening")
            .with_operation("incident.open")
            .with_backend(BACKEND)
            .transient())
    }

    async fn find_open(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        let c = self.client("incident.find_open").await?;
        let r = c
            .query_opt(&self.sql.open_in_scope, &[&scope])
            .await
            .map_err(|e| pg_err("incident.find_open", e))?;
        Ok(r.as_ref().map(row_to_incident))
    }

    async fn claim(&self, key: &str) -> Result<Epoch> {
        let c = self.client("incident.claim").await?;
        let r = c
            .query_opt(&self.sql.claim, &[&key])
            .await
            .map_err(|e| pg_err("incident.claim", e))?;
        r.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .ok_or_else(|| {
                Error::not_found(format!("incident {} not found", describe(key)))
                    .with_operation("incident.claim")
                    .with_backend(BACKEND)
            })
    }

    async fn get(&self, key: &str) -> Result<IncidentRecord> {
        let c = self.client("incident.get").await?;
        let r = c
            .query_opt(&self.sql.by_key, &[&key])
            .await
            .map_err(|e| pg_err("incident.get", e))?
            .ok_or_else(|| {
                Error::not_found(format!("incident {} not found", describe(key)))
                    .with_operation("incident.get")
                    .with_backend(BACKEND)
            })?;
        let mut rec = row_to_incident(&r);
        let rows = c
            .query(&self.sql.timeline, &[&key])
            .await
            .map_err(|e| pg_err("incident.get", e))?;
        rec.timeline = rows
            .iter()
            .map(|r| TimelineEntry::new(r.get(0), r.get::<_, String>(1), r.get(2)))
            .collect();
        Ok(rec)
    }

    async fn save_state(&self, key: &str, epoch: Epoch, state: &serde_json::Value) -> Result<()> {
        let c = self.client("incident.save_state").await?;
        let r = c
            .query_opt(&self.sql.save_state, &[&key, &epoch_param(epoch), state])
            .await
            .map_err(|e| pg_err("incident.save_state", e))?;
        match r {
            Some(_) => Ok(()),
            None => Err(self
                .epoch_failure(&c, key, epoch, "incident.save_state")
                .await),
        }
    }

    async fn reserve_effect(&self, key: &str, epoch: Epoch, effect: &str) -> Result<bool> {
        let c = self.client("incident.reserve_effect").await?;
        let r = c
            .query_opt(&self.sql.reserve, &[&key, &epoch_param(epoch), &effect])
            .await
            .map_err(|e| pg_err("incident.reserve_effect", e))?;
        if r.is_some() {
            return Ok(true);
        }
        let rec = c
            .query_opt(&self.sql.by_key, &[&key])
            .await
            .map_err(|e| pg_err("incident.reserve_effect", e))?;
        match rec {
            None => Err(
                Error::not_found(format!("incident {} not found", describe(key)))
                    .with_backend(BACKEND),
            ),
            Some(r) if u64::try_from(r.get::<_, i64>(2)).unwrap_or(0) > epoch => {
                Err(Self::stale("incident.reserve_effect", key, epoch))
            }
            Some(_) => Ok(false),
        }
    }

    async fn append(&self, key: &str, epoch: Epoch, entries: &[TimelineEntry]) -> Result<()> {
        let mut c = self.client("incident.append").await?;
        let tx = c
            .transaction()
            .await
            .map_err(|e| pg_err("incident.append", e))?;
        let cur = tx
            .query_opt(&self.sql.epoch_for_share, &[&key])
            .await
            .map_err(|e| pg_err("incident.append", e))?
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
        match cur {
            None => {
                return Err(
                    Error::not_found(format!("incident {} not found", describe(key)))
                        .with_operation("incident.append")
                        .with_backend(BACKEND),
                );
            }
            Some(e) if e > epoch => return Err(Self::stale("incident.append", key, epoch)),
            Some(_) => {}
        }
        let at: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at).collect();
        let kind: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        let detail: Vec<&serde_json::Value> = entries.iter().map(|e| &e.detail).collect();
        tx.execute(&self.sql.append, &[&key, &at, &kind, &detail])
            .await
            .map_err(|e| pg_err("incident.append", e))?;
        tx.commit().await.map_err(|e| pg_err("incident.append", e))
    }

    async fn close(
        &self,
        key: &str,
        epoch: Epoch,
        closed_at: Timestamp,
        post_incident: &serde_json::Value,
    ) -> Result<()> {
        let c = self.client("incident.close").await?;
        let r = c
            .query_opt(
                &self.sql.close,
                &[&key, &epoch_param(epoch), &closed_at, post_incident],
            )
            .await
            .map_err(|e| pg_err("incident.close", e))?;
        match r {
            Some(_) => Ok(()),
            None => Err(self.epoch_failure(&c, key, epoch, "incident.close").await),
        }
    }
}
