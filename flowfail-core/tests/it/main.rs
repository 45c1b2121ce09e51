//! flowfail-core's integration tests: one module per subject, all in one test binary, so the
//! dependency tree is linked once. Run one module with
//! `cargo test -p flowfail-core --test it <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod adversarial;
mod backtest;
mod breaker_undo;
mod bundle_reads;
mod conformance;
mod control;
mod corpus;
mod engine_props;
mod fencing;
mod gitops;
mod golden;
mod interactions;
mod invalid_input;
mod invariants;
mod kill_switch;
mod lambda_side;
mod ledger_deadline;
mod ledger_record;
mod model;
mod new_failure_modes;
mod prune_context;
mod reliability;
mod report_render;
mod report_schema;
mod reserved_rollback;
mod resolved_means_recovered;
mod roll_forward;
mod rules;
mod rules_passed_in;
mod scenario_bundle_total;
mod scenarios;
mod supervisor;
mod tenant_echo;
mod write_ahead;
