//! `flowfail run` and `flowfail check-config`: flowfail as a service, from `flowfail.toml`.

use std::path::PathBuf;

use flowfail::live::{Config, Controls, Mode};

use crate::CliResult;
use crate::failure::{Exit, Failure};

/// Arguments of `flowfail run`.
#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The config file (see flowfail.example.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Shadow mode whatever the config says: observe, decide, record; change nothing.
    #[arg(long)]
    shadow: bool,
    /// Log line format (stderr); the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Arguments of `flowfail check-config`.
#[derive(clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// The config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate only: connect to nothing.
    #[arg(long)]
    offline: bool,
}

/// Log line format of `flowfail run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second subscriber (tests calling twice) is not an error worth stopping for.
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.with_ansi(false).try_init(),
    };
}

pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The config: an unreadable file is an I/O error (2), one that does not validate is found
/// wanting (1).
pub(crate) fn load(path: &std::path::Path) -> Result<Config, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
    Config::from_toml_str(&text)
        .map_err(|e| Failure::wanting(format!("{}: {}", path.display(), e.message())))
}

/// `flowfail run --config F [--shadow]`: the service until SIGTERM / Ctrl-C. A config that does
/// not validate exits 1; a backend that cannot be prepared (the ledger's tables) exits 3; an
/// address that cannot be bound exits 2.
pub(crate) fn cmd_run(a: &RunArgs) -> CliResult {
    init_tracing(a.log_format);
    let config = load(&a.config)?;
    let rt = runtime().map_err(|e| Failure::io("starting the runtime", e))?;
    rt.block_on(async {
        let fleet = config.connect_fleet().await?.reload_from(&a.config);
        fleet
            .prepare()
            .await
            .map_err(|e| Failure::from(e).doing("creating the ledger's tables"))?;
        flowfail::live::run(fleet, a.shadow, shutdown_signal())
            .await
            .map_err(|e| match e.kind() {
                flowfail_core::ErrorKind::InvalidInput => Failure::wanting(e),
                _ => Failure::from(e),
            })?;
        Ok(Exit::Ok)
    })
}

/// `flowfail check-config --config F [--offline]`: validate, then probe every backend
/// read-only; one line per port. Exit 1 when the config or a probe fails.
pub(crate) fn cmd_check_config(a: &CheckConfigArgs) -> CliResult {
    let config = load(&a.config)?;
    println!(
        "ok    config      valid; mode {}",
        match config.mode {
            Mode::Act => "act",
            _ => "shadow",
        }
    );
    if a.offline {
        return Ok(Exit::Ok);
    }
    let rt = runtime().map_err(|e| Failure::io("starting the runtime", e))?;
    let probes = rt.block_on(async {
        let fleet = config.connect_fleet().await?;
        Ok::<_, Failure>(fleet.check().await)
    })?;
    let mut failed = false;
    for p in &probes {
        failed |= !p.ok;
        println!(
            "{:<5} {:<15} {}",
            if p.ok { "ok" } else { "FAIL" },
            p.port,
            p.detail
        );
    }
    Ok(if failed { Exit::Wanting } else { Exit::Ok })
}

/// Arguments of `flowfail pause`.
#[derive(clap::Args)]
pub(crate) struct PauseArgs {
    /// The config file (the ledger and the Deployment it names).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment (its scope, `NAMESPACE.DEPLOYMENT`, or its name when unique), when the
    /// config watches several.
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// Why (recorded in the ledger, the incident's timeline and the one page it sends).
    #[arg(long)]
    reason: String,
    /// Who pauses (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
}

/// Arguments of `flowfail resume`.
#[derive(clap::Args)]
pub(crate) struct ResumeArgs {
    /// The config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment (its scope, `NAMESPACE.DEPLOYMENT`, or its name when unique), when the
    /// config watches several.
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// Who resumes (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
}

/// Arguments of `flowfail approve`.
#[derive(clap::Args)]
pub(crate) struct ApproveArgs {
    /// The config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment (its scope, `NAMESPACE.DEPLOYMENT`, or its name when unique), when the
    /// config watches several.
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// Who approves (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// The incident key (as in the page and the ledger).
    incident: String,
    /// The action: rollback, manual_review, fallback_model, circuit_breaker or prune_context.
    action: String,
}

fn operator(by: Option<&String>) -> String {
    by.cloned()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "flowfail-cli".to_owned())
}

/// A control call's error: bad input exits 2, an unknown or closed incident 1, a backend 3.
pub(crate) fn control_failure(e: flowfail_core::Error) -> Failure {
    match e.kind() {
        flowfail_core::ErrorKind::InvalidInput => Failure::usage(e),
        flowfail_core::ErrorKind::NotFound | flowfail_core::ErrorKind::Refused => {
            Failure::wanting(e)
        }
        _ => Failure::from(e),
    }
}

/// Builds the config's operator controls — its ledger alone, no Kubernetes, AWS or vendor
/// client — creates the ledger's tables if missing, and runs `f` on them.
///
/// With several Deployments (`[[deployment]]`), `deployment` names one (its scope, or its name
/// when unique).
pub(crate) fn with_controls<T>(
    config: &std::path::Path,
    deployment: Option<&str>,
    f: impl AsyncFnOnce(&Controls, &Config) -> Result<T, Failure>,
) -> Result<T, Failure> {
    with_controls_for(config, deployment, Unnamed::Refused, f)
}

