//! What both stores share: the pool, the conversion of PostgreSQL errors into flowfail's
//! [`Error`], identifier quoting, and the advisory-lock keys of the two migrations.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::{Error, ErrorKind, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) const BACKEND: &str = "postgres";

/// Advisory-lock key held while [`crate::PgTaskStore::migrate`] creates the task table.
pub(crate) const TASK_MIGRATION_LOCK: i64 = 7_355_608;
/// Advisory-lock key held while [`crate::PgIncidentStore::migrate`] creates the ledger.
pub(crate) const LEDGER_MIGRATION_LOCK: i64 = 7_355_609;

/// Connects a pool to `url` (`postgres://user@host:port/db?sslmode=…`), over TLS (rustls,
/// aws-lc-rs) as the URL's `sslmode` says:
///
/// - `disable`: no TLS.
/// - `prefer`: TLS if the server offers it, in the clear if not. Like libpq's `prefer`, the
///   server's certificate is not verified (a man in the middle can refuse TLS anyway, so
///   `prefer` only protects against eavesdropping).
/// - `require`: TLS or no connection, and the server's certificate must chain to a trusted
///   root and name the host (libpq's `verify-full`). The roots are the platform's, or those
///   in `SSL_CERT_FILE` / `SSL_CERT_DIR` when set (a private CA, e.g. a cloud provider's).
///
/// Without `sslmode` in the URL: `require` when any host is not on this machine, `prefer`
/// for `localhost`, loopback addresses and Unix sockets.
pub fn connect(url: &str, max_size: usize) -> Result<Pool> {
    let mut cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        Error::invalid_input(format!("invalid PostgreSQL URL: {e}")).with_backend(BACKEND)
    })?;
    cfg.ssl_mode(resolve_ssl_mode(&cfg, sslmode_in_url(url)));
    build_pool(cfg, max_size)
}

/// Connects a pool with a parsed configuration: for a password that must not travel in a URL
/// (`cfg.password(…)` from a secret). TLS as in [`connect`]; a `Config` cannot tell an explicit
/// `prefer` from its default, so `prefer` with a host not on this machine becomes `require`
/// (set [`SslMode::Disable`] to go without TLS).
pub fn connect_config(mut cfg: tokio_postgres::Config, max_size: usize) -> Result<Pool> {
    cfg.ssl_mode(resolve_ssl_mode(&cfg, false));
    build_pool(cfg, max_size)
}

/// The TLS mode to connect with: the configured one when `explicit` or not `prefer`
/// (tokio-postgres's default); otherwise `prefer` when every host is on this machine and
/// `require` when one is not.
pub(crate) fn resolve_ssl_mode(cfg: &tokio_postgres::Config, explicit: bool) -> SslMode {
    let mode = cfg.get_ssl_mode();
    if explicit || mode != SslMode::Prefer || is_local(cfg) {
        mode
    } else {
        SslMode::Require
    }
}

/// Whether the connection string sets `sslmode` (URL query or `key=value` form).
fn sslmode_in_url(url: &str) -> bool {
    url.split(['?', '&', ' ', '\t', '\n'])
        .any(|part| part.trim_start().starts_with("sslmode="))
}

/// Every host and host address is on this machine: `localhost`, a loopback address or a Unix
/// socket.
fn is_local(cfg: &tokio_postgres::Config) -> bool {
    let host_local = |h: &Host| match h {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    };
    cfg.get_hosts().iter().all(host_local) && cfg.get_hostaddrs().iter().all(|a| a.is_loopback())
}

/// How long a new connection may take (TCP, TLS and startup), unless the URL sets
/// `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free connection of the pool, and a new one may take to be
/// made, or a returned one to be checked.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server ends a statement running longer than this (`statement_timeout`), unless the
/// URL's `options` set one.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection whose sent data goes unacknowledged this long is dropped (Linux
/// `TCP_USER_TIMEOUT`): a peer that vanished without a reset, or a network that drops every
/// packet, ends a call in seconds, not after the kernel's ~15 minutes of retransmissions.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// The connection settings flowfail needs against a hung server or a black-holed network,
/// where the URL left them unset: a connect timeout, TCP keepalives after 30 s idle (probes
/// every 10 s, 3 lost ends the connection), `TCP_USER_TIMEOUT`, and a server-side
/// `statement_timeout`.
pub(crate) fn harden(cfg: &mut tokio_postgres::Config) {
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(CONNECT_TIMEOUT);
    }
    // tokio-postgres's default idle time before the first keepalive is two hours.
    if cfg.get_keepalives_idle() >= Duration::from_secs(7200) {
        cfg.keepalives_idle(Duration::from_secs(30));
    }
    if cfg.get_keepalives_interval().is_none() {
        cfg.keepalives_interval(Duration::from_secs(10));
    }
    if cfg.get_keepalives_retries().is_none() {
        cfg.keepalives_retries(3);
    }
    if cfg.get_tcp_user_timeout().is_none() {
        cfg.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    let options = cfg.get_options().unwrap_or_default().to_owned();
    if !options.contains("statement_timeout") {
        let set = format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis());
        cfg.options(if options.trim().is_empty() {
            set
        } else {
            format!("{options} {set}")
        });
    }
}

