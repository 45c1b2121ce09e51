//! Deployment state: revisions, rollout status, env changes and their recorded cause.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Timestamp, one_line};

/// One revision of a Deployment that can be rolled back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RevisionInfo {
    /// The revision number (`deployment.kubernetes.io/revision`).
    pub revision: u64,
    /// When it was deployed, when known.
    #[serde(default)]
    pub deployed_at: Option<Timestamp>,
}

impl RevisionInfo {
    /// A revision deployed at a known time.
    pub fn new(revision: u64, deployed_at: Option<Timestamp>) -> Self {
        RevisionInfo {
            revision,
            deployed_at,
        }
    }
}

/// The state of the FlowEngine Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeploymentState {
    /// Deployment name.
    pub name: String,
    /// Current revision.
    pub revision: u64,
    /// When the current revision was deployed, when known.
    #[serde(default)]
    pub deployed_at: Option<Timestamp>,
    /// Opaque version of the object (Kubernetes resourceVersion); changes on every write.
    pub resource_version: String,
    /// The main container's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Whether rollouts are paused.
    #[serde(default)]
    pub paused: bool,
    /// Older revisions still available for rollback, any order.
    #[serde(default)]
    pub history: Vec<RevisionInfo>,
    /// The GitOps controller that owns the Deployment, when its labels or annotations say so:
    /// flowfail's changes are reverted by its next sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitOpsOwner>,
}

impl DeploymentState {
    /// A Deployment at `revision` with `resource_version`; no env, not paused, no history
    /// (adapters fill in the rest).
    pub fn new(
        name: impl Into<String>,
        revision: u64,
        resource_version: impl Into<String>,
    ) -> Self {
        DeploymentState {
            name: name.into(),
            revision,
            deployed_at: None,
            resource_version: resource_version.into(),
            env: BTreeMap::new(),
            paused: false,
            history: Vec::new(),
            gitops: None,
        }
    }

    /// The newest revision older than the current one, if any.
    pub fn previous_revision(&self) -> Option<u64> {
        self.history
            .iter()
            .map(|r| r.revision)
            .filter(|r| *r < self.revision)
            .max()
    }
}

/// A GitOps controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GitOpsTool {
    /// Argo CD (an Application).
    ArgoCd,
    /// Flux (a Kustomization or a HelmRelease).
    Flux,
}

impl GitOpsTool {
    /// Its name for people.
    pub fn as_str(self) -> &'static str {
        match self {
            GitOpsTool::ArgoCd => "Argo CD",
            GitOpsTool::Flux => "Flux",
        }
    }
}

/// The GitOps controller that owns a Deployment, and its object there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GitOpsOwner {
    /// Which controller.
    pub tool: GitOpsTool,
    /// Its object: the Argo CD application, or Flux's `kustomization NS/NAME` or `helmrelease
    /// NS/NAME` (as the labels say; sanitized).
    pub name: String,
}

impl GitOpsOwner {
    /// An owner.
    pub fn new(tool: GitOpsTool, name: impl Into<String>) -> Self {
        GitOpsOwner {
            tool,
            name: crate::text::clean_text(&name.into())
                .chars()
                .take(120)
                .collect(),
        }
    }

    /// The owner the Deployment's metadata names, if any: Argo CD's tracking annotation
    /// (`argocd.argoproj.io/tracking-id`, `APP:GROUP/KIND:NS/NAME`) or instance label
    /// (`argocd.argoproj.io/instance`); Flux's labels (`kustomize.toolkit.fluxcd.io/name` and
    /// `…/namespace`, `helm.toolkit.fluxcd.io/name` and `…/namespace`), unless reconciling is
    /// disabled for it (`kustomize.toolkit.fluxcd.io/reconcile: disabled`). Helm's and
    /// Kubernetes' own `app.kubernetes.io/instance` alone names no controller.
    pub fn from_metadata(
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Option<Self> {
        if let Some(id) = annotations.get("argocd.argoproj.io/tracking-id") {
            let app = id.split(':').next().unwrap_or(id);
            return Some(GitOpsOwner::new(GitOpsTool::ArgoCd, app));
        }
        if let Some(app) = labels.get("argocd.argoproj.io/instance") {
            return Some(GitOpsOwner::new(GitOpsTool::ArgoCd, app.as_str()));
        }
        let disabled = annotations
            .get("kustomize.toolkit.fluxcd.io/reconcile")
            .is_some_and(|v| v == "disabled");
        for (group, kind) in [
            ("kustomize.toolkit.fluxcd.io", "kustomization"),
            ("helm.toolkit.fluxcd.io", "helmrelease"),
        ] {
            if let Some(name) = labels.get(&format!("{group}/name"))
                && !disabled
            {
                let ns = labels
                    .get(&format!("{group}/namespace"))
                    .map_or(String::new(), |n| format!("{n}/"));
                return Some(GitOpsOwner::new(
                    GitOpsTool::Flux,
                    format!("{kind} {ns}{name}"),
                ));
            }
        }
        None
    }

    /// `Argo CD (application flowengine)` or `Flux (kustomization apps/flowengine)`.
    pub fn describe(&self) -> String {
        match self.tool {
            GitOpsTool::ArgoCd => format!("Argo CD (application {})", self.name),
            _ => format!("{} ({})", self.tool.as_str(), self.name),
        }
    }
}

#[cfg(test)]
mod gitops_tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_owner_is_read_from_argo_and_flux_metadata_and_helm_alone_is_none() {
        let none = BTreeMap::new();
        let argo = GitOpsOwner::from_metadata(
            &none,
            &map(&[(
                "argocd.argoproj.io/tracking-id",
                "flowengine:apps/Deployment:default/flowengine",
            )]),
        );
        assert_eq!(
            argo.map(|o| o.describe()).as_deref(),
            Some("Argo CD (application flowengine)")
        );
        let label =
            GitOpsOwner::from_metadata(&map(&[("argocd.argoproj.io/instance", "fe")]), &none);
        assert_eq!(label.map(|o| o.tool), Some(GitOpsTool::ArgoCd));
        let flux = map(&[
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
            ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
        ]);
        assert_eq!(
            GitOpsOwner::from_metadata(&flux, &none)
                .map(|o| o.describe())
                .as_deref(),
            Some("Flux (kustomization flux-system/apps)")
        );
        let off = map(&[("kustomize.toolkit.fluxcd.io/reconcile", "disabled")]);
        assert_eq!(GitOpsOwner::from_metadata(&flux, &off), None);
        let helm = map(&[
            ("app.kubernetes.io/instance", "flowengine"),
            ("app.kubernetes.io/managed-by", "Helm"),
        ]);
        assert_eq!(GitOpsOwner::from_metadata(&helm, &none), None);
        let hostile = map(&[("argocd.argoproj.io/instance", "a\u{202e}b\nc")]);
        let o = GitOpsOwner::from_metadata(&hostile, &none).unwrap();
        assert!(
            !o.name.contains('\n') && !o.name.contains('\u{202e}'),
            "{o:?}"
        );
    }
}

