//! An in-process fake of the Kubernetes API endpoints flowfail and kubectl use, faithful enough
//! that real `kubectl set env`, `kubectl rollout undo`, `kubectl rollout status` and
//! `kubectl apply` (server-side dry run included) work against it (tests prove it):
//!
//! - discovery: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}` for the kinds
//!   it serves — Deployment and ReplicaSet (`apps/v1`), ServiceAccount, ConfigMap and Secret
//!   (`v1`), Role and RoleBinding (`rbac.authorization.k8s.io/v1`) — and the OpenAPI v3 index
//!   and group-version documents, which tell kubectl that the server validates fields itself
//!   (`fieldValidation`), so kubectl sends `fieldValidation=Strict` instead of validating
//!   client-side. No schemas are served: `/openapi/v2` defines nothing, and the list of
//!   CustomResourceDefinitions is empty, which is what kubectl reads about a kind it meets no
//!   v3 document for (a wrong apiVersion) before failing to map it, as against a real server;
//! - get, list (label and `metadata.name` field selectors), watch, create and patch (strategic
//!   merge, JSON merge and JSON Patch) of those kinds, ReplicaSets read-only; `resourceVersion`
//!   on every write, `409 Conflict` when a patch carries a stale one (or a JSON Patch `test`
//!   fails), `generation` on spec changes;
//! - `dryRun=All` on create and patch: the answer is the object as it would be stored (a
//!   created object without `resourceVersion`, a patched one with the current one), and nothing
//!   is stored, no `resourceVersion` is used up, no controller reacts;
//! - validation as the API server does it: a body that does not decode as its kind is
//!   `400 BadRequest`; with `fieldValidation=Strict`, so is any field the kind does not have
//!   (decoding is k8s-openapi's, generated from the Kubernetes OpenAPI schema); a few semantic
//!   rules are `422 Invalid` (see `validate.rs`); Secret `stringData` is folded into `data`;
//! - optionally RBAC: [`FakeApiServer::enforce_role`] answers `403 Forbidden`, worded as the
//!   real authorizer words it, to every resource request the given Role's rules do not allow;
//!   every resource request is recorded ([`FakeApiServer::accesses`]);
//! - the Deployment controller: ReplicaSets created when the pod template changes, with
//!   `deployment.kubernetes.io/revision`; an old template reused gets the next revision number,
//!   as the real controller does; rollout progress in `status`, complete as soon as the
//!   controller "observes" the change, unless told to hang or fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

mod kinds;
mod objects;
mod patch;
mod rbac;
mod validate;

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

/// Objects of one resource, by (namespace, name).
type Store = BTreeMap<(String, String), Value>;

#[derive(Debug, Default)]
struct Cluster {
    rv: u64,
    deployments: Store,
    replicasets: Store,
    /// Every other kind, by resource (`secrets`, `roles`, ...).
    objects: BTreeMap<String, Store>,
    rollout: RolloutMode,
    requests: Vec<String>,
    role: Option<rbac::EnforcedRole>,
    accesses: Vec<Access>,
    writes: Vec<Write>,
    /// A human's edit of a Deployment, made right before the next PATCH is applied (a writer
    /// racing the client between its read and its write).
    before_next_patch: Option<BeforePatch>,
    /// How long the reply to the next applied Deployment PATCH is held back (a client killed
    /// after its write landed and before it read the answer).
    hold_next_patch_reply: Option<std::time::Duration>,
}

/// See [`FakeApiServer::edit_before_next_patch`].
struct BeforePatch(String, String, Box<dyn FnOnce(&mut Value) + Send>);

impl std::fmt::Debug for BeforePatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BeforePatch({}/{})", self.0, self.1)
    }
}

/// One write (create or patch) with the field manager it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// `create` or `patch`.
    pub verb: String,
    /// The resource (`deployments`).
    pub resource: String,
    /// The namespace of the request.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The `fieldManager` query parameter, if any.
    pub field_manager: Option<String>,
    /// Whether it was a dry run (`dryRun=All`).
    pub dry_run: bool,
}

/// One resource request as the fake's authorizer saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// The RBAC verb: `get`, `list`, `watch`, `create` or `patch`.
    pub verb: String,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource (`deployments`).
    pub resource: String,
    /// The namespace of the request.
    pub namespace: String,
    /// The object's name: from the path, or from a `metadata.name=` field selector of a list.
    pub name: Option<String>,
    /// Whether the request was allowed (always, unless a Role is enforced).
    pub allowed: bool,
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
    status_with(code, reason, message, None)
}

/// A `Status` answer with `details` (name, group, kind, causes), as the API server sends.
fn status_with(code: u16, reason: &str, message: String, details: Option<Value>) -> Response {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        body["details"] = d;
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    answer(StatusCode::OK, v)
}

