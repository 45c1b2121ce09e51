//! The Role allows exactly what the controller does, enforced by the fake.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flowfail_core::{ChangeCause, DeploymentController, EnvChange, ErrorKind};
use flowfail_k8s::KubeDeploymentController;

use super::{
    Kubectl, NS, USER, assert_exit, by_kind, derived_grants, fake_with_flowengine, grants,
    kubectl_present, manifest, objects,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_allows_exactly_what_the_controller_does() {
    if !kubectl_present() {
        return;
    }
    // The Role as kubectl sends it, from deploy/rbac.yaml.
    let parse = fake_with_flowengine().await;
    let k = Kubectl::new(&parse, "role");
    let out = k
        .run(&[
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            &manifest("rbac.yaml"),
        ])
        .await;
    assert_exit(&out, 0, "rbac.yaml", &parse);
    let objs = objects(&out.stdout);
    let role = by_kind(&objs, "Role").clone();
    let user = format!(
        "system:serviceaccount:{}:{}",
        by_kind(&objs, "ServiceAccount")["metadata"]["namespace"]
            .as_str()
            .unwrap(),
        by_kind(&objs, "ServiceAccount")["metadata"]["name"]
            .as_str()
            .unwrap()
    );
    assert_eq!(user, USER);

    // Every operation of the controller, under that Role only.
    let s = fake_with_flowengine().await;
    s.add_deployment(NS, "other", "other", &BTreeMap::new(), 1);
    s.enforce_role(&user, &role);
    let c = KubeDeploymentController::for_url(&s.url(), NS)
        .unwrap()
        .container("flowengine");
    let first = KubeDeploymentController::for_url(&s.url(), NS).unwrap();
    c.check_patchable("flowengine").await.unwrap();
    let st = c.state("flowengine").await.unwrap();
    c.set_env(
        "flowengine",
        &[EnvChange::set("ENABLE_CIRCUIT_BREAKER", "true")],
        Some(st.resource_version),
        &ChangeCause::default(),
    )
    .await
    .unwrap();
    first
        .set_env(
            "flowengine",
            &[EnvChange::unset("MODE")],
            None,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    c.rollout_status("flowengine").await.unwrap();
    c.wait_rollout("flowengine", Duration::from_secs(5))
        .await
        .unwrap();
    let st = c.state("flowengine").await.unwrap();
    assert!(st.revision > 8, "{st:?}");
    c.rollback(
        "flowengine",
        8,
        &st.resource_version,
        &ChangeCause::default(),
    )
    .await
    .unwrap();
    let accesses = s.accesses();
    assert!(accesses.iter().all(|a| a.allowed), "{accesses:?}");
    let used: BTreeSet<(String, String, String)> = accesses
        .iter()
        .map(|a| (a.group.clone(), a.resource.clone(), a.verb.clone()))
        .collect();
    // What the controller used is what the Role grants: nothing missing, nothing extra.
    assert_eq!(used, grants(&role));
    assert_eq!(used, derived_grants());

    // And nothing more: another Deployment, another namespace, another verb are refused.
    for e in [
        c.state("other").await.unwrap_err(),
        c.check_patchable("other").await.unwrap_err(),
        KubeDeploymentController::for_url(&s.url(), "kube-system")
            .unwrap()
            .state("flowengine")
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }
    let d: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(
        kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).unwrap(),
        NS,
    );
    let e = d.list(&Default::default()).await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(st) if st.code == 403), "{e}");

    // Each grant is needed: without it, some operation of the controller fails.
    for (group, resource, verb) in derived_grants() {
        let mut weaker = role.clone();
        for r in weaker["rules"].as_array_mut().unwrap() {
            if r["resources"][0] == resource.as_str() {
                r["verbs"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|v| v != verb.as_str());
            }
        }
        s.enforce_role(&user, &weaker);
        let st = c.state("flowengine").await;
        let failed = match st {
            Err(e) => e.kind() == ErrorKind::PermissionDenied,
            Ok(st) => {
                let e = c
                    .set_env(
                        "flowengine",
                        &[EnvChange::set("X", "1")],
                        Some(st.resource_version),
                        &ChangeCause::default(),
                    )
                    .await
                    .unwrap_err();
                e.kind() == ErrorKind::PermissionDenied
            }
        };
        assert!(
            failed,
            "without {verb} on {resource} ({group}) nothing failed"
        );
    }
}
