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
        let have: std::collections::BTreeMap<String, String> = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
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
        for (role, name) in roles {
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
