//! `flowfail`: the Flow Failure Response runbook on the command line.
//!
//! Every command exits 0 (ok), 1 (the input was checked and found wanting), 2 (usage or I/O
//! error) or 3 (a backend failed), and prints an error in one format: the error, its causes
//! down to the server's or the OS's own words, and advice for common mistakes
//! ([`failure`]).

mod advice;
mod backtest;
mod failure;
mod fs_store;
mod history;
mod live;
mod remote;
mod scan;
mod triage;
mod validate;

use scan::{ClassCounts, write_class};

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use flowfail_core::prune::{PruneOptions, prune};
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail_core::{ByteSize, ErrorKind, RuleSet};

use failure::{EXIT_CODES_HELP, Exit, Failure};

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
    /// `{"kind", "retryable", "rule"}` line per input line on stdout; a malformed line gets
    /// `{"line", "error"}` (its input line number) and the exit code is 1 at the end.
    ///
    /// With --plain, a log is read and only its failures are classified: lines logged at
    /// ERROR / FATAL / CRITICAL (plain text, logfmt, JSON with a level field), exceptions and
    /// Python tracebacks, AWS Lambda's `Task timed out` lines; one
    /// `{"line", "kind", "retryable", "rule"}` per failure (`line` is 1-based). --all-lines
    /// classifies every line instead, as `{"kind", "retryable", "rule"}` per line.
    Classify {
        /// Read raw text lines (a log) instead of JSON Lines; the work is spread over all cores.
        #[arg(long)]
        plain: bool,
        /// With --plain: classify every line, not only failure lines (lines without evidence
        /// for any rule are `unknown` by `no_rule`).
        #[arg(long, requires = "plain")]
        all_lines: bool,
        /// Print one JSON object of counts instead of a line per input: `lines`, and for
        /// --plain `failure_lines`, `by_kind` and `by_rule` of the failure lines (of every line
        /// with --all-lines).
        #[arg(long)]
        count: bool,
        /// Add the user rules of this TOML rule file to the built-in ones (repeatable); see
        /// the rule file format in the README.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// Add `explain` to each output line: which stage and rule decided, and why each
        /// earlier stage did not.
        #[arg(long, conflicts_with = "count")]
        explain: bool,
        /// Log files to read instead of stdin (with --plain). With --count, each file is split
        /// at line ends and read by all cores at once.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Validate TaskObject JSON files against the known schemas; one JSON line per file.
    /// Exit 1 when a file is not a valid TaskObject, 2 when a file cannot be read.
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
    PruneContext(remote::PruneContextArgs),
    /// The runbook's triage: failed tasks in the TaskDB (newest first), classified, and the
    /// failure-rate alert over the last hour.
    Triage(triage::TriageArgs),
    /// Retry one failed task with backoff, fenced on its attempt count.
    Retry(remote::RetryArgs),
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
        /// In the human timeline, every action on a line of its own (by default per-task
        /// actions of the same kind, outcome and attempt at the same time share one line).
        #[arg(long, conflicts_with_all = ["json", "markdown"])]
        verbose: bool,
        /// Classify with the built-in rules and this rule file's (repeatable), as a config's
        /// `rules` does.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
    },
    /// Run the runbook as a service from a config file: watch the failure rate, respond to
    /// incidents, record everything in the ledger. `mode = "shadow"` (the default) changes
    /// nothing in the world. SIGTERM or Ctrl-C stop it within 5 s. SIGHUP (or `POST /reload`)
    /// reads the config file again: policy, rules, vendors, pager, notifier and schemas take
    /// effect at the next pass; an invalid file is refused and the running config stays.
    Run(live::RunArgs),
    /// Validate a config file, then probe every backend read-only: one line per port, exit 1
    /// when anything fails.
    CheckConfig(live::CheckConfigArgs),
    /// Pause automation for the config's Deployment: every replica keeps observing, deciding
    /// and recording, and changes nothing (one page per incident says so) until `resume`.
    Pause(live::PauseArgs),
    /// Lift the pause.
    Resume(live::ResumeArgs),
    /// Approve an action the policy holds for approval (`require_approval`) for an open
    /// incident: the next pass carries it out if it still decides it; the approval expires
    /// after `approval_ttl_s`.
    Approve(live::ApproveArgs),
    /// Deny an action that waits for approval: it is not carried out, nor proposed (or paged
    /// for) again, in that incident; the denial, its reason and who gave it are in the record.
    Deny(live::DenyArgs),
    /// The config's incidents, newest first: key, mode (act: what flowfail did; shadow: what
    /// it would have done), status, opened, MTTR, actions applied / failed / only decided,
    /// root cause.
    Incidents(history::IncidentsArgs),
    /// What flowfail would have done over a period of real history, before anyone turns it
    /// on: reads the TaskDB (one streaming, read-only pass), the bundle store, the log group
    /// and the Deployment's revisions, opens the incidents the supervisor would have opened, and
    /// replays the responder on each in virtual time. Writes nothing (but --export-scenario).
    Backtest(backtest::BacktestArgs),
    /// One incident's record read back from the ledger (for an open incident, its state so
    /// far), rendered as `respond` renders a replay: the grouped timeline with each pass's
    /// decision, what was not done and why, root cause, what is left in place, and what waits
    /// for approval. --markdown is what a team pastes into its incident tracker.
    Incident(history::IncidentArgs),
    /// Print a shell completion script to stdout, e.g.
    /// `flowfail completions bash > /etc/bash_completion.d/flowfail`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: flowfail(1), or flowfail-COMMAND(1) for a command,
    /// e.g. `flowfail man > flowfail.1 && man ./flowfail.1`.
    Man {
        /// A command, for its own page.
        command: Option<String>,
    },
}

