//! deploy/ checked with the real kubectl against the fake API server.
//!
//! `kubectl apply --dry-run=server` sends every object to the fake as a dry-run create with
//! `fieldValidation=Strict` (the fake's OpenAPI v3 documents say it validates fields), and the
//! fake decodes it with k8s-openapi's types: a typo'd field, a wrong type, a wrong apiVersion or
//! kind, and a few semantic mistakes (a volume mount naming no volume, a selector that does not
//! match the template, a bad roleRef) are rejected, as a real API server rejects them. Broken
//! copies of the manifests prove the check can fail. Then the objects kubectl got back are
//! checked in Rust: the Role grants exactly what flowfail's adapter uses (proven by running the
//! adapter under that Role, enforced by the fake), and the Deployment mounts the config and
//! references every secret flowfail.toml names.
//!
//! Without kubectl these tests skip, unless `FLOWFAIL_KUBECTL_REQUIRED=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flowfail_core::{ChangeCause, DeploymentController, EnvChange, ErrorKind};
use flowfail_k8s::KubeDeploymentController;
use flowfail_k8s::fake::FakeApiServer;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

const NS: &str = "default";
const USER: &str = "system:serviceaccount:default:flowfail";
/// Every secret flowfail.toml refers to by env var.
const SECRET_ENV: [&str; 7] = [
    "FLOWFAIL_PG_PASSWORD",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "PAGERDUTY_ON_CALL_KEY",
    "PAGERDUTY_SRE_KEY",
    "FLOWFAIL_STAKEHOLDER_WEBHOOK_URL",
    "FLOWFAIL_HTTP_TOKEN",
];
/// Every secret flowfail.toml refers to by file.
const SECRET_FILES: [&str; 1] = ["/etc/flowfail/secrets/pagerduty-tech-lead"];
const CONFIG_FILE: &str = "/etc/flowfail/flowfail.toml";
/// The Role's rules, derived from the calls in flowfail-k8s/src/lib.rs.
const GRANTS: [(&str, &str, &str); 3] = [
    ("apps", "deployments", "get"),
    ("apps", "deployments", "patch"),
    ("apps", "replicasets", "list"),
];

fn kubectl_present() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        // One visible skip line for the binary (or a failure with FLOWFAIL_KUBECTL_REQUIRED=1).
        flowfail_testkit::skip(
            flowfail_testkit::Peer::Kubectl,
            "on PATH",
            &"`kubectl version --client` did not run",
        );
    }
    ok
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn manifest(name: &str) -> String {
    deploy_dir().join(name).to_string_lossy().into_owned()
}

const FILES: [&str; 5] = [
    "rbac.yaml",
    "configmap.yaml",
    "secret.example.yaml",
    "deployment.yaml",
    "service.yaml",
];

/// kubectl with a kubeconfig for the fake and a cache of its own, in a scratch directory.
struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    fn new(server: &FakeApiServer, tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("flowfail-deploy-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
        Kubectl { dir }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// Writes `text` as a manifest in the scratch directory.
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_exit(out: &Output, code: i32, what: &str, server: &FakeApiServer) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}\nrequests:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        server.requests().join("\n")
    );
}

/// The objects of kubectl's `-o json` output: one or more documents, `List`s flattened.
fn objects(stdout: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(stdout)
        .into_iter::<Value>()
        .flat_map(|v| {
            let v = v.unwrap();
            match v["kind"].as_str() {
                Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
                _ => vec![v],
            }
        })
        .collect()
}

fn by_kind<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn kinds(objs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objs
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    k.sort();
    k
}

async fn fake_with_flowengine() -> FakeApiServer {
    let s = FakeApiServer::start().await.unwrap();
    let env = BTreeMap::from([("MODE".to_owned(), "a".to_owned())]);
    s.add_deployment(NS, "flowengine", "flowengine", &env, 8);
    s
}

