//! flowfail-aws's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. Run one module with
//! `cargo test -p flowfail-aws --test it <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod moto;
mod options;
