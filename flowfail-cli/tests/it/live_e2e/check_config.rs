//! `flowfail check-config` against the live peers: every backend probed read-only.

use std::collections::BTreeMap;

use super::world;
use crate::support::flowfail_cmd;

/// The line of `check-config`'s output for `port`.
pub(super) fn line_of<'a>(out: &'a str, port: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(port))
}

pub(super) fn check_config(
    config: &std::path::Path,
    offline: bool,
) -> (Option<i32>, String, String) {
    let mut cmd = flowfail_cmd();
    cmd.args(["check-config", "--config"]).arg(config);
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check-config` probes every backend read-only: one `ok` line per port on a good world,
/// a `FAIL` line and exit 1 for a missing bucket, exit 1 with the key's path offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_probes_every_backend_read_only() {
    let Some(w) = world("check").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let rv = w.resource_version();
    let config = w.config("act");
    let (code, out, err) = check_config(&config, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for port in [
        "config",
        "postgres.tasks",
        "schemas",
        "postgres.columns",
        "postgres.values",
        "postgres.ledger",
        "aws.logs",
        "aws.bundles",
        "kubernetes",
        "status.anthropic",
        "quota.anthropic",
        "pager",
    ] {
        let line = line_of(&out, port).unwrap_or_else(|| panic!("no line for {port}:\n{out}"));
        assert!(line.starts_with("ok"), "{line}");
    }
    // Read-only: nothing changed, nobody paged, the quota read once per vendor at most.
    assert_eq!(w.resource_version(), rv);
    assert!(w.pager.received_requests().await.unwrap().is_empty());
    assert!(w.webhook.received_requests().await.unwrap().is_empty());
    assert!(w.keys().await.is_empty());

    // A bucket that does not exist: one FAIL line, exit 1.
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = w.dir.join("bad-bucket.toml");
    std::fs::write(
        &bad,
        text.replace(
            &format!("bucket = \"{}\"", w.bucket),
            "bucket = \"no-such-bucket-flowfail\"",
        ),
    )
    .unwrap();
    let (code, out, err) = check_config(&bad, false);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains("aws.bundles"))
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    assert!(line.starts_with("FAIL"), "{out}");

    // A status page that does not carry what the config names, and Google's feed where the
    // server has none: each FAIL line says why on the line itself.
    let pages = w.dir.join("pages.toml");
    std::fs::write(
        &pages,
        text.replace(
            "[vendors.openai]\nquota = \"none\"\n",
            "[vendors.openai]\nquota = \"none\"\nstatus_components = [\"Sora\"]\n",
        ) + &format!(
            "\n[vendors.google]\nquota = \"none\"\nstatus_url = \"{}\"\nstatus_format = \"google_cloud\"\n",
            w.status.uri()
        ),
    )
    .unwrap();
    let (code, out, err) = check_config(&pages, false);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let line = |port: &str| {
        line_of(&out, port)
            .unwrap_or_else(|| panic!("no line for {port}:\n{out}"))
            .to_owned()
    };
    assert!(line("status.anthropic").starts_with("ok"), "{out}");
    let openai = line("status.openai");
    assert!(
        openai.starts_with("FAIL")
            && openai.contains("none of the configured components is on the page"),
        "{openai}"
    );
    let google = line("status.google");
    assert!(
        google.starts_with("FAIL") && google.contains("status.incidents") && google.contains("404"),
        "{google}"
    );

    // A column renamed in FlowEngine's table (or misnamed in the config) fails here, by name,
    // not mid-incident; the probes stay read-only.
    let renamed = w.dir.join("renamed.toml");
    std::fs::write(
        &renamed,
        format!("{text}\n[postgres.columns]\nfinished_at = \"done_at\"\n"),
    )
    .unwrap();
    let (code, out, err) = check_config(&renamed, false);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let columns = line_of(&out, "postgres.columns").unwrap_or_else(|| panic!("{out}\n{err}"));
    assert!(
        columns.starts_with("FAIL")
            && columns.contains("column \"done_at\" (finished_at) is missing"),
        "{columns}"
    );
    assert_eq!(w.resource_version(), rv);

    // FlowEngine's own schemas from a directory: check-config says which versions it knows
    // and where each comes from; a schema that is not JSON fails, naming the file, offline too.
    let schemas = w.dir.join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::write(
        schemas.join("task_object.v3.schema.json"),
        flowfail_core::schema::TASK_OBJECT_V2,
    )
    .unwrap();
    let with_schemas = w.dir.join("with-schemas.toml");
    std::fs::write(
        &with_schemas,
        format!("{text}\n[schemas]\ndir = \"{}\"\n", schemas.display()),
    )
    .unwrap();
    let (code, out, err) = check_config(&with_schemas, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let known = line_of(&out, "schemas").unwrap_or_else(|| panic!("{out}"));
    assert!(
        known.contains("v1 (built in), v2 (built in), v3 (")
            && known.contains("task_object.v3.schema.json"),
        "{known}"
    );
    std::fs::write(schemas.join("task_object.v4.schema.json"), "{ nope").unwrap();
    let (code, out, err) = check_config(&with_schemas, true);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("task_object.v4.schema.json") && err.contains("not JSON"),
        "{err}"
    );

    // A Deployment Argo CD owns (its tracking annotation): the kubernetes line says what its
    // sync will do to flowfail's changes, and the check stays read-only.
    w.k8s.edit("default", "flowengine", |d| {
        d["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
            "flowengine-prod:apps/Deployment:default/flowengine".into();
    });
    let (code, out, err) = check_config(&config, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let k = line_of(&out, "kubernetes").unwrap_or_else(|| panic!("{out}"));
    assert!(
        k.starts_with("ok")
            && k.contains("owned by Argo CD (application flowengine-prod)")
            && k.contains("make lasting changes in Git"),
        "{k}"
    );

    // Offline: an unknown key is found without connecting, by its path.
    let typo = w.dir.join("typo.toml");
    std::fs::write(&typo, text.replace("[aws]\n", "[aws]\nbuckt = \"x\"\n")).unwrap();
    let (code, out, err) = check_config(&typo, true);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("aws") && err.contains("buckt"), "{err}");
    let (code, out, _) = check_config(&config, true);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ok"), "{out}");
}
