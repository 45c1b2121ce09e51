//! How the CLI fails: the exit codes, and the one format every command prints an error in.
//!
//! ```text
//! flowfail: unexpected in task.get (postgres): relation "tasks" does not exist (SQLSTATE 42P01)
//!   caused by: ...                       every cause, down to the server's or the OS's words
//!   advice: ...                          one line, when the cause is a common mistake
//! ```

use std::error::Error as StdError;
use std::fmt::Display;
use std::process::ExitCode;

use flowfail_core::ErrorKind;

/// The exit codes, as `--help` and the README give them.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes (the same for every command):
  0  ok
  1  the input was checked and found wanting: an invalid TaskObject, a malformed classify
     line, a bundle or scenario that is not valid, a task that cannot be retried, a task id
     with no task or no bundle
  2  usage or I/O error: a bad flag or value, a file that cannot be read or written
  3  a backend failed: PostgreSQL, S3, CloudWatch Logs (on stderr: the error, its causes
     down to the server's own words and, for common mistakes, one line of advice)";

/// What a run of a command came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0.
    Ok,
    /// 1: the input was checked and found wanting.
    Wanting,
    /// 2: usage or I/O error.
    Usage,
    /// 3: a backend failed.
    Backend,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Wanting => 1,
            Exit::Usage => 2,
            Exit::Backend => 3,
        })
    }
}

type Boxed = Box<dyn StdError + Send + Sync + 'static>;

/// Backends behind a network: their failures exit 3.
const REMOTE: [&str; 4] = ["postgres", "s3", "cloudwatch", "http"];

/// An error on its way to the terminal: its exit code, what was being done, the error with its
/// causes, and advice.
pub(crate) struct Failure {
    exit: Exit,
    doing: Option<String>,
    error: Boxed,
    advice: Option<String>,
}

/// Any error becomes a failure: exit 3 when a networked backend failed in an operation
/// (somewhere in the chain), 2 otherwise. Commands say "found wanting" explicitly.
impl<E: Into<Boxed>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let exit = if flowfail_errors(&*error)
            .any(|f| REMOTE.contains(&f.backend()) && !f.operation().is_empty())
        {
            Exit::Backend
        } else {
            Exit::Usage
        };
        Failure {
            exit,
            doing: None,
            error,
            advice: None,
        }
    }
}

impl Failure {
    /// The input was checked and found wanting (exit 1).
    pub(crate) fn wanting(e: impl Into<Boxed>) -> Self {
        Failure {
            exit: Exit::Wanting,
            ..Failure::from(e)
        }
    }

    /// A usage error (exit 2).
    pub(crate) fn usage(e: impl Into<Boxed>) -> Self {
        Failure {
            exit: Exit::Usage,
            ..Failure::from(e)
        }
    }

    /// A local file or stream could not be used (exit 2); `doing` names it.
    pub(crate) fn io(doing: impl Display, e: std::io::Error) -> Self {
        Failure::usage(e).doing(doing)
    }

    /// Says what was being done: `reading --schema x.json`.
    pub(crate) fn doing(mut self, d: impl Display) -> Self {
        self.doing = Some(d.to_string());
        self
    }

    /// Adds advice, unless there is some already.
    pub(crate) fn advise(mut self, a: Option<String>) -> Self {
        if self.advice.is_none() {
            self.advice = a;
        }
        self
    }

    /// The error, to be classified again.
    pub(crate) fn into_error(self) -> Boxed {
        self.error
    }

    /// The exit code.
    pub(crate) fn exit(&self) -> Exit {
        self.exit
    }

    /// The error (for advice).
    pub(crate) fn error(&self) -> &(dyn StdError + 'static) {
        &*self.error
    }

    /// The flowfail error nearest the top of the chain that names its backend, if any.
    pub(crate) fn backend_error(&self) -> Option<&flowfail_core::Error> {
        flowfail_errors(&*self.error).find(|f| !f.backend().is_empty())
    }

    /// The error in the one format: `flowfail: ` and the error, then each cause that says
    /// something new, then the advice.
    pub(crate) fn render(&self) -> String {
        self.render_with("flowfail: ")
    }

    /// [`Failure::render`] with another head (`flowfail: warning: `).
    pub(crate) fn render_with(&self, head: &str) -> String {
        render(
            head,
            self.doing.as_deref(),
            &*self.error,
            self.advice.as_deref(),
        )
    }
}

