//! `KubeDeploymentController::check_patchable`, and the fake API server's dry runs, RBAC and
//! validation, through kube (no kubectl needed; the `deploy` tests drive the same with kubectl).

use std::collections::BTreeMap;

use flowfail_core::{ChangeCause, DeploymentController, EnvChange, ErrorKind};
use flowfail_k8s::KubeDeploymentController;
use flowfail_k8s::fake::FakeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const USER: &str = "system:serviceaccount:default:flowfail";

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([("MODE".to_owned(), "a".to_owned())])
}

async fn setup(env: &BTreeMap<String, String>) -> (FakeApiServer, KubeDeploymentController) {
    let s = FakeApiServer::start().await.unwrap();
    s.add_deployment("default", "flowengine", "flowengine", env, 3);
    let c = KubeDeploymentController::for_url(&s.url(), "default")
        .unwrap()
        .container("flowengine");
    (s, c)
}

fn client(s: &FakeApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).unwrap()
}

/// The Role of deploy/rbac.yaml, as data (the `deploy` tests check the file itself is this).
fn role(rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "flowfail", "namespace": "default"}, "rules": rules})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_patchable_proves_get_and_patch_and_changes_nothing() {
    // With env vars on the container, and without any (an empty env list added by a patch
    // is no change either).
    for e in [env(), BTreeMap::new()] {
        let (s, c) = setup(&e).await;
        let before = s.deployment("default", "flowengine").unwrap();
        let rv = s.resource_version();
        let sets = s.replicasets("default").len();
        c.check_patchable("flowengine").await.unwrap();
        assert_eq!(s.deployment("default", "flowengine").unwrap(), before);
        assert_eq!(s.resource_version(), rv, "no resourceVersion used up");
        assert_eq!(s.replicasets("default").len(), sets, "no rollout");
        let reqs = s.requests();
        assert_eq!(reqs[reqs.len() - 2], "GET deployments/flowengine");
        let patch = reqs.last().unwrap();
        assert!(
            patch.starts_with(
                "PATCH deployments/flowengine {\"dryRun\": \"All\", \"fieldManager\": \"flowfail\"}"
            ) && patch.ends_with("application/strategic-merge-patch+json"),
            "{patch}"
        );
    }
    // Without a configured container: the first one.
    let (s, _) = setup(&env()).await;
    let c = KubeDeploymentController::for_url(&s.url(), "default").unwrap();
    c.check_patchable("flowengine").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_patchable_names_a_missing_deployment_or_container() {
    let (s, c) = setup(&env()).await;
    let e = c.check_patchable("nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.operation(), "deployment.check_patchable");
    assert!(!e.is_transient());
    assert_eq!(
        e.message(),
        "cannot get deployment default/nope: deployments.apps \"nope\" not found — check [kubernetes] namespace (\"default\") and deployment in the configuration"
    );

    let other_ns = KubeDeploymentController::for_url(&s.url(), "staging").unwrap();
    let e = other_ns.check_patchable("flowengine").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message()
            .starts_with("cannot get deployment staging/flowengine:"),
        "{e}"
    );

    let sidecar = KubeDeploymentController::for_url(&s.url(), "default")
        .unwrap()
        .container("sidecar");
    let e = sidecar.check_patchable("flowengine").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.message(),
        "deployment default/flowengine has no container \"sidecar\" (its containers: \"flowengine\")"
    );
    let reqs = s.requests();
    assert!(
        !reqs.iter().any(|r| r.starts_with("PATCH")),
        "nothing patched: {reqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_patchable_says_which_permission_is_missing() {
    let (s, c) = setup(&env()).await;
    // get only: the dry-run patch is refused.
    s.enforce_role(
        USER,
        &role(json!([{"apiGroups": ["apps"], "resources": ["deployments"],
            "resourceNames": ["flowengine"], "verbs": ["get"]}])),
    );
    let e = c.check_patchable("flowengine").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(!e.is_transient());
    assert_eq!(
        e.message(),
        "cannot patch deployment default/flowengine: deployments.apps \"flowengine\" is forbidden: User \"system:serviceaccount:default:flowfail\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"default\" — the Role bound to flowfail's service account must allow patch on deployments (apps) named \"flowengine\" in namespace \"default\""
    );
    // A Role for another Deployment: the read is refused already.
    s.enforce_role(
        USER,
        &role(json!([{"apiGroups": ["apps"], "resources": ["deployments"],
            "resourceNames": ["other"], "verbs": ["get", "patch"]}])),
    );
    let e = c.check_patchable("flowengine").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(
        e.message().starts_with(
            "cannot get deployment default/flowengine: deployments.apps \"flowengine\" is forbidden: User \"system:serviceaccount:default:flowfail\" cannot get resource"
        ),
        "{e}"
    );
    // Both: allowed.
    s.enforce_role(
        USER,
        &role(json!([{"apiGroups": ["apps"], "resources": ["deployments"],
            "resourceNames": ["flowengine"], "verbs": ["get", "patch"]}])),
    );
    c.check_patchable("flowengine").await.unwrap();
    let denied: Vec<_> = s.accesses().into_iter().filter(|a| !a.allowed).collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(
        (denied[0].verb.as_str(), denied[1].verb.as_str()),
        ("patch", "get")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matches_resource_names_namespaces_and_list_as_the_authorizer_does() {
    let (s, c) = setup(&env()).await;
    s.add_deployment("default", "other", "other", &env(), 1);
    s.enforce_role(
        USER,
        &role(json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["flowengine"], "verbs": ["get", "patch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]}])),
    );
    c.state("flowengine").await.unwrap();
    assert_eq!(
        c.state("other").await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    let elsewhere = KubeDeploymentController::for_url(&s.url(), "kube-system").unwrap();
    assert_eq!(
        elsewhere.state("flowengine").await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    // resourceNames never matches a list of everything, but does match a list of one by name.
    let api: Api<Deployment> = Api::namespaced(client(&s), "default");
    let all = api.list(&Default::default()).await.unwrap_err();
    assert!(
        all.to_string()
            .contains("deployments.apps is forbidden: User \"system:serviceaccount:default:flowfail\" cannot list resource \"deployments\""),
        "{all}"
    );
    assert!(matches!(&all, kube::Error::Api(st) if st.code == 403 && st.reason == "Forbidden"));
    let rules = role(json!([{"apiGroups": ["apps"], "resources": ["deployments"],
        "resourceNames": ["flowengine"], "verbs": ["list"]}]));
    s.enforce_role(USER, &rules);
    let one = api
        .list(&kube::api::ListParams::default().fields("metadata.name=flowengine"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_patch_answers_as_if_applied_and_changes_nothing() {
    let (s, c) = setup(&env()).await;
    let api: Api<Deployment> = Api::namespaced(client(&s), "default");
    let before = s.deployment("default", "flowengine").unwrap();
    let rv = s.resource_version();
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let change = json!({"spec": {"template": {"spec": {"containers": [{"name": "flowengine",
        "env": [{"name": "FALLBACK_MODEL", "value": "gpt-4-turbo"}]}]}}}});
    let answer = api
        .patch("flowengine", &dry, &Patch::Strategic(change))
        .await
        .unwrap();
    // The answer is the Deployment as the patch would leave it ...
    let env = answer.spec.template.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(|e| e.name == "FALLBACK_MODEL"));
    assert!(env.iter().any(|e| e.name == "MODE"), "merged, not replaced");
    assert_eq!(
        answer.metadata.generation,
        before["metadata"]["generation"].as_i64().map(|g| g + 1),
        "a spec change counts a generation"
    );
    // ... with the resourceVersion it has now, and no controller reacted (same revision).
    assert_eq!(
        answer.metadata.resource_version.as_deref(),
        before["metadata"]["resourceVersion"].as_str()
    );
    assert_eq!(
        answer.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(s.deployment("default", "flowengine").unwrap(), before);
    assert_eq!(s.resource_version(), rv);
    assert_eq!(c.state("flowengine").await.unwrap().revision, 3);

    // A stale precondition is a conflict in a dry run too.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"paused": true}});
    let e = api
        .patch("flowengine", &dry, &Patch::Merge(stale))
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(st) if st.code == 409), "{e}");
    // And the same change without dryRun applies.
    c.set_env(
        "flowengine",
        &[EnvChange::set("FALLBACK_MODEL", "gpt-4-turbo")],
        None,
        &ChangeCause::default(),
    )
    .await
    .unwrap();
    assert!(s.resource_version() > rv);
    assert_eq!(c.state("flowengine").await.unwrap().revision, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_create_answers_without_a_resource_version_and_stores_nothing() {
    let s = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&s), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "flowfail-config"}, "data": {"flowfail.toml": "mode = \"shadow\"\n"}}))
    .unwrap();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answer = api.create(&dry, &cm).await.unwrap();
    assert!(answer.metadata.resource_version.is_none());
    assert!(answer.metadata.uid.is_some());
    assert_eq!(answer.metadata.namespace.as_deref(), Some("default"));
    assert!(
        s.object("configmaps", "default", "flowfail-config")
            .is_none()
    );
    assert_eq!(s.resource_version(), 0);

    let stored = api.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(stored.metadata.resource_version.as_deref(), Some("1"));
    // A second create is AlreadyExists, dry run or not.
    let e = api.create(&dry, &cm).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(st) if st.code == 409 && st.reason == "AlreadyExists"),
        "{e}"
    );
    // A dry-run merge patch answers the change and keeps the stored object.
    let merged = api
        .patch(
            "flowfail-config",
            &PatchParams {
                dry_run: true,
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"data": {"flowfail.toml": "mode = \"act\"\n"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["flowfail.toml"], "mode = \"act\"\n");
    assert_eq!(merged.metadata.resource_version.as_deref(), Some("1"));
    assert_eq!(
        s.object("configmaps", "default", "flowfail-config")
            .unwrap()["data"]["flowfail.toml"],
        "mode = \"shadow\"\n"
    );
    assert_eq!(s.resource_version(), 1);
    // An unknown dryRun value is refused, as the API server refuses it.
    let raw = client(&s)
        .request_text(
            http::Request::post("/api/v1/namespaces/default/configmaps?dryRun=Some")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&cm).unwrap())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&raw, kube::Error::Api(st) if st.code == 400),
        "{raw}"
    );
}