/// The command line as clap sees it, with the exit codes after every command's help.
fn command() -> clap::Command {
    Cli::command()
        .after_help(EXIT_CODES_HELP)
        .mut_subcommands(|s| s.after_help(EXIT_CODES_HELP))
}

/// What a command returns: how it ended, or why it failed.
type CliResult = Result<Exit, Failure>;

fn main() -> ExitCode {
    // Usage errors exit 2 and help exits 0, from clap.
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // `run` sets up its own logging (level from RUST_LOG, text or JSON lines).
    if !matches!(cli.command, Command::Run(_)) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("FLOWFAIL_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .init();
    }
    match run(cli.command) {
        Ok(exit) => exit.into(),
        Err(f) => {
            eprintln!("{}", f.render());
            f.exit().into()
        }
    }
}

fn run(cmd: Command) -> CliResult {
    match cmd {
        Command::Classify {
            plain,
            all_lines,
            count,
            rules,
            explain,
            files,
        } => {
            let rules = load_rules(&rules)?;
            if plain {
                let opts = scan::ScanOptions {
                    count,
                    all_lines,
                    explain,
                };
                scan::cmd_classify_plain(&rules, opts, &files)
            } else if files.is_empty() {
                cmd_classify(rules.get(), count, explain)
            } else {
                Err(Failure::usage(
                    "FILE arguments need --plain (JSON Lines are read from stdin)",
                ))
            }
        }
        Command::Validate { schemas, files } => validate::cmd_validate(&schemas, &files),
        Command::Prune {
            max_size,
            keep,
            no_default_keep,
            manifest,
            max_input,
        } => cmd_prune(max_size, keep, no_default_keep, manifest, max_input),
        Command::PruneContext(a) => remote::cmd_prune_context(&a),
        Command::Triage(a) => triage::cmd_triage(&a),
        Command::Retry(a) => remote::cmd_retry(&a),
        Command::Respond {
            scenario,
            dry_run,
            json,
            markdown,
            verbose,
            rules,
        } => cmd_respond(&scenario, dry_run, (json, markdown, verbose), &rules),
        Command::Run(a) => live::cmd_run(&a),
        Command::CheckConfig(a) => live::cmd_check_config(&a),
        Command::Pause(a) => live::cmd_pause(&a),
        Command::Resume(a) => live::cmd_resume(&a),
        Command::Approve(a) => live::cmd_approve(&a),
        Command::Deny(a) => live::cmd_deny(&a),
        Command::Incidents(a) => history::cmd_incidents(&a),
        Command::Backtest(a) => backtest::cmd_backtest(&a),
        Command::Incident(a) => history::cmd_incident(&a),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "flowfail", &mut out);
            write_stdout(&out)
        }
        Command::Man { command } => cmd_man(command.as_deref()),
    }
}

