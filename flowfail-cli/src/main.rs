//! `flowfail`: the Flow Failure Response runbook on the command line.

mod fs_store;
mod scan;

use scan::{ClassCounts, write_class};

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flowfail_core::bundle::{BundleStoreExt, PruneContextOutcome};
use flowfail_core::prune::{PruneOptions, prune};
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail_core::schema::SchemaSet;
use flowfail_core::{ByteSize, TaskId, classify};

#[derive(Parser)]
#[command(
    name = "flowfail",
    version,
    about = "Automates the Flow Failure Response runbook for FlowEngine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify failures: JSON Lines `{"message": "...", "status": 429}` on stdin, one
    /// `{"kind", "retryable", "rule"}` line per input line on stdout.
    Classify {
        /// Read raw text lines (a log) instead of JSON Lines; lines without evidence for any
        /// rule are found with one scan, and the work is spread over all cores.
        #[arg(long)]
        plain: bool,
        /// Print one JSON object of counts (lines, by kind, by rule) instead of a line per line.
        #[arg(long)]
        count: bool,
        /// Log files to read instead of stdin (with --plain). With --count, each file is split
        /// at line ends and read by all cores at once.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Validate TaskObject JSON files against the known schemas; one JSON line per file.
    Validate {
        /// Extra or replacement schemas as VERSION=PATH (e.g. 2=task_object.v2.schema.json).
        #[arg(long = "schema", value_name = "VERSION=PATH")]
        schemas: Vec<String>,
        /// TaskObject files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Prune a context bundle (stdin) to a byte budget (stdout).
    Prune {
        /// The budget, e.g. 180KB (1000-based) or 180KiB (1024-based).
        #[arg(long)]
        max_size: ByteSize,
        /// JSON pointers to keep byte for byte (repeatable), in addition to the defaults.
        #[arg(long = "keep", value_name = "POINTER")]
        keep: Vec<String>,
        /// Do not pin the default pointers (/task, /system_prompt, /system).
        #[arg(long)]
        no_default_keep: bool,
        /// Write the manifest here instead of stderr.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Refuse inputs larger than this.
        #[arg(long, default_value = "64MiB")]
        max_input: ByteSize,
    },
    /// Prune a task's stored bundle safely: archive, verify, write only if unchanged.
    PruneContext {
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
    },
    /// The runbook's triage: failed tasks in the TaskDB (newest first), classified, and the
    /// failure-rate alert over the last hour.
    Triage(TriageArgs),
    /// Retry one failed task with backoff, fenced on its attempt count.
    Retry {
        /// The task.
        #[arg(long)]
        task_id: String,
        /// Refuse when the task already had this many retries.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// TaskDB URL.
        #[arg(long, env = "FLOWFAIL_PG_URL")]
        pg: String,
        /// Schema of the tasks table.
        #[arg(long)]
        schema: Option<String>,
    },
    /// Replay an incident scenario on the in-memory backends, in virtual time.
    Respond {
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// Decide and report; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the JSON report.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the post-incident record as Markdown.
        #[arg(long)]
        markdown: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOWFAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Classify {
            plain: true,
            count,
            files,
        } => scan::cmd_classify_plain(count, &files),
        Command::Classify {
            plain: false,
            count,
            files,
        } => {
            if files.is_empty() {
                cmd_classify(count)
            } else {
                Err("FILE arguments need --plain (JSON Lines are read from stdin)".into())
            }
        }
        Command::Validate { schemas, files } => cmd_validate(&schemas, &files),
        Command::Prune {
            max_size,
            keep,
            no_default_keep,
            manifest,
            max_input,
        } => cmd_prune(max_size, keep, no_default_keep, manifest, max_input),
        Command::PruneContext {
            task_id,
            max_size,
            bundle_dir,
            s3_bucket,
            s3_prefix,
            aws_endpoint,
        } => cmd_prune_context(
            &task_id,
            max_size,
            bundle_dir,
            s3_bucket,
            s3_prefix,
            aws_endpoint,
        ),
        Command::Triage(args) => cmd_triage(&args),
        Command::Retry {
            task_id,
            max_attempts,
            pg,
            schema,
        } => cmd_retry(&task_id, max_attempts, &pg, schema),
        Command::Respond {
            scenario,
            dry_run,
            json,
            markdown,
        } => cmd_respond(&scenario, dry_run, json, markdown),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowfail: {e}");
            ExitCode::from(2)
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(serde::Deserialize)]
struct ClassifyLine {
    message: String,
    #[serde(default)]
    status: Option<u16>,
}

fn cmd_classify(count: bool) -> CliResult {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut counts = ClassCounts::default();
    let mut bad = 0u64;
    for line in stdin.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let parsed = serde_json::from_slice::<ClassifyLine>(&line)
            .map(|l| (l.message, l.status))
            .map_err(|e| format!("invalid input line: {e}"));
        match parsed {
            Ok((m, s)) => {
                let c = classify(&m, s);
                if count {
                    counts.add(c);
                } else {
                    write_class(&mut out, c)?;
                }
            }
            Err(e) => {
                bad += 1;
                serde_json::to_writer(&mut out, &serde_json::json!({ "error": e }))?;
                out.write_all(b"\n")?;
            }
        }
    }
    if count {
        counts.write(&mut out)?;
    }
    out.flush()?;
    if bad > 0 {
        eprintln!("flowfail: {bad} malformed input line(s)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_validate(schemas: &[String], files: &[PathBuf]) -> CliResult {
    let set = if schemas.is_empty() {
        SchemaSet::builtin()
    } else {
        let mut v = Vec::new();
        for s in schemas {
            let (ver, path) = s
                .split_once('=')
                .ok_or_else(|| format!("--schema {s:?}: expected VERSION=PATH"))?;
            let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            v.push((ver.to_owned(), json));
        }
        SchemaSet::new(v)?
    };
    // Files are taken in small batches from a shared counter, so a slow file or disk on one
    // core does not leave the other idle; results are put back in input order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().div_ceil(BATCH).max(1));
    const BATCH: usize = 32;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Vec<u8>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (set, next) = (&set, &next);
                s.spawn(move || {
                    let mut done = Vec::new();
                    let mut buf = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                        if start >= files.len() {
                            break;
                        }
                        let mut text = Vec::with_capacity(BATCH * 128);
                        let mut invalid = 0;
                        for f in &files[start..(start + BATCH).min(files.len())] {
                            if !validate_file(set, f, &mut buf, &mut text) {
                                invalid += 1;
                            }
                        }
                        done.push((start, text, invalid));
                    }
                    done
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "a validation thread failed")?);
        }
        Ok::<_, &str>(all)
    })?;
    results.sort_unstable_by_key(|r| r.0);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut invalid = 0usize;
    for (_, text, bad) in results {
        invalid += bad;
        out.write_all(&text)?;
    }
    out.flush()?;
    Ok(if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One result line of `validate`: a report, or why the file could not be read.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum ValidateLine<'a> {
    Checked {
        file: &'a str,
        valid: bool,
        declared_version: Option<&'a str>,
        errors: &'a [flowfail_core::schema::SchemaError],
        version_mismatch: Option<&'a str>,
    },
    Unreadable {
        file: &'a str,
        valid: bool,
        error: &'a str,
    },
}

