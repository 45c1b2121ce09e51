//! The ledger side: [`PgIncidentStore`], flowfail's incident ledger, and its migration.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use flowfail_core::control::{Approval, Pause};
use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::ports::{IncidentListing, IncidentQuery};
use flowfail_core::{
    Epoch, Error, IncidentRecord, IncidentStore, Result, TimelineEntry, Timestamp,
};

use crate::conn::{BACKEND, LEDGER_MIGRATION_LOCK, client, decode_err, ident, pg_err, qualified};

#[derive(Debug)]
struct IncidentSql {
    migrate: String,
    insert: String,
    by_key: String,
    open_in_scope: String,
    latest_closed: String,
    claim: String,
    epoch_for_share: String,
    epoch_of: String,
    save_state: String,
    reserve: String,
    append: String,
    timeline: String,
    close: String,
    set_pause: String,
    lift_pause: String,
    pause_flag: String,
    add_approval: String,
    approvals: String,
    closed_at: String,
    list: String,
    /// Incidents, then pauses, carried from one scope to another ([`PgIncidentStore::adopt_scope`]).
    adopt: [String; 2],
}

/// [`PgIncidentStore::adopt_scope`]'s statements: incidents, then the pause.
fn adopt_sql(inc: &str, pause: &str) -> [String; 2] {
    [
        // An open incident moves only where none is open (one open per scope).
        format!(
            "UPDATE {inc} i SET scope = $2 WHERE i.scope = $1 AND (i.closed_at IS NOT NULL
               OR NOT EXISTS (SELECT 1 FROM {inc} o WHERE o.scope = $2 AND o.closed_at IS NULL))"
        ),
        format!(
            "UPDATE {pause} p SET scope = $2 WHERE p.scope = $1
               AND NOT EXISTS (SELECT 1 FROM {pause} q WHERE q.scope = $2)"
        ),
    ]
}

impl IncidentSql {
    fn new(schema: Option<&str>) -> Result<Self> {
        let inc = qualified(schema, "flowfail_incidents")?;
        let tl = qualified(schema, "flowfail_incident_timeline")?;
        let mig = qualified(schema, "flowfail_migrations")?;
        let pause = qualified(schema, "flowfail_pause")?;
        let appr = qualified(schema, "flowfail_approvals")?;
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
                 INSERT INTO {mig} (version) VALUES (1) ON CONFLICT DO NOTHING;
                 CREATE TABLE IF NOT EXISTS {pause} (
                   scope TEXT PRIMARY KEY,
                   reason TEXT NOT NULL,
                   paused_by TEXT NOT NULL,
                   paused_at TIMESTAMPTZ NOT NULL);
                 CREATE TABLE IF NOT EXISTS {appr} (
                   id BIGSERIAL PRIMARY KEY,
                   key TEXT NOT NULL REFERENCES {inc} (key),
                   action TEXT NOT NULL,
                   approved_by TEXT NOT NULL,
                   approved_at TIMESTAMPTZ NOT NULL);
                 CREATE INDEX IF NOT EXISTS flowfail_approvals_key ON {appr} (key, id);
                 INSERT INTO {mig} (version) VALUES (2) ON CONFLICT DO NOTHING;
                 CREATE INDEX IF NOT EXISTS flowfail_incidents_closed ON {inc} (scope, closed_at DESC, opened_at DESC, key DESC) WHERE closed_at IS NOT NULL;
                 INSERT INTO {mig} (version) VALUES (3) ON CONFLICT DO NOTHING;
                 {}",
                migration_4(&inc, &appr, &mig)
            ),
            insert: format!(
                "INSERT INTO {inc} (key, scope, epoch, opened_at, state) VALUES ($1, $2, 0, $3, $4)
                 ON CONFLICT DO NOTHING RETURNING {cols}"
            ),
            by_key: format!("SELECT {cols} FROM {inc} WHERE key = $1"),
            adopt: adopt_sql(&inc, &pause),
            open_in_scope: format!("SELECT {cols} FROM {inc} WHERE scope = $1 AND closed_at IS NULL"),
            latest_closed: format!(
                "SELECT {cols} FROM {inc} WHERE scope = $1 AND closed_at IS NOT NULL
                 ORDER BY closed_at DESC, opened_at DESC, key DESC LIMIT 1"
            ),
            claim: format!(
                "UPDATE {inc} SET epoch = epoch + 1 WHERE key = $1 AND closed_at IS NULL RETURNING epoch"
            ),
            epoch_for_share: format!("SELECT epoch FROM {inc} WHERE key = $1 FOR SHARE"),
            epoch_of: format!("SELECT epoch, closed_at IS NOT NULL FROM {inc} WHERE key = $1"),
            save_state: format!(
                "UPDATE {inc} SET state = $3 WHERE key = $1 AND epoch <= $2 AND closed_at IS NULL RETURNING 1"
            ),
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
            set_pause: format!(
                "INSERT INTO {pause} (scope, reason, paused_by, paused_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope) DO UPDATE SET reason = $2, paused_by = $3, paused_at = $4"
            ),
            lift_pause: format!("DELETE FROM {pause} WHERE scope = $1"),
            pause_flag: format!("SELECT reason, paused_by, paused_at FROM {pause} WHERE scope = $1"),
            // One statement: the incident must exist and be open, or nothing is inserted.
            add_approval: format!(
                "INSERT INTO {appr} (key, action, approved_by, approved_at, denied, reason)
                 SELECT key, $2, $3, $4, $5, $6 FROM {inc} WHERE key = $1 AND closed_at IS NULL RETURNING 1"
            ),
            approvals: format!(
                "SELECT action, approved_by, approved_at, denied, reason FROM {appr} WHERE key = $1 ORDER BY id"
            ),
            closed_at: format!("SELECT closed_at FROM {inc} WHERE key = $1"),
            list: list_sql(&inc, &tl),
        })
    }
}

