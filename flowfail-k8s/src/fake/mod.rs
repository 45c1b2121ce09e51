//! An in-process fake of the few `apps/v1` endpoints flowfail and kubectl use, faithful enough
//! that real `kubectl set env`, `kubectl rollout undo` and `kubectl rollout status` work
//! against it (a test proves it):
//!
//! - discovery: `/api`, `/apis`, `/api/v1`, `/apis/apps/v1`;
//! - Deployments: get, list (with `fieldSelector=metadata.name=…`), watch, patch (strategic
//!   merge, JSON merge and JSON Patch); `resourceVersion` on every write, `409 Conflict` when a
//!   patch carries a stale one (or a JSON Patch `test` fails), `generation` on spec changes;
//! - ReplicaSets: created when the pod template changes, with
//!   `deployment.kubernetes.io/revision`; an old template reused gets the next revision number,
//!   as the real controller does; listed by label selector;
//! - rollout progress in `status`, complete as soon as the controller "observes" the change,
//!   unless told to hang or fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// Rollout behaviour of the fake controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RolloutMode {
    /// Complete at once.
    #[default]
    Complete,
    /// Stay in progress (updated replicas lag).
    Hang,
    /// Fail with `ProgressDeadlineExceeded`.
    Fail,
}

#[derive(Debug, Default)]
struct Cluster {
    rv: u64,
    deployments: BTreeMap<(String, String), Value>,
    replicasets: BTreeMap<(String, String), Value>,
    rollout: RolloutMode,
    requests: Vec<String>,
}

/// The fake API server. Dropping it stops it.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<Cluster>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<Cluster>>;

fn lock(s: &Shared) -> MutexGuard<'_, Cluster> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:x}", h % 0xff_ffff_ffff)
        .chars()
        .take(10)
        .collect()
}

/// The pod template without the `pod-template-hash` label.
fn stripped(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    t
}

fn revision_of(v: &Value) -> u64 {
    v.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Cluster {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn owned_sets(&self, ns: &str, uid: &str) -> Vec<(String, Value)> {
        self.replicasets
            .iter()
            .filter(|((n, _), rs)| {
                n == ns
                    && rs
                        .pointer("/metadata/ownerReferences/0/uid")
                        .and_then(Value::as_str)
                        == Some(uid)
            })
            .map(|((_, name), rs)| (name.clone(), rs.clone()))
            .collect()
    }

    /// The deployment controller: a template change makes (or revives) a ReplicaSet with the
    /// next revision; status follows the rollout mode.
    fn reconcile(&mut self, ns: &str, name: &str) {
        let Some(d) = self
            .deployments
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
        else {
            return;
        };
        let uid = d
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let template = stripped(&d["spec"]["template"]);
        let sets = self.owned_sets(ns, &uid);
        let max = sets
            .iter()
            .map(|(_, rs)| revision_of(rs))
            .max()
            .unwrap_or(0);
        let current = sets
            .iter()
            .find(|(_, rs)| stripped(&rs["spec"]["template"]) == template);
        let current_rev = current.map(|(_, rs)| revision_of(rs)).unwrap_or(0);
        let rev = if current.is_some() && current_rev == max {
            max
        } else {
            let h = hash(&template);
            let rs_name = format!("{name}-{h}");
            let rv = self.next_rv();
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(h);
            let mut t = template.clone();
            t["metadata"]["labels"] = labels.clone();
            let mut sel = d["spec"]["selector"]["matchLabels"].clone();
            sel["pod-template-hash"] = json!(h);
            let created = current
                .map(|(_, rs)| rs["metadata"]["creationTimestamp"].clone())
                .unwrap_or_else(|| {
                    json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                });
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns, "uid": format!("uid-rs-{h}"), "resourceVersion": rv,
                    "labels": labels, "creationTimestamp": created,
                    "annotations": {"deployment.kubernetes.io/revision": (max + 1).to_string()},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"replicas": d["spec"]["replicas"].clone(), "selector": {"matchLabels": sel}, "template": t},
                "status": {"replicas": 0}
            });
            self.replicasets.insert((ns.to_owned(), rs_name), rs);
            max + 1
        };
        let rv = self.next_rv();
        let mode = self.rollout;
        let Some(d) = self.deployments.get_mut(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(rev.to_string());
        d["metadata"]["resourceVersion"] = json!(rv);
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
        let (updated, available, progressing) = match (mode, paused) {
            (_, true) | (RolloutMode::Complete, _) => (
                replicas,
                replicas,
                json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}),
            ),
            (RolloutMode::Hang, _) => (
                0,
                replicas,
                json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}),
            ),
            (RolloutMode::Fail, _) => (
                0,
                replicas,
                json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}),
            ),
        };
        d["status"] = json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": updated,
            "readyReplicas": available, "availableReplicas": available,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}, progressing]});
    }
}