/// TaskObjects larger than this are refused unread.
const MAX_TASK_OBJECT: usize = 16 << 20;

/// Reads a whole file into the reused, already-initialised `buf` (grown when needed) with plain
/// reads: no size probing, which costs two system calls per file. Returns the length.
fn read_whole(mut file: std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() < 64 << 10 {
        buf.resize(64 << 10, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= MAX_TASK_OBJECT {
                return Err(std::io::Error::other(format!(
                    "larger than {} MiB: not a TaskObject",
                    MAX_TASK_OBJECT >> 20
                )));
            }
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Validates one file, appending its result line to `out`; `buf` is a reused read buffer.
fn validate_file(
    set: &SchemaSet,
    f: &std::path::Path,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> bool {
    let parsed = std::fs::File::open(f)
        .and_then(|file| read_whole(file, buf))
        .map_err(|e| e.to_string())
        .and_then(|n| {
            serde_json::from_slice::<serde_json::Value>(&buf[..n])
                .map_err(|e| format!("invalid JSON: {e}"))
        });
    let file = f.to_string_lossy();
    let (line, ok) = match &parsed {
        Ok(v) => {
            let r = set.validate(v);
            let ok = r.valid;
            (Ok(r), ok)
        }
        Err(e) => (Err(e), false),
    };
    let line = match &line {
        Ok(r) => ValidateLine::Checked {
            file: &file,
            valid: r.valid,
            declared_version: r.declared_version.as_deref(),
            errors: &r.errors,
            version_mismatch: r.version_mismatch.as_deref(),
        },
        Err(e) => ValidateLine::Unreadable {
            file: &file,
            valid: false,
            error: e,
        },
    };
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
    ok
}

fn cmd_prune(
    max: ByteSize,
    keep: Vec<String>,
    no_default: bool,
    manifest: Option<PathBuf>,
    max_input: ByteSize,
) -> CliResult {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(max_input.bytes() + 1)
        .read_to_end(&mut input)?;
    let mut opts = if no_default {
        PruneOptions::without_default_pins()
    } else {
        PruneOptions::default()
    };
    opts = opts.max_input_bytes(max_input.bytes());
    for k in keep {
        opts = opts.keep(k);
    }
    let pruned = prune(&input, max.bytes(), &opts)?;
    let m = serde_json::to_string_pretty(&pruned.manifest)?;
    match manifest {
        Some(path) => std::fs::write(path, m)?,
        None => eprintln!("{m}"),
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&pruned.bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn aws_options(endpoint: Option<String>) -> flowfail_aws::AwsOptions {
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

fn cmd_prune_context(
    task_id: &str,
    max: ByteSize,
    dir: Option<PathBuf>,
    bucket: Option<String>,
    prefix: String,
    endpoint: Option<String>,
) -> CliResult {
    let id = TaskId::parse(task_id)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store: Box<dyn flowfail_core::BundleStore> = match (dir, bucket) {
        (Some(d), None) => Box::new(fs_store::FsBundleStore::new(d)),
        (None, Some(b)) => {
            let cfg = rt.block_on(flowfail_aws::load_config(&aws_options(endpoint)));
            Box::new(flowfail_aws::S3BundleStore::new(&cfg, b).prefix(prefix))
        }
        _ => return Err("prune-context needs --bundle-dir or --s3-bucket".into()),
    };
    let r = rt.block_on(store.prune_context(
        &id,
        max,
        ByteSize::new(256 << 20),
        &PruneOptions::default(),
    ))?;
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
    Ok(ExitCode::SUCCESS)
}

fn cmd_respond(path: &std::path::Path, dry_run: bool, json: bool, markdown: bool) -> CliResult {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let sc = Scenario::from_json(&text)?;
    let opts = ReplayOptions::default()
        .dry_run(dry_run)
        .base_dir(path.parent().map(PathBuf::from));
    let (report, _) = replay_blocking(&sc, &opts)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else if markdown {
        write!(out, "{}", report.to_markdown())?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn pg_tasks(
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

/// Arguments of `flowfail triage`.
#[derive(clap::Args)]
struct TriageArgs {
    /// TaskDB URL (`postgres://user@host:port/db`).
    #[arg(long, env = "FLOWFAIL_PG_URL")]
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
    /// Schema of the tasks table.
    #[arg(long)]
    schema: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn secret_env(var: &str) -> Result<secrecy::SecretString, String> {
    std::env::var(var)
        .map(secrecy::SecretString::from)
        .map_err(|_| format!("{var} is not set"))
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

fn cmd_triage(a: &TriageArgs) -> CliResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
    if a.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::Value::Object(t.report))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", t.text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The alert and the failed tasks, from the TaskDB.
fn triage_tasks(t: &mut Triage<'_>) -> Result<(), Box<dyn std::error::Error>> {
    use flowfail_core::TaskStore;
    let (a, rt, now, policy) = (t.args, t.rt, t.now, &t.policy);
    let (report, text) = (&mut t.report, &mut t.text);
    if let Some(url) = &a.pg {
        let store = pg_tasks(url, a.schema.clone())?;
        let (counts, failed) = rt.block_on(async {
            let window = chrono::TimeDelta::seconds(policy.alert_window_s as i64);
            let counts = store.counts(now - window, now).await?;
            let failed = store.recent_failed(a.limit).await?;
            Ok::<_, flowfail_core::Error>((counts, failed))
        })?;
        let alert = flowfail_core::decide::alert(&counts, false, policy);
        let rows: Vec<serde_json::Value> = failed
            .iter()
            .map(|t| {
                let c = classify(t.error_message.as_deref().unwrap_or(""), t.http_status);
                serde_json::json!({"task_id": t.task_id, "flow_type": t.flow_type, "attempts": t.attempts,
                    "error_message": t.error_message.as_deref().map(|m| flowfail_core::model::sanitize(m, 200)),
                    "kind": c.kind, "retryable": c.retryable, "rule": c.rule})
            })
            .collect();
        let mut by_kind = std::collections::BTreeMap::new();
        for r in &rows {
            *by_kind
                .entry(r["kind"].as_str().unwrap_or("unknown").to_owned())
                .or_insert(0u64) += 1;
        }
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
        report.insert("classification".into(), serde_json::to_value(by_kind)?);
        report.insert("failed".into(), serde_json::Value::Array(rows));
    } else {
        text.push_str("TaskDB: not configured (--pg or FLOWFAIL_PG_URL)\n");
    }
    Ok(())
}

/// Error logs of the last hour, from CloudWatch Logs.
fn triage_logs(t: &mut Triage<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let (a, rt, now, policy) = (t.args, t.rt, t.now, &t.policy);
    let (report, text) = (&mut t.report, &mut t.text);
    if let Some(group) = &a.cloudwatch_log_group {
        use flowfail_core::LogSource;
        let cfg = rt.block_on(flowfail_aws::load_config(&aws_options(
            a.aws_endpoint.clone(),
        )));
        let src = flowfail_aws::CloudWatchLogSource::new(&cfg, group.clone());
        let window = chrono::TimeDelta::seconds(policy.alert_window_s as i64);
        let batch = rt.block_on(src.errors(&flowfail_core::LogQuery::errors(now - window, now)))?;
        let mut by_kind = std::collections::BTreeMap::new();
        let mut rows = Vec::new();
        for e in &batch.events {
            let c = classify(&e.message, None);
            *by_kind.entry(c.kind.as_str().to_owned()).or_insert(0u64) += 1;
            if rows.len() < a.limit {
                rows.push(
                    serde_json::json!({"timestamp": e.timestamp, "task_id": e.task_id,
                    "message": flowfail_core::model::sanitize(&e.message, 200), "kind": c.kind}),
                );
            }
        }
        text.push_str(&format!(
            "error logs ({group}, last hour): {} events{}\n",
            batch.events.len(),
            if batch.truncated { " (truncated)" } else { "" }
        ));
        for (k, n) in &by_kind {
            text.push_str(&format!("  {k}: {n}\n"));
        }
        report.insert(
            "logs".into(),
            serde_json::json!({"log_group": group, "events": batch.events.len(), "truncated": batch.truncated,
                "classification": by_kind, "recent": rows}),
        );
    }
    Ok(())
}

/// Vendor quota and status pages.
fn triage_vendors(t: &mut Triage<'_>) -> Result<(), Box<dyn std::error::Error>> {
    use flowfail_core::{QuotaChecker, StatusPage};
    let (a, rt) = (t.args, t.rt);
    let (report, text) = (&mut t.report, &mut t.text);
    let opts = flowfail_http::HttpOptions::default();
    let mut quotas = serde_json::Map::new();
    if a.quota_anthropic {
        let q = flowfail_http::AnthropicQuota::new(
            &a.anthropic_url,
            secret_env("ANTHROPIC_API_KEY")?,
            opts.clone(),
        )?;
        let v = rt.block_on(q.quota("anthropic"))?;
        text.push_str(&format!("quota anthropic: {}\n", describe_quota(&v)));
        quotas.insert("anthropic".into(), serde_json::to_value(v)?);
    }
    if a.quota_openai {
        let q = flowfail_http::OpenAiQuota::new(
            &a.openai_url,
            secret_env("OPENAI_API_KEY")?,
            opts.clone(),
        )?;
        let v = rt.block_on(q.quota("openai"))?;
        text.push_str(&format!("quota openai: {}\n", describe_quota(&v)));
        quotas.insert("openai".into(), serde_json::to_value(v)?);
    }
    if !quotas.is_empty() {
        report.insert("quota".into(), serde_json::Value::Object(quotas));
    }
    if a.status {
        let mut cfg = flowfail_http::StatusPageConfig::defaults();
        for o in &a.status_urls {
            let (v, u) = o
                .split_once('=')
                .ok_or_else(|| format!("--status-url {o:?}: expected VENDOR=URL"))?;
            let components = cfg.get(v).map(|c| c.components.clone()).unwrap_or_default();
            cfg.insert(
                v.to_owned(),
                flowfail_http::StatusPageConfig::new(u, components),
            );
        }
        let vendors: Vec<String> = cfg.keys().cloned().collect();
        let pages = flowfail_http::StatusPages::new(cfg, opts)?;
        let mut out = serde_json::Map::new();
        for v in vendors {
            let s = rt.block_on(pages.health(&v))?;
            let since = s.since.map(|t| format!(" since {t}")).unwrap_or_default();
            text.push_str(&format!("vendor {v}: {:?}{since}\n", s.health));
            out.insert(v, serde_json::to_value(s)?);
        }
        report.insert("vendors".into(), serde_json::Value::Object(out));
    }
    Ok(())
}

fn describe_quota(q: &flowfail_core::Quota) -> String {
    match q {
        flowfail_core::Quota::Known(u) => format!("{:.1}% used", u.used_ratio * 100.0),
        flowfail_core::Quota::Unknown { reason } => format!("unknown ({reason})"),
        _ => "unknown".into(),
    }
}

fn cmd_retry(task_id: &str, max_attempts: u32, url: &str, schema: Option<String>) -> CliResult {
    use flowfail_core::TaskStore;
    let id = TaskId::parse(task_id)?;
    let store = pg_tasks(url, schema.clone())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let task = rt.block_on(store.get(&id))?;
    let class = classify(
        task.error_message.as_deref().unwrap_or(""),
        task.http_status,
    );
    let mut policy = flowfail_core::Policy::default();
    policy.max_attempts = max_attempts;
    let incident = open_incident(&rt, url, schema.as_deref(), &policy);
    let observed = flowfail_core::decide::ObservedTask::from_parts(task.clone(), class);
    let now = chrono::Utc::now();
    // The responder's own gates: kind, attempts, the open incident's breaker and outage hold.
    let (action, not_before) =
        match flowfail_core::decide::manual_retry(&observed, incident.as_ref(), &policy, now) {
            Ok(r) => r,
            Err(why) => {
                println!(
                    "{}",
                    serde_json::json!({"task_id": id, "outcome": "refused", "reason": why})
                );
                return Ok(ExitCode::from(1));
            }
        };
    let flowfail_core::decide::Action::RetryTask { attempt, .. } = action else {
        return Err("no retry decided".into());
    };
    let out = rt.block_on(store.schedule_retries(&[flowfail_core::RetryRequest::new(
        id.clone(),
        task.attempts,
        not_before,
    )]))?;
    let outcome = out.into_iter().next();
    println!(
        "{}",
        serde_json::json!({"task_id": id, "attempt": attempt, "not_before": not_before, "result": outcome})
    );
    Ok(
        if matches!(outcome, Some(flowfail_core::RetryOutcome::Scheduled { .. })) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// The open incident of the policy's Deployment in the ledger beside the TaskDB (same database,
/// same schema), if the ledger exists there and has one: its breaker and outage hold gate manual
/// retries too.
fn open_incident(
    rt: &tokio::runtime::Runtime,
    url: &str,
    schema: Option<&str>,
    policy: &flowfail_core::Policy,
) -> Option<flowfail_core::decide::IncidentState> {
    use flowfail_core::IncidentStore;
    let read = flowfail_pg::connect(url, 1)
        .and_then(|pool| flowfail_pg::PgIncidentStore::new(pool, schema))
        .map(|ledger| rt.block_on(ledger.find_open(&policy.deployment)));
    match read {
        Ok(Ok(Some(rec))) => match serde_json::from_value(rec.state) {
            Ok(state) => Some(state),
            Err(e) => {
                eprintln!(
                    "flowfail: note: the open incident's state is unreadable ({e}): only the task's own gates apply"
                );
                None
            }
        },
        Ok(Ok(None)) => None,
        Ok(Err(e)) | Err(e) => {
            eprintln!(
                "flowfail: note: no incident ledger read ({e}): only the task's own gates apply"
            );
            None
        }
    }
}