fn build_pool(mut cfg: tokio_postgres::Config, max_size: usize) -> Result<Pool> {
    harden(&mut cfg);
    let tls = tls_connector(cfg.get_ssl_mode())?;
    let mgr = Manager::from_config(
        cfg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(max_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(POOL_WAIT_TIMEOUT))
        .recycle_timeout(Some(POOL_WAIT_TIMEOUT))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("could not build the pool: {e}"),
            )
            .with_backend(BACKEND)
        })
}

/// The rustls connector for `mode`: verifying against the platform's roots for `require`, not
/// verifying for `prefer` (and never used for `disable`).
fn tls_connector(mode: SslMode) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("TLS setup failed: {e}"))
                .with_backend(BACKEND)
        })?;
    let config = if mode == SslMode::Require {
        let mut roots = RootCertStore::empty();
        // Unreadable certificates are skipped; with no root at all every server is refused.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `sslmode=prefer`: any certificate, but the handshake signatures are still checked.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Why the TLS handshake failed, and whether trying again may help, when `e` is a TLS
/// failure: a server without TLS or a certificate that is not trusted stays so; a connection
/// cut during the handshake may not.
fn tls_failure(e: &tokio_postgres::Error) -> Option<(String, bool)> {
    if !e.to_string().starts_with("error performing TLS handshake") {
        return None;
    }
    let cause = std::error::Error::source(e)?;
    let rustls_said = cause
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| inner.is::<rustls::Error>());
    let words = cause.to_string();
    let transient = !rustls_said && !words.contains("does not support TLS");
    Some((words, transient))
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
        deadpool_postgres::PoolError::Backend(pe) => match tls_failure(pe) {
            Some((words, transient)) => (
                ErrorKind::Unavailable,
                transient,
                format!("no database connection: TLS failed: {words}"),
            ),
            None => {
                let (kind, transient) = classify(pe.code());
                let words = server_words(pe).map_or_else(String::new, |w| format!(": {w}"));
                (kind, transient, format!("no database connection{words}"))
            }
        },
        deadpool_postgres::PoolError::Timeout(t) => (
            ErrorKind::Timeout,
            true,
            format!(
                "no database connection within {} s ({t:?}): the server or the network does not answer",
                POOL_WAIT_TIMEOUT.as_secs()
            ),
        ),
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

    fn mode(url: &str) -> SslMode {
        let cfg: tokio_postgres::Config = url.parse().expect("a valid URL");
        resolve_ssl_mode(&cfg, sslmode_in_url(url))
    }

    #[test]
    fn tls_is_required_off_this_machine_unless_the_url_says_otherwise() {
        assert_eq!(mode("postgres://u@192.0.2.1:5432/db"), SslMode::Require);
        assert_eq!(mode("postgres://u@db.example.com/db"), SslMode::Require);
        assert_eq!(mode("host=192.0.2.1 user=u"), SslMode::Require);
        // One remote host among local ones is enough.
        assert_eq!(
            mode("postgres://u@localhost,192.0.2.1/db"),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://u@localhost/db?hostaddr=192.0.2.1"),
            SslMode::Require
        );
        for local in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "host=/var/run/postgresql user=u",
        ] {
            assert_eq!(mode(local), SslMode::Prefer, "{local}");
        }
        // An explicit sslmode wins, both ways.
        assert_eq!(
            mode("postgres://u@192.0.2.1/db?sslmode=prefer"),
            SslMode::Prefer
        );
        assert_eq!(
            mode("postgres://u@192.0.2.1/db?application_name=x&sslmode=disable"),
            SslMode::Disable
        );
        assert_eq!(mode("host=192.0.2.1 sslmode=disable"), SslMode::Disable);
        assert_eq!(
            mode("postgres://u@127.0.0.1/db?sslmode=require"),
            SslMode::Require
        );
        // A Config built in code: prefer (the default) with a remote host becomes require.
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("192.0.2.1");
        assert_eq!(resolve_ssl_mode(&cfg, false), SslMode::Require);
        cfg.ssl_mode(SslMode::Disable);
        assert_eq!(resolve_ssl_mode(&cfg, false), SslMode::Disable);
    }

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
