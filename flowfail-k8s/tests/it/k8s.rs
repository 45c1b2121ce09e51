//! The Kubernetes controller against the in-process fake API server, and the fake proven
//! faithful with the real kubectl.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use flowfail_core::conformance;
use flowfail_core::{ChangeCause, DeploymentController, EnvChange, ErrorKind, RolloutStatus};
use flowfail_k8s::fake::{FakeApiServer, RolloutMode};
use flowfail_k8s::{CHANGE_CAUSE, KubeDeploymentController};
use serde_json::json;

use crate::support::kubectl_present;

static N: AtomicU32 = AtomicU32::new(0);

fn env() -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    e.insert("MODE".to_owned(), "a".to_owned());
    e.insert("ENABLE_CIRCUIT_BREAKER".to_owned(), "false".to_owned());
    e
}

struct Fixture {
    server: FakeApiServer,
}

#[async_trait]
impl conformance::DeploymentFixture for Fixture {
    async fn create(&self) -> (Arc<dyn DeploymentController>, String) {
        let name = format!("flowengine-{}", N.fetch_add(1, Ordering::Relaxed));
        self.server
            .add_deployment("default", &name, "flowengine", &env(), 3);
        (
            Arc::new(KubeDeploymentController::for_url(&self.server.url(), "default").unwrap()),
            name,
        )
    }
    async fn pause(&self, name: &str) {
        self.server
            .edit("default", name, |d| d["spec"]["paused"] = json!(true));
    }
    async fn change_cause(&self, name: &str) -> Option<String> {
        self.server.deployment("default", name)?["metadata"]["annotations"][CHANGE_CAUSE]
            .as_str()
            .map(str::to_owned)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_passes_the_conformance_suite() {
    let f = Fixture {
        server: FakeApiServer::start().await.unwrap(),
    };
    conformance::deployment_controller(&f).await;
}

async fn setup() -> (FakeApiServer, KubeDeploymentController) {
    let s = FakeApiServer::start().await.unwrap();
    s.add_deployment("default", "flowengine", "flowengine", &env(), 8);
    let c = KubeDeploymentController::for_url(&s.url(), "default")
        .unwrap()
        .container("flowengine");
    (s, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_reads_revision_env_and_history() {
    let (_s, c) = setup().await;
    let st = c.state("flowengine").await.unwrap();
    assert_eq!(st.revision, 8);
    assert_eq!(st.previous_revision(), Some(7));
    assert_eq!(st.history.len(), 7);
    assert_eq!(st.env["MODE"], "a");
    assert!(!st.paused);
    assert_eq!(
        c.state("nope").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_goes_to_the_given_revision_exactly_once_under_concurrency() {
    let (s, c) = setup().await;
    let other = KubeDeploymentController::for_url(&s.url(), "default").unwrap();
    let st = c.state("flowengine").await.unwrap();
    let none = ChangeCause::default();
    let (a, b) = tokio::join!(
        c.rollback("flowengine", 7, &st.resource_version, &none),
        other.rollback("flowengine", 7, &st.resource_version, &none)
    );
    let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "exactly one rollback applies: {a:?} {b:?}");
    let err = a.err().or(b.err()).unwrap();
    // The loser saw either the moved resourceVersion or the target already gone from history.
    assert!(
        matches!(err.kind(), ErrorKind::Conflict | ErrorKind::Refused),
        "{err}"
    );
    let d = s.deployment("default", "flowengine").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "flowengine:7"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "9",
        "revision 7's template runs as revision 9"
    );
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
    // Rolling back "again" to 7 is refused: it is gone from the history (it is the current one).
    let st = c.state("flowengine").await.unwrap();
    assert_eq!(
        c.rollback(
            "flowengine",
            7,
            &st.resource_version,
            &ChangeCause::default()
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::Refused
    );
}

/// A Deployment whose container has no environment: the rollback's template (the target
/// ReplicaSet's, as the API server stored it) is the target's, so the controller revives that
/// ReplicaSet as the next revision and its old number leaves the history, as on a real cluster.
/// What a restarted responder reads to tell a rollback that landed from one that never did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_revives_the_targets_replica_set_when_the_container_has_no_env() {
    let s = FakeApiServer::start().await.unwrap();
    s.add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let c = KubeDeploymentController::for_url(&s.url(), "default").unwrap();
    let before = c.state("flowengine").await.unwrap();
    assert_eq!(before.revision, 2);
    assert_eq!(s.replicasets("default").len(), 2);
    let after = c
        .rollback(
            "flowengine",
            1,
            &before.resource_version,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    assert_eq!(after.revision, 3);
    let history: Vec<u64> = after.history.iter().map(|h| h.revision).collect();
    assert_eq!(history, [2], "revision 1 revived as 3, not copied");
    assert_eq!(s.replicasets("default").len(), 2, "no new ReplicaSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_change_between_decide_and_act_is_never_overwritten() {
    let (s, c) = setup().await;
    let seen = c.state("flowengine").await.unwrap();
    s.edit("default", "flowengine", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("flowengine:hotfix")
    });
    let e = c
        .rollback(
            "flowengine",
            7,
            &seen.resource_version,
            &ChangeCause::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let e = c
        .set_env(
            "flowengine",
            &[EnvChange::set("X", "1")],
            Some(seen.resource_version.clone()),
            &ChangeCause::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let d = s.deployment("default", "flowengine").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "flowengine:hotfix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_refused_when_paused_or_gone_and_status_follows_kubectl_rules() {
    let (s, c) = setup().await;
    s.forget_revision("default", "flowengine", 7);
    let st = c.state("flowengine").await.unwrap();
    assert_eq!(
        c.rollback(
            "flowengine",
            7,
            &st.resource_version,
            &ChangeCause::default()
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::Refused
    );
    s.set_rollout_mode(RolloutMode::Fail);
    let st = c
        .set_env(
            "flowengine",
            &[EnvChange::set("FALLBACK_MODEL", "gpt-4-turbo")],
            None,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    assert_eq!(st.env["FALLBACK_MODEL"], "gpt-4-turbo");
    assert!(matches!(
        c.rollout_status("flowengine").await.unwrap(),
        RolloutStatus::Failed { .. }
    ));
    s.set_rollout_mode(RolloutMode::Hang);
    c.set_env(
        "flowengine",
        &[EnvChange::unset("FALLBACK_MODEL")],
        None,
        &ChangeCause::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        c.rollout_status("flowengine").await.unwrap(),
        RolloutStatus::Progressing { .. }
    ));
    s.edit("default", "flowengine", |d| {
        d["spec"]["paused"] = json!(true)
    });
    let st = c.state("flowengine").await.unwrap();
    assert_eq!(
        c.rollback(
            "flowengine",
            6,
            &st.resource_version,
            &ChangeCause::default()
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::Refused
    );
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

/// The fake is faithful: real kubectl drives it, and the controller agrees with what kubectl did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_set_env_rollout_undo_and_status_work_against_the_fake() {
    if !kubectl_present(module_path!(), "kubectl_") {
        return;
    }
    let (s, c) = setup().await;
    let dir = std::env::temp_dir().join(format!("flowfail-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, s.kubeconfig()).unwrap();
    let kc2 = kc.clone();

    let out = tokio::task::spawn_blocking(move || {
        kubectl(
            &kc2,
            &[
                "set",
                "env",
                "deployment/flowengine",
                "ENABLE_CIRCUIT_BREAKER=true",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "set env: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.requests().join("\n")
    );
    let st = c.state("flowengine").await.unwrap();
    assert_eq!(st.env["ENABLE_CIRCUIT_BREAKER"], "true");
    assert_eq!(st.env["MODE"], "a", "other variables untouched");
    assert_eq!(st.revision, 9, "an env change is a new revision");

    let kc2 = kc.clone();
    let out = tokio::task::spawn_blocking(move || {
        kubectl(&kc2, &["set", "env", "deployment/flowengine", "MODE-"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "unset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !c.state("flowengine")
            .await
            .unwrap()
            .env
            .contains_key("MODE")
    );

    let kc2 = kc.clone();
    let out = tokio::task::spawn_blocking(move || {
        kubectl(&kc2, &["rollout", "undo", "deployment/flowengine"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "undo: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.requests().join("\n")
    );
    let d = s.deployment("default", "flowengine").unwrap();
    // kubectl's relative undo went back to revision 9's template (MODE still set).
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "MODE")
            .count(),
        1
    );
    assert_eq!(c.state("flowengine").await.unwrap().revision, 11);
    // A second relative undo rolls *forward* again: exactly the hazard flowfail avoids.
    let kc2 = kc.clone();
    let out = tokio::task::spawn_blocking(move || {
        kubectl(&kc2, &["rollout", "undo", "deployment/flowengine"])
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(
        !c.state("flowengine")
            .await
            .unwrap()
            .env
            .contains_key("MODE"),
        "the second undo undid the first"
    );

    let kc2 = kc.clone();
    let out = tokio::task::spawn_blocking(move || {
        kubectl(
            &kc2,
            &[
                "rollout",
                "status",
                "deployment/flowengine",
                "--timeout=20s",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "status: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.requests().join("\n")
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("successfully rolled out"));
    assert_eq!(
        c.rollout_status("flowengine").await.unwrap(),
        RolloutStatus::Complete
    );

    // And flowfail's guarded rollback to a recorded revision, on the state kubectl left.
    let st = c.state("flowengine").await.unwrap();
    let after = c
        .rollback(
            "flowengine",
            8,
            &st.resource_version,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        s.deployment("default", "flowengine").unwrap()["spec"]["template"]["spec"]["containers"][0]
            ["image"],
        "flowengine:8"
    );
    assert!(after.revision > st.revision);
    let _ = std::fs::remove_dir_all(dir);
}

/// Every patch flowfail sends names field manager `flowfail`; env changes and rollbacks say
/// what was done (and why, from the change cause the call carries) in
/// `kubernetes.io/change-cause`, which the controller copies onto the new ReplicaSet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_attributed_with_field_manager_and_change_cause() {
    let (s, c) = setup().await;
    c.check_patchable("flowengine").await.unwrap();
    let st = c.state("flowengine").await.unwrap();
    let st = c
        .set_env(
            "flowengine",
            &[
                EnvChange::set("ENABLE_CIRCUIT_BREAKER", "true"),
                EnvChange::unset("MODE"),
            ],
            Some(st.resource_version),
            &ChangeCause::for_incident("flowengine-20251113T1000Z", ""),
        )
        .await
        .unwrap();
    assert_eq!(st.revision, 9);
    let cause = "flowfail: set ENABLE_CIRCUIT_BREAKER=true, unset MODE (incident flowengine-20251113T1000Z)";
    let d = s.deployment("default", "flowengine").unwrap();
    assert_eq!(d["metadata"]["annotations"][CHANGE_CAUSE], cause);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["flowfail"]);
    assert_eq!(rs_cause(&s, 9).as_deref(), Some(cause));
    assert_eq!(
        rs_cause(&s, 8),
        None,
        "older revisions keep their own cause"
    );

    // A rollback without a cause says only what it did.
    let st = c
        .rollback(
            "flowengine",
            7,
            &st.resource_version,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    assert_eq!(st.revision, 10);
    let rollback_cause = "flowfail: roll back to revision 7";
    let d = s.deployment("default", "flowengine").unwrap();
    assert_eq!(d["metadata"]["annotations"][CHANGE_CAUSE], rollback_cause);
    assert_eq!(rs_cause(&s, 10).as_deref(), Some(rollback_cause));
    assert_eq!(rs_cause(&s, 9).as_deref(), Some(cause));

    let writes = s.writes();
    let patches: Vec<(Option<&str>, bool)> = writes
        .iter()
        .filter(|w| w.verb == "patch" && w.resource == "deployments")
        .map(|w| (w.field_manager.as_deref(), w.dry_run))
        .collect();
    assert_eq!(
        patches,
        [
            (Some("flowfail"), true),
            (Some("flowfail"), false),
            (Some("flowfail"), false)
        ],
        "the dry run, the env change, the rollback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_change_cause_is_cut_and_the_next_change_replaces_it() {
    let (s, c) = setup().await;
    let long = "x".repeat(5000);
    let st = c
        .set_env(
            "flowengine",
            &[EnvChange::set("LONG", &long)],
            None,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    let d = s.deployment("default", "flowengine").unwrap();
    let cause = d["metadata"]["annotations"][CHANGE_CAUSE].as_str().unwrap();
    assert!(cause.starts_with("flowfail: set LONG=xxx") && cause.ends_with('…'));
    assert!(cause.len() <= 1024, "{}", cause.len());
    c.rollback(
        "flowengine",
        7,
        &st.resource_version,
        &ChangeCause::default(),
    )
    .await
    .unwrap();
    let d = s.deployment("default", "flowengine").unwrap();
    assert_eq!(
        d["metadata"]["annotations"][CHANGE_CAUSE],
        "flowfail: roll back to revision 7"
    );
}

fn rs_cause(s: &FakeApiServer, revision: u64) -> Option<String> {
    s.replicasets("default")
        .into_iter()
        .find(|rs| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                == Some(revision)
        })
        .and_then(|rs| {
            rs["metadata"]["annotations"][CHANGE_CAUSE]
                .as_str()
                .map(str::to_owned)
        })
}

/// The change cause as an operator sees it: the real `kubectl rollout history`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_history_shows_what_flowfail_did_and_why() {
    if !kubectl_present(module_path!(), "kubectl_") {
        return;
    }
    let (s, c) = setup().await;
    let st = c
        .set_env(
            "flowengine",
            &[EnvChange::set("ENABLE_CIRCUIT_BREAKER", "true")],
            None,
            &ChangeCause::for_incident("flowengine-20251113T1000Z", ""),
        )
        .await
        .unwrap();
    c.rollback(
        "flowengine",
        7,
        &st.resource_version,
        &ChangeCause::for_incident(
            "flowengine-20251113T1000Z",
            "widespread failures after the deploy of revision 9",
        ),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("flowfail-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, s.kubeconfig()).unwrap();
    let kc2 = kc.clone();
    let out = tokio::task::spawn_blocking(move || {
        kubectl(&kc2, &["rollout", "history", "deployment/flowengine"])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "history: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.requests().join("\n")
    );
    println!("{stdout}");
    let line = |rev: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(rev))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        line("9").as_deref(),
        Some("flowfail: set ENABLE_CIRCUIT_BREAKER=true (incident flowengine-20251113T1000Z)"),
        "{stdout}"
    );
    assert_eq!(
        line("10").as_deref(),
        Some(
            "flowfail: roll back to revision 7 (incident flowengine-20251113T1000Z: widespread failures after the deploy of revision 9)"
        ),
        "{stdout}"
    );
    assert_eq!(line("8").as_deref(), Some("<none>"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A change whose description and purpose are too long, with line breaks and invisible
/// characters in its purpose: the annotation is one line of at most 1024 bytes, and what is cut
/// is the purpose, never the incident key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_change_cause_keeps_its_incident_key_on_one_line() {
    let (s, c) = setup().await;
    let purpose = format!("line one\nline\u{202E} two\t{}", "y".repeat(5000));
    c.set_env(
        "flowengine",
        &[EnvChange::set("LONG", "x".repeat(5000))],
        None,
        &ChangeCause::for_incident("flowengine-20251113T1000Z", &purpose),
    )
    .await
    .unwrap();
    let d = s.deployment("default", "flowengine").unwrap();
    let cause = d["metadata"]["annotations"][CHANGE_CAUSE].as_str().unwrap();
    assert!(cause.len() <= 1024, "{}", cause.len());
    assert!(
        cause.starts_with("flowfail: set LONG=xxx")
            && cause.contains("… (incident flowengine-20251113T1000Z: line one line two yyy")
            && cause.ends_with("…)"),
        "{cause}"
    );
    assert!(!cause.chars().any(|c| c.is_control() || c == '\u{202E}'));
}

/// One controller (clones share nothing request-scoped), two Deployments changed at the same
/// time for two incidents: each change carries its own incident, round after round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_for_different_incidents_carry_their_own_causes() {
    let s = FakeApiServer::start().await.unwrap();
    s.add_deployment("default", "flowengine-a", "flowengine", &env(), 3);
    s.add_deployment("default", "flowengine-b", "flowengine", &env(), 3);
    let c = KubeDeploymentController::for_url(&s.url(), "default").unwrap();
    let cause_of = |name: &str| {
        s.deployment("default", name).unwrap()["metadata"]["annotations"][CHANGE_CAUSE]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for round in 0..8 {
        let (a, b) = (
            ChangeCause::for_incident(&format!("flowengine-a-{round}"), "first"),
            ChangeCause::for_incident(&format!("flowengine-b-{round}"), "second"),
        );
        let change = [EnvChange::set("ROUND", round.to_string())];
        let (ca, cb) = (c.clone(), c.clone());
        let (ra, rb) = tokio::join!(
            ca.set_env("flowengine-a", &change, None, &a),
            cb.set_env("flowengine-b", &change, None, &b),
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(
            cause_of("flowengine-a"),
            format!("flowfail: set ROUND={round} (incident flowengine-a-{round}: first)")
        );
        assert_eq!(
            cause_of("flowengine-b"),
            format!("flowfail: set ROUND={round} (incident flowengine-b-{round}: second)")
        );
    }
    // And two rollbacks at once.
    let (sa, sb) = (
        c.state("flowengine-a").await.unwrap(),
        c.state("flowengine-b").await.unwrap(),
    );
    let (a, b) = (
        ChangeCause::for_incident("flowengine-a-rb", "first"),
        ChangeCause::for_incident("flowengine-b-rb", "second"),
    );
    let (ra, rb) = tokio::join!(
        c.rollback("flowengine-a", 2, &sa.resource_version, &a),
        c.rollback("flowengine-b", 1, &sb.resource_version, &b),
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        cause_of("flowengine-a"),
        "flowfail: roll back to revision 2 (incident flowengine-a-rb: first)"
    );
    assert_eq!(
        cause_of("flowengine-b"),
        "flowfail: roll back to revision 1 (incident flowengine-b-rb: second)"
    );
}

/// The responder as `flowfail run` wires it — the Kubernetes adapter and the ledger side by
/// side, nothing in between — rolls back a bad deploy, and the rollback names its incident in
/// the change cause of the Deployment and of the new ReplicaSet (what `kubectl rollout history`
/// shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responders_rollback_names_its_incident_in_the_rollout_history() {
    use flowfail_core::memory::World;
    use flowfail_core::respond::Responder;
    use flowfail_core::{Clock, FlowType, Policy, Task, TaskId, TaskStatus};

    let (s, c) = setup().await;
    let policy = Policy::default();
    let start = chrono::Utc::now();
    let clock = Clock::manual(start);
    // Revision 8 was just deployed; 30 % of tasks fail since.
    let w = World::new(&policy, clock.clone());
    w.tasks.set_background(700, 300);
    for i in 0..10 {
        let id = TaskId::parse(&format!("u-{i}")).unwrap();
        w.tasks.insert(
            Task::new(
                id.clone(),
                FlowType::Impl,
                TaskStatus::Failed,
                start - chrono::TimeDelta::minutes(2),
            )
            .with_error("KeyError: 'context_refs'", None),
        );
        w.tasks.script_retries(&id, [TaskStatus::Failed]);
    }
    let ports = w.ports_builder().deployment(Arc::new(c)).build().unwrap();
    let r = Responder::builder()
        .ports(ports)
        .policy(policy)
        .clock(clock.clone())
        .build()
        .unwrap();
    let image = || {
        s.deployment("default", "flowengine").unwrap()["spec"]["template"]["spec"]["containers"][0]
            ["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for _ in 0..20 {
        r.pass().await.unwrap();
        if image() == "flowengine:7" {
            break;
        }
        clock.advance(std::time::Duration::from_secs(30));
    }
    assert_eq!(image(), "flowengine:7", "rolled back to revision 7");
    let incidents = w.incidents.incidents();
    assert_eq!(incidents.len(), 1);
    let key = &incidents[0].key;
    let want = format!(
        "flowfail: roll back to revision 7 (incident {key}: widespread failures after the deploy of revision 8)"
    );
    let d = s.deployment("default", "flowengine").unwrap();
    assert_eq!(d["metadata"]["annotations"][CHANGE_CAUSE], want.as_str());
    assert_eq!(rs_cause(&s, 9).as_deref(), Some(want.as_str()));
}
