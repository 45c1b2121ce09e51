//! The manifests applied for real, then dry runs that change nothing; the kustomization.

use super::{
    FILES, Kubectl, NS, assert_exit, broken, deploy_dir, fake_with_flowengine, kinds,
    kubectl_present, manifest, objects, text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_for_real_then_dry_runs_change_nothing_as_kubectl_shows() {
    if !kubectl_present() {
        return;
    }
    let s = fake_with_flowengine().await;
    let k = Kubectl::new(&s, "apply");
    let mut args = vec!["apply"];
    let files: Vec<String> = FILES.iter().map(|f| manifest(f)).collect();
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    let out = k.run(&args).await;
    assert_exit(&out, 0, "apply", &s);
    assert_eq!(text(&out.stdout).matches(" created\n").count(), 8);
    let policy = s.object("networkpolicies", NS, "flowfail").unwrap();
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 9464);
    let stored = s.object("deployments", NS, "flowfail").unwrap();
    assert_eq!(stored["metadata"]["generation"], 1);
    let secret = s.object("secrets", NS, "flowfail-secrets").unwrap();
    assert!(secret.get("stringData").is_none() && secret["data"].is_object());
    let rv = s.resource_version();

    // An unchanged manifest: kubectl computes an empty patch and says so.
    let out = k
        .run(&[
            "apply",
            "--dry-run=server",
            "-f",
            &manifest("deployment.yaml"),
        ])
        .await;
    assert_exit(&out, 0, "unchanged", &s);
    assert_eq!(
        text(&out.stdout),
        "deployment.apps/flowfail unchanged (server dry run)\n"
    );
    // A changed one: a dry-run patch, answered as applied, stored as it was.
    let newer = k.write(
        "newer.yaml",
        &broken("deployment.yaml", "flowfail:0.1.0", "flowfail:0.2.0", 0),
    );
    let out = k.run(&["apply", "--dry-run=server", "-f", &newer]).await;
    assert_exit(&out, 0, "configured", &s);
    assert_eq!(
        text(&out.stdout),
        "deployment.apps/flowfail configured (server dry run)\n"
    );
    let out = k
        .run(&["apply", "--dry-run=server", "-o", "json", "-f", &newer])
        .await;
    assert_exit(&out, 0, "configured, json", &s);
    let answer = &objects(&out.stdout)[0];
    assert_eq!(
        answer["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/flowfail/flowfail:0.2.0"
    );
    assert_eq!(answer["metadata"]["generation"], 2);
    assert_eq!(
        answer["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );
    assert_eq!(s.object("deployments", NS, "flowfail").unwrap(), stored);
    assert_eq!(s.resource_version(), rv);

    // On FlowEngine: what flowfail's env change and check-config do, by kubectl.
    let flowengine = s.deployment(NS, "flowengine").unwrap();
    let out = k
        .run(&[
            "set",
            "env",
            "deployment/flowengine",
            "FALLBACK_MODEL=gpt-4-turbo",
            "--dry-run=server",
            "-o",
            "json",
        ])
        .await;
    assert_exit(&out, 0, "set env, dry run", &s);
    let answer = &objects(&out.stdout)[0];
    let env = answer["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env.iter().any(|e| e["name"] == "FALLBACK_MODEL"));
    assert_eq!(
        answer["metadata"]["resourceVersion"],
        flowengine["metadata"]["resourceVersion"]
    );
    assert_eq!(
        answer["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "8",
        "no rollout"
    );
    let patch = [
        "patch",
        "deployment",
        "flowengine",
        "--dry-run=server",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"example.com/probe":"1"}}}"#,
    ];
    let out = k.run(&patch).await;
    assert_exit(&out, 0, "patch, dry run", &s);
    // "patched", not "patched (no change)": the answer differs from what kubectl read. (kubectl
    // 1.32's patch prints no "(server dry run)" suffix; its apply and set env do.)
    assert_eq!(text(&out.stdout), "deployment.apps/flowengine patched\n");
    let out = k.run(&[&patch[..], &["-o", "json"]].concat()).await;
    assert_exit(&out, 0, "patch, dry run, json", &s);
    let answer = &objects(&out.stdout)[0];
    assert_eq!(answer["metadata"]["annotations"]["example.com/probe"], "1");
    assert_eq!(
        answer["metadata"]["resourceVersion"],
        flowengine["metadata"]["resourceVersion"]
    );
    assert_eq!(
        answer["metadata"]["generation"], flowengine["metadata"]["generation"],
        "no spec change, no new generation"
    );
    assert_eq!(s.deployment(NS, "flowengine").unwrap(), flowengine);
    assert_eq!(s.resource_version(), rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomization_applies_everything_but_the_secret() {
    if !kubectl_present() {
        return;
    }
    let s = fake_with_flowengine().await;
    let k = Kubectl::new(&s, "kustomize");
    let dir = deploy_dir().to_string_lossy().into_owned();
    let out = k
        .run(&["apply", "--dry-run=server", "-o", "json", "-k", &dir])
        .await;
    assert_exit(&out, 0, "apply -k", &s);
    assert_eq!(
        kinds(&objects(&out.stdout)),
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}