impl FakeApiServer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Cluster::default()));
        let app = Router::new()
            .route("/api", get(api_versions))
            .route("/apis", get(api_groups))
            .route("/api/v1", get(core_resources))
            .route("/apis/apps/v1", get(apps_resources))
            .route(
                "/apis/apps/v1/namespaces/{ns}/deployments",
                get(list_deployments),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                get(get_deployment).patch(patch_deployment),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/replicasets",
                get(list_replicasets),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeApiServer { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at the fake (no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Creates a Deployment with `revisions` rollouts behind it (revision N runs image
    /// `flowengine:N`), the main container `container` with `env`.
    pub fn add_deployment(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        env: &BTreeMap<String, String>,
        revisions: u64,
    ) {
        let mut c = lock(&self.state);
        let env: Vec<Value> = env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        let rv = c.next_rv();
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "resourceVersion": rv, "generation": 1,
                "labels": {"app": name}, "annotations": {"deployment.kubernetes.io/revision": "0"},
                "creationTimestamp": "2025-11-01T00:00:00Z"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": container, "image": "flowengine:1", "env": env}]}}},
            "status": {}
        });
        c.deployments.insert((ns.to_owned(), name.to_owned()), d);
        for r in 1..=revisions.max(1) {
            if let Some(d) = c.deployments.get_mut(&(ns.to_owned(), name.to_owned())) {
                d["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!(format!("flowengine:{r}"));
                d["metadata"]["generation"] = json!(r);
            }
            c.reconcile(ns, name);
        }
    }

    /// The Deployment as stored.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .deployments
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The ReplicaSets of a namespace.
    pub fn replicasets(&self, ns: &str) -> Vec<Value> {
        lock(&self.state)
            .replicasets
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Applies a change as a human would (`kubectl edit`): the closure edits the stored object,
    /// then the controller reconciles.
    pub fn edit(&self, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut c = lock(&self.state);
        let key = (ns.to_owned(), name.to_owned());
        let Some(mut d) = c.deployments.get(&key).cloned() else {
            return;
        };
        let before = d["spec"].clone();
        f(&mut d);
        if d["spec"] != before {
            let g = d["metadata"]["generation"].as_i64().unwrap_or(1);
            d["metadata"]["generation"] = json!(g + 1);
        }
        c.deployments.insert(key, d);
        c.reconcile(ns, name);
    }

    /// Deletes a ReplicaSet by revision (garbage-collected history).
    pub fn forget_revision(&self, ns: &str, name: &str, revision: u64) {
        let mut c = lock(&self.state);
        let uid = format!("uid-{ns}-{name}");
        let victims: Vec<(String, String)> = c
            .replicasets
            .iter()
            .filter(|((n, _), rs)| {
                n == ns
                    && revision_of(rs) == revision
                    && rs
                        .pointer("/metadata/ownerReferences/0/uid")
                        .and_then(Value::as_str)
                        == Some(uid.as_str())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for v in victims {
            c.replicasets.remove(&v);
        }
    }

    /// How the next rollouts behave.
    pub fn set_rollout_mode(&self, m: RolloutMode) {
        lock(&self.state).rollout = m;
    }

    /// Requests received (`METHOD path?query content-type`), in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }
}

async fn api_versions(State(_s): State<Shared>) -> Response {
    ok(
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
    )
}

async fn api_groups() -> Response {
    ok(
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}),
    )
}

async fn core_resources() -> Response {
    ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["get", "list"]}]}),
    )
}

async fn apps_resources() -> Response {
    let verbs = json!(["get", "list", "watch", "patch", "update"]);
    ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": verbs, "shortNames": ["deploy"]},
        {"name": "deployments/status", "singularName": "", "namespaced": true, "kind": "Deployment", "verbs": ["get", "patch", "update"]},
        {"name": "replicasets", "singularName": "replicaset", "namespaced": true, "kind": "ReplicaSet", "verbs": verbs, "shortNames": ["rs"]}]}),
    )
}

fn log_request(s: &Shared, what: String) {
    lock(s).requests.push(what);
}

async fn get_deployment(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    log_request(&s, format!("GET deployments/{name}"));
    match lock(&s).deployments.get(&(ns, name.clone())) {
        Some(d) => ok(d.clone()),
        None => status(
            404,
            "NotFound",
            format!("deployments.apps \"{name}\" not found"),
        ),
    }
}

async fn list_deployments(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    log_request(&s, format!("LIST deployments {q:?}"));
    let c = lock(&s);
    let wanted = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let items: Vec<Value> = c
        .deployments
        .iter()
        .filter(|((n, name), _)| *n == ns && wanted.as_ref().is_none_or(|w| w == name))
        .map(|(_, d)| d.clone())
        .collect();
    let rv = c.rv.to_string();
    drop(c);
    if q.get("watch").map(String::as_str) == Some("true")
        || q.get("watch").map(String::as_str) == Some("1")
    {
        // One event per object, then the stream ends (clients re-list and watch again).
        let body: String = items
            .iter()
            .map(|o| format!("{}\n", json!({"type": "ADDED", "object": o})))
            .collect();
        return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
    }
    ok(
        json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

fn selector_matches(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|p| !p.is_empty())
        .all(|p| match p.split_once('=') {
            Some((k, v)) => {
                labels.get(k.trim_end_matches('=')).and_then(Value::as_str)
                    == Some(v.trim_start_matches('='))
            }
            None => labels.get(p).is_some(),
        })
}

async fn list_replicasets(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    log_request(&s, format!("LIST replicasets {q:?}"));
    let c = lock(&s);
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    let items: Vec<Value> = c
        .replicasets
        .iter()
        .filter(|((n, _), rs)| *n == ns && selector_matches(&rs["metadata"]["labels"], &sel))
        .map(|(_, rs)| rs.clone())
        .collect();
    ok(
        json!({"kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": c.rv.to_string()}, "items": items}),
    )
}