/// The error and each cause that says something new, on one line, `: `-separated: for
/// reasons kept in a report.
pub(crate) fn chain_line(error: &(dyn StdError + 'static)) -> String {
    render("", None, error, None)
        .lines()
        .map(|l| {
            l.trim_start()
                .strip_prefix("caused by: ")
                .unwrap_or(l.trim_start())
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// The one format, for errors and for warnings (`flowfail: warning: `).
pub(crate) fn render(
    head: &str,
    doing: Option<&str>,
    error: &(dyn StdError + 'static),
    advice: Option<&str>,
) -> String {
    let mut out = String::from(head);
    if let Some(d) = doing {
        out.push_str(d);
        out.push_str(": ");
    }
    out.push_str(&one_line(&error.to_string()));
    let mut said = out.clone();
    let mut cur = error.source();
    while let Some(c) = cur {
        let text = c.to_string();
        let new: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !already_said(&said, l))
            .collect();
        for (i, l) in new.iter().enumerate() {
            out.push_str(if i == 0 { "\n  caused by: " } else { "\n    " });
            out.push_str(&one_line(l));
            said.push('\n');
            said.push_str(l);
        }
        cur = c.source();
    }
    if let Some(a) = advice {
        out.push_str("\n  advice: ");
        out.push_str(a);
    }
    out
}

/// Whether `line` repeats what `said` holds already, also without a leading severity
/// (`ERROR: relation "tasks" does not exist` after the message that quoted the server).
fn already_said(said: &str, line: &str) -> bool {
    if said.contains(line) {
        return true;
    }
    match line.split_once(": ") {
        Some((sev, rest)) if !sev.is_empty() && sev.bytes().all(|b| b.is_ascii_uppercase()) => {
            said.contains(rest)
        }
        _ => false,
    }
}

/// Control characters escaped: an error line stays one line on the terminal.
fn one_line(s: &str) -> String {
    flowfail_core::model::sanitize(s, 2000)
}

/// Every flowfail error in the chain of `e`, outermost first.
pub(crate) fn flowfail_errors<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a flowfail_core::Error> {
    chain(e).filter_map(|c| c.downcast_ref::<flowfail_core::Error>())
}

/// `e` and its causes, outermost first.
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&c| c.source())
}

/// The first OS error in the chain of `e`.
pub(crate) fn io_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    chain(e).find_map(|c| c.downcast_ref())
}

/// Whether the chain of `e` shows a refused connection (nothing listens at the address).
pub(crate) fn connection_refused(e: &(dyn StdError + 'static)) -> bool {
    io_error(e).is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        || chain(e).any(|c| c.to_string().contains("Connection refused"))
}

/// The named thing itself is missing (a task, a bundle): adapters report that as `NotFound`
/// with no cause, while a missing table or bucket comes with the server's error as its cause.
pub(crate) fn object_missing(f: &Failure) -> bool {
    f.backend_error()
        .or_else(|| flowfail_errors(f.error()).next())
        .is_some_and(|e| e.kind() == ErrorKind::NotFound && e.source().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_printed_once_each_with_advice_last() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = flowfail_core::Error::new(ErrorKind::Unavailable, "no database connection")
            .with_operation("task.get")
            .with_backend("postgres")
            .with_source(io);
        let f = Failure::from(e).advise(Some("start PostgreSQL".into()));
        assert_eq!(f.exit(), Exit::Backend);
        assert_eq!(
            f.render(),
            "flowfail: unavailable in task.get (postgres): no database connection\n  caused by: Connection refused\n  advice: start PostgreSQL"
        );
        assert!(connection_refused(f.error()));
    }

    #[test]
    fn a_cause_that_repeats_the_message_is_left_out_but_its_new_lines_are_kept() {
        #[derive(Debug)]
        struct Db;
        impl std::fmt::Display for Db {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("ERROR: relation \"tasks\" does not exist\nHINT: check the schema")
            }
        }
        impl StdError for Db {}
        let e = flowfail_core::Error::new(
            ErrorKind::Unexpected,
            "relation \"tasks\" does not exist (SQLSTATE 42P01)",
        )
        .with_operation("task.get")
        .with_backend("postgres")
        .with_source(Db);
        assert_eq!(
            Failure::from(e).render(),
            "flowfail: unexpected in task.get (postgres): relation \"tasks\" does not exist (SQLSTATE 42P01)\n  caused by: HINT: check the schema"
        );
    }

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(Failure::from("bad flag").exit(), Exit::Usage);
        assert_eq!(
            Failure::from(
                flowfail_core::Error::invalid_input("invalid PostgreSQL URL")
                    .with_backend("postgres")
            )
            .exit(),
            Exit::Usage,
            "no operation ran: the URL itself is wrong"
        );
        assert_eq!(Failure::wanting("x").exit(), Exit::Wanting);
        let missing = Failure::from(
            flowfail_core::Error::not_found("task t-1 not found")
                .with_operation("task.get")
                .with_backend("postgres"),
        );
        assert_eq!(missing.exit(), Exit::Backend);
        assert!(object_missing(&missing));
    }
}
