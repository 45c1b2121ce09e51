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
//! Without kubectl these tests skip, unless `FLOWFAIL_KUBECTL_REQUIRED=1`. One module per group
//! of checks; the kubectl driver and the helpers they share are here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flowfail_k8s::fake::FakeApiServer;
use serde_json::Value;

const NS: &str = "default";
const USER: &str = "system:serviceaccount:default:flowfail";
/// Every secret flowfail.toml refers to by env var.
const SECRET_ENV: [&str; 8] = [
    "FLOWFAIL_PG_PASSWORD",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "PAGERDUTY_ON_CALL_KEY",
    "PAGERDUTY_SRE_KEY",
    "FLOWFAIL_STAKEHOLDER_WEBHOOK_URL",
    "FLOWFAIL_WEBHOOK_TOKEN",
    "FLOWFAIL_CONTROL_TOKEN",
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

mod applied;
mod manifests;
mod rbac;
mod rejected;

/// Whether kubectl runs; if not, the skip line of these tests (or a failure with
/// `FLOWFAIL_KUBECTL_REQUIRED=1`).
fn kubectl_present() -> bool {
    crate::support::kubectl_present(module_path!(), "")
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn manifest(name: &str) -> String {
    deploy_dir().join(name).to_string_lossy().into_owned()
}

const FILES: [&str; 6] = [
    "rbac.yaml",
    "configmap.yaml",
    "secret.example.yaml",
    "deployment.yaml",
    "service.yaml",
    "networkpolicy.yaml",
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

/// A copy of `file` with the `nth` occurrence of `from` replaced by `to`.
fn broken(file: &str, from: &str, to: &str, nth: usize) -> String {
    let text = std::fs::read_to_string(manifest(file)).unwrap();
    let (at, _) = text
        .match_indices(from)
        .nth(nth)
        .unwrap_or_else(|| panic!("{file} has no occurrence {nth} of {from:?}"));
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}
