//! flowfail-pg's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. Most need PostgreSQL at `FLOWFAIL_PG_URL` and skip without
//! it (one line per module on stderr) unless `FLOWFAIL_PG_REQUIRED=1`. Run one module with
//! `cargo test -p flowfail-pg --test it <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod blackhole;
mod pg;
mod recent_failed;
mod responder;
mod statuses;
mod tls;
mod window;