/// The manifests, as the server answered a dry run of them.
async fn dry_run_all(s: &FakeApiServer, k: &Kubectl) -> Vec<Value> {
    let mut args = vec!["apply", "--dry-run=server", "-o", "json"];
    let files: Vec<String> = FILES.iter().map(|f| manifest(f)).collect();
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    let out = k.run(&args).await;
    assert_exit(&out, 0, "dry run of deploy/", s);
    objects(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_pass_a_strict_server_side_dry_run_and_nothing_is_stored() {
    if !kubectl_present() {
        return;
    }
    let s = fake_with_flowengine().await;
    let rv = s.resource_version();
    let k = Kubectl::new(&s, "dry-run");
    let objs = dry_run_all(&s, &k).await;
    assert_eq!(
        kinds(&objs),
        [
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
    // kubectl asked for strict validation and a dry run, for every object.
    let posts: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST "))
        .collect();
    assert_eq!(posts.len(), 7, "{posts:?}");
    for p in &posts {
        assert!(
            p.contains("\"dryRun\": \"All\"") && p.contains("\"fieldValidation\": \"Strict\""),
            "{p}"
        );
    }
    // Answered as dry-run creates: a uid, no resourceVersion; the Secret's stringData folded.
    for o in &objs {
        assert!(o["metadata"]["uid"].is_string(), "{o}");
        assert!(o["metadata"].get("resourceVersion").is_none(), "{o}");
        assert_eq!(o["metadata"]["namespace"], NS);
    }
    let secret = by_kind(&objs, "Secret");
    assert!(secret.get("stringData").is_none());
    let decoded: Secret = serde_json::from_value(secret.clone()).unwrap();
    let data = decoded.data.unwrap();
    assert_eq!(data.len(), 8);
    for (key, value) in &data {
        let v = String::from_utf8(value.0.clone()).unwrap();
        assert!(v.starts_with("REPLACE-ME: "), "{key} is not a placeholder");
    }
    // Nothing stored, no resourceVersion used up.
    assert_eq!(s.resource_version(), rv);
    for r in [
        "serviceaccounts",
        "roles",
        "rolebindings",
        "configmaps",
        "secrets",
    ] {
        assert!(s.objects(r, NS).is_empty(), "{r} stored by a dry run");
    }
    assert_eq!(s.objects("deployments", NS).len(), 1);
    let out = k.run(&["get", "deployment", "flowfail"]).await;
    assert_exit(&out, 1, "the dry run created nothing", &s);
    assert!(text(&out.stderr).contains("deployments.apps \"flowfail\" not found"));

    check_objects(&objs);
}

/// What the manifests must say, checked on the objects the server answered.
fn check_objects(objs: &[Value]) {
    let toml = by_kind(objs, "ConfigMap")["data"]["flowfail.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let cfg = Toml::parse(&toml);
    check_config(&cfg);
    check_rbac(objs, &cfg);
    check_deployment(objs, &cfg);
}

/// A reading of the TOML subset flowfail.toml uses: `[table]` headers, `key = value` lines,
/// inline tables, comments. Enough to compare keys and to find the secret references.
struct Toml {
    /// `table.key` → the value as written (strings unquoted).
    values: BTreeMap<String, String>,
    /// Env var names given by reference (`…_env = "X"`, `{ env = "X" }`).
    env_refs: BTreeSet<String>,
    /// Files given by reference (`…_file = "P"`, `{ file = "P" }`).
    file_refs: BTreeSet<String>,
}

impl Toml {
    fn parse(text: &str) -> Self {
        let mut t = Toml {
            values: BTreeMap::new(),
            env_refs: BTreeSet::new(),
            file_refs: BTreeSet::new(),
        };
        let mut table = String::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some(h) = line.strip_prefix('[') {
                table = h.trim_end_matches(']').to_owned();
                continue;
            }
            let (key, value) = line.split_once('=').unwrap();
            let key = key.trim();
            let path = if table.is_empty() {
                key.to_owned()
            } else {
                format!("{table}.{key}")
            };
            t.values
                .insert(path, value.trim().trim_matches('"').to_owned());
            let inline = value.trim().trim_start_matches('{').trim_end_matches('}');
            let pairs: Vec<(&str, &str)> = if value.trim().starts_with('{') {
                inline
                    .split(',')
                    .filter_map(|p| p.split_once('='))
                    .collect()
            } else {
                vec![(key, value)]
            };
            for (k, v) in pairs {
                let (k, v) = (k.trim(), v.trim().trim_matches('"').to_owned());
                if k == "env" || k.ends_with("_env") {
                    t.env_refs.insert(v);
                } else if k == "file" || k.ends_with("_file") {
                    t.file_refs.insert(v);
                }
            }
        }
        t
    }

    fn get(&self, path: &str) -> &str {
        self.values
            .get(path)
            .map_or_else(|| panic!("{path} missing"), String::as_str)
    }
}

fn check_config(cfg: &Toml) {
    assert_eq!(cfg.get("mode"), "shadow");
    assert!(
        !cfg.values.keys().any(|k| k.ends_with("kubeconfig")),
        "in the cluster, no kubeconfig: the service account"
    );
    assert_eq!(
        cfg.env_refs,
        SECRET_ENV.iter().map(|s| s.to_string()).collect(),
        "the secrets flowfail.toml reads from env vars"
    );
    assert_eq!(
        cfg.file_refs,
        SECRET_FILES.iter().map(|s| s.to_string()).collect(),
        "the secrets flowfail.toml reads from files"
    );
    // The same keys and values as flowfail.example.toml, but for the in-cluster adjustments.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flowfail.example.toml");
    match std::fs::read_to_string(&example) {
        Ok(text) => {
            let mut want = Toml::parse(&text).values;
            want.remove("kubernetes.kubeconfig");
            want.insert("mode".into(), "shadow".into());
            assert_eq!(
                cfg.values, want,
                "deploy/configmap.yaml drifted from flowfail.example.toml"
            );
        }
        Err(e) => eprintln!("not compared with flowfail.example.toml: {e}"),
    }
}

/// `(group, resource, verb)` for every grant of a Role's rules.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let list = |r: &Value, k: &str| -> Vec<String> {
        r[k].as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = BTreeSet::new();
    for r in role["rules"].as_array().unwrap() {
        for g in list(r, "apiGroups") {
            for res in list(r, "resources") {
                for v in list(r, "verbs") {
                    out.insert((g.clone(), res.clone(), v));
                }
            }
        }
    }
    out
}

fn derived_grants() -> BTreeSet<(String, String, String)> {
    GRANTS
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

fn check_rbac(objs: &[Value], cfg: &Toml) {
    let role = by_kind(objs, "Role");
    assert_eq!(
        role["metadata"]["namespace"],
        cfg.get("kubernetes.namespace")
    );
    assert_eq!(grants(role), derived_grants());
    // Nothing wildcarded, nothing but these two rules; the Deployment by name only.
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    for r in rules {
        assert!(!r.to_string().contains('*'), "{r}");
        assert!(r.get("nonResourceURLs").is_none());
        let names = &r["resourceNames"];
        if r["resources"][0] == "deployments" {
            assert_eq!(
                names,
                &serde_json::json!([cfg.get("kubernetes.deployment")])
            );
        } else {
            assert!(names.is_null(), "a list cannot be limited by name");
        }
    }
    let sa = by_kind(objs, "ServiceAccount");
    let binding = by_kind(objs, "RoleBinding");
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
            "name": role["metadata"]["name"]})
    );
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]}])
    );
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"].as_str().unwrap().starts_with("Cluster"))
    );
}

