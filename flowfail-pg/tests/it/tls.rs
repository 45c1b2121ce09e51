//! TLS to PostgreSQL (`sslmode` in the URL; security review finding 13). The tests that need
//! the server (`FLOWFAIL_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, without
//! `sslmode`) skip with one line on stderr when it does not answer, unless
//! `FLOWFAIL_PG_REQUIRED=1`. Those that need the server to offer TLS (Debian's default: `ssl =
//! on` with the `snakeoil` certificate for `localhost`) skip with a note when it does not.

use std::io::Write;
use std::time::Duration;

use flowfail_core::{Error, ErrorKind};
use flowfail_pg::{PgIncidentStore, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::url;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const CHILD: &str = "FLOWFAIL_TLS_TEST_CHILD";

/// The libtest name of `require_with_a_trusted_certificate_connects_over_tls`, which runs
/// itself in a child process: its module path without the binary's name.
fn trusted_test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::require_with_a_trusted_certificate_connects_over_tls")
}

fn note(why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "tls.rs: skipped: {why}");
}

/// `url` with `param` added to its query.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// The first connection from a pool on `url` through the public API, as flowfail's error.
async fn first_use(url: &str) -> Result<(), Error> {
    let pool = connect(url, 1)?;
    let store = PgIncidentStore::new(pool, None)?;
    tokio::time::timeout(Duration::from_secs(20), store.migrate())
        .await
        .expect("the connection attempt hangs")
}

/// Whether the session on `url` is encrypted (`pg_stat_ssl`), `None` (after the skip line)
/// when the server does not answer, and whether the server offers TLS at all.
async fn session_tls(url: &str) -> Option<(bool, bool)> {
    let pool = connect(url, 1).unwrap();
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            flowfail_testkit::pg_unreachable_in(module_path!(), &crate::support::url(), &e);
            return None;
        }
    };
    let row = client
        .query_one(
            "SELECT ssl, current_setting('ssl') = 'on' FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Some((row.get(0), row.get(1)))
}

#[tokio::test]
async fn without_sslmode_a_local_server_offering_tls_is_used_over_tls() {
    if url().contains("sslmode=") {
        return note("FLOWFAIL_PG_URL sets sslmode");
    }
    let Some((encrypted, offered)) = session_tls(&url()).await else {
        return;
    };
    if !offered {
        return note("the local PostgreSQL server does not offer TLS (ssl = off)");
    }
    assert!(
        encrypted,
        "prefer on loopback: the session must be encrypted"
    );
}

#[tokio::test]
async fn sslmode_disable_goes_without_tls() {
    let u = with_param(&url(), "sslmode=disable");
    let Some((encrypted, _)) = session_tls(&u).await else {
        return;
    };
    assert!(!encrypted);
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_naming_tls() {
    // A server that answers the SSLRequest with 'N' (no TLS), as PostgreSQL with ssl = off.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 8];
                if sock.read_exact(&mut req).await.is_ok() {
                    let _ = sock.write_all(b"N").await;
                    let mut rest = [0u8; 1024];
                    while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    let u = format!("postgres://postgres:canary-pw@127.0.0.1:{port}/postgres?sslmode=require");
    let err = first_use(&u).await.expect_err("connected without TLS");
    let shown = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{shown}");
    assert!(shown.contains("TLS failed"), "{shown}");
    assert!(shown.contains("does not support TLS"), "{shown}");
    assert!(!err.is_transient(), "retrying cannot help: {shown}");
    assert!(!format!("{shown} {err:?}").contains("canary-pw"));
}

#[tokio::test]
async fn require_with_a_certificate_that_does_not_verify_fails_naming_tls() {
    let Some((_, offered)) = session_tls(&url()).await else {
        return;
    };
    if !offered {
        return note("the local PostgreSQL server does not offer TLS (ssl = off)");
    }
    // The server's certificate does not name 127.0.0.1 (snakeoil names localhost), or is not
    // among the trusted roots: either way it does not verify.
    let u = with_param(&url().replace("localhost", "127.0.0.1"), "sslmode=require");
    let err = first_use(&u)
        .await
        .expect_err("an untrusted certificate was accepted");
    let shown = err.to_string();
    assert!(shown.contains("TLS failed"), "{shown}");
    assert!(shown.contains("certificate"), "{shown}");
    assert!(!err.is_transient(), "retrying cannot help: {shown}");
}

/// Run in a child process with `SSL_CERT_FILE` naming the server's certificate (the tests of a
/// binary share its environment): `require` with a trusted certificate for the host connects.
#[tokio::test]
async fn require_with_a_trusted_certificate_connects_over_tls() {
    if let Some(u) = std::env::var_os(CHILD) {
        let u = u.into_string().unwrap();
        let (encrypted, _) = session_tls(&u).await.expect("no server");
        assert!(encrypted);
        return;
    }
    if !std::path::Path::new(SNAKEOIL).exists() {
        return note("no snakeoil certificate to trust");
    }
    let Some((_, offered)) = session_tls(&url()).await else {
        return;
    };
    if !offered {
        return note("the local PostgreSQL server does not offer TLS (ssl = off)");
    }
    // The snakeoil certificate names localhost.
    let u = with_param(&url().replace("127.0.0.1", "localhost"), "sslmode=require");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &trusted_test_name()])
        .env(CHILD, &u)
        .env("SSL_CERT_FILE", SNAKEOIL)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}
