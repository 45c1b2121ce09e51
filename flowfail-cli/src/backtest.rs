//! `flowfail backtest`: what flowfail would have done over a period of real history.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use flowfail::Timestamp;
use flowfail::live::BacktestOptions;

use crate::CliResult;
use crate::failure::{Exit, Failure};
use crate::live::{control_failure, load, runtime};

/// Arguments of `flowfail backtest`.
#[derive(clap::Args)]
pub(crate) struct BacktestArgs {
    /// The config file (its TaskDB, bundle store, log group and Deployment are read, never
    /// written).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment, when the config watches several (its scope, or its name when unique).
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// The period's start: a date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    from: Timestamp,
    /// The period's end (not included).
    #[arg(long, value_parser = parse_time)]
    to: Timestamp,
    /// What history does not keep, as KEY=VALUE (repeatable): `quota=0.5` (the primary
    /// vendor's quota used), `status.VENDOR=STATUS` (its status page). Without it each is a
    /// gap in every replay.
    #[arg(long = "assume", value_name = "KEY=VALUE")]
    assume: Vec<String>,
    /// Write each incident as a scenario file in this directory (`flowfail respond
    /// --scenario` replays it: a real incident becomes a regression test).
    #[arg(long, value_name = "DIR")]
    export_scenario: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// The report as Markdown.
    #[arg(long)]
    markdown: bool,
}

/// A date at midnight UTC, or an RFC 3339 time.
fn parse_time(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d))
        .ok_or_else(|| "expected a date (2026-11-01) or an RFC 3339 time".to_owned())
}

/// `flowfail backtest --config F --from D --to D [--json | --markdown]`: reads, replays,
/// reports. A bad period or assumption exits 2; a TaskDB that cannot be read 3.
pub(crate) fn cmd_backtest(a: &BacktestArgs) -> CliResult {
    let config = load(&a.config)?;
    let mut o = BacktestOptions::period(a.from, a.to);
    for kv in &a.assume {
        o.assume.set(kv).map_err(Failure::usage)?;
    }
    o.export = a.export_scenario.clone();
    if std::io::stderr().is_terminal() {
        o.progress = Some(Arc::new(|p: f64| {
            eprint!("\rreading the TaskDB: {:>3.0} %", p * 100.0);
            if p >= 1.0 {
                eprintln!();
            }
        }));
    }
    let rt = runtime().map_err(|e| Failure::io("starting the runtime", e))?;
    let report = rt.block_on(async {
        let fleet = config.connect_fleet().await?;
        let live = fleet
            .member(a.deployment.as_deref())
            .map_err(control_failure)?;
        live.backtest(&o).await.map_err(|e| match e.kind() {
            flowfail_core::ErrorKind::InvalidInput => Failure::usage(e),
            _ => Failure::from(e),
        })
    })?;
    let out = if a.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else if a.markdown {
        report.to_markdown()
    } else {
        report.to_text()
    };
    print!("{out}");
    Ok(Exit::Ok)
}