/// Files the pod sees, from ConfigMap and Secret volumes: path → (kind, object, key).
fn mounted_files(pod: &Value, container: &Value) -> BTreeMap<String, (String, String, String)> {
    let mut sources: BTreeMap<String, Vec<(String, String, String, String)>> = BTreeMap::new();
    for v in pod["volumes"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_owned();
        let mut add = |kind: &str, src: &Value, obj: &str| {
            for item in src["items"].as_array().into_iter().flatten() {
                sources.entry(name.clone()).or_default().push((
                    item["path"].as_str().unwrap().to_owned(),
                    kind.to_owned(),
                    src[obj].as_str().unwrap().to_owned(),
                    item["key"].as_str().unwrap().to_owned(),
                ));
            }
        };
        if let Some(cm) = v.get("configMap") {
            add("ConfigMap", cm, "name");
        }
        if let Some(sec) = v.get("secret") {
            add("Secret", sec, "secretName");
        }
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            if let Some(cm) = src.get("configMap") {
                add("ConfigMap", cm, "name");
            }
            if let Some(sec) = src.get("secret") {
                add("Secret", sec, "name");
            }
        }
    }
    let mut files = BTreeMap::new();
    for m in container["volumeMounts"].as_array().unwrap() {
        for (path, kind, obj, key) in sources
            .get(m["name"].as_str().unwrap())
            .into_iter()
            .flatten()
        {
            let at = format!("{}/{path}", m["mountPath"].as_str().unwrap());
            files.insert(at, (kind.clone(), obj.clone(), key.clone()));
        }
    }
    files
}

