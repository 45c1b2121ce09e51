//! Test support for flowfail: tests that need a peer (PostgreSQL, the local AWS API, kubectl)
//! and cannot reach it skip *visibly*.
//!
//! libtest captures what a passing test prints, so a test that returns early looks like every
//! other `ok`. [`skip`] writes one line per peer per test binary straight to the process's
//! stderr (past the capture), at the first skip:
//!
//! ```text
//! skipped 14 tests: no PostgreSQL at postgres://postgres@127.0.0.1:5432/postgres (FLOWFAIL_PG_REQUIRED=1 fails instead)
//! ```
//!
//! The count is the number of tests of the binary the run selects (the binary lists itself with
//! the run's filters), so [`skip`] is for binaries whose every test needs the peer and
//! [`skip_named`] for the others. With the peer's `*_REQUIRED=1` (CI) a skip is a failure.
//!
//! A test binary made of several modules (`tests/it/main.rs` declaring `mod pg_cli;` ...)
//! uses the `_in` forms ([`pg_unreachable_in`], [`aws_endpoint_in`], [`skip_in`],
//! [`skip_named_in`]) with the caller's `module_path!()`: the line is printed once per peer per
//! module and counts that module's tests (`skipped 2 tests in aws_cli: no local AWS API ...`).

pub mod ledger;
pub mod trackers;

pub use flowfail_core::model::redact_url;
use std::io::Write;
use std::process::Command;
use std::sync::{Mutex, Once, PoisonError};

/// A server or tool that some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// PostgreSQL at `FLOWFAIL_PG_URL`.
    Postgres,
    /// A local AWS API (moto's server mode) at `FLOWFAIL_AWS_ENDPOINT`.
    LocalAws,
    /// The `kubectl` binary.
    Kubectl,
}

impl Peer {
    /// The peer's name in the skip line.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Postgres => "PostgreSQL",
            Peer::LocalAws => "local AWS API",
            Peer::Kubectl => "kubectl",
        }
    }

    /// The variable that turns a skip into a failure when it is `1`.
    pub fn required_var(self) -> &'static str {
        match self {
            Peer::Postgres => "FLOWFAIL_PG_REQUIRED",
            Peer::LocalAws => "FLOWFAIL_AWS_REQUIRED",
            Peer::Kubectl => "FLOWFAIL_KUBECTL_REQUIRED",
        }
    }

    /// Whether a missing peer fails the test instead of skipping it.
    pub fn required(self) -> bool {
        std::env::var(self.required_var()).is_ok_and(|v| v == "1")
    }

    fn index(self) -> usize {
        match self {
            Peer::Postgres => 0,
            Peer::LocalAws => 1,
            Peer::Kubectl => 2,
        }
    }
}

/// The PostgreSQL URL when `FLOWFAIL_PG_URL` is not set (trust auth, as `.ci/run` and
/// `scripts/test-peers.sh` set it up).
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// `FLOWFAIL_PG_URL`, or [`DEFAULT_PG_URL`].
pub fn pg_url() -> String {
    match std::env::var("FLOWFAIL_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => DEFAULT_PG_URL.to_owned(),
    }
}

/// The calling test cannot reach PostgreSQL at `url` (`why` says what happened): skip, or fail
/// with `FLOWFAIL_PG_REQUIRED=1`. For binaries whose every test needs PostgreSQL.
pub fn pg_unreachable(url: &str, why: &dyn std::fmt::Display) {
    skip(Peer::Postgres, &format!("at {}", redact_url(url)), why);
}

/// [`pg_unreachable`] for a module of a test binary whose every test needs PostgreSQL:
/// `module` is the caller's `module_path!()`.
pub fn pg_unreachable_in(module: &str, url: &str, why: &dyn std::fmt::Display) {
    skip_in(
        module,
        Peer::Postgres,
        &format!("at {}", redact_url(url)),
        why,
    );
}

/// `FLOWFAIL_AWS_ENDPOINT` when it is set and something accepts connections there; otherwise
/// `None` after [`skip`] (or a failure with `FLOWFAIL_AWS_REQUIRED=1`). For binaries whose
/// every test needs the local AWS API.
pub fn aws_endpoint() -> Option<String> {
    aws_endpoint_scoped(None)
}

/// [`aws_endpoint`] for a module of a test binary whose every test needs the local AWS API:
/// `module` is the caller's `module_path!()`.
pub fn aws_endpoint_in(module: &str) -> Option<String> {
    aws_endpoint_scoped(Some(module))
}

fn aws_endpoint_scoped(module: Option<&str>) -> Option<String> {
    let skip = |place: &str, why: &dyn std::fmt::Display| match module {
        Some(m) => skip_in(m, Peer::LocalAws, place, why),
        None => skip(Peer::LocalAws, place, why),
    };
    match std::env::var("FLOWFAIL_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => match answers(&e) {
            Ok(()) => Some(e),
            Err(why) => {
                skip(&format!("at {}", redact_url(&e)), &why);
                None
            }
        },
        _ => {
            skip(
                ": FLOWFAIL_AWS_ENDPOINT is not set",
                &"scripts/test-peers.sh starts moto and sets it",
            );
            None
        }
    }
}

