//! The commands that change a backend: `retry` (the TaskDB) and `prune-context` (S3 or a
//! directory), and what they share with `triage`.

use std::path::PathBuf;

use flowfail_core::bundle::{BundleStoreExt, PruneContextOutcome, PrunePlan};
use flowfail_core::prune::PruneOptions;
use flowfail_core::{ByteSize, ErrorKind, TaskId};

use crate::CliResult;
use crate::advice::{Context, explained};
use crate::failure::{Exit, Failure, object_missing, render};
use crate::fs_store;

/// A current-thread runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::io("starting the runtime", e))
}

/// The environment variable that stops `retry` and `prune-context` from changing anything.
pub(crate) use flowfail::live::KILL_SWITCH_VAR;

/// Help text shared by the `--dry-run` flags: the flag, and the kill switch it pairs with.
const DRY_RUN_HELP: &str = "Do every read and check, print the same JSON line with \"dry_run\": true \
and what would be done, and change nothing (exit codes as without it). Kill switch: with \
FLOWFAIL_KILL_SWITCH=1 (or true) in the environment this command changes nothing and exits 1 \
unless --dry-run is given (any value other than empty, 0 or false counts as on)";

/// Whether the kill switch variable is on (any value other than empty, 0 or false).
fn kill_switch_on() -> bool {
    flowfail::live::kill_switch_env()
}

/// Refuses (exit 1, naming the variable) when the kill switch is on and the command would
/// change `what`; a dry run is let through, it changes nothing.
fn kill_switch_gate(command: &str, what: &str, dry_run: bool) -> Result<(), Failure> {
    if dry_run || !kill_switch_on() {
        return Ok(());
    }
    let v = std::env::var_os(KILL_SWITCH_VAR).unwrap_or_default();
    let t = v.to_string_lossy();
    Err(Failure::wanting(format!(
        "{KILL_SWITCH_VAR} is set ({:?}): {command} refuses to change {what}; \
         nothing was read or changed (unset {KILL_SWITCH_VAR}, or use --dry-run to see \
         what would be done)",
        t.trim()
    )))
}

/// A task id from the command line; a malformed one is a usage error.
fn task_id(s: &str) -> Result<TaskId, Failure> {
    TaskId::parse(s).map_err(|e| Failure::usage(e).doing("--task-id"))
}

pub(crate) fn pg_tasks(
    url: &str,
    schema: Option<String>,
) -> Result<flowfail_pg::PgTaskStore, flowfail_core::Error> {
    let pool = flowfail_pg::connect(url, 2)?;
    let table = match schema {
        Some(s) => flowfail_pg::TaskTable::in_schema(s),
        None => flowfail_pg::TaskTable::default(),
    };
    flowfail_pg::PgTaskStore::new(pool, &table)
}

pub(crate) fn aws_options(endpoint: Option<String>) -> flowfail_aws::AwsOptions {
    match endpoint {
        Some(e) => {
            let mut o = flowfail_aws::AwsOptions::local(e);
            // Explicit credentials from the environment win over the local defaults.
            if let (Ok(id), Ok(secret)) = (
                std::env::var("AWS_ACCESS_KEY_ID"),
                std::env::var("AWS_SECRET_ACCESS_KEY"),
            ) {
                o.static_credentials = Some((id, secret));
            }
            o
        }
        None => flowfail_aws::AwsOptions::standard(),
    }
}

/// Arguments of `flowfail retry`.
#[derive(clap::Args)]
pub(crate) struct RetryArgs {
    /// The task.
    #[arg(long)]
    task_id: String,
    /// Refuse when the task already had this many retries.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// TaskDB URL.
    #[arg(long, env = "FLOWFAIL_PG_URL", hide_env_values = true)]
    pg: String,
    /// Schema of the tasks table (default: the search path).
    #[arg(long)]
    schema: Option<String>,
    #[arg(long, help = DRY_RUN_HELP)]
    dry_run: bool,
}

pub(crate) fn cmd_retry(a: &RetryArgs) -> CliResult {
    let ctx = Context::pg(&a.pg, a.schema.as_deref());
    retry(a).map_err(|f| explained(f, &ctx))
}