/// Writes `bytes` to stdout.
fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::io("writing to stdout", e))?;
    Ok(Exit::Ok)
}

fn cmd_man(name: Option<&str>) -> CliResult {
    let mut root = command();
    root.build();
    let page = match name {
        None => root,
        Some(n) => {
            let Some(sub) = root.find_subcommand(n).cloned() else {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                return Err(Failure::usage(format!(
                    "no command {n:?}; the commands are {}",
                    names.join(", ")
                )));
            };
            sub.name(format!("flowfail-{n}"))
                .bin_name(format!("flowfail {n}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| Failure::io("rendering the man page", e))?;
    write_stdout(&out)
}

#[derive(serde::Deserialize)]
struct ClassifyLine {
    message: String,
    #[serde(default)]
    status: Option<u16>,
}

/// Why input line `line` is malformed, with the column in that line: `line 3, column 2:
/// expected ident` (serde_json's own position is always line 1 of a one-line text).
fn malformed(line: u64, e: &serde_json::Error) -> String {
    let text = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&at).unwrap_or(&text);
    if e.column() == 0 {
        format!("line {line}: {what}")
    } else {
        format!("line {line}, column {}: {what}", e.column())
    }
}

/// The longest JSON line `classify` reads (the `\n` not counted): 1 MiB. A longer line is an
/// error for that line; its rest is skipped, never buffered.
const MAX_CLASSIFY_LINE: usize = 1 << 20;

/// Reads one line of `r` into `buf` (without its `\n`), keeping at most `max` bytes: `None`
/// at the end of the input, `Some(true)` when the line was longer than `max` (then `buf` is
/// empty and the rest of the line has been read past), `Some(false)` otherwise.
fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let (mut any, mut over) = (false, false);
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(over));
        }
        any = true;
        let end = chunk.iter().position(|&b| b == b'\n');
        let part = &chunk[..end.unwrap_or(chunk.len())];
        if !over && buf.len() + part.len() > max {
            over = true;
            buf.clear();
        } else if !over {
            buf.extend_from_slice(part);
        }
        let used = end.map_or(chunk.len(), |i| i + 1);
        r.consume(used);
        if end.is_some() {
            return Ok(Some(over));
        }
    }
}

/// The built-in rules (compiled when first used), or the built-in ones with the users' files (a
/// bad file is a usage error naming the file, the rule and the position).
fn load_rules(files: &[PathBuf]) -> Result<scan::Rules, Failure> {
    if files.is_empty() {
        return Ok(scan::Rules::Builtin);
    }
    RuleSet::with_extra(files)
        .map(|rules| scan::Rules::Loaded(Box::new(rules)))
        .map_err(Failure::usage)
}

