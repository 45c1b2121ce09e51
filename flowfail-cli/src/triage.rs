//! `flowfail triage`: the runbook's triage, section by section.
//!
//! A TaskDB or CloudWatch read that fails ends the command (exit 3), with the error in the one
//! format. A vendor quota or status page that cannot be read is a finding, not a failure:
//! it is reported as unknown with its cause (in the output, and as a warning in the one
//! format on stderr), and the triage goes on.

use std::io::Write;

use crate::CliResult;
use crate::advice::{Context, explained};
use crate::failure::{Exit, Failure, chain_line};
use crate::remote::{aws_options, pg_tasks, runtime};

/// Arguments of `flowfail triage`.
#[derive(clap::Args)]
pub(crate) struct TriageArgs {
    /// TaskDB URL (`postgres://user@host:port/db`).
    #[arg(long, env = "FLOWFAIL_PG_URL", hide_env_values = true)]
    pg: Option<String>,
    /// Check Anthropic quota (key from ANTHROPIC_API_KEY, never from the command line).
    #[arg(long)]
    quota_anthropic: bool,
    /// Anthropic API base URL.
    #[arg(long, default_value = "https://api.anthropic.com")]
    anthropic_url: String,
    /// Check OpenAI quota (key from OPENAI_API_KEY).
    #[arg(long)]
    quota_openai: bool,
    /// OpenAI API base URL.
    #[arg(long, default_value = "https://api.openai.com")]
    openai_url: String,
    /// Check the vendors' status pages.
    #[arg(long)]
    status: bool,
    /// Override a vendor's status page base URL (VENDOR=URL, repeatable).
    #[arg(long = "status-url", value_name = "VENDOR=URL")]
    status_urls: Vec<String>,
    /// Read ERROR events of the last hour from this CloudWatch Logs group
    /// (e.g. /aws/lambda/flowengine; standard AWS configuration).
    #[arg(long)]
    cloudwatch_log_group: Option<String>,
    /// AWS endpoint override (a local AWS API).
    #[arg(long, env = "FLOWFAIL_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// How many failed tasks to list (the runbook's LIMIT).
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Schema of the tasks table (default: the search path).
    #[arg(long)]
    schema: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn secret_env(var: &str) -> Result<secrecy::SecretString, Failure> {
    std::env::var(var)
        .map(secrecy::SecretString::from)
        .map_err(|_| Failure::usage(format!("{var} is not set")))
}

/// What `flowfail triage` gathers, section by section.
struct Triage<'a> {
    args: &'a TriageArgs,
    rt: &'a tokio::runtime::Runtime,
    now: flowfail_core::Timestamp,
    policy: flowfail_core::Policy,
    report: serde_json::Map<String, serde_json::Value>,
    text: String,
}

pub(crate) fn cmd_triage(a: &TriageArgs) -> CliResult {
    let rt = runtime()?;
    let mut t = Triage {
        args: a,
        rt: &rt,
        now: chrono::Utc::now(),
        policy: flowfail_core::Policy::default(),
        report: serde_json::Map::new(),
        text: String::new(),
    };
    triage_tasks(&mut t)?;
    triage_logs(&mut t)?;
    triage_vendors(&mut t)?;
    let mut out = std::io::stdout().lock();
    let written = if a.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::Value::Object(t.report))
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write!(out, "{}", t.text)
    };
    written.map_err(|e| Failure::io("writing to stdout", e))?;
    Ok(Exit::Ok)
}

