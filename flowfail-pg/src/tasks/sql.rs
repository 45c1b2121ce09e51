//! Every SQL statement of the task store ([`TaskSql`]), built once from the validated table,
//! columns, statuses and filter.

use flowfail_core::{Result, TaskStatus};

use super::{TaskColumns, TaskFilter, TaskStatuses, TaskTable};
use crate::conn::{ident, qualified};

/// Every SQL statement of the task store, built once from the validated configuration.
#[derive(Debug)]
pub(super) struct TaskSql {
    pub(super) create: String,
    pub(super) recent_failed: String,
    pub(super) counts: String,
    pub(super) window_read: String,
    pub(super) window_lookup: String,
    pub(super) get: String,
    pub(super) task_object: String,
    pub(super) schedule_batch: String,
    pub(super) current_many: String,
    pub(super) schedule_one: String,
    pub(super) current: String,
    pub(super) get_many: String,
    pub(super) mark_final: String,
    pub(super) insert: String,
    pub(super) outcomes: String,
    pub(super) failed_between: String,
}

/// The task table's column names, validated and quoted.
struct Cols {
    id: String,
    flow: String,
    st: String,
    err: String,
    http: String,
    created: String,
    fin: String,
    att: String,
    obj: String,
    nb: String,
    by: String,
}

impl Cols {
    fn new(c: &TaskColumns) -> Result<Self> {
        Ok(Cols {
            id: ident(&c.task_id)?,
            flow: ident(&c.flow_type)?,
            st: ident(&c.status)?,
            err: ident(&c.error_message)?,
            http: ident(&c.http_status)?,
            created: ident(&c.created_at)?,
            fin: ident(&c.finished_at)?,
            att: ident(&c.attempts)?,
            obj: ident(&c.task_object)?,
            nb: ident(&c.retry_not_before)?,
            by: ident(&c.claimed_by)?,
        })
    }

    /// The columns a [`Task`] is decoded from, in [`decode_task`]'s order.
    fn task_select(&self) -> String {
        let Cols {
            id,
            flow,
            st,
            err,
            http,
            created,
            fin,
            att,
            ..
        } = self;
        format!("{id}, {flow}, {st}, {err}, {http}, {created}, {fin}, {att}")
    }
}

impl TaskSql {
    pub(super) fn new(t: &TaskTable) -> Result<Self> {
        let tbl = qualified(t.schema.as_deref(), &t.table)?;
        let c = Cols::new(&t.columns)?;
        let s = &t.statuses;
        s.validate()?;
        let Cols {
            id,
            st,
            created,
            obj,
            att,
            nb,
            by,
            ..
        } = &c;
        let select_cols = c.task_select();
        let only = TaskFilter::and(t.filter.as_ref(), "")?;
        let failed = s.sql_is(st, &[TaskStatus::Failed]);
        let failure = s.sql_is(st, &[TaskStatus::Failed, TaskStatus::FailedFinal]);
        let pending = s.sql_written(TaskStatus::Pending);
        let final_ = s.sql_written(TaskStatus::FailedFinal);
        Ok(TaskSql {
            create: create_sql(&tbl, &t.table, &c, t.filter.as_ref())?,
            recent_failed: format!(
                "SELECT {select_cols} FROM {tbl} WHERE {failed}{only} ORDER BY {created} DESC, {id} LIMIT $1"
            ),
            counts: counts_sql(&tbl, &c, s, &only),
            window_read: window_read_sql(&tbl, &c, s, &only, false),
            window_lookup: window_read_sql(&tbl, &c, s, &only, true),
            get: format!("SELECT {select_cols} FROM {tbl} WHERE {id} = $1{only}"),
            task_object: format!("SELECT {obj} FROM {tbl} WHERE {id} = $1{only}"),
            schedule_batch: schedule_batch_sql(
                &tbl,
                &c,
                s,
                &TaskFilter::and(t.filter.as_ref(), "t.")?,
            ),
            current_many: format!(
                "SELECT {id}, {st}, {att} FROM {tbl} WHERE {id} = ANY($1::text[]){only}"
            ),
            schedule_one: format!(
                "UPDATE {tbl} SET {st} = {pending}, {att} = {att} + 1, {nb} = $3, {by} = NULL
                 WHERE {id} = $1 AND {att} = $2 AND {failed}{only} RETURNING {att}"
            ),
            current: format!("SELECT {st}, {att} FROM {tbl} WHERE {id} = $1{only}"),
            get_many: format!("SELECT {select_cols} FROM {tbl} WHERE {id} = ANY($1::text[]){only}"),
            mark_final: format!(
                "UPDATE {tbl} SET {st} = {final_} WHERE {id} = $1 AND {att} = $2 AND {failure}{only} RETURNING {att}"
            ),
            insert: insert_sql(&tbl, &c, t.filter.as_ref())?,
            outcomes: outcomes_sql(&tbl, &c, s, &only),
            failed_between: format!(
                "SELECT {select_cols} FROM {tbl}
                  WHERE {failure} AND coalesce({fin}, {created}) >= $1 AND coalesce({fin}, {created}) < $2{only}
                  ORDER BY coalesce({fin}, {created}) DESC, {id} LIMIT $3",
                fin = c.fin
            ),
        })
    }
}

