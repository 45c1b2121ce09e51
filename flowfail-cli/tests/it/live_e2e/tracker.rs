//! The incident tracker with the real binary: `flowfail run` with `[tracker]` on a local
//! server in GitHub's shape files one issue when the incident opens, a process killed and
//! restarted mid-incident finds that issue again instead of filing a second, and the issue
//! is closed with the settled record. Asserted on the tracker's state.

use std::collections::BTreeMap;

use flowfail_testkit::trackers::FakeGitHub;

use super::check_config::{check_config, line_of};
use super::{kill9, terminate, until, world};

const TOKEN: &str = "ghp-e2e-tracker-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_issue_per_incident_across_a_restart() {
    let Some(w) = world("tracker").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let gh = FakeGitHub::start("example/incidents", TOKEN).await;
    let err = r#"{"type":"error","error":{"type":"api_error","message":"Internal server error @security-team"}}"#;
    let ids = ["g-0", "g-1", "g-2", "g-3"];
    w.seed_tasks(200, &ids.map(|i| (i, err, Some(500)))).await;
    let token = w.dir.join("tracker-token");
    flowfail_testkit::write_secret(&token, &format!("{TOKEN}\n"));
    let config = w.config("act");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}\n[tracker]\nkind = \"github\"\nurl = \"{}\"\nrepo = \"example/incidents\"\ntoken = {{ file = \"{}\" }}\n",
            gh.uri(),
            token.display()
        ),
    )
    .unwrap();

    // check-config reads the tracker (one lookup, nothing filed); a wrong token fails there,
    // not at the first incident.
    let (code, out, err) = check_config(&config, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let line = line_of(&out, "tracker").unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("ok") && line.contains("Github issues readable"),
        "{line}"
    );
    let wrong = w.dir.join("wrong-token");
    flowfail_testkit::write_secret(&wrong, "not-the-token\n");
    let bad = w.dir.join("bad-tracker.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&token.display().to_string(), &wrong.display().to_string()),
    )
    .unwrap();
    let (code, out, _) = check_config(&bad, false);
    assert_eq!(code, Some(1), "{out}");
    let line = line_of(&out, "tracker").unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("FAIL") && line.contains("HTTP 401"),
        "{line}"
    );
    assert!(gh.issues().is_empty());

    // The incident opens: its issue is filed, open, while the failed tasks wait for the worker.
    let mut p = w.run_config(&config, "tracker-1");
    until(&w, 30, "the issue filed", &mut p, "tracker-1", || async {
        !gh.issues().is_empty()
    })
    .await;
    assert!(w.open_incident().await, "filed when it opened");
    let filed = gh.issues();
    assert_eq!(filed.len(), 1);
    assert_eq!(filed[0].state, "open");
    assert_eq!(filed[0].labels.len(), 2, "flowfail and the incident's tag");
    assert!(filed[0].labels[0] == "flowfail" && filed[0].labels[1].starts_with("flowfail-"));
    assert!(
        filed[0]
            .title
            .starts_with("flowfail incident default.flowengine-"),
        "{}",
        filed[0].title
    );
    assert!(
        filed[0]
            .body
            .starts_with("<!-- flowfail-incident flowfail-")
    );
    // Killed mid-incident: the next process starts with nothing in memory.
    kill9(&mut p);

    let mut p = w.run_config(&config, "tracker-2");
    until(
        &w,
        60,
        "the incident closed and its issue settled",
        &mut p,
        "tracker-2",
        || async {
            w.work().await;
            !w.open_incident().await && gh.issues().iter().any(|i| i.state == "closed")
        },
    )
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("tracker-2"));
    let issues = gh.issues();
    assert_eq!(
        issues.len(),
        1,
        "found again after the restart, never filed twice: {issues:?}"
    );
    let i = &issues[0];
    assert_eq!(
        (i.state.as_str(), i.state_reason.as_deref()),
        ("closed", Some("completed"))
    );
    assert!(i.title.contains("resolved"), "{}", i.title);
    assert!(i.body.contains("**Root cause:**"), "{}", i.body);
    assert!(i.body.contains("retry\\_task g-0 attempt 1"), "{}", i.body);
    assert_eq!(i.comments.len(), 1, "one 'settled' comment");
    let closed = w.closed().await;
    assert_eq!(closed.len(), 1);
    assert!(
        i.title.contains(closed[0]["key"].as_str().unwrap()),
        "{}",
        i.title
    );
}
