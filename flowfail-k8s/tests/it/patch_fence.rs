//! The fence the rollback depends on, driven against the fake API server: a human's change that
//! lands between flowfail's read and its write. The rollback's JSON Patch `test` of the
//! `resourceVersion` fails (the API server answers `422 Invalid` with a fixed message for any
//! JSON Patch it cannot apply), an env change's stale `resourceVersion` is a `409 Conflict`;
//! both are `ErrorKind::Conflict` and change nothing. kubectl shows the fake's answers as it
//! shows a real API server's.

use std::collections::BTreeMap;

use flowfail_core::{ChangeCause, DeploymentController, EnvChange, ErrorKind};
use flowfail_k8s::KubeDeploymentController;
use flowfail_k8s::fake::FakeApiServer;
use serde_json::json;

use crate::support::kubectl_present;

async fn setup() -> (FakeApiServer, KubeDeploymentController) {
    let s = FakeApiServer::start().await.unwrap();
    let mut env = BTreeMap::new();
    env.insert("MODE".to_owned(), "a".to_owned());
    s.add_deployment("default", "flowengine", "flowengine", &env, 8);
    let c = KubeDeploymentController::for_url(&s.url(), "default")
        .unwrap()
        .container("flowengine");
    (s, c)
}

fn hotfix(d: &mut serde_json::Value) {
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("flowengine:hotfix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_read_and_rollback_patch_fails_the_json_patch_test() {
    let (s, c) = setup().await;
    let seen = c.state("flowengine").await.unwrap();
    let before = s.deployment("default", "flowengine").unwrap();
    // The rollback reads the Deployment (its resourceVersion still matches), then patches:
    // the human's change lands in between.
    s.edit_before_next_patch("default", "flowengine", hotfix);
    let e = c
        .rollback(
            "flowengine",
            7,
            &seen.resource_version,
            &ChangeCause::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("the server rejected our request due to an error in our request"),
        "{e}"
    );
    // The JSON Patch went out (the fence was exercised, not the client-side read) ...
    let patches: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH deployments/flowengine"))
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(
        patches[0].contains("application/json-patch+json"),
        "{patches:?}"
    );
    // ... and changed nothing: the human's change stands, the revision is not rolled back.
    let after = s.deployment("default", "flowengine").unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "flowengine:hotfix"
    );
    assert_ne!(
        after["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        json!("7")
    );
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_read_and_env_patch_is_a_409_conflict() {
    let (s, c) = setup().await;
    let seen = c.state("flowengine").await.unwrap();
    s.edit_before_next_patch("default", "flowengine", hotfix);
    let e = c
        .set_env(
            "flowengine",
            &[EnvChange::set("ENABLE_CIRCUIT_BREAKER", "true")],
            Some(seen.resource_version.clone()),
            &ChangeCause::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(
        e.to_string().contains("the object has been modified"),
        "{e}"
    );
    let after = c.state("flowengine").await.unwrap();
    assert!(!after.env.contains_key("ENABLE_CIRCUIT_BREAKER"));
}

/// What kubectl shows for the fake's answers is what it shows for a real API server's: a JSON
/// Patch whose `test` fails is "The request is invalid: the server rejected our request due to
/// an error in our request" (422 Invalid); a merge patch with a stale `resourceVersion` is
/// "Error from server (Conflict): Operation cannot be fulfilled on deployments.apps …" (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_fakes_422_and_409_as_for_a_real_api_server() {
    if !kubectl_present(module_path!(), "kubectl_") {
        return;
    }
    let (s, _c) = setup().await;
    let dir = std::env::temp_dir().join(format!("flowfail-fence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, s.kubeconfig()).unwrap();
    let run = move |args: Vec<String>| {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let before = s.deployment("default", "flowengine").unwrap();
    let out = run(vec![
        "patch".into(),
        "deployment/flowengine".into(),
        "--type=json".into(),
        "-p".into(),
        r#"[{"op":"test","path":"/metadata/resourceVersion","value":"1"},{"op":"replace","path":"/spec/replicas","value":5}]"#.into(),
    ])
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "The request is invalid: the server rejected our request due to an error in our request"
    );
    let out = run(vec![
        "patch".into(),
        "deployment/flowengine".into(),
        "--type=merge".into(),
        "-p".into(),
        r#"{"metadata":{"resourceVersion":"1"},"spec":{"replicas":5}}"#.into(),
    ])
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "Error from server (Conflict): Operation cannot be fulfilled on deployments.apps \"flowengine\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Neither changed anything.
    assert_eq!(s.deployment("default", "flowengine").unwrap(), before);
    let _ = std::fs::remove_dir_all(dir);
}
