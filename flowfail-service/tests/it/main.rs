//! flowfail-service's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. Run one module with
//! `cargo test -p flowfail-service --test it <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod console;
mod fleet_config;
mod fleet_control;
mod listen;
mod live_config;
mod live_control;
mod serve;