fn retry(a: &RetryArgs) -> CliResult {
    use flowfail_core::respond::{KillSwitch, ManualOutcome, ManualRetry};
    let id = task_id(&a.task_id)?;
    kill_switch_gate("retry", "the TaskDB", a.dry_run)?;
    let store = pg_tasks(&a.pg, a.schema.clone())?;
    let rt = runtime()?;
    let mut policy = flowfail_core::Policy::default();
    policy.max_attempts = a.max_attempts;
    let ledger = ledger(&a.pg, a.schema.as_deref());
    let kill = KillSwitch::new();
    kill.set(kill_switch_on());
    let mut manual = ManualRetry::new(&store, &policy)
        .kill_switch(kill)
        .dry_run(a.dry_run);
    if let Some(l) = &ledger {
        manual = manual.ledger(l);
    }
    let report = rt
        .block_on(manual.run(&id, chrono::Utc::now()))
        .map_err(|e| {
            let f = Failure::from(e);
            if object_missing(&f) {
                Failure::wanting(f.into_error())
            } else {
                f
            }
        })?;
    for n in &report.notes {
        eprintln!("flowfail: note: {n}");
    }
    let (mut line, exit) = match &report.outcome {
        ManualOutcome::Refused(why) => (
            serde_json::json!({"task_id": id, "outcome": "refused", "reason": why}),
            Exit::Wanting,
        ),
        ManualOutcome::Paused(why) => (
            serde_json::json!({"task_id": id, "outcome": "paused", "reason": why}),
            Exit::Wanting,
        ),
        ManualOutcome::Stale => (
            serde_json::json!({"task_id": id, "outcome": "superseded",
                "reason": "a responder claimed the open incident before the write: nothing written"}),
            Exit::Wanting,
        ),
        ManualOutcome::Halted => (
            serde_json::json!({"task_id": id, "outcome": "halted",
                "reason": format!("{KILL_SWITCH_VAR} is set: nothing written")}),
            Exit::Wanting,
        ),
        ManualOutcome::WouldSchedule {
            attempt,
            not_before,
        } => (
            serde_json::json!({"task_id": id, "outcome": "would_schedule", "attempt": attempt,
                "not_before": not_before, "attempts": report.task.attempts,
                "status": report.task.status}),
            Exit::Ok,
        ),
        ManualOutcome::Ran {
            attempt,
            not_before,
            outcome,
        } => (
            serde_json::json!({"task_id": id, "attempt": attempt, "not_before": not_before,
                "result": outcome}),
            if matches!(outcome, Some(flowfail_core::RetryOutcome::Scheduled { .. })) {
                Exit::Ok
            } else {
                Exit::Wanting
            },
        ),
        _ => (
            serde_json::json!({"task_id": id, "outcome": "unknown"}),
            Exit::Wanting,
        ),
    };
    if a.dry_run {
        line["dry_run"] = serde_json::Value::Bool(true);
    }
    println!("{line}");
    Ok(exit)
}

/// The incident ledger beside the TaskDB (same database, same schema): when it answers, its
/// open incident's gates, its pause flag and its claim apply to the retry. One that cannot be
/// set up is said on stderr; only the task's own gates apply then.
fn ledger(url: &str, schema: Option<&str>) -> Option<flowfail_pg::PgIncidentStore> {
    match flowfail_pg::connect(url, 1)
        .and_then(|pool| flowfail_pg::PgIncidentStore::new(pool, schema))
    {
        Ok(ledger) => Some(ledger),
        Err(e) => {
            eprintln!(
                "{}",
                render(
                    "flowfail: note: ",
                    Some("no incident ledger read, only the task's own gates apply"),
                    &e,
                    None
                )
            );
            None
        }
    }
}

/// Arguments of `flowfail prune-context`.
#[derive(clap::Args)]
pub(crate) struct PruneContextArgs {
    /// The task.
    #[arg(long)]
    task_id: String,
    /// The budget.
    #[arg(long)]
    max_size: ByteSize,
    /// A directory holding `<task_id>.json` bundles.
    #[arg(long, conflicts_with = "s3_bucket")]
    bundle_dir: Option<PathBuf>,
    /// An S3 bucket holding `<prefix><task_id>.json` bundles (standard AWS configuration).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// Key prefix of the bundles in the bucket.
    #[arg(long, default_value = "")]
    s3_prefix: String,
    /// AWS endpoint override (a local AWS API).
    #[arg(long, env = "FLOWFAIL_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    #[arg(long, help = DRY_RUN_HELP)]
    dry_run: bool,
}

