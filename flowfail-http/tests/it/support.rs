//! Helpers shared by the modules of this test binary.

use std::time::Duration;

use flowfail_http::HttpOptions;
use secrecy::SecretString;

/// The defaults with a shorter timeout.
pub(crate) fn opts() -> HttpOptions {
    HttpOptions::default().timeout(Duration::from_secs(5))
}

pub(crate) fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}