/// Migration 4: the index `list` reads, and the denial of an approval (who said no, and why).
fn migration_4(inc: &str, appr: &str, mig: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS flowfail_incidents_opened ON {inc} (opened_at DESC, key DESC);
         ALTER TABLE {appr} ADD COLUMN IF NOT EXISTS denied BOOLEAN NOT NULL DEFAULT false;
         ALTER TABLE {appr} ADD COLUMN IF NOT EXISTS reason TEXT;
         INSERT INTO {mig} (version) VALUES (4) ON CONFLICT DO NOTHING;"
    )
}

/// The listing: newest first, each incident with its actions counted by outcome in one pass
/// over its timeline rows (the `(key, id)` index).
fn list_sql(inc: &str, tl: &str) -> String {
    format!(
        "SELECT i.key, i.scope, i.epoch, i.opened_at, i.state, i.effects, i.closed_at, i.post_incident,
                c.applied, c.failed, c.decided
         FROM {inc} i LEFT JOIN LATERAL (
           SELECT count(*) FILTER (WHERE t.detail->>'outcome' = 'applied') AS applied,
                  count(*) FILTER (WHERE t.detail->>'outcome' = 'failed') AS failed,
                  count(*) FILTER (WHERE t.detail->>'outcome' IN ('dry_run', 'skipped')) AS decided
           FROM {tl} t WHERE t.key = i.key AND t.kind = 'action') c ON true
         WHERE (cardinality($1::text[]) = 0 OR i.scope = ANY($1))
           AND (NOT $2 OR i.closed_at IS NULL)
           AND ($3::timestamptz IS NULL OR i.opened_at >= $3)
         ORDER BY i.opened_at DESC, i.key DESC
         LIMIT $4"
    )
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

/// An incident row (columns in `IncidentSql`'s `cols` order), without its timeline.
fn row_to_incident(r: &tokio_postgres::Row, op: &'static str) -> Result<IncidentRecord> {
    let key: String = r.try_get(0).map_err(|e| decode_err(op, e))?;
    let scope: String = r.try_get(1).map_err(|e| decode_err(op, e))?;
    let opened_at: Timestamp = r.try_get(3).map_err(|e| decode_err(op, e))?;
    let state: serde_json::Value = r.try_get(4).map_err(|e| decode_err(op, e))?;
    let mut rec = IncidentRecord::new(key, scope, opened_at, state);
    rec.epoch = epoch_column(r, 2, op)?;
    rec.effects = r.try_get(5).map_err(|e| decode_err(op, e))?;
    rec.closed_at = r.try_get(6).map_err(|e| decode_err(op, e))?;
    rec.post_incident = r.try_get(7).map_err(|e| decode_err(op, e))?;
    Ok(rec)
}

/// The epoch (BIGINT) in column `i` of `r`.
fn epoch_column(r: &tokio_postgres::Row, i: usize, op: &'static str) -> Result<Epoch> {
    let v: i64 = r.try_get(i).map_err(|e| decode_err(op, e))?;
    Ok(u64::try_from(v).unwrap_or(0))
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
        client(&self.pool, op).await
    }

    /// Carries the incidents (acting and shadow) and the pause kept under `legacy` over to
    /// `scope`, when the scope of a Deployment changes (an older version kept them under the
    /// Deployment's name alone): an open incident goes on, a pause stays in force, a cool-down
    /// after an escalation still holds. An open incident or a pause already under `scope`
    /// stays, and the legacy one with it. Returns the rows moved. Idempotent.
    pub async fn adopt_scope(&self, legacy: &str, scope: &str) -> Result<u64> {
        const OP: &str = "incident.adopt_scope";
        let mut c = self.client(OP).await?;
        let tx = c.transaction().await.map_err(|e| pg_err(OP, e))?;
        let shadow = |s: &str| format!("{s}{}", flowfail_core::history::SHADOW_SUFFIX);
        let mut moved = 0;
        for (from, to) in [
            (legacy.to_owned(), scope.to_owned()),
            (shadow(legacy), shadow(scope)),
        ] {
            moved += tx
                .execute(&self.sql.adopt[0], &[&from, &to])
                .await
                .map_err(|e| pg_err(OP, e))?;
        }
        moved += tx
            .execute(&self.sql.adopt[1], &[&legacy, &scope])
            .await
            .map_err(|e| pg_err(OP, e))?;
        tx.commit().await.map_err(|e| pg_err(OP, e))?;
        Ok(moved)
    }

    /// Creates the ledger's schema, tables and indexes if missing; records the migration
    /// version. Idempotent and safe to run from several replicas at once.
    pub async fn migrate(&self) -> Result<()> {
        let mut c = self.client("incident.migrate").await?;
        let tx = c
            .transaction()
            .await
            .map_err(|e| pg_err("incident.migrate", e))?;
        tx.execute(
            &format!("SELECT pg_advisory_xact_lock({LEDGER_MIGRATION_LOCK})"),
            &[],
        )
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

    fn closed(op: &'static str, key: &str) -> Error {
        Error::conflict(format!("incident {} is closed", describe(key)))
            .with_operation(op)
            .with_backend(BACKEND)
    }

    /// Why a write guarded by the epoch (`Some`) or by the incident being open found no row:
    /// no such incident, a stale epoch, or a closed incident.
    async fn why_not(
        &self,
        c: &deadpool_postgres::Object,
        key: &str,
        epoch: Option<Epoch>,
        op: &'static str,
    ) -> Error {
        let row = match c.query_opt(&self.sql.epoch_of, &[&key]).await {
            Ok(row) => row,
            Err(e) => return pg_err(op, e),
        };
        let Some(row) = row else {
            return Error::not_found(format!("incident {} not found", describe(key)))
                .with_operation(op)
                .with_backend(BACKEND);
        };
        let current = match epoch_column(&row, 0, op) {
            Ok(e) => e,
            Err(e) => return e,
        };
        match epoch {
            Some(epoch) if current > epoch => Self::stale(op, key, epoch),
            _ => Self::closed(op, key),
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
                return Ok((row_to_incident(&r, "incident.open")?, true));
            }
            if let Some(r) = c
                .query_opt(&self.sql.by_key, &[&key])
                .await
                .map_err(|e| pg_err("incident.open", e))?
            {
                return Ok((row_to_incident(&r, "incident.open")?, false));
            }
            if let Some(r) = c
                .query_opt(&self.sql.open_in_scope, &[&scope])
                .await
                .map_err(|e| pg_err("incident.open", e))?
            {
                return Ok((row_to_incident(&r, "incident.open")?, false));
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
        r.map(|r| row_to_incident(&r, "incident.find_open"))
            .transpose()
    }

    async fn latest_closed(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        let op = "incident.latest_closed";
        let c = self.client(op).await?;
        let r = c
            .query_opt(&self.sql.latest_closed, &[&scope])
            .await
            .map_err(|e| pg_err(op, e))?;
        r.map(|r| row_to_incident(&r, op)).transpose()
    }

    async fn claim(&self, key: &str) -> Result<Epoch> {
        let c = self.client("incident.claim").await?;
        let r = c
            .query_opt(&self.sql.claim, &[&key])
            .await
            .map_err(|e| pg_err("incident.claim", e))?;
        match r {
            Some(r) => epoch_column(&r, 0, "incident.claim"),
            None => Err(self.why_not(&c, key, None, "incident.claim").await),
        }
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
        let mut rec = row_to_incident(&r, "incident.get")?;
        let rows = c
            .query(&self.sql.timeline, &[&key])
            .await
            .map_err(|e| pg_err("incident.get", e))?;
        rec.timeline = rows
            .iter()
            .map(|r| {
                let at: Timestamp = r.try_get(0).map_err(|e| decode_err("incident.get", e))?;
                let kind: String = r.try_get(1).map_err(|e| decode_err("incident.get", e))?;
                let detail: serde_json::Value =
                    r.try_get(2).map_err(|e| decode_err("incident.get", e))?;
                Ok(TimelineEntry::new(at, kind, detail))
            })
            .collect::<Result<_>>()?;
        Ok(rec)
    }

    async fn list(&self, query: &IncidentQuery) -> Result<Vec<IncidentListing>> {
        let op = "incident.list";
        let c = self.client(op).await?;
        // LIMIT NULL is no limit.
        let limit = (query.limit > 0).then(|| i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows = c
            .query(
                &self.sql.list,
                &[&query.scopes, &query.open_only, &query.since, &limit],
            )
            .await
            .map_err(|e| pg_err(op, e))?;
        rows.iter()
            .map(|r| {
                let count = |i: usize| -> Result<u64> {
                    let n: i64 = r.try_get(i).map_err(|e| decode_err(op, e))?;
                    Ok(u64::try_from(n).unwrap_or(0))
                };
                let mut l = IncidentListing::of(row_to_incident(r, op)?);
                l.applied = count(8)?;
                l.failed = count(9)?;
                l.decided = count(10)?;
                Ok(l)
            })
            .collect()
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
                .why_not(&c, key, Some(epoch), "incident.save_state")
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
            Some(r) => {
                if epoch_column(&r, 2, "incident.reserve_effect")? > epoch {
                    Err(Self::stale("incident.reserve_effect", key, epoch))
                } else {
                    Ok(false)
                }
            }
        }
    }

    async fn check_epoch(&self, key: &str, epoch: Epoch) -> Result<()> {
        let op = "incident.check_epoch";
        let c = self.client(op).await?;
        let r = c
            .query_opt(&self.sql.epoch_of, &[&key])
            .await
            .map_err(|e| pg_err(op, e))?
            .ok_or_else(|| {
                Error::not_found(format!("incident {} not found", describe(key)))
                    .with_operation(op)
                    .with_backend(BACKEND)
            })?;
        if epoch_column(&r, 0, op)? > epoch {
            Err(Self::stale(op, key, epoch))
        } else if r.try_get::<_, bool>(1).map_err(|e| decode_err(op, e))? {
            Err(Self::closed(op, key))
        } else {
            Ok(())
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
            .map(|r| epoch_column(&r, 0, "incident.append"))
            .transpose()?;
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
            None => Err(self.why_not(&c, key, Some(epoch), "incident.close").await),
        }
    }
    async fn set_pause(&self, scope: &str, pause: Option<&Pause>) -> Result<()> {
        let c = self.client("incident.set_pause").await?;
        let r = match pause {
            Some(p) => {
                c.execute(&self.sql.set_pause, &[&scope, &p.reason, &p.by, &p.since])
                    .await
            }
            None => c.execute(&self.sql.lift_pause, &[&scope]).await,
        };
        r.map(|_| ()).map_err(|e| pg_err("incident.set_pause", e))
    }

    async fn pause_flag(&self, scope: &str) -> Result<Option<Pause>> {
        let op = "incident.pause_flag";
        let c = self.client(op).await?;
        let r = c
            .query_opt(&self.sql.pause_flag, &[&scope])
            .await
            .map_err(|e| pg_err(op, e))?;
        r.map(|r| {
            let reason: String = r.try_get(0).map_err(|e| decode_err(op, e))?;
            let by: String = r.try_get(1).map_err(|e| decode_err(op, e))?;
            let since: Timestamp = r.try_get(2).map_err(|e| decode_err(op, e))?;
            Ok(Pause::new(reason, by, since))
        })
        .transpose()
    }

    async fn add_approval(&self, key: &str, approval: &Approval) -> Result<()> {
        let op = "incident.add_approval";
        let c = self.client(op).await?;
        let inserted = c
            .query_opt(
                &self.sql.add_approval,
                &[
                    &key,
                    &approval.action,
                    &approval.by,
                    &approval.at,
                    &approval.denied,
                    &approval.reason,
                ],
            )
            .await
            .map_err(|e| pg_err(op, e))?;
        if inserted.is_some() {
            return Ok(());
        }
        let closed = c
            .query_opt(&self.sql.closed_at, &[&key])
            .await
            .map_err(|e| pg_err(op, e))?;
        Err(match closed {
            None => Error::not_found(format!("incident {} not found", describe(key))),
            Some(_) => Error::refused(format!("incident {} is closed", describe(key))),
        }
        .with_operation(op)
        .with_backend(BACKEND))
    }

    async fn approvals(&self, key: &str) -> Result<Vec<Approval>> {
        let op = "incident.approvals";
        let c = self.client(op).await?;
        if !self.exists(&c, key, op).await? {
            return Err(
                Error::not_found(format!("incident {} not found", describe(key)))
                    .with_operation(op)
                    .with_backend(BACKEND),
            );
        }
        let rows = c
            .query(&self.sql.approvals, &[&key])
            .await
            .map_err(|e| pg_err(op, e))?;
        rows.iter()
            .map(|r| {
                let action: String = r.try_get(0).map_err(|e| decode_err(op, e))?;
                let by: String = r.try_get(1).map_err(|e| decode_err(op, e))?;
                let at: Timestamp = r.try_get(2).map_err(|e| decode_err(op, e))?;
                let denied: bool = r.try_get(3).map_err(|e| decode_err(op, e))?;
                let reason: Option<String> = r.try_get(4).map_err(|e| decode_err(op, e))?;
                Ok(match (denied, reason) {
                    (true, reason) => {
                        Approval::denial(key, action, by, reason.unwrap_or_default(), at)
                    }
                    (false, _) => Approval::new(key, action, by, at),
                })
            })
            .collect()
    }
}
