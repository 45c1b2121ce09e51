//! The manifests pass a strict server-side dry run, and what they say is checked in Rust: the
//! config, the Role, the Deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::{
    CONFIG_FILE, Kubectl, NS, SECRET_ENV, SECRET_FILES, assert_exit, by_kind, derived_grants,
    dry_run_all, fake_with_flowengine, grants, kinds, kubectl_present, text,
};

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
            "NetworkPolicy",
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
    assert_eq!(posts.len(), 8, "{posts:?}");
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
    assert_eq!(data.len(), 9);
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
            // In the pod, all interfaces (the NetworkPolicy admits the callers); on a host,
            // loopback.
            want.insert("server.listen".into(), "0.0.0.0:9464".into());
            assert_eq!(
                cfg.values, want,
                "deploy/configmap.yaml drifted from flowfail.example.toml"
            );
        }
        Err(e) => eprintln!("not compared with flowfail.example.toml: {e}"),
    }
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
