//! `flowfail pause`, `resume` and `approve` against a real PostgreSQL ledger: exit codes, and
//! the ledger's rows after each call (a refused call changes nothing).
//!
//! Needs PostgreSQL (`FLOWFAIL_PG_URL`); skips without it unless `FLOWFAIL_PG_REQUIRED=1`.

use std::path::PathBuf;

use chrono::Utc;
use flowfail_core::IncidentStore;
use flowfail_pg::PgIncidentStore;

use crate::support::{flowfail_cmd, fresh_schema};

struct Ledger {
    pool: deadpool_postgres::Pool,
    schema: String,
    store: PgIncidentStore,
    config: PathBuf,
}

async fn ledger() -> Option<Ledger> {
    let url = flowfail_testkit::pg_url();
    let (pool, schema) = fresh_schema(module_path!(), "ff_cli_ctl", 2).await?;
    let store = PgIncidentStore::new(pool.clone(), Some(&schema)).unwrap();
    store.migrate().await.unwrap();
    let dir = std::env::temp_dir().join(format!("flowfail-control-cli-{schema}"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    flowfail_testkit::write_secret(&key, "x-test\n");
    let k = key.display();
    let config = dir.join("flowfail.toml");
    std::fs::write(
        &config,
        format!(
            r#"[postgres]
url = "{url}"
schema = "{schema}"
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
        ),
    )
    .unwrap();
    Some(Ledger {
        pool,
        schema,
        store,
        config,
    })
}

impl Ledger {
    /// Runs the binary: exit code, stdout, stderr.
    fn flowfail(&self, args: &[&str]) -> (i32, String, String) {
        let out = flowfail_cmd()
            .args(args)
            .args(["--config", &self.config.display().to_string()])
            .env("USER", "test-operator")
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_ne!(code, 101, "{args:?} panicked: {stderr}");
        (
            code,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let c = self.pool.get().await.unwrap();
        let sql = sql.replace("{s}", &self.schema);
        c.query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect())
            .collect()
    }

    async fn pause_rows(&self) -> Vec<Vec<String>> {
        self.rows("SELECT scope, reason, paused_by FROM {s}.flowfail_pause ORDER BY scope")
            .await
    }

    async fn approval_rows(&self) -> Vec<Vec<String>> {
        self.rows("SELECT key, action, approved_by FROM {s}.flowfail_approvals ORDER BY id")
            .await
    }
}

#[tokio::test]
async fn pause_and_resume_write_the_ledger_flag() {
    let Some(l) = ledger().await else { return };
    let (code, out, err) = l.flowfail(&["pause", "--reason", "change freeze", "--by", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused"), "{out}");
    assert_eq!(
        l.pause_rows().await,
        [["default.flowengine", "change freeze", "alice"]]
    );

    // Refused: an empty reason, a reason with a control character. Nothing changes.
    for reason in ["   ", "two\nlines"] {
        let (code, _, err) = l.flowfail(&["pause", "--reason", reason]);
        assert_eq!(code, 2, "{reason:?}: {err}");
        assert!(
            err.starts_with("flowfail: ") && err.contains("reason"),
            "{err}"
        );
    }
    assert_eq!(
        l.pause_rows().await,
        [["default.flowengine", "change freeze", "alice"]]
    );
    let (code, _, err) = l.flowfail(&["pause", "--reason", "x", "--by", ""]);
    assert_eq!(code, 2, "{err}");

    // A second pause replaces the first; the author defaults to $USER.
    let (code, _, err) = l.flowfail(&["pause", "--reason", "still frozen"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        l.pause_rows().await,
        [["default.flowengine", "still frozen", "test-operator"]]
    );

    let (code, out, err) = l.flowfail(&["resume", "--by", "bob"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("resumed") && out.contains("still frozen"),
        "{out}"
    );
    assert!(l.pause_rows().await.is_empty());
    let (code, out, _) = l.flowfail(&["resume"]);
    assert_eq!(code, 0);
    assert!(out.contains("not paused"), "{out}");
    assert!(l.pause_rows().await.is_empty());
}

#[tokio::test]
async fn approve_records_an_approval_and_refuses_what_it_cannot_approve() {
    let Some(l) = ledger().await else { return };
    let key = "default.flowengine-20251113T1000Z";
    l.store
        .open(
            "default.flowengine",
            key,
            Utc::now(),
            &serde_json::json!({}),
        )
        .await
        .unwrap();

    let (code, out, err) = l.flowfail(&["approve", key, "rollback", "--by", "carol"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("approved") && out.contains(key), "{out}");
    assert_eq!(l.approval_rows().await, [[key, "rollback", "carol"]]);

    // Refused, nothing written: an unknown action (2), an unknown incident (1).
    let (code, _, err) = l.flowfail(&["approve", key, "reboot"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("reboot") && err.contains("rollback"), "{err}");
    let (code, _, err) = l.flowfail(&["approve", "no-such-incident", "rollback"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = l.flowfail(&["approve", "x\u{1b}[2J", "rollback"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "an escape reached the terminal: {err:?}"
    );
    assert_eq!(l.approval_rows().await, [[key, "rollback", "carol"]]);

    // A closed incident: nothing left to approve (1).
    let epoch = l.store.claim(key).await.unwrap();
    l.store
        .close(key, epoch, Utc::now(), &serde_json::json!({}))
        .await
        .unwrap();
    let (code, _, err) = l.flowfail(&["approve", key, "manual_review"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("closed"), "{err}");
    assert_eq!(l.approval_rows().await, [[key, "rollback", "carol"]]);
}

/// `pause`, `resume` and `approve` need only `[postgres]`: a config whose Kubernetes client
/// could not even be built (its kubeconfig is missing) still pauses and resumes, since only the
/// ledger is built for them.
#[tokio::test]
async fn controls_need_only_the_ledger() {
    let Some(l) = ledger().await else { return };
    let text = std::fs::read_to_string(&l.config).unwrap().replace(
        "api_url = \"http://127.0.0.1:9\"",
        "kubeconfig = \"/nonexistent/flowfail-test/kubeconfig\"",
    );
    std::fs::write(&l.config, text).unwrap();
    let (code, _, err) = l.flowfail(&["pause", "--reason", "ledger only", "--by", "carol"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        l.pause_rows().await,
        [["default.flowengine", "ledger only", "carol"]]
    );
    let (code, _, err) = l.flowfail(&["approve", "no-such-incident", "rollback"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no-such-incident") || err.contains("not_found"),
        "{err}"
    );
    let (code, out, err) = l.flowfail(&["resume", "--by", "carol"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resumed"), "{out}");
    assert!(l.pause_rows().await.is_empty());
}
