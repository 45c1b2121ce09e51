//! flowfail-cli's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. Most run the `flowfail` binary this crate builds
//! (`support::flowfail_cmd`). Run one module with
//! `cargo test -p flowfail-cli --test it <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod absurd_numbers;
mod aws_cli;
mod aws_denied;
mod bundle_dir_hostile;
mod classify_line_cap;
mod cli;
mod control_cli;
mod count_accuracy;
mod dry_run_kill_switch;
mod exit_codes;
mod help_hides_secrets;
mod live_e2e;
mod pg_cli;
mod respond_timeline;
mod retry_gates;
mod triage_http;
mod webdriver;