fn check_deployment(objs: &[Value], cfg: &Toml) {
    let d = by_kind(objs, "Deployment");
    let sa = by_kind(objs, "ServiceAccount");
    let cm = by_kind(objs, "ConfigMap");
    let secret = by_kind(objs, "Secret");
    let secret_keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() >= 10);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["privileged"].is_null() && sc["capabilities"]["add"].is_null());
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][kind][r].is_string(), "resources.{kind}.{r}");
        }
    }
    // flowfail run --config <the mounted ConfigMap key>.
    let argv: Vec<&str> = c["command"]
        .as_array()
        .into_iter()
        .chain(c["args"].as_array())
        .flatten()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv, ["flowfail", "run", "--config", CONFIG_FILE]);
    let files = mounted_files(pod, c);
    assert_eq!(
        files.get(CONFIG_FILE),
        Some(&(
            "ConfigMap".to_owned(),
            cm["metadata"]["name"].as_str().unwrap().to_owned(),
            "flowfail.toml".to_owned()
        ))
    );
    for f in &cfg.file_refs {
        let (kind, name, key) = files.get(f).unwrap_or_else(|| panic!("{f} not mounted"));
        assert_eq!(kind, "Secret", "{f}");
        assert_eq!(name, secret["metadata"]["name"].as_str().unwrap());
        assert!(
            secret_keys.contains(&key),
            "{f}: no key {key} in the Secret"
        );
    }
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(
            m["mountPath"] == "/tmp" || m["readOnly"] == true,
            "only /tmp is writable: {m}"
        );
    }
    // Every secret env var from the Secret, and no literal value for any of them.
    let env = c["env"].as_array().unwrap();
    for name in &cfg.env_refs {
        let e = env
            .iter()
            .find(|e| e["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not set"));
        assert!(e.get("value").is_none(), "{name} written inline");
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret["metadata"]["name"], "{name}");
        assert!(
            secret_keys.contains(&&r["key"].as_str().unwrap().to_owned()),
            "{name}: no key {} in the Secret",
            r["key"]
        );
    }
    assert_eq!(d["metadata"]["namespace"], cfg.get("kubernetes.namespace"));
    assert_ne!(
        d["metadata"]["name"],
        cfg.get("kubernetes.deployment"),
        "flowfail runs beside FlowEngine, not as it"
    );
    let selector = &d["spec"]["selector"]["matchLabels"];
    assert!(selector.get("app").is_none(), "{selector}");
}

/// A copy of `file` with the `nth` occurrence of `from` replaced by `to`.
fn broken(file: &str, from: &str, to: &str, nth: usize) -> String {
    let text = std::fs::read_to_string(manifest(file)).unwrap();
    let (at, _) = text
        .match_indices(from)
        .nth(nth)
        .unwrap_or_else(|| panic!("{file} has no occurrence {nth} of {from:?}"));
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

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
    assert_eq!(text(&out.stdout).matches(" created\n").count(), 7);
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
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

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
