//! Broken copies of the manifests are rejected: the check can fail.

use super::{Kubectl, assert_exit, broken, fake_with_flowengine, kubectl_present, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_manifests_are_rejected() {
    if !kubectl_present() {
        return;
    }
    let s = fake_with_flowengine().await;
    let rv = s.resource_version();
    let k = Kubectl::new(&s, "broken");
    let cases = [
        (
            "a typo'd field",
            broken(
                "deployment.yaml",
                "readOnlyRootFilesystem: true",
                "readOnlyRootFilesytem: true",
                0,
            ),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem\"",
        ),
        (
            "a wrong apiVersion",
            broken(
                "deployment.yaml",
                "apiVersion: apps/v1",
                "apiVersion: apps/v1beta1",
                0,
            ),
            "no matches for kind \"Deployment\" in version \"apps/v1beta1\"",
        ),
        (
            "a wrong type",
            broken("deployment.yaml", "replicas: 1", "replicas: one", 0),
            "Deployment in version \"v1\" cannot be handled as a Deployment: invalid type: string \"one\"",
        ),
        (
            "a mount of no volume",
            broken(
                "deployment.yaml",
                "- name: config\n",
                "- name: configs\n",
                0,
            ),
            "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"configs\"",
        ),
        (
            "a template the selector does not match",
            broken(
                "deployment.yaml",
                "app.kubernetes.io/name: flowfail",
                "app.kubernetes.io/name: flowfail-pod",
                2,
            ),
            "`selector` does not match template `labels`",
        ),
        (
            "a typo'd Role field",
            broken("rbac.yaml", "resourceNames:", "resourceName:", 0),
            "strict decoding error: unknown field \"rules[0].resourceName\"",
        ),
        (
            "a wrong Role apiVersion",
            broken(
                "rbac.yaml",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n",
                "apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: Role\n",
                0,
            ),
            "no matches for kind \"Role\" in version \"rbac.authorization.k8s.io/v1beta1\"",
        ),
        (
            "a roleRef to no kind of role",
            broken(
                "rbac.yaml",
                "  kind: Role\n  name: flowfail",
                "  kind: Rol\n  name: flowfail",
                0,
            ),
            "roleRef.kind: Unsupported value: \"Rol\": supported values: \"Role\", \"ClusterRole\"",
        ),
        (
            "a Secret key that is not text",
            broken("secret.example.yaml", "stringData:", "data:", 0),
            "Secret in version \"v1\" cannot be handled as a Secret",
        ),
    ];
    for (i, (what, manifest, expected)) in cases.iter().enumerate() {
        let f = k.write(&format!("broken-{i}.yaml"), manifest);
        let out = k.run(&["apply", "--dry-run=server", "-f", &f]).await;
        assert_exit(&out, 1, what, &s);
        let err = text(&out.stderr);
        eprintln!("{what}: {}", err.trim_end());
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in\n{err}\nrequests:\n{}",
            s.requests().join("\n")
        );
    }
    assert_eq!(s.resource_version(), rv, "nothing stored");
}
