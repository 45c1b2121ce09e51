//! `--dry-run` and the `FLOWFAIL_KILL_SWITCH` environment variable on the two commands that
//! change a backend (security review finding 8): `prune-context` against a bundle directory and
//! `retry` against a real PostgreSQL TaskDB (skipped through `pg_unreachable_in` when there is
//! none). With either, nothing changes: the directory is byte-identical afterwards (no archive
//! directory) and the task's row reads back the same. A dry run exits as the real run would
//! (0 or 1); the kill switch exits 1 and names the variable. A real run on the same fixtures
//! does change them, so the fixtures can tell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{TimeDelta, Utc};
use flowfail_core::memory::synthesize_bundle;
use flowfail_core::{FlowType, Task, TaskId, TaskStatus, TaskStore};
use flowfail_pg::{PgTaskStore, TaskTable};
use serde_json::Value;

use crate::support::{flowfail_cmd, fresh_schema};

static N: AtomicU32 = AtomicU32::new(0);

fn flowfail(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = flowfail_cmd();
    c.args(args).env_remove("FLOWFAIL_KILL_SWITCH");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn json_line(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory holding `t-1.json`, a 600 kB bundle that a 180 kB budget prunes.
fn bundle_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ff-dry-run-{}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    let id = TaskId::parse("t-1").unwrap();
    std::fs::write(d.join("t-1.json"), synthesize_bundle(&id, 600_000)).unwrap();
    d
}

/// Every path under `d` with its bytes (directories with none).
fn snapshot(d: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![d.to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(d).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn prune_context(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let d = dir.display().to_string();
    let mut args = vec![
        "prune-context",
        "--task-id",
        "t-1",
        "--max-size",
        "180KB",
        "--bundle-dir",
        &d,
    ];
    args.extend_from_slice(extra);
    flowfail(&args, env)
}

#[test]
fn prune_context_dry_run_reads_and_prunes_in_memory_and_changes_nothing() {
    let dir = bundle_dir();
    let before = snapshot(&dir);
    let o = prune_context(&dir, &["--dry-run"], &[]);
    let v = json_line(&o);
    assert_eq!(o.status.code(), Some(0), "{v} {}", stderr(&o));
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(v["outcome"], "would_prune", "{v}");
    assert_eq!(v["from_bytes"], 600_000, "{v}");
    let to = v["to_bytes"].as_u64().unwrap();
    assert!(to > 0 && to <= 180_000, "{v}");
    assert_eq!(v["archive_sha256"].as_str().unwrap().len(), 64, "{v}");
    assert_eq!(snapshot(&dir), before, "the bundle directory changed");
    assert!(!dir.join("archive").exists());

    // The kill switch does not stop a dry run: it changes nothing either.
    let o = prune_context(&dir, &["--dry-run"], &[("FLOWFAIL_KILL_SWITCH", "1")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_line(&o)["dry_run"], true);
    assert_eq!(snapshot(&dir), before);

    // A dry run exits as the real run would: no bundle for the task is found wanting.
    let d = dir.display().to_string();
    let o = flowfail(
        &[
            "prune-context",
            "--task-id",
            "nope",
            "--max-size",
            "180KB",
            "--bundle-dir",
            &d,
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(snapshot(&dir), before);

    // The real run on the same fixture does prune and archive.
    let o = prune_context(&dir, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_line(&o)["outcome"], "pruned");
    assert_ne!(snapshot(&dir), before);
    assert!(dir.join("archive").is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prune_context_refuses_under_the_kill_switch() {
    for value in ["1", "true", "TRUE"] {
        let dir = bundle_dir();
        let before = snapshot(&dir);
        let o = prune_context(&dir, &[], &[("FLOWFAIL_KILL_SWITCH", value)]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{value}: {err}");
        assert!(err.contains("FLOWFAIL_KILL_SWITCH"), "{value}: {err}");
        assert!(o.stdout.is_empty(), "{value}");
        assert_eq!(
            snapshot(&dir),
            before,
            "{value}: the bundle directory changed"
        );
        assert!(!dir.join("archive").exists(), "{value}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Off: "0", "false" and empty let the command run.
    for value in ["0", "false", ""] {
        let dir = bundle_dir();
        let o = prune_context(&dir, &[], &[("FLOWFAIL_KILL_SWITCH", value)]);
        assert_eq!(o.status.code(), Some(0), "{value:?}: {}", stderr(&o));
        assert!(dir.join("archive").is_dir(), "{value:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn help_documents_dry_run_and_the_kill_switch() {
    for cmd in ["prune-context", "retry"] {
        let o = flowfail(&[cmd, "--help"], &[]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        assert!(out.contains("--dry-run"), "{cmd}: {out}");
        assert!(out.contains("FLOWFAIL_KILL_SWITCH"), "{cmd}: {out}");
    }
}

fn url() -> String {
    flowfail_testkit::pg_url()
}

/// A fresh schema with `t-ok` (a timeout, retryable) and `t-max` (out of attempts).
async fn seeded() -> Option<(PgTaskStore, String)> {
    let (pool, schema) = fresh_schema(module_path!(), "ff_cli_dry", 2).await?;
    let s = PgTaskStore::new(pool, &TaskTable::in_schema(schema.clone())).unwrap();
    s.migrate().await.unwrap();
    let old = Utc::now() - TimeDelta::minutes(10);
    s.insert(
        &[
            Task::new(
                TaskId::parse("t-ok").unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                old,
            )
            .with_error("Task timed out after 45.02 seconds", None),
            Task::new(
                TaskId::parse("t-max").unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                old,
            )
            .with_error("Task timed out after 45.02 seconds", None)
            .with_attempts(3),
        ],
        &[],
    )
    .await
    .unwrap();
    Some((s, schema))
}

fn retry(id: &str, schema: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let u = url();
    let mut args = vec![
        "retry",
        "--task-id",
        id,
        "--max-attempts",
        "3",
        "--schema",
        schema,
        "--pg",
        &u,
    ];
    args.extend_from_slice(extra);
    flowfail(&args, env)
}

async fn row(s: &PgTaskStore, id: &str) -> Task {
    s.get(&TaskId::parse(id).unwrap()).await.unwrap()
}

#[tokio::test]
async fn retry_dry_run_and_kill_switch_leave_the_row_unchanged() {
    let Some((s, schema)) = seeded().await else {
        return;
    };
    let before = row(&s, "t-ok").await;
    assert_eq!((before.status, before.attempts), (TaskStatus::Failed, 0));

    // A dry run passes the same gates and says what it would schedule.
    let o = retry("t-ok", &schema, &["--dry-run"], &[]);
    let v = json_line(&o);
    assert_eq!(o.status.code(), Some(0), "{v} {}", stderr(&o));
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(v["outcome"], "would_schedule", "{v}");
    assert_eq!(v["attempt"], 1, "{v}");
    let now = row(&s, "t-ok").await;
    assert_eq!((now.status, now.attempts), (TaskStatus::Failed, 0));
    assert_eq!(now, before);

    // Refused by the gates: exit 1 as without --dry-run, row unchanged.
    let max_before = row(&s, "t-max").await;
    let o = retry("t-max", &schema, &["--dry-run"], &[]);
    let v = json_line(&o);
    assert_eq!(o.status.code(), Some(1), "{v} {}", stderr(&o));
    assert_eq!(
        (v["outcome"].as_str(), &v["dry_run"]),
        (Some("refused"), &Value::Bool(true))
    );
    assert_eq!(row(&s, "t-max").await, max_before);

    // The kill switch: exit 1, the variable named, nothing changed.
    for value in ["1", "true"] {
        let o = retry("t-ok", &schema, &[], &[("FLOWFAIL_KILL_SWITCH", value)]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{value}: {err}");
        assert!(err.contains("FLOWFAIL_KILL_SWITCH"), "{value}: {err}");
        let now = row(&s, "t-ok").await;
        assert_eq!(
            (now.status, now.attempts),
            (TaskStatus::Failed, 0),
            "{value}"
        );
        assert_eq!(now, before, "{value}");
    }
    // ... and a dry run under it still reads and reports.
    let o = retry(
        "t-ok",
        &schema,
        &["--dry-run"],
        &[("FLOWFAIL_KILL_SWITCH", "1")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(row(&s, "t-ok").await, before);

    // The real run on the same row does schedule it.
    let o = retry("t-ok", &schema, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let now = row(&s, "t-ok").await;
    assert_eq!((now.status, now.attempts), (TaskStatus::Pending, 1));
}
