//! The exit codes, command by command, as the README's table gives them: one case per code per
//! command, run against the real binary. No peer is needed: a backend failure is a closed port
//! (the operating system refuses the connection, as it does for a stopped server). The cells
//! that need a working PostgreSQL (`retry` 0 and 1) are checked in `pg_cli.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use crate::support::{flowfail_cmd, repo, run_with_stdin};

fn flowfail(args: &[String], stdin: &[u8]) -> Output {
    let mut cmd = flowfail_cmd();
    cmd.args(args)
        .env_remove("FLOWFAIL_PG_URL")
        .env_remove("FLOWFAIL_AWS_ENDPOINT");
    run_with_stdin(&mut cmd, stdin).0
}

/// A port on which nothing listens: connecting to it is refused, as with a stopped server.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const TASK_OBJECT: &str = r#"{"schema_version": "2.0.0", "task_id": "t-1", "flow_type": "impl",
    "created_at": "2025-11-13T09:00:00Z",
    "inputs": {"repo_url": "https://example.com/r.git", "instructions": "x"}}"#;

/// One case: command, code, arguments, stdin, what stderr must say.
struct Case {
    command: &'static str,
    code: u8,
    args: Vec<String>,
    stdin: Vec<u8>,
    stderr_has: &'static str,
}

fn case(command: &'static str, code: u8, args: &[&str], stdin: &[u8], err: &'static str) -> Case {
    Case {
        command,
        code,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        stdin: stdin.to_vec(),
        stderr_has: err,
    }
}