/// The development migration: the table `tbl` (named `table`) and the two indexes the queries
/// need.
fn create_sql(tbl: &str, table: &str, c: &Cols, filter: Option<&TaskFilter>) -> Result<String> {
    let Cols {
        id,
        flow,
        st,
        err,
        http,
        created,
        fin,
        att,
        obj,
        nb,
        by,
    } = c;
    let idx = ident(&format!(
        "{}_status_created_idx",
        table.chars().take(40).collect::<String>()
    ))?;
    let done_idx = ident(&format!(
        "{}_done_at_idx",
        table.chars().take(40).collect::<String>()
    ))?;
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {tbl} (
                    {id} TEXT PRIMARY KEY, {flow} TEXT NOT NULL, {st} TEXT NOT NULL,
                    {err} TEXT, {http} INTEGER, {created} TIMESTAMPTZ NOT NULL, {fin} TIMESTAMPTZ,
                    {att} INTEGER NOT NULL DEFAULT 0, {obj} JSONB, {nb} TIMESTAMPTZ, {by} TEXT);
                 CREATE INDEX IF NOT EXISTS {idx} ON {tbl} ({st}, {created} DESC);
                 CREATE INDEX IF NOT EXISTS {done_idx} ON {tbl} ((coalesce({fin}, {created}))) INCLUDE ({st}, {fin}, {created});{}",
        match filter {
            Some(f) => format!(" ALTER TABLE {tbl} ADD COLUMN IF NOT EXISTS {} TEXT;", f.sql()?.0),
            None => String::new(),
        }
    ))
}

/// Two independent counts, each served by its own index: the window by the expression index
/// `<table>_done_at_idx` (index-only: status and both times are INCLUDEd), the tasks in flight
/// by `<table>_status_created_idx`. One scan filtered on `window OR in flight` read the whole
/// table instead (166 ms at 1 M rows; docs/BENCHMARKS.md, P8).
fn counts_sql(tbl: &str, c: &Cols, s: &TaskStatuses, only: &str) -> String {
    let Cols {
        st, created, fin, ..
    } = c;
    let succeeded = s.sql_is(st, &[TaskStatus::Succeeded]);
    let failure = s.sql_is(st, &[TaskStatus::Failed, TaskStatus::FailedFinal]);
    let in_flight = s.sql_is(st, &[TaskStatus::Pending, TaskStatus::Running]);
    let known = s.sql_is(
        st,
        &[
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::FailedFinal,
        ],
    );
    format!(
        "SELECT w.succeeded, w.failed, f.in_flight, w.unknown FROM
                   (SELECT count(*) FILTER (WHERE {succeeded}) AS succeeded,
                           count(*) FILTER (WHERE {failure}) AS failed,
                           count(*) FILTER (WHERE {st} IS NULL OR NOT ({known})) AS unknown
                      FROM {tbl}
                     WHERE coalesce({fin}, {created}) >= $1 AND coalesce({fin}, {created}) < $2{only}) w,
                   (SELECT count(*) AS in_flight FROM {tbl} WHERE {in_flight}{only}) f"
    )
}

