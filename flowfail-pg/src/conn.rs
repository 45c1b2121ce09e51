//! What both stores share: the pool, the conversion of PostgreSQL errors into flowfail's
//! [`Error`], identifier quoting, and the advisory-lock keys of the two migrations.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::{Error, ErrorKind, Result};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

pub(crate) const BACKEND: &str = "postgres";

/// Advisory-lock key held while [`crate::PgTaskStore::migrate`] creates the task table.
pub(crate) const TASK_MIGRATION_LOCK: i64 = 7_355_608;
/// Advisory-lock key held while [`crate::PgIncidentStore::migrate`] creates the ledger.
pub(crate) const LEDGER_MIGRATION_LOCK: i64 = 7_355_609;

/// Connects a pool to `url` (`postgres://user@host:port/db`). No TLS: use a local socket or a
/// trusted network, or put a TLS-terminating proxy in front.
pub fn connect(url: &str, max_size: usize) -> Result<Pool> {
    let cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        Error::invalid_input(format!("invalid PostgreSQL URL: {e}")).with_backend(BACKEND)
    })?;
    connect_config(cfg, max_size)
}

/// Connects a pool with a parsed configuration: for a password that must not travel in a URL
/// (`cfg.password(…)` from a secret).
pub fn connect_config(cfg: tokio_postgres::Config, max_size: usize) -> Result<Pool> {
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

/// Kind and retryability of an error with `code` (`None`: no answer from the server).
fn classify(code: Option<&SqlState>) -> (ErrorKind, bool) {
    match code {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            (ErrorKind::Conflict, true)
        }
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => (ErrorKind::AlreadyExists, false),
        Some(c) if *c == SqlState::QUERY_CANCELED => (ErrorKind::Timeout, true),
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE || c.code().starts_with("28") => {
            (ErrorKind::PermissionDenied, false)
        }
        Some(c)
            if c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::CANNOT_CONNECT_NOW =>
        {
            (ErrorKind::Unavailable, true)
        }
        Some(_) => (ErrorKind::Unexpected, false),
        None => (ErrorKind::Unavailable, true),
    }
}

/// The server's own words for an error it answered with: `relation "tasks" does not exist
/// (SQLSTATE 42P01)`.
fn server_words(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error()
        .map(|db| format!("{} (SQLSTATE {})", db.message(), db.code().code()))
}

/// A PostgreSQL error as a flowfail error; the SQLSTATE decides kind and retryability. The
/// message is the server's own (with its SQLSTATE) when it answered; the source is the
/// server's error with its detail and hint, or the client's error down to the OS error.
pub(crate) fn pg_err(op: &'static str, e: tokio_postgres::Error) -> Error {
    let (kind, transient) = classify(e.code());
    let message = server_words(&e).unwrap_or_else(|| e.to_string());
    let source: Box<dyn std::error::Error + Send + Sync> = if e.as_db_error().is_some() {
        // "db error" says nothing: the server's error itself is the cause.
        e.into_source().unwrap_or_else(|| message.clone().into())
    } else {
        Box::new(e)
    };
    Error::new(kind, message)
        .with_operation(op)
        .with_backend(BACKEND)
        .with_source(source)
        .transient_if(transient)
}

/// The SQLSTATE PostgreSQL answered with, when `e` or one of its causes is a server error
/// (`42P01` for a missing table): for callers that explain common mistakes.
pub fn sql_state<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a str> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(db) = c.downcast_ref::<tokio_postgres::error::DbError>() {
            return Some(db.code().code());
        }
        if let Some(code) = c
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|p| p.code())
        {
            return Some(code.code());
        }
        cur = c.source();
    }
    None
}

/// A column that does not decode as the type the store expects (`Row::try_get`): the schema
/// is not what the store was configured for, so reading again fails the same way.
pub(crate) fn decode_err(op: &'static str, e: tokio_postgres::Error) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!("unexpected column type: {e}"),
    )
    .with_operation(op)
    .with_backend(BACKEND)
    .with_source(e)
}

/// No connection from the pool: transient, unless the server refused the login or the
/// database (then the server's words and SQLSTATE say why). The cause chain goes down to the
/// OS error (`Connection refused`).
pub(crate) fn pool_err(op: &'static str, e: deadpool_postgres::PoolError) -> Error {
    let (kind, transient, message) = match &e {
        deadpool_postgres::PoolError::Backend(pe) => {
            let (kind, transient) = classify(pe.code());
            let words = server_words(pe).map_or_else(String::new, |w| format!(": {w}"));
            (kind, transient, format!("no database connection{words}"))
        }
        _ => (
            ErrorKind::Unavailable,
            true,
            "no database connection".to_owned(),
        ),
    };
    Error::new(kind, message)
        .with_operation(op)
        .with_backend(BACKEND)
        .with_source(e)
        .transient_if(transient)
}

/// A connection from `pool` for `op`.
pub(crate) async fn client(pool: &Pool, op: &'static str) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| pool_err(op, e))
}

/// A SQL identifier from configuration: `^[A-Za-z_][A-Za-z0-9_]{0,62}$`, quoted.
pub(crate) fn ident(s: &str) -> Result<String> {
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

/// `"schema"."name"`, or `"name"` on the search path.
pub(crate) fn qualified(schema: Option<&str>, name: &str) -> Result<String> {
    Ok(match schema {
        Some(s) => format!("{}.{}", ident(s)?, ident(name)?),
        None => ident(name)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert_eq!(ident("tasks").ok().as_deref(), Some("\"tasks\""));
        assert_eq!(ident("_t1").ok().as_deref(), Some("\"_t1\""));
        for bad in ["", "1tasks", "ta\"sks", "t; DROP TABLE x", &"x".repeat(64)] {
            assert!(ident(bad).is_err(), "{bad}");
        }
        assert_eq!(
            qualified(Some("s"), "t").ok().as_deref(),
            Some("\"s\".\"t\"")
        );
    }
}
