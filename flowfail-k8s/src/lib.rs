#![doc = include_str!("../README.md")]

#[cfg(feature = "fake")]
pub mod fake;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::model::one_line;
use flowfail_core::{
    ChangeCause, DeploymentController, DeploymentState, EnvChange, Error, ErrorKind, Result,
    RevisionInfo, RolloutStatus,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const BACKEND: &str = "kubernetes";
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The field manager of every patch flowfail sends (the API server's `managedFields`).
pub const FIELD_MANAGER: &str = "flowfail";
/// Longest change cause written (the text is cut at a character boundary).
const MAX_CAUSE: usize = 1024;
/// Longest description of the change itself: room is left for the incident key after it.
const MAX_WHAT: usize = 320;

/// [`DeploymentController`] on the Kubernetes API (kube + k8s-openapi).
///
/// Env changes are strategic-merge patches of the main container (the one named by
/// [`KubeDeploymentController::container`], else the first), with the observed
/// `resourceVersion` as a precondition when one is given. A rollback goes to a *given*
/// revision: that ReplicaSet's pod template (its `pod-template-hash` label stripped), applied
/// with a JSON Patch that fails unless the Deployment's `resourceVersion` is still the expected
/// one. It is refused when the Deployment is paused or the revision is gone. There is no
/// relative "undo" anywhere: `kubectl rollout undo` picks "the previous revision" at the moment
/// it runs, so two replicas undoing at once roll forward again.
///
/// Every patch is attributed: it is sent with field manager [`FIELD_MANAGER`] (`flowfail`),
/// and env changes and rollbacks set [`CHANGE_CAUSE`] on the Deployment, which the Deployment
/// controller copies onto the new ReplicaSet, so `kubectl rollout history` says what flowfail
/// did — `flowfail: set ENABLE_CIRCUIT_BREAKER=true`, `flowfail: roll back to revision 7` —
/// and why, from the [`ChangeCause`] the call carries
/// (`… (incident flowengine-20251113T1000Z: quota 91% above 85%: enable circuit breaker)`).
/// The text is one line of at most 1024 bytes; what is cut first is the purpose, never the
/// incident key.
#[derive(Clone)]
pub struct KubeDeploymentController {
    client: kube::Client,
    namespace: String,
    container: Option<String>,
}

impl std::fmt::Debug for KubeDeploymentController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDeploymentController")
            .field("namespace", &self.namespace)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

fn kube_err(op: &'static str, e: kube::Error) -> Error {
    let message = e.to_string();
    kube_err_message(op, e, message)
}

/// [`kube_err`]'s kind and retryability with a message of the caller's.
fn kube_err_message(op: &'static str, e: kube::Error, message: String) -> Error {
    let code = match &e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    };
    let (kind, transient) = match code {
        Some(404) => (ErrorKind::NotFound, false),
        Some(409) => (ErrorKind::Conflict, false),
        // A failed JSON Patch `test` of the resourceVersion: the Deployment moved on.
        Some(422)
            if e.to_string().contains("resourceVersion") || e.to_string().contains("test") =>
        {
            (ErrorKind::Conflict, false)
        }
        Some(401 | 403) => (ErrorKind::PermissionDenied, false),
        Some(429) => (ErrorKind::RateLimited, true),
        Some(500..=599) => (ErrorKind::Unavailable, true),
        Some(_) => (ErrorKind::InvalidInput, false),
        None => (ErrorKind::Unavailable, true),
    };
    Error::new(kind, message)
        .with_operation(op)
        .with_backend(BACKEND)
        .with_source(e)
        .transient_if(transient)
}

/// The change-cause annotation of a change that did `what` (`set X=1, unset Y`, `roll back to
/// revision 7`) for `cause`: `flowfail: <what> (<cause>)`, one line, at most [`MAX_CAUSE`]
/// bytes.
fn change_cause(what: &str, cause: &ChangeCause) -> String {
    let what = one_line(what, MAX_WHAT);
    let text = if cause.is_empty() {
        format!("flowfail: {what}")
    } else {
        format!("flowfail: {what} ({cause})")
    };
    one_line(&text, MAX_CAUSE)
}

/// What an env change does, as the change cause says it: `set A=1, unset B`.
pub fn describe_env_changes(changes: &[EnvChange]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| match &c.value {
            Some(v) => format!("set {}={v}", c.name),
            None => format!("unset {}", c.name),
        })
        .collect();
    if parts.is_empty() {
        "no env change".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Patch parameters with flowfail's field manager.
fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

impl KubeDeploymentController {
    /// A controller for Deployments in `namespace`.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        KubeDeploymentController {
            client,
            namespace: namespace.into(),
            container: None,
        }
    }

    /// A controller from the standard configuration (kubeconfig or in-cluster).
    pub async fn infer(namespace: impl Into<String>) -> Result<Self> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| kube_err("deployment.connect", e))?;
        Ok(Self::new(client, namespace))
    }

    /// A controller talking to `url` with no credentials (tests, local proxies).
    pub fn for_url(url: &str, namespace: impl Into<String>) -> Result<Self> {
        let uri: http::Uri = url.parse().map_err(|_| {
            Error::invalid_input("invalid Kubernetes API URL").with_backend(BACKEND)
        })?;
        let client = kube::Client::try_from(kube::Config::new(uri))
            .map_err(|e| kube_err("deployment.connect", e))?;
        Ok(Self::new(client, namespace))
    }

    /// The main container's name (default: the first container).
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn replicasets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn get(&self, name: &str, op: &'static str) -> Result<Deployment> {
        self.deployments()
            .get(name)
            .await
            .map_err(|e| kube_err(op, e))
    }

    /// The Deployment's ReplicaSets (by its selector, owned by it).
    async fn owned_sets(&self, d: &Deployment, op: &'static str) -> Result<Vec<ReplicaSet>> {
        let selector = d
            .spec
            .selector
            .match_labels
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let list = self
            .replicasets()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_err(op, e))?;
        Ok(list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|r| r.controller == Some(true) && r.uid == uid))
            })
            .collect())
    }

    fn main_container<'a>(
        &self,
        d: &'a Deployment,
    ) -> Option<&'a k8s_openapi::api::core::v1::Container> {
        let spec = d.spec.template.spec.as_ref()?;
        match &self.container {
            Some(n) => spec.containers.iter().find(|c| &c.name == n),
            None => spec.containers.first(),
        }
    }

    /// Proves that Deployment `name` can be read and patched, without changing it — for
    /// `flowfail check-config`.
    ///
    /// It reads the Deployment, finds the main container (the configured one, else the
    /// first), then sends the kind of patch [`DeploymentController::set_env`] sends — a
    /// strategic-merge patch of that container's `env` — as a server-side dry run
    /// (`dryRun=All`). The API server authenticates, authorizes (RBAC `patch`), runs admission
    /// (webhooks and policies included) and validates the result as for a real patch, and
    /// persists nothing. The env change is empty, so even a server that ignored `dryRun` would
    /// leave the Deployment as it was.
    ///
    /// Errors name the Deployment and what is missing: `NotFound` when there is no such
    /// Deployment in the namespace or it has no such container, `PermissionDenied` when the
    /// credentials may not `get` or `patch` it, and the kinds of the other calls otherwise.
    pub async fn check_patchable(&self, name: &str) -> Result<()> {
        const OP: &str = "deployment.check_patchable";
        let target = format!("deployment {}/{name}", self.namespace);
        let d = self
            .deployments()
            .get(name)
            .await
            .map_err(|e| self.explain(OP, e, "get", name))?;
        let container = self
            .main_container(&d)
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                let names: Vec<String> = d
                    .spec
                    .template
                    .spec
                    .as_ref()
                    .map(|p| {
                        p.containers
                            .iter()
                            .map(|c| format!("{:?}", c.name))
                            .collect()
                    })
                    .unwrap_or_default();
                let wanted = match &self.container {
                    Some(c) => format!("no container {c:?}"),
                    None => "no containers".to_owned(),
                };
                let has = if names.is_empty() {
                    String::new()
                } else {
                    format!(" (its containers: {})", names.join(", "))
                };
                Error::not_found(format!("{target} has {wanted}{has}"))
                    .with_operation(OP)
                    .with_backend(BACKEND)
            })?;
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "env": []}]}}}});
        let params = PatchParams {
            dry_run: true,
            ..patch_params()
        };
        self.deployments()
            .patch(name, &params, &Patch::Strategic(patch))
            .await
            .map_err(|e| self.explain(OP, e, "patch", name))?;
        Ok(())
    }

    /// A failed `verb` on Deployment `name`, with what to check.
    fn explain(&self, op: &'static str, e: kube::Error, verb: &str, name: &str) -> Error {
        let (code, detail) = match &e {
            kube::Error::Api(s) => (s.code, s.message.clone()),
            other => (0, other.to_string()),
        };
        let hint = match code {
            401 => " — the API server did not accept flowfail's credentials".to_owned(),
            403 => format!(
                " — the Role bound to flowfail's service account must allow {verb} on deployments (apps) named {name:?} in namespace {:?}",
                self.namespace
            ),
            404 => format!(
                " — check [kubernetes] namespace ({:?}) and deployment in the configuration",
                self.namespace
            ),
            _ => String::new(),
        };
        let message = format!(
            "cannot {verb} deployment {}/{name}: {detail}{hint}",
            self.namespace
        );
        kube_err_message(op, e, message)
    }

    /// Waits until the rollout completes or fails, up to `timeout` (polling every second).
    pub async fn wait_rollout(&self, name: &str, timeout: Duration) -> Result<RolloutStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.rollout_status(name).await?;
            if !matches!(s, RolloutStatus::Progressing { .. })
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// `kubectl rollout status`'s verdict on a Deployment.
pub fn rollout_verdict(d: &Deployment) -> RolloutStatus {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(st) = &d.status else {
        return RolloutStatus::Progressing {
            message: "Waiting for deployment spec update to be observed...".into(),
        };
    };
    if generation > st.observed_generation.unwrap_or(0) {
        return RolloutStatus::Progressing {
            message: "Waiting for deployment spec update to be observed...".into(),
        };
    }
    if st.conditions.as_ref().is_some_and(|c| {
        c.iter().any(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
    }) {
        return RolloutStatus::Failed {
            message: format!(
                "deployment {:?} exceeded its progress deadline",
                d.metadata.name.as_deref().unwrap_or("")
            ),
        };
    }
    let want = d.spec.replicas.unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    let replicas = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if updated < want {
        return RolloutStatus::Progressing {
            message: format!(
                "Waiting for deployment rollout to finish: {updated} out of {want} new replicas have been updated..."
            ),
        };
    }
    if replicas > updated {
        return RolloutStatus::Progressing {
            message: format!(
                "Waiting for deployment rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        };
    }
    if available < updated {
        return RolloutStatus::Progressing {
            message: format!(
                "Waiting for deployment rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        };
    }
    RolloutStatus::Complete
}

#[async_trait]
impl DeploymentController for KubeDeploymentController {
    async fn state(&self, name: &str) -> Result<DeploymentState> {
        let d = self.get(name, "deployment.state").await?;
        let current = revision(&d.metadata).unwrap_or(0);
        let sets = self.owned_sets(&d, "deployment.state").await?;
        let created = |rs: &ReplicaSet| {
            rs.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .and_then(|s| s.parse().ok())
        };
        let deployed_at = sets
            .iter()
            .find(|rs| revision(&rs.metadata) == Some(current))
            .and_then(created);
        let mut history: Vec<RevisionInfo> = sets
            .iter()
            .filter_map(|rs| {
                revision(&rs.metadata)
                    .filter(|r| *r < current)
                    .map(|r| RevisionInfo::new(r, created(rs)))
            })
            .collect();
        history.sort_by_key(|h| h.revision);
        let env: BTreeMap<String, String> = self
            .main_container(&d)
            .and_then(|c| c.env.as_ref())
            .map(|e| {
                e.iter()
                    .filter_map(|v| v.value.clone().map(|val| (v.name.clone(), val)))
                    .collect()
            })
            .unwrap_or_default();
        let mut s = DeploymentState::new(
            name,
            current,
            d.metadata.resource_version.clone().unwrap_or_default(),
        );
        s.deployed_at = deployed_at;
        s.env = env;
        s.paused = d.spec.paused.unwrap_or(false);
        s.gitops = flowfail_core::model::GitOpsOwner::from_metadata(
            d.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
            d.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
        );
        s.history = history;
        s.history.dedup();
        Ok(s)
    }

    async fn set_env(
        &self,
        name: &str,
        changes: &[EnvChange],
        precondition: Option<String>,
        cause: &ChangeCause,
    ) -> Result<DeploymentState> {
        let container = match &self.container {
            Some(c) => c.clone(),
            None => {
                let d = self.get(name, "deployment.set_env").await?;
                self.main_container(&d)
                    .map(|c| c.name.clone())
                    .ok_or_else(|| {
                        Error::invalid_input(format!("deployment {name} has no containers"))
                            .with_backend(BACKEND)
                    })?
            }
        };
        let env: Vec<Value> = changes
            .iter()
            .map(|c| match &c.value {
                Some(v) => json!({"name": c.name, "value": v}),
                None => json!({"name": c.name, "$patch": "delete"}),
            })
            .collect();
        let cause = change_cause(&describe_env_changes(changes), cause);
        let mut patch = json!({
            "metadata": {"annotations": {CHANGE_CAUSE: cause}},
            "spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}},
        });
        if let Some(rv) = precondition {
            patch["metadata"]["resourceVersion"] = json!(rv);
        }
        self.deployments()
            .patch(name, &patch_params(), &Patch::Strategic(patch))
            .await
            .map_err(|e| kube_err("deployment.set_env", e))?;
        self.state(name).await
    }

    async fn rollback(
        &self,
        name: &str,
        to_revision: u64,
        expected_resource_version: &str,
        cause: &ChangeCause,
    ) -> Result<DeploymentState> {
        let d = self.get(name, "deployment.rollback").await?;
        let refused = |m: String| {
            Error::refused(m)
                .with_operation("deployment.rollback")
                .with_backend(BACKEND)
        };
        if d.metadata.resource_version.as_deref() != Some(expected_resource_version) {
            return Err(Error::conflict(format!(
                "deployment {name} changed since it was read (resourceVersion {} != {expected_resource_version})",
                d.metadata.resource_version.as_deref().unwrap_or("?")
            ))
            .with_operation("deployment.rollback")
            .with_backend(BACKEND));
        }
        if d.spec.paused.unwrap_or(false) {
            return Err(refused(format!("deployment {name} is paused")));
        }
        if revision(&d.metadata) == Some(to_revision) {
            return Err(refused(format!(
                "revision {to_revision} is already the current revision"
            )));
        }
        let sets = self.owned_sets(&d, "deployment.rollback").await?;
        let Some(target) = sets
            .iter()
            .find(|rs| revision(&rs.metadata) == Some(to_revision))
        else {
            return Err(refused(format!(
                "revision {to_revision} is no longer in the history"
            )));
        };
        let mut template = serde_json::to_value(
            target
                .spec
                .template
                .clone()
                .ok_or_else(|| refused(format!("revision {to_revision} has no template")))?,
        )
        .map_err(|e| Error::new(ErrorKind::Unexpected, e.to_string()).with_backend(BACKEND))?;
        if let Some(l) = template
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            l.remove("pod-template-hash");
        }
        let cause = change_cause(&format!("roll back to revision {to_revision}"), cause);
        // `add` replaces an existing member; the annotations map itself may be missing.
        let annotate = if d.metadata.annotations.is_some() {
            json!({"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": cause})
        } else {
            json!({"op": "add", "path": "/metadata/annotations", "value": {CHANGE_CAUSE: cause}})
        };
        let ops = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": expected_resource_version},
            {"op": "replace", "path": "/metadata/resourceVersion", "value": expected_resource_version},
            annotate,
            {"op": "replace", "path": "/spec/template", "value": template},
        ]);
        let patch: json_patch::Patch = serde_json::from_value(ops)
            .map_err(|e| Error::new(ErrorKind::Unexpected, e.to_string()).with_backend(BACKEND))?;
        match self
            .deployments()
            .patch(name, &patch_params(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => self.state(name).await,
            // The API server answers a JSON Patch it cannot apply — a failed `test` among
            // them — with a 422 that names neither: read the Deployment again to tell a
            // Deployment that moved on (the fence held: conflict) from a patch that is wrong.
            Err(kube::Error::Api(s)) if s.code == 422 => {
                let now = self.get(name, "deployment.rollback").await?;
                let kind = if now.metadata.resource_version.as_deref()
                    == Some(expected_resource_version)
                {
                    ErrorKind::InvalidInput
                } else {
                    ErrorKind::Conflict
                };
                Err(Error::new(
                    kind,
                    format!(
                        "rollback patch refused ({}): deployment {name} is at resourceVersion {}, expected {expected_resource_version}",
                        s.message,
                        now.metadata.resource_version.as_deref().unwrap_or("?")
                    ),
                )
                .with_operation("deployment.rollback")
                .with_backend(BACKEND))
            }
            Err(e) => Err(kube_err("deployment.rollback", e)),
        }
    }

    async fn rollout_status(&self, name: &str) -> Result<RolloutStatus> {
        let d = self.get(name, "deployment.rollout_status").await?;
        Ok(rollout_verdict(&d))
    }
}