fn cases(dir: &Path) -> Vec<Case> {
    let p = |name: &str| dir.join(name).display().to_string();
    std::fs::write(dir.join("good.json"), TASK_OBJECT).unwrap();
    std::fs::write(
        dir.join("bad.json"),
        TASK_OBJECT.replace("\"impl\"", "\"refactor\""),
    )
    .unwrap();
    std::fs::write(dir.join("broken-scenario.json"), "{\"now\": ").unwrap();
    let bundles = dir.join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    std::fs::write(bundles.join("t-1.json"), br#"{"messages": ["a", "b"]}"#).unwrap();
    let pilot = repo().join("testdata/scenarios/pilot-timeout.json");
    let dead_pg = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let dead_aws = format!("http://127.0.0.1:{}", closed_port());
    let (live_cfg, typo_cfg, dead_cfg) = live_configs(dir, &dead_pg);
    let b = bundles.display().to_string();
    let pc = |task: &str, dir: &str| {
        vec![
            "prune-context".to_owned(),
            "--task-id".into(),
            task.into(),
            "--max-size".into(),
            "1KB".into(),
            "--bundle-dir".into(),
            dir.into(),
        ]
    };
    let mut v = vec![
        case(
            "classify",
            0,
            &["classify"],
            b"{\"message\": \"Task timed out after 45.00 seconds\"}\n",
            "",
        ),
        case(
            "classify",
            1,
            &["classify"],
            b"{\"message\": \"x\"}\n{oops\n",
            "line 2",
        ),
        case(
            "classify",
            2,
            &["classify", "--plain", "/nonexistent/flowfail.log"],
            b"",
            "/nonexistent/flowfail.log",
        ),
        case("validate", 0, &["validate", &p("good.json")], b"", ""),
        case(
            "validate",
            1,
            &["validate", &p("good.json"), &p("bad.json")],
            b"",
            "",
        ),
        case(
            "validate",
            2,
            &["validate", &p("good.json"), &p("missing.json")],
            b"",
            "could not be read",
        ),
        case(
            "prune",
            0,
            &["prune", "--max-size", "1KB"],
            b"{\"a\": 1}",
            "",
        ),
        case(
            "prune",
            1,
            &["prune", "--max-size", "1KB"],
            b"{\"messages\": [",
            "invalid JSON",
        ),
        case("prune", 2, &["prune", "--max-size", "lots"], b"{}", "lots"),
        case(
            "respond",
            0,
            &["respond", "--scenario", pilot.to_str().unwrap()],
            b"",
            "",
        ),
        case(
            "respond",
            1,
            &["respond", "--scenario", &p("broken-scenario.json")],
            b"",
            "invalid scenario",
        ),
        case(
            "respond",
            2,
            &["respond", "--scenario", &p("nowhere.json")],
            b"",
            "nowhere.json",
        ),
        case("triage", 0, &["triage"], b"", ""),
        case("triage", 2, &["triage", "--limit", "many"], b"", "many"),
        case(
            "triage",
            3,
            &["triage", "--pg", &dead_pg],
            b"",
            "Connection refused",
        ),
        case(
            "retry",
            2,
            &["retry", "--task-id", "../t-1", "--pg", &dead_pg],
            b"",
            "--task-id",
        ),
        case(
            "retry",
            3,
            &["retry", "--task-id", "t-1", "--pg", &dead_pg],
            b"",
            "Connection refused",
        ),
        case(
            "prune-context",
            3,
            &[
                "prune-context",
                "--task-id",
                "t-1",
                "--max-size",
                "1KB",
                "--s3-bucket",
                "context-bundles",
                "--aws-endpoint",
                &dead_aws,
            ],
            b"",
            "Connection refused",
        ),
        case(
            "check-config",
            0,
            &["check-config", "--offline", "--config", &live_cfg],
            b"",
            "",
        ),
        case(
            "check-config",
            1,
            &["check-config", "--offline", "--config", &typo_cfg],
            b"",
            "colums",
        ),
        case(
            "check-config",
            2,
            &["check-config", "--config", &p("no-such.toml")],
            b"",
            "no-such.toml",
        ),
        case("run", 1, &["run", "--config", &typo_cfg], b"", "colums"),
        case(
            "run",
            2,
            &["run", "--config", &p("no-such.toml")],
            b"",
            "no-such.toml",
        ),
        case(
            "run",
            3,
            &["run", "--config", &dead_cfg],
            b"",
            "Connection refused",
        ),
        case(
            "pause",
            1,
            &["pause", "--reason", "r", "--config", &typo_cfg],
            b"",
            "colums",
        ),
        case(
            "pause",
            2,
            &["pause", "--reason", "r", "--config", &p("no-such.toml")],
            b"",
            "no-such.toml",
        ),
        case(
            "pause",
            3,
            &["pause", "--reason", "r", "--config", &dead_cfg],
            b"",
            "Connection refused",
        ),
        case(
            "resume",
            1,
            &["resume", "--config", &typo_cfg],
            b"",
            "colums",
        ),
        case(
            "resume",
            2,
            &["resume", "--config", &p("no-such.toml")],
            b"",
            "no-such.toml",
        ),
        case(
            "resume",
            3,
            &["resume", "--config", &dead_cfg],
            b"",
            "Connection refused",
        ),
        case(
            "approve",
            2,
            &["approve", "--config", &p("no-such.toml"), "inc", "rollback"],
            b"",
            "no-such.toml",
        ),
        case(
            "approve",
            3,
            &["approve", "--config", &dead_cfg, "inc", "rollback"],
            b"",
            "Connection refused",
        ),
        case("completions", 0, &["completions", "bash"], b"", ""),
        case("completions", 2, &["completions", "tcsh"], b"", "tcsh"),
        case("man", 0, &["man"], b"", ""),
        case("man", 2, &["man", "frobnicate"], b"", "frobnicate"),
    ];
    for (code, task, d, err) in [
        (0, "t-1", b.as_str(), ""),
        (1, "t-2", b.as_str(), "bundle t-2 not found"),
        (2, "t-1", "/nonexistent/bundles", "not a directory"),
    ] {
        v.push(Case {
            command: "prune-context",
            code,
            args: pc(task, d),
            stdin: Vec::new(),
            stderr_has: err,
        });
    }
    v
}

/// `flowfail.toml` files for `run` and `check-config`: valid (the TaskDB on `pg`), with an
/// unknown key, and valid but with nothing listening at `pg` (for exit 3).
fn live_configs(dir: &Path, dead_pg: &str) -> (String, String, String) {
    let key = dir.join("key");
    flowfail_testkit::write_secret(&key, "x-test\n");
    let k = key.display();
    let text = |pg: &str| {
        format!(
            r#"[postgres]
url = "{pg}"
[aws]
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
log_group = "g"
bucket = "b"
[kubernetes]
api_url = "http://127.0.0.1:9"
namespace = "default"
deployment = "flowengine"
[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "none"
[pager.routing_keys]
on_call = {{ file = "{k}" }}
sre = {{ file = "{k}" }}
tech_lead = {{ file = "{k}" }}
"#
        )
    };
    let write = |name: &str, t: String| {
        let p = dir.join(name);
        std::fs::write(&p, t).unwrap();
        p.display().to_string()
    };
    (
        write(
            "live.toml",
            text("postgres://flowfail@127.0.0.1:5432/postgres"),
        ),
        write(
            "typo.toml",
            text("postgres://flowfail@127.0.0.1:5432/postgres")
                .replace("[aws]", "colums = 1\n[aws]"),
        ),
        write("dead.toml", text(dead_pg)),
    )
}

/// Cells of the README's table checked elsewhere, with the test that checks them.
const ELSEWHERE: [(&str, u8, &str); 8] = [
    ("retry", 0, "pg_cli.rs"),
    ("retry", 1, "pg_cli.rs"),
    ("pause", 0, "control_cli.rs"),
    ("resume", 0, "control_cli.rs"),
    ("approve", 0, "control_cli.rs"),
    (
        "approve",
        1,
        "control_cli.rs (no such incident, a closed one)",
    ),
    ("run", 0, "live_e2e/incidents.rs (SIGTERM)"),
    (
        "check-config",
        1,
        "live_e2e/check_config.rs (a probe fails)",
    ),
];

/// The (command, code) cells the README's per-command table marks.
fn readme_cells() -> BTreeSet<(String, u8)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Exit codes"))
        .expect("README has an `## Exit codes` section");
    let mut cells = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        // | `command` | 0 | 1 | 2 | 3 |
        let names = cols[1].trim_matches('`');
        for name in names.split("`, `") {
            for code in 0..4u8 {
                let cell = cols[2 + code as usize];
                if !cell.is_empty() && cell != "–" {
                    cells.insert((name.to_owned(), code));
                }
            }
        }
    }
    cells
}