/// Progress of a rollout, judged as `kubectl rollout status` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RolloutStatus {
    /// All replicas updated and available.
    Complete,
    /// Still rolling out.
    Progressing {
        /// What it is waiting for.
        message: String,
    },
    /// The rollout failed (`ProgressDeadlineExceeded`).
    Failed {
        /// Why.
        message: String,
    },
}

/// One change to the Deployment's environment: set `name` to `value`, or unset it when `value` is
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnvChange {
    /// Variable name.
    pub name: String,
    /// New value, or `None` to unset.
    pub value: Option<String>,
}

impl EnvChange {
    /// Sets `name=value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvChange {
            name: name.into(),
            value: Some(value.into()),
        }
    }
    /// Unsets `name`.
    pub fn unset(name: impl Into<String>) -> Self {
        EnvChange {
            name: name.into(),
            value: None,
        }
    }
}

/// Why flowfail changes the Deployment: the incident it acts for and the action's purpose.
/// Every mutation carries its own ([`crate::DeploymentController::set_env`],
/// [`crate::DeploymentController::rollback`]), and the adapter records it with the change where
/// people look for why (Kubernetes: the `kubernetes.io/change-cause` annotation that
/// `kubectl rollout history` shows).
///
/// The text is cleaned when the value is built (see [`one_line`]): one line, the incident key
/// at most [`ChangeCause::MAX_INCIDENT`] bytes, the purpose at most
/// [`ChangeCause::MAX_PURPOSE`]. Its [`Display`](fmt::Display) is `incident <key>: <purpose>`,
/// or whichever of the two it has.
///
/// ```
/// use flowfail_core::ChangeCause;
/// let c = ChangeCause::for_incident("flowengine-20251113T1000Z", "quota 91% above 85%:\nenable circuit breaker");
/// assert_eq!(c.incident(), Some("flowengine-20251113T1000Z"));
/// assert_eq!(c.to_string(), "incident flowengine-20251113T1000Z: quota 91% above 85%: enable circuit breaker");
/// assert_eq!(ChangeCause::default().to_string(), "");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ChangeCause {
    incident: Option<String>,
    purpose: String,
}

impl ChangeCause {
    /// The longest incident key kept, in bytes.
    pub const MAX_INCIDENT: usize = 128;
    /// The longest purpose kept, in bytes.
    pub const MAX_PURPOSE: usize = 512;

    /// A change made for `purpose`, outside any incident (a test, an operator's tool).
    pub fn new(purpose: &str) -> Self {
        ChangeCause {
            incident: None,
            purpose: one_line(purpose, Self::MAX_PURPOSE),
        }
    }

    /// A change made for `purpose` while responding to incident `key`.
    pub fn for_incident(key: &str, purpose: &str) -> Self {
        let key = one_line(key, Self::MAX_INCIDENT);
        ChangeCause {
            incident: (!key.is_empty()).then_some(key),
            purpose: one_line(purpose, Self::MAX_PURPOSE),
        }
    }

    /// The incident the change is made for.
    pub fn incident(&self) -> Option<&str> {
        self.incident.as_deref()
    }

    /// What the change is for (may be empty).
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// Neither an incident nor a purpose: the change says only what it does.
    pub fn is_empty(&self) -> bool {
        self.incident.is_none() && self.purpose.is_empty()
    }
}

impl fmt::Display for ChangeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.incident, self.purpose.as_str()) {
            (Some(k), "") => write!(f, "incident {k}"),
            (Some(k), p) => write!(f, "incident {k}: {p}"),
            (None, p) => f.write_str(p),
        }
    }
}