/// Whether a TCP connection to the `host:port` of `url` (`http://127.0.0.1:5000`) opens.
fn answers(url: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let target = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:80")
    };
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?;
    let mut last = format!("{target}: no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// The calling test cannot use `peer`, found missing `place` ("at URL", "on PATH"; a place
/// starting with `:` follows the name directly), because of `why`. With the peer's
/// `*_REQUIRED=1` this panics, failing the test; otherwise the test should return, and the
/// binary's skip line is printed once, counting every test the run selected in this binary.
pub fn skip(peer: Peer, place: &str, why: &dyn std::fmt::Display) {
    skip_counting(peer, place, why, None);
}

/// [`skip`] for a binary where only some tests need `peer`: those whose name contains
/// `name_part` are counted.
pub fn skip_named(peer: Peer, place: &str, why: &dyn std::fmt::Display, name_part: &str) {
    skip_counting(peer, place, why, Some(name_part));
}

/// [`skip`] for the tests of one module of a test binary that holds several: `module` is the
/// caller's `module_path!()` (`it::aws_cli`). The line is printed once per peer per module and
/// counts the tests under that module (`aws_cli::...`). At a binary's root (`module_path!()`
/// is the crate's name alone) this is [`skip`].
pub fn skip_in(module: &str, peer: Peer, place: &str, why: &dyn std::fmt::Display) {
    skip_in_counting(module, peer, place, why, None);
}

/// [`skip_in`] for a module where only some tests need `peer`: those of the module whose name
/// contains `name_part` are counted. At a binary's root this is [`skip_named`].
pub fn skip_named_in(
    module: &str,
    peer: Peer,
    place: &str,
    why: &dyn std::fmt::Display,
    name_part: &str,
) {
    skip_in_counting(module, peer, place, why, Some(name_part));
}

fn skip_in_counting(
    module: &str,
    peer: Peer,
    place: &str,
    why: &dyn std::fmt::Display,
    part: Option<&str>,
) {
    let Some(module) = test_module(module) else {
        return skip_counting(peer, place, why, part);
    };
    fail_if_required(peer, place, why);
    static PRINTED: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let mut printed = PRINTED.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (peer.index(), module.to_owned());
    if printed.contains(&key) {
        return;
    }
    let prefix = format!("{module}::");
    let tests = selected_tests(|name| {
        name.strip_prefix(&prefix)
            .is_some_and(|rest| part.is_none_or(|p| rest.contains(p)))
    });
    let line = skip_line_in(peer, place, tests, Some(module));
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    printed.push(key);
}

/// The module path of a test binary's module without the crate's name (`it::aws_cli` is
/// `aws_cli`), which is how libtest names its tests; `None` at the crate's root.
fn test_module(module_path: &str) -> Option<&str> {
    module_path.split_once("::").map(|(_, m)| m)
}

// Failing the calling test is this function's job when the peer is required.
#[allow(clippy::panic)]
fn fail_if_required(peer: Peer, place: &str, why: &dyn std::fmt::Display) {
    if peer.required() {
        panic!(
            "{}=1 but no {} {place}: {why}",
            peer.required_var(),
            peer.name()
        );
    }
}

fn skip_counting(peer: Peer, place: &str, why: &dyn std::fmt::Display, part: Option<&str>) {
    fail_if_required(peer, place, why);
    static PRINTED: [Once; 3] = [Once::new(), Once::new(), Once::new()];
    PRINTED[peer.index()].call_once(|| {
        let line = skip_line(
            peer,
            place,
            selected_tests(|name| part.is_none_or(|p| name.contains(p))),
        );
        // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// The variable that marks the child process [`alone_in_a_child`] starts.
const ALONE: &str = "FLOWFAIL_TEST_ALONE";

/// For a test that must not share its process with the other tests of its binary (it captures
/// tracing's output with a scoped subscriber, and tracing's callsite cache and level filter are
/// process-wide: tests on other threads hitting the same callsites can make it miss events).
/// `module` is the caller's `module_path!()`, `test` its function's name. In the child process
/// this starts, it returns `true`: run the test. Otherwise it runs this binary again with only
/// that test selected, fails the calling test if the child did not pass it, and returns
/// `false`: the test is done.
// Failing the calling test is this function's job when the child fails.
#[allow(clippy::panic)]
pub fn alone_in_a_child(module: &str, test: &str) -> bool {
    let name = match test_module(module) {
        Some(m) => format!("{m}::{test}"),
        None => test.to_owned(),
    };
    if std::env::var(ALONE).is_ok_and(|v| v == name) {
        return true;
    }
    let out = std::env::current_exe()
        .and_then(|exe| {
            Command::new(exe)
                .args(["--exact", &name, "--test-threads", "1"])
                .env(ALONE, &name)
                .output()
        })
        .unwrap_or_else(|e| panic!("{name}: cannot run the test binary again: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The child's skip line, if it skipped, is this run's.
    for line in stderr.lines().filter(|l| l.starts_with("skipped ")) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    if !out.status.success() || !stdout.contains("1 passed") {
        panic!("{name}, alone in a child process:\n{stdout}{stderr}");
    }
    false
}

/// The skip line: `skipped N tests: no PEER PLACE (VAR=1 fails instead)`.
pub fn skip_line(peer: Peer, place: &str, tests: Option<usize>) -> String {
    skip_line_in(peer, place, tests, None)
}

/// The skip line of one module's tests: `skipped N tests in MODULE: no PEER PLACE (...)`.
fn skip_line_in(peer: Peer, place: &str, tests: Option<usize>, module: Option<&str>) -> String {
    let what = match tests {
        Some(1) => "1 test".to_owned(),
        Some(n) => format!("{n} tests"),
        None => "the tests that need it".to_owned(),
    };
    let scope = module.map(|m| format!(" in {m}")).unwrap_or_default();
    let sep = if place.starts_with(':') { "" } else { " " };
    format!(
        "skipped {what}{scope}: no {}{sep}{place} ({}=1 fails instead)",
        peer.name(),
        peer.required_var()
    )
}

/// How many tests of this binary the run selects (those whose name `counts`), by asking the
/// binary itself with the run's filters and `--list`.
fn selected_tests(counts: impl Fn(&str) -> bool) -> Option<usize> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args(filter_args(std::env::args().skip(1)))
        .args(["--list", "--format", "terse"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .filter(|name| counts(name))
            .count(),
    )
}

/// The arguments of a libtest run that select tests (filters, `--exact`, `--skip`, `--ignored`,
/// `--include-ignored`), without those that only shape the output or the run.
fn filter_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const WITH_VALUE: [&str; 6] = [
        "--test-threads",
        "--format",
        "--color",
        "--logfile",
        "--shuffle-seed",
        "-Z",
    ];
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" | "--ignored" | "--include-ignored" => out.push(a),
            "--skip" => {
                out.push(a);
                out.extend(it.next());
            }
            s if s.starts_with("--skip=") => out.push(a),
            s if WITH_VALUE.contains(&s) => {
                it.next();
            }
            s if s.starts_with('-') => {}
            _ => out.push(a),
        }
    }
    out
}

/// Writes a secret file as flowfail accepts one: readable by its owner only (mode 0600).
/// Panics (it is a test's setup) when the file cannot be written.
#[allow(clippy::panic)]
pub fn write_secret(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_skip_line_names_peer_place_count_and_the_switch() {
        assert_eq!(
            skip_line(Peer::Postgres, &format!("at {DEFAULT_PG_URL}"), Some(14)),
            "skipped 14 tests: no PostgreSQL at postgres://postgres@127.0.0.1:5432/postgres (FLOWFAIL_PG_REQUIRED=1 fails instead)"
        );
        assert_eq!(
            skip_line(
                Peer::LocalAws,
                ": FLOWFAIL_AWS_ENDPOINT is not set",
                Some(4)
            ),
            "skipped 4 tests: no local AWS API: FLOWFAIL_AWS_ENDPOINT is not set (FLOWFAIL_AWS_REQUIRED=1 fails instead)"
        );
        assert_eq!(
            skip_line(Peer::Kubectl, "on PATH", Some(1)),
            "skipped 1 test: no kubectl on PATH (FLOWFAIL_KUBECTL_REQUIRED=1 fails instead)"
        );
    }

    #[test]
    fn a_modules_skip_line_names_the_module() {
        assert_eq!(test_module("it::aws_cli"), Some("aws_cli"));
        assert_eq!(test_module("it::a::b"), Some("a::b"));
        assert_eq!(test_module("aws_cli"), None);
        assert_eq!(
            skip_line_in(
                Peer::LocalAws,
                ": FLOWFAIL_AWS_ENDPOINT is not set",
                Some(2),
                Some("aws_cli")
            ),
            "skipped 2 tests in aws_cli: no local AWS API: FLOWFAIL_AWS_ENDPOINT is not set (FLOWFAIL_AWS_REQUIRED=1 fails instead)"
        );
    }

    #[test]
    fn only_selecting_arguments_are_passed_on_to_the_listing() {
        let got = filter_args(strings(&[
            "--test-threads",
            "2",
            "retry",
            "--nocapture",
            "--format=pretty",
            "--skip",
            "slow",
            "--exact",
            "-q",
            "--color",
            "never",
        ]));
        assert_eq!(got, strings(&["retry", "--skip", "slow", "--exact"]));
    }

    #[test]
    fn passwords_never_reach_the_line() {
        assert_eq!(
            redact_url("postgres://ff:s3cret@db:5432/x?sslmode=disable"),
            "postgres://ff:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=ff password=s3cret dbname=x"),
            "host=db user=ff password=*** dbname=x"
        );
        assert_eq!(redact_url(DEFAULT_PG_URL), DEFAULT_PG_URL);
        assert_eq!(redact_url("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
    }
}
