//! flowfail-http's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. The adapters run against local HTTP servers (wiremock). Run
//! one module with `cargo test -p flowfail-http --test it <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod http;
mod mrkdwn;
mod redirects;
