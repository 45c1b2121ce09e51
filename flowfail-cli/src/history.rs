//! `flowfail incidents` and `flowfail incident KEY`: what flowfail did (act) and would have
//! done (shadow), read back from the ledger of a config.

use std::path::PathBuf;

use chrono::TimeDelta;
use flowfail_core::history::IncidentLine;

use crate::CliResult;
use crate::failure::Exit;
use crate::live::{Unnamed, control_failure, with_controls_for};

/// Arguments of `flowfail incidents`.
#[derive(clap::Args)]
pub(crate) struct IncidentsArgs {
    /// The config file (the ledger and the Deployment it names).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment (its scope, `NAMESPACE.DEPLOYMENT`, or its name when unique), when the
    /// config watches several.
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// Only open incidents.
    #[arg(long)]
    open: bool,
    /// Only incidents opened in this last span: 30m, 12h, 7d or 2w.
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    since: Option<TimeDelta>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `flowfail incident`.
#[derive(clap::Args)]
pub(crate) struct IncidentArgs {
    /// The config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Deployment (its scope, `NAMESPACE.DEPLOYMENT`, or its name when unique), when the
    /// config watches several.
    #[arg(long, value_name = "SCOPE")]
    deployment: Option<String>,
    /// The incident key (as `flowfail incidents` lists it).
    key: String,
    /// The record as Markdown, for the incident tracker.
    #[arg(long, conflicts_with_all = ["json", "verbose"])]
    markdown: bool,
    /// The record as JSON: the report, the decisions, the failure rate over the incident,
    /// approvals and what waits for one.
    #[arg(long, conflicts_with = "verbose")]
    json: bool,
    /// Every action on a line of its own.
    #[arg(long)]
    verbose: bool,
}

/// `30m`, `12h`, `7d`, `2w`: a span back from now.
fn parse_span(s: &str) -> Result<TimeDelta, String> {
    let bad = || format!("{s:?} is not a span like 30m, 12h, 7d or 2w");
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let d = match unit {
        'm' => TimeDelta::try_minutes(n),
        'h' => TimeDelta::try_hours(n),
        'd' => TimeDelta::try_days(n),
        'w' => TimeDelta::try_weeks(n),
        _ => None,
    };
    d.filter(|d| *d > TimeDelta::zero()).ok_or_else(bad)
}

/// `flowfail incidents --config F [--open] [--since 7d] [--json]`: one line per incident,
/// newest first.
pub(crate) fn cmd_incidents(a: &IncidentsArgs) -> CliResult {
    let since = a
        .since
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d));
    let d = a.deployment.as_deref();
    with_controls_for(&a.config, d, Unnamed::All, async |live, config| {
        // Without --deployment, every Deployment of the config.
        let lines: Vec<IncidentLine> = if a.deployment.is_none() {
            config.incidents_of_all(a.open, since, a.limit).await
        } else {
            live.incidents(a.open, since, a.limit).await
        }
        .map_err(control_failure)?;
        let mut out = String::new();
        for l in &lines {
            if a.json {
                out.push_str(&serde_json::to_string(l)?);
            } else {
                out.push_str(&l.to_text());
            }
            out.push('\n');
        }
        if lines.is_empty() && !a.json {
            out.push_str("no incidents\n");
        }
        print!("{out}");
        Ok(Exit::Ok)
    })
}

/// `flowfail incident KEY --config F [--markdown | --json | --verbose]`: the record (or, for
/// an open incident, its state so far). An unknown key exits 1.
pub(crate) fn cmd_incident(a: &IncidentArgs) -> CliResult {
    with_controls_for(
        &a.config,
        a.deployment.as_deref(),
        Unnamed::Incident(&a.key),
        async |live, _| {
            let view = live.incident(&a.key).await.map_err(control_failure)?;
            let out = if a.json {
                let mut s = serde_json::to_string_pretty(&view)?;
                s.push('\n');
                s
            } else if a.markdown {
                view.to_markdown()
            } else {
                view.to_text(a.verbose)
            };
            print!("{out}");
            Ok(Exit::Ok)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("7d"), Ok(TimeDelta::days(7)));
        assert_eq!(parse_span("30m"), Ok(TimeDelta::minutes(30)));
        assert_eq!(parse_span("2w"), Ok(TimeDelta::weeks(2)));
        for bad in ["", "d", "7", "7y", "-1d", "0h", "99999999999999999w", "7дн"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
