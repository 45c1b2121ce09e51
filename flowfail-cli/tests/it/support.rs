//! Helpers shared by the modules of this test binary: the `flowfail` binary under test, a
//! fresh PostgreSQL schema, and the lock that keeps the local AWS API's IAM switch to one test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::Utc;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The `flowfail` binary this crate builds, as a command to add arguments to.
pub(crate) fn flowfail_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowfail"))
}

/// The repository's root (`testdata/` is there).
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cmd` with its output piped and `stdin` written from another thread while the output
/// is read, so a child that writes before it has read all its input cannot block on a full
/// pipe. Returns the output and how the writing of `stdin` ended (a child may stop reading
/// early).
pub(crate) fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> (Output, std::io::Result<()>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    (out, written)
}

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// A pool of `pool_size` connections to PostgreSQL at `FLOWFAIL_PG_URL` and a fresh schema
/// in it, `{prefix}_{process}_{nanoseconds}_{n}`. `None` when PostgreSQL cannot be reached,
/// after the skip line of `module` (the caller's `module_path!()`), or a failure with
/// `FLOWFAIL_PG_REQUIRED=1`.
pub(crate) async fn fresh_schema(
    module: &str,
    prefix: &str,
    pool_size: usize,
) -> Option<(deadpool_postgres::Pool, String)> {
    let url = flowfail_testkit::pg_url();
    let pool = flowfail_pg::connect(&url, pool_size).unwrap();
    let c = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            flowfail_testkit::pg_unreachable_in(module, &url, &e);
            return None;
        }
    };
    let schema = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed)
    );
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await
    .unwrap();
    Some((pool, schema))
}

/// moto's IAM enforcement is one switch for the whole server, and every test that calls the
/// local AWS API runs in this process: `aws_denied`, which turns it on, holds this lock for
/// writing, and the others hold it for reading while they use the server.
static LOCAL_AWS: RwLock<()> = RwLock::const_new(());

/// Shared use of the local AWS API (IAM enforcement stays off while this is held).
pub(crate) async fn local_aws_shared() -> RwLockReadGuard<'static, ()> {
    LOCAL_AWS.read().await
}

/// Sole use of the local AWS API, for switching its IAM enforcement on.
pub(crate) async fn local_aws_alone() -> RwLockWriteGuard<'static, ()> {
    LOCAL_AWS.write().await
}