/// Strategic merge for the lists a Deployment's pod template has, merged by their keys.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue; // directives: $setElementOrder/…, $retainKeys, $patch on maps
        }
        if v.is_null() {
            if let Some(t) = target.as_object_mut() {
                t.remove(k);
            }
            continue;
        }
        match (merge_key(k), v.as_array()) {
            (Some(key), Some(items)) => {
                let list = target[k].as_array().cloned().unwrap_or_default();
                let mut list = list;
                for item in items {
                    let id = item.get(key).cloned();
                    let pos = list.iter().position(|e| e.get(key) == id.as_ref());
                    if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                        if let Some(i) = pos {
                            list.remove(i);
                        }
                    } else if let Some(i) = pos {
                        strategic_merge(&mut list[i], item);
                    } else {
                        let mut clean = item.clone();
                        strategic_merge(&mut clean, item);
                        list.push(clean);
                    }
                }
                target[k] = Value::Array(list);
            }
            _ if v.is_object() && target.get(k).is_some_and(Value::is_object) => {
                if let Some(t) = target.get_mut(k) {
                    strategic_merge(t, v);
                }
            }
            _ => {
                let mut clean = v.clone();
                if clean.is_object() {
                    let mut fresh = json!({});
                    strategic_merge(&mut fresh, v);
                    clean = fresh;
                }
                target[k] = clean;
            }
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    if let Some(p) = patch.as_object() {
        if !target.is_object() {
            *target = json!({});
        }
        for (k, v) in p {
            if v.is_null() {
                if let Some(t) = target.as_object_mut() {
                    t.remove(k);
                }
            } else if let Some(t) = target.get_mut(k).filter(|t| t.is_object() && v.is_object()) {
                merge_patch(t, v);
            } else {
                target[k] = v.clone();
            }
        }
    } else {
        *target = patch.clone();
    }
}

async fn patch_deployment(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    log_request(&s, format!("PATCH deployments/{name} {q:?} {ct}"));
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "patch is not JSON".into());
    };
    let mut c = lock(&s);
    let key = (ns.clone(), name.clone());
    let Some(current) = c.deployments.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            format!("deployments.apps \"{name}\" not found"),
        );
    };
    let conflict = || {
        status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
    };
    let mut next = current.clone();
    if ct.starts_with("application/json-patch+json") {
        let Ok(p) = serde_json::from_value::<json_patch::Patch>(patch) else {
            return status(400, "BadRequest", "invalid JSON Patch".into());
        };
        if let Err(e) = json_patch::patch(&mut next, &p) {
            if e.to_string().contains("test") {
                return conflict();
            }
            return status(
                422,
                "Invalid",
                format!("JSON Patch could not be applied: {e}"),
            );
        }
    } else if ct.starts_with("application/merge-patch+json") {
        merge_patch(&mut next, &patch);
    } else if ct.starts_with("application/strategic-merge-patch+json") {
        strategic_merge(&mut next, &patch);
    } else {
        return status(
            415,
            "UnsupportedMediaType",
            format!("unsupported patch type {ct}"),
        );
    }
    // Optimistic concurrency: a resourceVersion in the patched object must be the current one.
    let want = next
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let have = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if want.is_some() && want != have {
        return conflict();
    }
    if next == current {
        return ok(current);
    }
    if next["spec"] != current["spec"] {
        let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
        next["metadata"]["generation"] = json!(g + 1);
    }
    c.deployments.insert(key, next);
    c.reconcile(&ns, &name);
    let d = c
        .deployments
        .get(&(ns, name))
        .cloned()
        .unwrap_or(Value::Null);
    ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merge_merges_containers_and_env_by_name() {
        let mut t = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}, {"name": "D", "value": "2"}]}]}}}});
        let p = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "$setElementOrder/env": [{"name": "K"}, {"name": "N"}],
                "env": [{"name": "K", "value": "9"}, {"name": "N", "value": "3"}, {"$patch": "delete", "name": "D"}]}]}}}});
        strategic_merge(&mut t, &p);
        let env = &t["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env,
            &json!([{"name": "K", "value": "9"}, {"name": "N", "value": "3"}])
        );
        assert_eq!(t["spec"]["template"]["spec"]["containers"][0]["image"], "x");
    }
}
