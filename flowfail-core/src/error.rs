//! The one public error type of flowfail.
//!
//! Every port, adapter and engine function returns [`Error`]. It carries:
//!
//! - a [`ErrorKind`] saying *what* went wrong, in terms a caller can act on (`NotFound`,
//!   `Conflict`, `Refused`, ...);
//! - a [`Retry`] status saying whether trying again can help (`Transient`) or not (`Permanent`),
//!   set explicitly by whoever creates the error, never guessed from the kind: an error is
//!   permanent unless its creator marks it [`Error::transient`];
//! - when the backend said how long to wait (`Retry-After`), that delay, so the one retry loop
//!   (the responder's) honours it instead of a loop inside the adapter;
//! - the operation (`"bundle.put_if_version"`) and the backend (`"memory"`, `"s3"`, `"postgres"`)
//!   it happened in;
//! - a message safe to log (no secrets, no raw outside data beyond validated ids), and
//! - the underlying cause through [`std::error::Error::source`].
//!
//! Adapters convert their SDK errors at their boundary with [`Error::new`] and
//! [`Error::with_source`].

use std::fmt;
use std::time::Duration;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input was malformed or outside the accepted range (a bad task id, a bad policy, bad JSON).
    InvalidInput,
    /// The thing asked for does not exist (a missing bundle, task, revision).
    NotFound,
    /// A precondition did not hold: the stored version, attempt count, resourceVersion or epoch
    /// changed since it was read. Re-read and decide again.
    Conflict,
    /// A create-only write found something already there.
    AlreadyExists,
    /// The input or a response is larger than the configured bound.
    TooLarge,
    /// The backend did not answer within the deadline.
    Timeout,
    /// The backend could not be reached or answered with a server-side failure.
    Unavailable,
    /// The backend refused the credentials or the permission.
    PermissionDenied,
    /// The backend throttled the request.
    RateLimited,
    /// flowfail refused to act because acting would be unsafe (kill switch, paused deployment,
    /// a revision that is gone, a target that is not configured).
    Refused,
    /// The backend does not support the operation.
    Unsupported,
    /// Anything else; the message and source say more.
    Unexpected,
}

impl ErrorKind {
    /// A short, stable, snake_case name for reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Refused => "refused",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether repeating the same call can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Retry {
    /// The same call may succeed later (a timeout, a throttle, a 503).
    Transient,
    /// The same call will fail the same way (bad input, not found, a lost precondition).
    Permanent,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// flowfail's error: kind, retryability, operation, backend, message and source.
///
/// Displayed as `<kind>[ in <operation>][ (<backend>)][ [transient]][: <message>]`; the source
/// is reached through [`std::error::Error::source`], never printed with it.
#[derive(thiserror::Error)]
#[error(
    "{kind}{}{}{}{}",
    Prefixed(" in ", .operation, ""),
    Prefixed(" (", .backend, ")"),
    if *.retry == Retry::Transient { " [transient]" } else { "" },
    Prefixed(": ", .message, "")
)]
pub struct Error {
    kind: ErrorKind,
    retry: Retry,
    operation: &'static str,
    backend: &'static str,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Source>,
}

/// `before`, the text and `after` when the text is not empty; nothing otherwise.
struct Prefixed<'a>(&'static str, &'a str, &'static str);

impl fmt::Display for Prefixed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_empty() {
            return Ok(());
        }
        write!(f, "{}{}{}", self.0, self.1, self.2)
    }
}

/// `Result` with flowfail's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new, permanent error. The kind never implies a retry status: whoever knows that the
    /// same call may succeed later (a timeout, a 503, a throttle) says so with
    /// [`Error::transient`] or [`Error::transient_if`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            retry: Retry::Permanent,
            operation: "",
            backend: "",
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::Conflict`] error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for an [`ErrorKind::Refused`] error.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }

    /// Marks the error transient: the same call may succeed later.
    pub fn transient(mut self) -> Self {
        self.retry = Retry::Transient;
        self
    }

    /// Marks the error permanent: the same call will fail the same way.
    pub fn permanent(mut self) -> Self {
        self.retry = Retry::Permanent;
        self
    }

    /// Marks the error transient when `yes`, permanent otherwise: for adapters that classify
    /// a backend's error into a kind and a retryability in one place.
    pub fn transient_if(self, yes: bool) -> Self {
        if yes {
            self.transient()
        } else {
            self.permanent()
        }
    }

    /// Records how long the backend asked callers to wait before trying again (an HTTP
    /// `Retry-After`). The responder's retry loop waits at least this long; it also marks the
    /// error transient.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self.retry = Retry::Transient;
        self
    }

    /// How long the backend asked callers to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Records the operation that failed, e.g. `"bundle.get"`.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation = operation;
        self
    }

    /// Records the backend that failed, e.g. `"s3"`.
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.backend = backend;
        self
    }

    /// Attaches the underlying cause. Its text must be free of secrets: adapters pass SDK
    /// errors, never request objects holding credentials.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying again can help.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// `true` when the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        self.retry == Retry::Transient
    }

    /// The operation that failed (empty when not recorded).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The backend that failed (empty when not recorded).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The message, without kind, operation or backend.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("retry", &self.retry)
            .field("operation", &self.operation)
            .field("backend", &self.backend)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid_input(format!("invalid JSON: {e}")).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_names_kind_operation_backend_and_retry() {
        let e = Error::new(ErrorKind::Timeout, "no answer in 5s")
            .with_operation("bundle.get")
            .with_backend("s3")
            .transient();
        assert_eq!(
            e.to_string(),
            "timeout in bundle.get (s3) [transient]: no answer in 5s"
        );
        assert!(e.is_transient());
        assert!(!Error::conflict("x").is_transient());
        assert!(Error::conflict("x").transient().is_transient());
    }

    #[test]
    fn retryability_is_never_guessed_from_the_kind() {
        for kind in [
            ErrorKind::Timeout,
            ErrorKind::Unavailable,
            ErrorKind::RateLimited,
        ] {
            assert!(!Error::new(kind, "x").is_transient(), "{kind}");
        }
        let e = Error::new(ErrorKind::RateLimited, "429").with_retry_after(Duration::from_secs(7));
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn source_chain_is_kept() {
        let io = std::io::Error::other("socket closed");
        let e = Error::new(ErrorKind::Unavailable, "read failed").with_source(io);
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("socket closed")
        );
    }
}
