//! The kinds the fake serves, and everything derived from that one table: discovery, the
//! OpenAPI documents kubectl reads before it writes, and `/version`.
//!
//! The OpenAPI v3 documents hold only what kubectl looks for in them: for each kind, the PATCH
//! operation of its object path, tagged with `x-kubernetes-group-version-kind` and listing the
//! `dryRun` and `fieldValidation` query parameters. Finding `fieldValidation` there is how
//! kubectl learns that the server validates fields itself; it then sends
//! `fieldValidation=Strict` and leaves the validation to the server (`validate.rs`). No
//! schemas are served, so `kubectl apply` computes its three-way patches from the types
//! compiled into kubectl, as it does for any built-in kind when the schema is missing.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{hash, ok, status};

/// One kind the fake serves.
#[derive(Debug)]
pub(super) struct Kind {
    /// API group, `""` for the core group.
    pub(super) group: &'static str,
    pub(super) version: &'static str,
    /// Plural resource name, as in the URL.
    pub(super) resource: &'static str,
    pub(super) kind: &'static str,
    short_names: &'static [&'static str],
    /// The RBAC verbs the fake serves for it.
    pub(super) verbs: &'static [&'static str],
}

const READ_WRITE: &[&str] = &["create", "get", "list", "patch", "watch"];
const READ_ONLY: &[&str] = &["get", "list", "watch"];

/// Every kind served. The core group first, then by group.
pub(super) const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        resource: "configmaps",
        kind: "ConfigMap",
        short_names: &["cm"],
        verbs: READ_WRITE,
    },
    Kind {
        group: "",
        version: "v1",
        resource: "secrets",
        kind: "Secret",
        short_names: &[],
        verbs: READ_WRITE,
    },
    Kind {
        group: "",
        version: "v1",
        resource: "services",
        kind: "Service",
        short_names: &["svc"],
        verbs: READ_WRITE,
    },
    Kind {
        group: "",
        version: "v1",
        resource: "serviceaccounts",
        kind: "ServiceAccount",
        short_names: &["sa"],
        verbs: READ_WRITE,
    },
    Kind {
        group: "apps",
        version: "v1",
        resource: "deployments",
        kind: "Deployment",
        short_names: &["deploy"],
        verbs: READ_WRITE,
    },
    Kind {
        group: "apps",
        version: "v1",
        resource: "replicasets",
        kind: "ReplicaSet",
        short_names: &["rs"],
        verbs: READ_ONLY,
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        resource: "networkpolicies",
        kind: "NetworkPolicy",
        short_names: &["netpol"],
        verbs: READ_WRITE,
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "roles",
        kind: "Role",
        short_names: &[],
        verbs: READ_WRITE,
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "rolebindings",
        kind: "RoleBinding",
        short_names: &[],
        verbs: READ_WRITE,
    },
];

impl Kind {
    /// `apps/v1`, or `v1` for the core group: an object's `apiVersion`.
    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `secrets` for the core group: the resource as the API server
    /// names it in messages.
    pub(super) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Deployment.apps`, or `Secret`: the kind as validation errors name it.
    pub(super) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `api/v1` or `apis/apps/v1`: the URL prefix of the group version.
    fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }
}

/// The kind served at `group`/`version`/`resource`.
pub(super) fn find(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// `/version`: a v1.32 server, marked as the fake.
pub(super) async fn version() -> Response {
    ok(
        json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-flowfail-fake",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "", "compiler": "gc", "platform": "linux/amd64"}),
    )
}

pub(super) async fn api_versions() -> Response {
    ok(
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
    )
}

/// The served groups in order, each once.
fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS.iter().filter(|k| !k.group.is_empty()) {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

pub(super) async fn api_groups() -> Response {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

/// The `APIResourceList` of a group version, or `None` when it is not served.
fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            json!({"name": k.resource, "singularName": k.kind.to_lowercase(), "namespaced": true,
                "kind": k.kind, "verbs": k.verbs, "shortNames": k.short_names})
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    // Listed as before the table existed; kubectl looks for them, nothing serves them.
    match group {
        "" => resources.push(json!({"name": "namespaces", "singularName": "namespace",
            "namespaced": false, "kind": "Namespace", "verbs": ["get", "list"]})),
        "apps" => resources.push(json!({"name": "deployments/status", "singularName": "",
            "namespaced": true, "kind": "Deployment", "verbs": ["get", "patch", "update"]})),
        _ => {}
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
        "resources": resources}),
    )
}

fn not_found() -> Response {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
    )
}

pub(super) async fn core_resources(Path(version): Path<String>) -> Response {
    resource_list("", &version).map_or_else(not_found, ok)
}

pub(super) async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    resource_list(&group, &version).map_or_else(not_found, ok)
}

/// The OpenAPI v3 document of one group version (`api/v1`, `apis/apps/v1`).
fn openapi_document(prefix: &str) -> Option<Value> {
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let patch = |group: &str, version: &str, kind: &str| {
        json!({"patch": {
            "operationId": format!("patch{version}{kind}"),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
            "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
            "responses": {"200": {"description": "OK"}}
        }})
    };
    let mut paths = serde_json::Map::new();
    for k in KINDS.iter().filter(|k| k.prefix() == prefix) {
        paths.insert(
            format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", k.resource),
            patch(k.group, k.version, k.kind),
        );
    }
    if paths.is_empty() {
        return None;
    }
    if prefix == "api/v1" {
        // Not served, but kubectl reads it: for a kind it finds no document for (a wrong
        // apiVersion, a custom resource), whether Namespace patches take `fieldValidation`
        // tells it whether the server validates fields, before it looks the kind up.
        paths.insert(
            "/api/v1/namespaces/{name}".into(),
            patch("", "v1", "Namespace"),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths}),
    )
}

/// `/openapi/v2`: a protobuf OpenAPI v2 document that says `swagger: "2.0"` and defines
/// nothing. kubectl reads it for kinds the v3 documents do not show field validation for — on
/// a real server, kinds it does not know (a wrong apiVersion) — and, finding no schema for
/// them, skips client-side validation and goes on to map the kind, which fails with kubectl's
/// own "no matches for kind" error, as against a real server.
pub(super) async fn openapi_v2() -> Response {
    // Field 1 (`swagger`), length-delimited, "2.0".
    let body: &[u8] = b"\x0a\x032.0";
    (
        axum::http::StatusCode::OK,
        [(
            "content-type",
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )],
        body,
    )
        .into_response()
}

pub(super) async fn openapi_index() -> Response {
    let mut prefixes: Vec<String> = KINDS.iter().map(Kind::prefix).collect();
    prefixes.dedup();
    let paths: serde_json::Map<String, Value> = prefixes
        .into_iter()
        .filter_map(|p| {
            let doc = openapi_document(&p)?;
            let url = format!("/openapi/v3/{p}?hash={}", hash(&doc).to_uppercase());
            Some((p, json!({"serverRelativeURL": url})))
        })
        .collect();
    ok(json!({"paths": paths}))
}

pub(super) async fn openapi_group_version(Path(path): Path<String>) -> Response {
    openapi_document(path.trim_matches('/')).map_or_else(not_found, ok)
}
