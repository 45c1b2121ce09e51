//! `check-config`'s probe of the task table: every configured column, by name and type.

use flowfail_core::Result;

use super::PgTaskStore;
use crate::conn::pg_err;

/// The types a column of the task table may have, as `information_schema.columns` names them.
fn expected_types(role: &str) -> &'static [&'static str] {
    const TEXT: &[&str] = &["text", "character varying", "character", "USER-DEFINED"];
    match role {
        "http_status" | "attempts" => &["integer", "smallint", "bigint"],
        "created_at" | "finished_at" | "retry_not_before" => &["timestamp with time zone"],
        "task_object" => &["jsonb"],
        _ => TEXT,
    }
}

impl PgTaskStore {
    /// Every configured column of the task table, by name and type (read from
    /// `information_schema.columns`, read-only): what is missing or of a type flowfail cannot
    /// read, one line each (`column "finished" (finished_at) is missing`), empty when all is
    /// as needed. For `check-config`, so a renamed column fails there and not mid-incident.
    pub async fn check_columns(&self) -> Result<Vec<String>> {
        const OP: &str = "task.columns";
        let t = &self.table;
        let c = self.client(OP).await?;
        let rows = c
            .query(
                "SELECT column_name, data_type FROM information_schema.columns
                 WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2",
                &[&t.schema, &t.table],
            )
            .await
            .map_err(|e| pg_err(OP, e))?;
        let mut have = std::collections::BTreeMap::<String, String>::new();
        for r in &rows {
            let name: String = r.try_get(0).map_err(|e| crate::conn::decode_err(OP, e))?;
            let ty: String = r.try_get(1).map_err(|e| crate::conn::decode_err(OP, e))?;
            have.insert(name, ty);
        }
        if have.is_empty() {
            return Ok(vec![format!("table {:?} not found", t.table)]);
        }
        let k = &t.columns;
        let roles = [
            ("task_id", &k.task_id),
            ("flow_type", &k.flow_type),
            ("status", &k.status),
            ("error_message", &k.error_message),
            ("http_status", &k.http_status),
            ("created_at", &k.created_at),
            ("finished_at", &k.finished_at),
            ("attempts", &k.attempts),
            ("task_object", &k.task_object),
            ("retry_not_before", &k.retry_not_before),
            ("claimed_by", &k.claimed_by),
        ];
        let mut problems = Vec::new();
        let filter = t.filter.as_ref().map(|f| ("filter", &f.column));
        for (role, name) in roles.into_iter().chain(filter) {
            match have.get(name.as_str()) {
                None => problems.push(format!("column {name:?} ({role}) is missing")),
                Some(ty) if !expected_types(role).contains(&ty.as_str()) => problems.push(format!(
                    "column {name:?} ({role}) is {ty}, expected {}",
                    expected_types(role).join(" or ")
                )),
                Some(_) => {}
            }
        }
        Ok(problems)
    }
}

impl PgTaskStore {
    /// The status and flow-type values of the tasks finished (or created) since `since` that
    /// flowfail does not read (read-only, by the alert's own index): a status it does not know is in no
    /// count of the alert and no triage; a flow type neither known nor mapped in
    /// [`super::TaskTable::flow_types`] is counted by the alert but left out of triage. One line
    /// per value with its row count, at most ten of each; empty when every value is read.
    pub async fn check_values(&self, since: flowfail_core::Timestamp) -> Result<Vec<String>> {
        const OP: &str = "task.values";
        let t = &self.table;
        let tbl = crate::conn::qualified(t.schema.as_deref(), &t.table)?;
        let st = crate::conn::ident(&t.columns.status)?;
        let flow = crate::conn::ident(&t.columns.flow_type)?;
        let created = crate::conn::ident(&t.columns.created_at)?;
        let fin = crate::conn::ident(&t.columns.finished_at)?;
        let only = super::TaskFilter::and(t.filter.as_ref(), "")?;
        let c = self.client(OP).await?;
        let mut out = Vec::new();
        for (col, what) in [(&st, "status"), (&flow, "flow type")] {
            let rows = c
                .query(
                    &format!(
                        "SELECT {col}::text, count(*) FROM {tbl}
                         WHERE coalesce({fin}, {created}) >= $1{only}
                         GROUP BY 1 ORDER BY 2 DESC LIMIT 50"
                    ),
                    &[&since],
                )
                .await
                .map_err(|e| pg_err(OP, e))?;
            let unknown: Vec<String> = rows
                .iter()
                .filter_map(|r| {
                    let v: Option<String> = r.try_get(0).ok()?;
                    let n: i64 = r.try_get(1).ok()?;
                    let v = v.unwrap_or_default();
                    let known = if what == "status" {
                        t.statuses.parse(&v).is_some()
                    } else {
                        super::parse_flow(&v).is_some() || t.flow_types.contains_key(&v)
                    };
                    (!known)
                        .then(|| format!("{:?} ({n} rows)", flowfail_core::model::sanitize(&v, 40)))
                })
                .take(10)
                .collect();
            if !unknown.is_empty() {
                let why = if what == "status" {
                    "not counted by the alert nor triaged: map them under [postgres.statuses]"
                } else {
                    "counted by the alert, left out of triage: map them under [postgres.flow_types]"
                };
                out.push(format!(
                    "{what} values flowfail does not read: {} — {why}",
                    unknown.join(", ")
                ));
            }
        }
        Ok(out)
    }
}