fn cmd_classify(rules: &RuleSet, count: bool, explain: bool) -> CliResult {
    let mut stdin = std::io::stdin().lock();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut counts = ClassCounts::default();
    let mut bad: Vec<u64> = Vec::new();
    let io = |e| Failure::io("writing to stdout", e);
    let mut line = Vec::new();
    for n in 1u64.. {
        let over = read_line_capped(&mut stdin, &mut line, MAX_CLASSIFY_LINE)
            .map_err(|e| Failure::io(format!("reading stdin line {n}"), e))?;
        let Some(over) = over else { break };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let parsed = if over {
            Err(format!(
                "line {n}: longer than the {MAX_CLASSIFY_LINE}-byte limit of a line, not read"
            ))
        } else {
            serde_json::from_slice::<ClassifyLine>(&line).map_err(|e| malformed(n, &e))
        };
        match parsed {
            Ok(l) => {
                if count {
                    counts.add(rules.classify(&l.message, l.status));
                } else if explain {
                    let e = rules.explain(&l.message, l.status);
                    scan::write_explained(&mut out, None, &e).map_err(io)?;
                } else {
                    write_class(&mut out, rules.classify(&l.message, l.status)).map_err(io)?;
                }
            }
            Err(why) => {
                bad.push(n);
                serde_json::to_writer(&mut out, &serde_json::json!({ "line": n, "error": why }))
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(io)?;
            }
        }
    }
    if count {
        counts.write(&mut out).map_err(io)?;
    }
    out.flush().map_err(io)?;
    if bad.is_empty() {
        return Ok(Exit::Ok);
    }
    let shown: Vec<String> = bad.iter().take(10).map(u64::to_string).collect();
    let more = if bad.len() > 10 { ", …" } else { "" };
    eprintln!(
        "flowfail: {} malformed input line(s): line {}{more}",
        bad.len(),
        shown.join(", ")
    );
    Ok(Exit::Wanting)
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
        .read_to_end(&mut input)
        .map_err(|e| Failure::io("reading stdin", e))?;
    let mut opts = if no_default {
        PruneOptions::without_default_pins()
    } else {
        PruneOptions::default()
    };
    opts = opts.max_input_bytes(max_input.bytes());
    for k in keep {
        check_pointer(&k)?;
        opts = opts.keep(k);
    }
    // The bundle is the input: one that is not JSON, too deep or too large, or whose pinned
    // parts do not fit, is found wanting.
    let pruned = prune(&input, max.bytes(), &opts).map_err(Failure::wanting)?;
    let m = serde_json::to_string_pretty(&pruned.manifest)?;
    match manifest {
        Some(path) => std::fs::write(&path, m)
            .map_err(|e| Failure::io(format!("writing --manifest {}", path.display()), e))?,
        None => eprintln!("{m}"),
    }
    write_stdout(&pruned.bytes)
}

/// A `--keep` pointer is a JSON pointer (RFC 6901): empty, or `/` and tokens where `~` is
/// followed by `0` or `1`. A bad one is a usage error, not a bad bundle.
fn check_pointer(p: &str) -> Result<(), Failure> {
    let escapes_ok = p
        .split('~')
        .skip(1)
        .all(|after| after.starts_with('0') || after.starts_with('1'));
    if (p.is_empty() || p.starts_with('/')) && escapes_ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--keep {}: not a JSON pointer (empty, or /a/b with ~0 for ~ and ~1 for /)",
            flowfail_core::model::sanitize(p, 100)
        )))
    }
}

fn cmd_respond(
    path: &std::path::Path,
    dry_run: bool,
    (json, markdown, verbose): (bool, bool, bool),
    rules: &[PathBuf],
) -> CliResult {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
    let sc = Scenario::from_json(&text).map_err(|e| Failure::wanting(e).doing(path.display()))?;
    let mut opts = ReplayOptions::default()
        .dry_run(dry_run)
        .base_dir(path.parent().map(PathBuf::from));
    if !rules.is_empty() {
        opts = opts.rules(std::sync::Arc::new(
            RuleSet::with_extra(rules).map_err(Failure::usage)?,
        ));
    }
    let (report, _) = replay_blocking(&sc, &opts).map_err(|e| {
        let doing = format!("replaying {}", path.display());
        if e.kind() == ErrorKind::InvalidInput {
            Failure::wanting(e).doing(doing)
        } else {
            Failure::from(e).doing(doing)
        }
    })?;
    let text = if json {
        let mut v = serde_json::to_vec_pretty(&report)?;
        v.push(b'\n');
        v
    } else if markdown {
        report.to_markdown().into_bytes()
    } else if verbose {
        report.to_text_verbose().into_bytes()
    } else {
        report.to_text().into_bytes()
    };
    write_stdout(&text)
}