/// The incremental alert window's reads (`tasks/window.rs`), each row with its id, window
/// time, class (0 in flight, 1 succeeded, 2 failed, 3 unknown status) and part (0, 1, 2).
/// The read, one statement:
/// 0. the rows whose window time is `$1` or later, served by the window's expression index —
///    later than the window's end too, so that a row whose time moved past it (a clock ahead
///    of flowfail's) leaves the tally;
/// 1. every task in flight (no time), served by the status index.
///
/// The `lookup`: 2. the tasks `$1` (in flight at the last read, in neither part now), by
/// primary key, wherever their time is: one that finished without a finish time counts by its
/// creation time.
fn window_read_sql(tbl: &str, c: &Cols, s: &TaskStatuses, only: &str, lookup: bool) -> String {
    let Cols {
        id,
        st,
        created,
        fin,
        ..
    } = c;
    let succeeded = s.sql_is(st, &[TaskStatus::Succeeded]);
    let failure = s.sql_is(st, &[TaskStatus::Failed, TaskStatus::FailedFinal]);
    let in_flight = s.sql_is(st, &[TaskStatus::Pending, TaskStatus::Running]);
    let class = format!(
        "CASE WHEN {succeeded} THEN 1 WHEN {failure} THEN 2 WHEN {in_flight} THEN 0 ELSE 3 END::smallint"
    );
    if lookup {
        return format!(
            "SELECT {id}, coalesce({fin}, {created}), {class}, 2::smallint
               FROM {tbl} WHERE {id} = ANY($1::text[]){only}"
        );
    }
    format!(
        "SELECT {id}, coalesce({fin}, {created}), {class}, 0::smallint
           FROM {tbl} WHERE coalesce({fin}, {created}) >= $1{only}
         UNION ALL
         SELECT {id}, NULL::timestamptz, 0::smallint, 1::smallint FROM {tbl} WHERE {in_flight}{only}"
    )
}

/// Every finished task of `[$1, $2)` in the order of the alert window's expression index
/// (index-only without a filter): when it finished, whether it succeeded, whether it failed.
fn outcomes_sql(tbl: &str, c: &Cols, s: &TaskStatuses, only: &str) -> String {
    let Cols {
        st, created, fin, ..
    } = c;
    let succeeded = s.sql_is(st, &[TaskStatus::Succeeded]);
    let failure = s.sql_is(st, &[TaskStatus::Failed, TaskStatus::FailedFinal]);
    format!(
        "SELECT coalesce({fin}, {created}), coalesce({succeeded}, false), coalesce({failure}, false) FROM {tbl}
          WHERE coalesce({fin}, {created}) >= $1 AND coalesce({fin}, {created}) < $2{only}
          ORDER BY coalesce({fin}, {created})"
    )
}

/// One UPDATE joined to the request arrays, returning the request's position. No join between
/// CTEs: with statistics that lag the table (all rows just flipped from failed to pending),
/// PostgreSQL plans such a join as a nested loop over the CTE, quadratic in the batch —
/// seconds for 10,000 tasks.
fn schedule_batch_sql(tbl: &str, c: &Cols, s: &TaskStatuses, only: &str) -> String {
    let Cols {
        id,
        st,
        att,
        nb,
        by,
        ..
    } = c;
    let pending = s.sql_written(TaskStatus::Pending);
    let failed = s.sql_is(&format!("t.{st}"), &[TaskStatus::Failed]);
    format!(
        "UPDATE {tbl} t SET {st} = {pending}, {att} = t.{att} + 1, {nb} = r.nb, {by} = NULL
                 FROM unnest($1::text[], $2::int[], $3::timestamptz[]) WITH ORDINALITY AS r(tid, expected, nb, ord)
                 WHERE t.{id} = r.tid AND t.{att} = r.expected AND {failed}{only}
                 RETURNING r.ord, t.{att}"
    )
}

/// Inserts or replaces tasks given as parallel arrays.
fn insert_sql(tbl: &str, c: &Cols, filter: Option<&TaskFilter>) -> Result<String> {
    let Cols {
        id,
        flow,
        st,
        err,
        http,
        created,
        fin,
        att,
        obj,
        ..
    } = c;
    // The filter's column carries its value on every row inserted.
    // A row of another Deployment with the same id is left as it is (never updated over).
    let (fcol, fval, fwhere) = match filter {
        Some(f) => {
            let (col, val) = f.sql()?;
            (
                format!(", {col}"),
                format!(", {val}"),
                format!(" WHERE {tbl}.{col} = {val}"),
            )
        }
        None => (String::new(), String::new(), String::new()),
    };
    Ok(format!(
        "INSERT INTO {tbl} ({id}, {flow}, {st}, {err}, {http}, {created}, {fin}, {att}, {obj}{fcol})
                 SELECT u.*{fval} FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[], $8::int[], $9::jsonb[]) AS u
                 ON CONFLICT ({id}) DO UPDATE SET {flow} = EXCLUDED.{flow}, {st} = EXCLUDED.{st}, {err} = EXCLUDED.{err},
                   {http} = EXCLUDED.{http}, {created} = EXCLUDED.{created}, {fin} = EXCLUDED.{fin}, {att} = EXCLUDED.{att}, {obj} = EXCLUDED.{obj}{fwhere}"
    ))
}