/// The alert and the failed tasks, from the TaskDB ([`flowfail_core::triage::tasks`]).
fn triage_tasks(t: &mut Triage<'_>) -> Result<(), Failure> {
    let (a, rt, now, policy) = (t.args, t.rt, t.now, &t.policy);
    let (report, text) = (&mut t.report, &mut t.text);
    let Some(url) = &a.pg else {
        text.push_str("TaskDB: not configured (--pg or FLOWFAIL_PG_URL)\n");
        return Ok(());
    };
    let ctx = Context::pg(url, a.schema.as_deref());
    let rules = flowfail_core::RuleSet::shared_builtin();
    let read = pg_tasks(url, a.schema.clone()).and_then(|store| {
        rt.block_on(flowfail_core::triage::tasks(
            &store, &rules, policy, now, a.limit,
        ))
    });
    let tr = read.map_err(|e| explained(Failure::from(e), &ctx))?;
    let alert = tr.alert;
    let rows: Vec<serde_json::Value> = tr
        .failed
        .iter()
        .map(|(t, c)| {
            serde_json::json!({"task_id": t.task_id, "flow_type": t.flow_type, "attempts": t.attempts,
                "error_message": t.error_message.as_deref().map(|m| flowfail_core::model::sanitize(m, 200)),
                "kind": c.kind, "retryable": c.retryable, "rule": c.rule})
        })
        .collect();
    text.push_str(&format!(
        "alert: {} — {:.2}% failures over {} tasks in the last hour (threshold {:.2}%, min sample {})\n",
        if alert.firing { "FIRING" } else { "not firing" },
        alert.failure_rate * 100.0,
        alert.window_tasks,
        policy.alert_failure_rate * 100.0,
        policy.min_sample
    ));
    text.push_str(&format!(
        "{:<24} {:<7} {:<14} {:<9} error\n",
        "task_id", "flow", "kind", "retryable"
    ));
    for r in &rows {
        text.push_str(&format!(
            "{:<24} {:<7} {:<14} {:<9} {}\n",
            r["task_id"].as_str().unwrap_or(""),
            r["flow_type"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["retryable"],
            r["error_message"].as_str().unwrap_or("")
        ));
    }
    report.insert("alert".into(), serde_json::to_value(alert)?);
    report.insert("classification".into(), serde_json::to_value(tr.by_kind)?);
    report.insert("failed".into(), serde_json::Value::Array(rows));
    Ok(())
}

/// Error logs of the last hour, from CloudWatch Logs ([`flowfail_core::triage::logs`]).
fn triage_logs(t: &mut Triage<'_>) -> Result<(), Failure> {
    let (a, rt, now, policy) = (t.args, t.rt, t.now, &t.policy);
    let (report, text) = (&mut t.report, &mut t.text);
    let Some(group) = &a.cloudwatch_log_group else {
        return Ok(());
    };
    let ctx = Context {
        aws_endpoint: a.aws_endpoint.clone(),
        log_group: Some(group.clone()),
        ..Context::default()
    };
    let cfg = rt.block_on(flowfail_aws::load_config(&aws_options(
        a.aws_endpoint.clone(),
    )));
    let src = flowfail_aws::CloudWatchLogSource::new(&cfg, group.clone());
    let rules = flowfail_core::RuleSet::shared_builtin();
    let tr = rt
        .block_on(flowfail_core::triage::logs(
            &src, &rules, policy, now, a.limit,
        ))
        .map_err(|e| explained(Failure::from(e), &ctx))?;
    let rows: Vec<serde_json::Value> = tr
        .recent
        .iter()
        .map(|(e, c)| {
            serde_json::json!({"timestamp": e.timestamp, "task_id": e.task_id,
                "message": flowfail_core::model::sanitize(&e.message, 200), "kind": c.kind})
        })
        .collect();
    text.push_str(&format!(
        "error logs ({group}, last hour): {} events{}\n",
        tr.events,
        if tr.truncated { " (truncated)" } else { "" }
    ));
    for (k, n) in &tr.by_kind {
        text.push_str(&format!("  {k}: {n}\n"));
    }
    report.insert(
        "logs".into(),
        serde_json::json!({"log_group": group, "events": tr.events, "truncated": tr.truncated,
            "classification": tr.by_kind, "recent": rows}),
    );
    Ok(())
}

/// A vendor read that failed: a warning in the one format on stderr (with advice), and the
/// error's whole chain as the reason, for the output.
fn unreadable(what: &str, e: flowfail_core::Error, ctx: &Context) -> String {
    let reason = chain_line(&e);
    let f = explained(Failure::from(e), ctx).doing(what);
    eprintln!("{}", f.render_with("flowfail: warning: "));
    reason
}

/// Vendor quota: known, or unknown with the reason.
fn quota(t: &Triage<'_>, vendor: &str) -> Result<flowfail_core::Quota, Failure> {
    let a = t.args;
    let opts = flowfail_http::HttpOptions::default();
    let (var, flag) = match vendor {
        "anthropic" => ("ANTHROPIC_API_KEY", "--anthropic-url"),
        _ => ("OPENAI_API_KEY", "--openai-url"),
    };
    let key = secret_env(var)?;
    let read = if vendor == "anthropic" {
        let q = flowfail_http::AnthropicQuota::new(&a.anthropic_url, key, opts)?;
        t.rt.block_on(q.read())
    } else {
        let q = flowfail_http::OpenAiQuota::new(&a.openai_url, key, opts)?;
        t.rt.block_on(q.read())
    };
    let ctx = Context {
        key_var: Some(var),
        url_flag: Some(flag),
        ..Context::default()
    };
    Ok(read.unwrap_or_else(|e| flowfail_core::Quota::Unknown {
        reason: unreadable(&format!("quota {vendor} unknown"), e, &ctx),
    }))
}

/// Vendor quota and status pages.
fn triage_vendors(t: &mut Triage<'_>) -> Result<(), Failure> {
    let mut quotas = serde_json::Map::new();
    for (wanted, vendor) in [
        (t.args.quota_anthropic, "anthropic"),
        (t.args.quota_openai, "openai"),
    ] {
        if wanted {
            let v = quota(t, vendor)?;
            t.text
                .push_str(&format!("quota {vendor}: {}\n", describe_quota(&v)));
            quotas.insert(vendor.into(), serde_json::to_value(v)?);
        }
    }
    if !quotas.is_empty() {
        t.report
            .insert("quota".into(), serde_json::Value::Object(quotas));
    }
    if t.args.status {
        status_pages(t)?;
    }
    Ok(())
}

/// The vendors' status pages: health, or unknown with the reason.
fn status_pages(t: &mut Triage<'_>) -> Result<(), Failure> {
    let mut cfg = flowfail_http::StatusPageConfig::defaults();
    for o in &t.args.status_urls {
        let (v, u) = o
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--status-url {o:?}: expected VENDOR=URL")))?;
        // A known vendor keeps its format and components at the given URL.
        let page = cfg.get(v).cloned().map_or_else(
            || flowfail_http::StatusPageConfig::new(u, Vec::<String>::new()),
            |c| c.at(u),
        );
        cfg.insert(v.to_owned(), page);
    }
    let vendors: Vec<String> = cfg.keys().cloned().collect();
    let pages = flowfail_http::StatusPages::new(cfg, flowfail_http::HttpOptions::default())?;
    let ctx = Context {
        url_flag: Some("--status-url VENDOR=URL"),
        ..Context::default()
    };
    let mut out = serde_json::Map::new();
    for v in vendors {
        let entry = match t.rt.block_on(pages.read(&v)) {
            Ok(s) => {
                let since = s.since.map(|t| format!(" since {t}")).unwrap_or_default();
                t.text
                    .push_str(&format!("vendor {v}: {:?}{since}\n", s.health));
                serde_json::to_value(s)?
            }
            Err(e) => {
                let reason = unreadable(&format!("vendor {v} status unknown"), e, &ctx);
                t.text
                    .push_str(&format!("vendor {v}: Unknown ({reason})\n"));
                let mut s = serde_json::to_value(flowfail_core::VendorStatus::new(
                    flowfail_core::VendorHealth::Unknown,
                ))?;
                s["reason"] = serde_json::Value::String(reason);
                s
            }
        };
        out.insert(v, entry);
    }
    t.report
        .insert("vendors".into(), serde_json::Value::Object(out));
    Ok(())
}

fn describe_quota(q: &flowfail_core::Quota) -> String {
    match q {
        flowfail_core::Quota::Known(u) => format!("{:.1}% used", u.used_ratio * 100.0),
        flowfail_core::Quota::Unknown { reason } => format!("unknown ({reason})"),
        _ => "unknown".into(),
    }
}