pub(crate) fn cmd_prune_context(a: &PruneContextArgs) -> CliResult {
    let ctx = Context {
        aws_endpoint: a.aws_endpoint.clone(),
        s3_bucket: a.s3_bucket.clone(),
        s3_key: Some(format!("{}{}.json", a.s3_prefix, a.task_id)),
        ..Context::default()
    };
    prune_context(a).map_err(|f| explained(f, &ctx))
}

fn prune_context(a: &PruneContextArgs) -> CliResult {
    let id = task_id(&a.task_id)?;
    kill_switch_gate("prune-context", "the bundle", a.dry_run)?;
    let rt = runtime()?;
    let store = bundle_store(a, &rt)?;
    if a.dry_run {
        return prune_context_dry(&rt, &*store, &id, a.max_size);
    }
    let r = rt
        .block_on(store.prune_context(&id, a.max_size, MAX_READ, &PruneOptions::default()))
        .map_err(prune_context_failure)?;
    match r {
        PruneContextOutcome::Pruned {
            from_bytes,
            to_bytes,
            archive_checksum,
            manifest,
        } => {
            println!(
                "{}",
                serde_json::json!({"task_id": id, "outcome": "pruned", "from_bytes": from_bytes, "to_bytes": to_bytes,
                    "archive_sha256": archive_checksum, "manifest": manifest})
            );
        }
        PruneContextOutcome::AlreadySmall { bytes } => {
            println!(
                "{}",
                serde_json::json!({"task_id": id, "outcome": "already_within_budget", "bytes": bytes})
            );
        }
        _ => {}
    }
    Ok(Exit::Ok)
}

/// The most `prune-context` reads of a bundle.
const MAX_READ: ByteSize = ByteSize::new(256 << 20);

/// The task's bundle store: a directory or an S3 bucket.
fn bundle_store(
    a: &PruneContextArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<Box<dyn flowfail_core::BundleStore>, Failure> {
    let store: Box<dyn flowfail_core::BundleStore> = match (&a.bundle_dir, &a.s3_bucket) {
        (Some(d), None) => {
            if !d.is_dir() {
                return Err(Failure::usage(format!(
                    "--bundle-dir {}: not a directory",
                    d.display()
                )));
            }
            let store = fs_store::FsBundleStore::open(d)
                .map_err(|e| Failure::usage(format!("--bundle-dir {}", e.message())))?;
            Box::new(store)
        }
        (None, Some(b)) => {
            let cfg = rt.block_on(flowfail_aws::load_config(&aws_options(
                a.aws_endpoint.clone(),
            )));
            Box::new(flowfail_aws::S3BundleStore::new(&cfg, b).prefix(a.s3_prefix.clone()))
        }
        _ => {
            return Err(Failure::usage(
                "prune-context needs --bundle-dir or --s3-bucket",
            ));
        }
    };
    Ok(store)
}

/// What `prune-context` would do: the plan the real run carries out (the same size check, read
/// and prune, and the archive's name), printed; nothing is archived or written.
fn prune_context_dry(
    rt: &tokio::runtime::Runtime,
    store: &dyn flowfail_core::BundleStore,
    id: &TaskId,
    max_size: ByteSize,
) -> CliResult {
    let plan = rt
        .block_on(store.plan_prune_context(id, max_size, MAX_READ, &PruneOptions::default()))
        .map_err(prune_context_failure)?;
    let line = match plan {
        PrunePlan::AlreadySmall { bytes } => {
            serde_json::json!({"task_id": id, "dry_run": true, "outcome": "already_within_budget",
                "bytes": bytes})
        }
        PrunePlan::Prune(p) => {
            serde_json::json!({"task_id": id, "dry_run": true, "outcome": "would_prune",
                "from_bytes": p.original.bytes.len(), "to_bytes": p.pruned.bytes.len(),
                "archive_sha256": p.archive_checksum, "manifest": p.pruned.manifest})
        }
        _ => return Err(Failure::from("an unknown prune plan")),
    };
    println!("{line}");
    Ok(Exit::Ok)
}

/// A task with no bundle, or a bundle that cannot be pruned (not JSON, pinned parts over the
/// budget), is the input found wanting; a store that failed is a backend (or I/O) failure.
fn prune_context_failure(e: flowfail_core::Error) -> Failure {
    let f = Failure::from(e);
    let content = f.backend_error().is_none()
        && crate::failure::flowfail_errors(f.error())
            .next()
            .is_some_and(|e| matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::TooLarge));
    if object_missing(&f) || content {
        Failure::wanting(f.into_error())
    } else {
        f
    }
}