fn answer(code: StatusCode, v: Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
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

/// The annotation `kubectl rollout history` shows; the Deployment controller copies it from
/// the Deployment onto its new ReplicaSet (as it copies every annotation but its own).
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

fn change_cause(d: &Value) -> Option<Value> {
    d.pointer("/metadata/annotations/kubernetes.io~1change-cause")
        .filter(|v| v.is_string())
        .cloned()
}

fn revision_of(v: &Value) -> u64 {
    v.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Cluster {
    fn edit(&mut self, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let key = (ns.to_owned(), name.to_owned());
        let Some(mut d) = self.deployments.get(&key).cloned() else {
            return;
        };
        let before = d["spec"].clone();
        f(&mut d);
        if d["spec"] != before {
            let g = d["metadata"]["generation"].as_i64().unwrap_or(1);
            d["metadata"]["generation"] = json!(g + 1);
        }
        self.deployments.insert(key, d);
        self.reconcile(ns, name);
    }

    /// Runs the edit waiting for the next PATCH, if any.
    fn before_patch(&mut self) {
        if let Some(BeforePatch(ns, name, f)) = self.before_next_patch.take() {
            self.edit(&ns, &name, f);
        }
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// The objects of `resource`.
    fn store(&mut self, resource: &str) -> &mut Store {
        match resource {
            "deployments" => &mut self.deployments,
            "replicasets" => &mut self.replicasets,
            r => self.objects.entry(r.to_owned()).or_default(),
        }
    }

    fn stored(&self, resource: &str) -> Option<&Store> {
        match resource {
            "deployments" => Some(&self.deployments),
            "replicasets" => Some(&self.replicasets),
            r => self.objects.get(r),
        }
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
        let template = stripped(&d["spec"]["template"]);
        let sets = self.owned_sets(ns, &uid_of(&d));
        let max = sets
            .iter()
            .map(|(_, rs)| revision_of(rs))
            .max()
            .unwrap_or(0);
        let current = sets
            .iter()
            .find(|(_, rs)| stripped(&rs["spec"]["template"]) == template);
        let current_rev = current.map(|(_, rs)| revision_of(rs)).unwrap_or(0);
        let rev = match current {
            Some((rs_name, rs)) if current_rev == max => {
                self.sync_change_cause(ns, rs_name, rs, &d);
                max
            }
            _ => {
                let previous = current.map(|(_, rs)| rs);
                self.create_replica_set(ns, name, &d, &template, previous, max + 1);
                max + 1
            }
        };
        self.roll_out(ns, name, rev);
    }

    /// The controller keeps the new ReplicaSet's change cause in step with the Deployment's,
    /// even when only the annotation changed.
    fn sync_change_cause(&mut self, ns: &str, rs_name: &str, rs: &Value, d: &Value) {
        if let Some(cause) = change_cause(d)
            && rs.pointer("/metadata/annotations/kubernetes.io~1change-cause") != Some(&cause)
        {
            let key = (ns.to_owned(), rs_name.to_owned());
            let rv = self.next_rv();
            if let Some(stored) = self.replicasets.get_mut(&key) {
                stored["metadata"]["annotations"][CHANGE_CAUSE] = cause;
                stored["metadata"]["resourceVersion"] = json!(rv);
            }
        }
    }

    /// Stores the ReplicaSet of Deployment `d`'s pod template (already `stripped`) with
    /// `revision`. `previous` is the ReplicaSet an old template had, if it is being revived:
    /// its creation time is kept.
    fn create_replica_set(
        &mut self,
        ns: &str,
        name: &str,
        d: &Value,
        template: &Value,
        previous: Option<&Value>,
        revision: u64,
    ) {
        let h = hash(template);
        let rs_name = format!("{name}-{h}");
        let rv = self.next_rv();
        let mut labels = template["metadata"]["labels"].clone();
        labels["pod-template-hash"] = json!(h);
        let mut t = template.clone();
        t["metadata"]["labels"] = labels.clone();
        let mut sel = d["spec"]["selector"]["matchLabels"].clone();
        sel["pod-template-hash"] = json!(h);
        let created = previous
            .map(|rs| rs["metadata"]["creationTimestamp"].clone())
            .unwrap_or_else(|| {
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            });
        let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string()});
        if let Some(cause) = change_cause(d) {
            annotations[CHANGE_CAUSE] = cause;
        }
        let uid = uid_of(d);
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "uid": format!("uid-rs-{h}"), "resourceVersion": rv,
                "labels": labels, "creationTimestamp": created,
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": d["spec"]["replicas"].clone(), "selector": {"matchLabels": sel}, "template": t},
            "status": {"replicas": 0}
        });
        self.replicasets.insert((ns.to_owned(), rs_name), rs);
    }

    /// Sets the Deployment's revision, a new `resourceVersion`, and its status as the rollout
    /// mode has it (a paused Deployment's status is complete).
    fn roll_out(&mut self, ns: &str, name: &str, rev: u64) {
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

/// A Deployment's uid (empty if it has none).
fn uid_of(d: &Value) -> String {
    d.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl FakeApiServer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Cluster::default()));
        let app = Router::new()
            .route("/version", get(kinds::version))
            .route("/api", get(kinds::api_versions))
            .route("/apis", get(kinds::api_groups))
            .route("/api/{version}", get(kinds::core_resources))
            .route("/apis/{group}/{version}", get(kinds::group_resources))
            .route("/openapi/v2", get(kinds::openapi_v2))
            .route("/openapi/v3", get(kinds::openapi_index))
            .route("/openapi/v3/{*path}", get(kinds::openapi_group_version))
            .route(
                "/api/{version}/namespaces/{ns}/{resource}",
                any(objects::request),
            )
            .route(
                "/api/{version}/namespaces/{ns}/{resource}/{name}",
                any(objects::request),
            )
            .route(
                "/apis/{group}/{version}/{resource}",
                any(objects::cluster_request),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{resource}",
                any(objects::request),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{resource}/{name}",
                any(objects::request),
            )
            .fallback(unhandled)
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
        // Stored as the API server stores what it admits (an empty `env` list left out), so the
        // ReplicaSets' templates compare with a template patched back in (a rollback).
        let d = kinds::find("apps", "v1", "deployments")
            .map_or_else(|| d.clone(), |k| validate::canonical(k, &d));
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
        lock(&self.state).edit(ns, name, f);
    }

    /// Like [`FakeApiServer::edit`], but made right before the next PATCH request is applied:
    /// a human's change landing between a client's read and its write, so the write's
    /// precondition (a `resourceVersion`, a JSON Patch `test`) is what stops it.
    pub fn edit_before_next_patch(
        &self,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        lock(&self.state).before_next_patch =
            Some(BeforePatch(ns.to_owned(), name.to_owned(), Box::new(f)));
    }

    /// Holds back the reply to the next Deployment PATCH that is applied (not a dry run) for
    /// `d`, after the change is stored and the controller has reacted: the write has landed, the
    /// client has not heard so. A test kills the client in that window.
    pub fn hold_next_patch_reply(&self, d: std::time::Duration) {
        lock(&self.state).hold_next_patch_reply = Some(d);
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

    /// Dates the ReplicaSet of `revision` (its creation time: when that revision was
    /// deployed), e.g. `2026-11-20T11:50:00Z`.
    pub fn set_revision_created(&self, ns: &str, name: &str, revision: u64, at: &str) {
        let mut c = lock(&self.state);
        let uid = format!("uid-{ns}-{name}");
        for ((n, _), rs) in c.replicasets.iter_mut() {
            let owned = rs
                .pointer("/metadata/ownerReferences/0/uid")
                .and_then(Value::as_str)
                == Some(uid.as_str());
            if n == ns && owned && revision_of(rs) == revision {
                rs["metadata"]["creationTimestamp"] = json!(at);
            }
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

    /// Any stored object, by resource (`deployments`, `secrets`, `roles`, ...).
    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .stored(resource)?
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The stored objects of `resource` in namespace `ns`.
    pub fn objects(&self, resource: &str, ns: &str) -> Vec<Value> {
        lock(&self.state)
            .stored(resource)
            .map(|s| {
                s.iter()
                    .filter(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The latest `resourceVersion` handed out: unchanged when nothing was written.
    pub fn resource_version(&self) -> u64 {
        lock(&self.state).rv
    }

    /// From now on, authorizes every resource request as RBAC would for a `user` bound to
    /// `role` (a Role object: its `metadata.namespace` and `rules`) and nothing else: a request
    /// the rules do not allow gets `403 Forbidden`. Discovery, `/version` and `/openapi` stay
    /// open, as `system:discovery` keeps them for every authenticated user.
    pub fn enforce_role(&self, user: &str, role: &Value) {
        lock(&self.state).role = Some(rbac::EnforcedRole::new(user, role));
    }

    /// Every create and patch received (after authorization), with its field manager, in
    /// order. Stored objects also carry a `metadata.managedFields` entry per manager, as the
    /// API server keeps them.
    pub fn writes(&self) -> Vec<Write> {
        lock(&self.state).writes.clone()
    }

    /// Every resource request received, as the authorizer saw it, in order.
    pub fn accesses(&self) -> Vec<Access> {
        lock(&self.state).accesses.clone()
    }
}

/// Anything the fake does not serve: logged, and answered `404` as the API server does.
async fn unhandled(
    axum::extract::State(s): axum::extract::State<Shared>,
    method: axum::http::Method,
    uri: Uri,
) -> Response {
    log_request(&s, format!("UNHANDLED {method} {uri}"));
    status(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
    )
}

fn log_request(s: &Shared, what: String) {
    lock(s).requests.push(what);
}
