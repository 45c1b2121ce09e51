//! flowfail-k8s's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. They drive the in-process fake API server; those that need
//! the real kubectl skip without it (one line per module on stderr) unless
//! `FLOWFAIL_KUBECTL_REQUIRED=1`. Run one module with `cargo test -p flowfail-k8s --test it
//! <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod deploy;
mod dry_run;
mod k8s;
mod patch_fence;