#[test]
fn every_command_exits_as_the_readme_table_says() {
    let dir = std::env::temp_dir().join(format!("flowfail-exit-codes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cases = cases(&dir);
    let mut covered = BTreeSet::new();
    for c in &cases {
        let out = flowfail(&c.args, &c.stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        assert_ne!(code, Some(101), "{:?} panicked: {stderr}", c.args);
        assert_eq!(
            code,
            Some(i32::from(c.code)),
            "{:?}: stderr {stderr}",
            c.args
        );
        assert!(
            stderr.contains(c.stderr_has),
            "{:?}: stderr lacks {:?}: {stderr}",
            c.args,
            c.stderr_has
        );
        if c.code >= 2 {
            assert!(
                stderr.starts_with("flowfail: ") || stderr.starts_with("error: "),
                "{:?}: one format: {stderr}",
                c.args
            );
        }
        covered.insert((c.command.to_owned(), c.code));
    }
    for (command, code, _) in ELSEWHERE {
        covered.insert((command.to_owned(), code));
    }
    assert_eq!(
        readme_cells(),
        covered,
        "the README's exit-code table and the cases here must list the same cells"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_exit_codes_are_in_every_commands_help() {
    for cmd in [
        &[][..],
        &["classify"],
        &["validate"],
        &["prune"],
        &["prune-context"],
        &["respond"],
        &["triage"],
        &["retry"],
        &["completions"],
        &["man"],
    ] {
        let mut args: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        args.push("--help".into());
        let out = flowfail(&args, b"");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for line in [
            "Exit codes (the same for every command):",
            "  0  ok",
            "  1  the input was checked and found wanting",
            "  2  usage or I/O error",
            "  3  a backend failed",
        ] {
            assert!(help.contains(line), "{args:?} --help lacks {line:?}");
        }
    }
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    for (shell, marker) in [
        ("bash", "_flowfail()"),
        ("zsh", "#compdef flowfail"),
        ("fish", "complete -c flowfail"),
    ] {
        let out = flowfail(&["completions".into(), shell.into()], b"");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {marker}");
        for sub in ["prune-context", "triage", "retry", "completions"] {
            assert!(text.contains(sub), "{shell} completes {sub}");
        }
    }
    let out = flowfail(&["man".into()], b"");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH flowfail"),
        "{page}"
    );
    assert!(
        page.contains("Exit codes"),
        "the exit codes are in the man page"
    );
    assert!(page.contains("prune\\-context"), "subcommands are listed");
    let out = flowfail(&["man".into(), "retry".into()], b"");
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH flowfail-retry 1"), "{page}");
    assert!(page.contains("\\-\\-max\\-attempts"), "{page}");
}

#[test]
fn a_malformed_classify_line_is_named_by_its_input_line() {
    let out = flowfail(
        &["classify".into()],
        b"{\"message\": \"ok\"}\n{\"message\": \"ok\"}\n{\"message\": 5}\n\n{oops\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[2]["line"], 3);
    let e = lines[2]["error"].as_str().unwrap();
    assert!(e.starts_with("line 3, column "), "{e}");
    assert!(
        !e.contains("line 1"),
        "serde_json's own line 1 is gone: {e}"
    );
    assert_eq!(lines[3]["line"], 4);
    assert!(lines[3]["error"].as_str().unwrap().starts_with("line 4"));
    assert_eq!(lines[4]["line"], 5);
    assert_eq!(lines[4]["error"], "line 5, column 2: key must be a string");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 malformed input line(s): line 3, 4, 5"),
        "{stderr}"
    );
}
