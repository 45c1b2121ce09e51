//! The checker's own test binary, for mutation testing (`scripts/mutants.sh`): the modules of
//! `tests/it/` that exercise the invariant checker — its direct tests, the scenario replays, the
//! reliability tests and the model test — and the guard (fencing, the kill switch, the
//! operator's controls, the ledger's deadline, write-ahead and reserved rollbacks), and nothing
//! else, so a mutant of the checker costs a
//! rebuild of flowfail-core and of this small crate, not of every integration test. Not run by
//! `cargo test` (`test = false`: the same tests run in `it`); `cargo test -p flowfail-core
//! --test checker` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "it/support.rs"]
mod support;

#[path = "it/control.rs"]
mod control;
#[path = "it/fencing.rs"]
mod fencing;
#[path = "it/invariants.rs"]
mod invariants;
#[path = "it/kill_switch.rs"]
mod kill_switch;
#[path = "it/ledger_deadline.rs"]
mod ledger_deadline;
#[path = "it/model.rs"]
mod model;
#[path = "it/reliability/mod.rs"]
mod reliability;
#[path = "it/reserved_rollback.rs"]
mod reserved_rollback;
#[path = "it/scenarios.rs"]
mod scenarios;
#[path = "it/write_ahead.rs"]
mod write_ahead;