/// What a command does when the config watches several Deployments and none is named.
#[derive(Clone, Copy)]
pub(crate) enum Unnamed<'a> {
    /// Refused, with the Deployments to choose from.
    Refused,
    /// The Deployment of this incident (found in the ledger).
    Incident(&'a str),
    /// Any: the command reads every Deployment itself (the first one's controls are given).
    All,
}

/// [`with_controls`], with what to do when no Deployment is named among several.
pub(crate) fn with_controls_for<T>(
    config: &std::path::Path,
    deployment: Option<&str>,
    unnamed: Unnamed<'_>,
    f: impl AsyncFnOnce(&Controls, &Config) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let config = load(config)?;
    let members = config.members();
    let first = members.first().map(|m| m.kubernetes.scope());
    let several = members.len() > 1;
    let rt = runtime().map_err(|e| Failure::io("starting the runtime", e))?;
    rt.block_on(async {
        let controls = match (deployment, unnamed) {
            (None, Unnamed::All) if several => config
                .controls_of(first.as_deref())
                .map_err(control_failure)?,
            (None, Unnamed::Incident(key)) if several => {
                // The ledger's tables first (any Deployment's controls create them).
                config
                    .controls_of(first.as_deref())
                    .map_err(control_failure)?
                    .prepare()
                    .await
                    .map_err(|e| Failure::from(e).doing("creating the ledger's tables"))?;
                config
                    .controls_for_incident(key)
                    .await
                    .map_err(control_failure)?
            }
            _ => config.controls_of(deployment).map_err(control_failure)?,
        };
        controls
            .prepare()
            .await
            .map_err(|e| Failure::from(e).doing("creating the ledger's tables"))?;
        f(&controls, &config).await
    })
}

/// `flowfail pause --config F --reason "…"`: every replica stops mutating at its next pass.
pub(crate) fn cmd_pause(a: &PauseArgs) -> CliResult {
    let by = operator(a.by.as_ref());
    with_controls(&a.config, a.deployment.as_deref(), async |live, _| {
        live.pause(&a.reason, &by).await.map_err(control_failure)?;
        println!(
            "paused: flowfail changes nothing in {} until `flowfail resume` ({})",
            live.scope(),
            a.reason.trim()
        );
        Ok(Exit::Ok)
    })
}

/// `flowfail resume --config F`: lifts the pause (nothing to lift is not an error).
pub(crate) fn cmd_resume(a: &ResumeArgs) -> CliResult {
    let by = operator(a.by.as_ref());
    with_controls(&a.config, a.deployment.as_deref(), async |live, _| {
        let was = live.paused().await.map_err(control_failure)?;
        live.resume(&by).await.map_err(control_failure)?;
        match was {
            Some(p) => println!(
                "resumed: {} (paused by {} since {}: {})",
                live.scope(),
                p.by,
                p.since,
                p.reason
            ),
            None => println!("not paused: {}", live.scope()),
        }
        Ok(Exit::Ok)
    })
}

/// `flowfail approve --config F INCIDENT ACTION`: the next pass may carry the action out.
pub(crate) fn cmd_approve(a: &ApproveArgs) -> CliResult {
    let by = operator(a.by.as_ref());
    with_controls_for(
        &a.config,
        a.deployment.as_deref(),
        Unnamed::Incident(&a.incident),
        async |live, config| {
            let ap = live
                .approve(&a.incident, &a.action, &by)
                .await
                .map_err(control_failure)?;
            let ttl = config.policy.approval_ttl_s;
            println!(
                "approved: {} for incident {} by {} (valid {} s; carried out at the next pass if still decided)",
                ap.action, ap.incident, ap.by, ttl
            );
            Ok(Exit::Ok)
        },
    )
}

/// Arguments of `flowfail deny`.
#[derive(clap::Args)]
pub(crate) struct DenyArgs {
    /// The config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment (its scope, `NAMESPACE.DEPLOYMENT`, or its name when unique), when the
    /// config watches several.
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// Why not (recorded in the ledger and the incident's record).
    #[arg(long)]
    reason: String,
    /// Who denies (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// The incident key.
    incident: String,
    /// The action: rollback, manual_review, fallback_model, circuit_breaker or prune_context.
    action: String,
}

/// `flowfail deny --config F INCIDENT ACTION --reason "…"`: the action is not carried out,
/// nor proposed again, in that incident.
pub(crate) fn cmd_deny(a: &DenyArgs) -> CliResult {
    let by = operator(a.by.as_ref());
    with_controls_for(
        &a.config,
        a.deployment.as_deref(),
        Unnamed::Incident(&a.incident),
        async |live, _| {
            let no = live
                .deny(&a.incident, &a.action, &a.reason, &by)
                .await
                .map_err(control_failure)?;
            println!(
                "denied: {} for incident {} by {} ({}); not proposed again in this incident",
                no.action,
                no.incident,
                no.by,
                no.reason.as_deref().unwrap_or("")
            );
            Ok(Exit::Ok)
        },
    )
}
