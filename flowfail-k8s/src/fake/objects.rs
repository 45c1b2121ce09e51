//! Resource requests: get, list, watch, create and patch of every served kind, through one
//! entry point that authorizes first, as the API server's filter chain does.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::kinds::{self, Kind};
use super::patch::{self, PatchFailure};
use super::validate;
use super::{Shared, answer, lock, log_request, ok, rbac, status, status_with};

/// A resource request, parsed.
struct Request<'a> {
    kind: &'static Kind,
    ns: &'a str,
    name: Option<&'a str>,
    query: &'a BTreeMap<String, String>,
}

/// Every `/api/{version}/namespaces/{ns}/{resource}[/{name}]` and
/// `/apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}]` request.
pub(super) async fn request(
    State(s): State<Shared>,
    method: Method,
    Path(p): Path<HashMap<String, String>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let group = p.get("group").map_or("", String::as_str);
    let (Some(version), Some(ns), Some(resource)) =
        (p.get("version"), p.get("ns"), p.get("resource"))
    else {
        return not_served();
    };
    let Some(kind) = kinds::find(group, version, resource) else {
        log_request(&s, format!("UNHANDLED {method} {resource}"));
        return not_served();
    };
    let name = p.get("name").map(String::as_str);
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if watch => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, None) => "create",
        (&Method::PATCH, Some(_)) => "patch",
        _ => return method_not_allowed(),
    };
    if !kind.verbs.contains(&verb) {
        return method_not_allowed();
    }
    // A list or watch of one object by name is authorized for that name, as RBAC does.
    let authorized_name = name.or_else(|| {
        query
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
    });
    if let Some(denied) = rbac::authorize(&s, verb, kind, ns, authorized_name) {
        return denied;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let r = Request {
        kind,
        ns,
        name,
        query: &query,
    };
    match verb {
        "get" => get(&s, &r),
        "list" | "watch" => list(&s, &r, watch),
        "create" => create(&s, &r, &body),
        _ => {
            let answer = patch(&s, &r, content_type, &body);
            let hold = (kind.kind == "Deployment"
                && answer.status().is_success()
                && !dry_run(&query).unwrap_or(true))
            .then(|| lock(&s).hold_next_patch_reply.take())
            .flatten();
            if let Some(d) = hold {
                tokio::time::sleep(d).await;
            }
            answer
        }
    }
}

/// `/apis/{group}/{version}/{resource}`: of the cluster-scoped resources, only the list of
/// CustomResourceDefinitions, always empty. kubectl reads it when it meets a kind it finds no
/// OpenAPI document for (a wrong apiVersion): a custom resource would be listed there.
pub(super) async fn cluster_request(
    State(s): State<Shared>,
    method: Method,
    Path((group, version, resource)): Path<(String, String, String)>,
) -> Response {
    if method != Method::GET
        || (group.as_str(), version.as_str(), resource.as_str())
            != ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    {
        log_request(
            &s,
            format!("UNHANDLED {method} {group}/{version}/{resource}"),
        );
        return not_served();
    }
    log_request(&s, format!("LIST {resource}"));
    let rv = lock(&s).rv.to_string();
    ok(
        json!({"kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1",
        "metadata": {"resourceVersion": rv}, "items": []}),
    )
}

fn not_served() -> Response {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
    )
}

fn method_not_allowed() -> Response {
    status(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource".into(),
    )
}

fn not_found(kind: &Kind, name: &str) -> Response {
    status_with(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", kind.qualified()),
        Some(json!({"name": name, "group": kind.group, "kind": kind.resource})),
    )
}

/// The API server's answer to a JSON Patch it could not apply (a failed `test` among them).
fn json_patch_rejected() -> Response {
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "the server rejected our request due to an error in our request",
               "reason": "Invalid", "details": {}, "code": 422}),
    )
}

fn conflict(kind: &Kind, name: &str) -> Response {
    status_with(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            kind.qualified()
        ),
        Some(json!({"name": name, "group": kind.group, "kind": kind.resource})),
    )
}

/// `dryRun`: absent (a real write) or `All` (nothing is stored); anything else is refused
/// (`400`, with this message).
fn dry_run(query: &BTreeMap<String, String>) -> Result<bool, String> {
    match query.get("dryRun").map(String::as_str) {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(format!(
            "Invalid dry run value: \"{other}\": supported values: \"All\""
        )),
    }
}

fn bad_request(message: String) -> Response {
    status(400, "BadRequest", message)
}

/// `fieldValidation=Strict`: an unknown field is an error, not a dropped field.
fn strict(query: &BTreeMap<String, String>) -> bool {
    query.get("fieldValidation").map(String::as_str) == Some("Strict")
}

/// Records a write and its field manager.
fn record_write(s: &Shared, verb: &str, r: &Request<'_>, name: &str, dry: bool) {
    lock(s).writes.push(super::Write {
        verb: verb.to_owned(),
        resource: r.kind.resource.to_owned(),
        namespace: r.ns.to_owned(),
        name: name.to_owned(),
        field_manager: r.query.get("fieldManager").cloned(),
        dry_run: dry,
    });
}

/// The `managedFields` entry of this request's field manager (`operation: Update`), replacing
/// the manager's previous one, as the API server keeps them (the field sets are left empty).
fn manage(obj: &mut Value, r: &Request<'_>) {
    let manager = r
        .query
        .get("fieldManager")
        .map_or("unknown", String::as_str);
    let entry = json!({"manager": manager, "operation": "Update",
        "apiVersion": r.kind.api_version(),
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "fieldsType": "FieldsV1", "fieldsV1": {}});
    let mut entries: Vec<Value> = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| e["manager"].as_str() != Some(manager));
    entries.push(entry);
    obj["metadata"]["managedFields"] = Value::Array(entries);
}

fn get(s: &Shared, r: &Request<'_>) -> Response {
    let name = r.name.unwrap_or_default();
    log_request(s, format!("GET {}/{name}", r.kind.resource));
    let c = lock(s);
    match c
        .stored(r.kind.resource)
        .and_then(|st| st.get(&(r.ns.to_owned(), name.to_owned())))
    {
        Some(o) => ok(o.clone()),
        None => not_found(r.kind, name),
    }
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

fn list(s: &Shared, r: &Request<'_>, watch: bool) -> Response {
    log_request(s, format!("LIST {} {:?}", r.kind.resource, r.query));
    let c = lock(s);
    let wanted = r
        .query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="));
    let labels = r.query.get("labelSelector").map_or("", String::as_str);
    let items: Vec<Value> = c
        .stored(r.kind.resource)
        .map(|st| {
            st.iter()
                .filter(|((n, name), o)| {
                    n == r.ns
                        && wanted.is_none_or(|w| w == name)
                        && selector_matches(&o["metadata"]["labels"], labels)
                })
                .map(|(_, o)| o.clone())
                .collect()
        })
        .unwrap_or_default();
    let rv = c.rv.to_string();
    drop(c);
    if watch {
        // One event per object, then the stream ends (clients re-list and watch again).
        let body: String = items
            .iter()
            .map(|o| format!("{}\n", json!({"type": "ADDED", "object": o})))
            .collect();
        return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
    }
    ok(
        json!({"kind": format!("{}List", r.kind.kind), "apiVersion": r.kind.api_version(),
        "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

/// The apiVersion, kind and namespace of a created object must be those of its URL (else
/// `400`, with this message).
fn check_identity(r: &Request<'_>, obj: &mut Value) -> Result<(), String> {
    let bad = |m: String| Err(m);
    let want = r.kind.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == want => {}
        v => {
            return bad(format!(
                "the API version in the data ({}) does not match the expected API version ({want})",
                v.unwrap_or_default()
            ));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k == r.kind.kind => {}
        k => {
            return bad(format!(
                "the kind in the data ({}) does not match the expected kind ({})",
                k.unwrap_or_default(),
                r.kind.kind
            ));
        }
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(n) if n != r.ns => bad(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ),
        Some(_) => Ok(()),
        None => {
            obj["metadata"]["namespace"] = json!(r.ns);
            Ok(())
        }
    }
}

/// The API server's defaults for a new Deployment (the ones the fake's controller reads).
fn default_deployment(d: &mut Value) {
    let spec = &mut d["spec"];
    for (key, value) in [
        ("replicas", json!(1)),
        ("revisionHistoryLimit", json!(10)),
        ("progressDeadlineSeconds", json!(600)),
        (
            "strategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
        ),
    ] {
        if spec.get(key).is_none_or(Value::is_null) {
            spec[key] = value;
        }
    }
}

fn create(s: &Shared, r: &Request<'_>, body: &[u8]) -> Response {
    log_request(s, format!("POST {} {:?}", r.kind.resource, r.query));
    let dry = match dry_run(r.query) {
        Ok(d) => d,
        Err(e) => return bad_request(e),
    };
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON".into());
    };
    let named = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    record_write(s, "create", r, &named, dry);
    if let Err(e) = check_identity(r, &mut obj) {
        return bad_request(e);
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if r.kind.kind == "Deployment" {
        default_deployment(&mut obj);
    }
    let mut obj = match validate::admit(r.kind, &obj, strict(r.query)) {
        Ok(o) => o,
        Err(e) => return e.response(r.kind, &name),
    };
    let mut c = lock(s);
    let key = (r.ns.to_owned(), name.clone());
    if c.store(r.kind.resource).contains_key(&key) {
        return status_with(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", r.kind.qualified()),
            Some(json!({"name": name, "group": r.kind.group, "kind": r.kind.resource})),
        );
    }
    let meta = &mut obj["metadata"];
    meta["uid"] = json!(format!("uid-{}-{name}", r.ns));
    meta["creationTimestamp"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    if r.kind.kind == "Deployment" {
        obj["metadata"]["generation"] = json!(1);
        obj["status"] = json!({});
    }
    manage(&mut obj, r);
    if dry {
        // As the API server answers a dry-run create: the object as it would be stored,
        // without a resourceVersion (none was used up).
        return answer(StatusCode::CREATED, obj);
    }
    obj["metadata"]["resourceVersion"] = json!(c.next_rv());
    c.store(r.kind.resource).insert(key.clone(), obj.clone());
    if r.kind.kind == "Deployment" {
        c.reconcile(r.ns, &name);
    }
    let stored = c
        .stored(r.kind.resource)
        .and_then(|st| st.get(&key))
        .cloned()
        .unwrap_or(obj);
    answer(StatusCode::CREATED, stored)
}

fn patch(s: &Shared, r: &Request<'_>, content_type: &str, body: &[u8]) -> Response {
    let name = r.name.unwrap_or_default();
    log_request(
        s,
        format!(
            "PATCH {}/{name} {:?} {content_type}",
            r.kind.resource, r.query
        ),
    );
    let dry = match dry_run(r.query) {
        Ok(d) => d,
        Err(e) => return bad_request(e),
    };
    record_write(s, "patch", r, name, dry);
    let mut c = lock(s);
    c.before_patch();
    let key = (r.ns.to_owned(), name.to_owned());
    let Some(current) = c
        .stored(r.kind.resource)
        .and_then(|st| st.get(&key))
        .cloned()
    else {
        return not_found(r.kind, name);
    };
    let mut next = match patch::apply(content_type, &current, body) {
        Ok(n) => n,
        Err(PatchFailure::BadRequest(m)) => return status(400, "BadRequest", m),
        // As the API server answers a JSON Patch that does not apply, a failed `test`
        // included: 422 Invalid with a fixed message and empty details, naming neither the
        // operation nor the object (apiserver's jsonPatcher: NewGenericServerResponse(422)).
        Err(PatchFailure::JsonPatchRejected) => return json_patch_rejected(),
        Err(PatchFailure::UnsupportedMediaType(m)) => {
            return status(415, "UnsupportedMediaType", m);
        }
    };
    // Optimistic concurrency: a resourceVersion in the patched object must be the current one.
    let have = current.pointer("/metadata/resourceVersion");
    if next
        .pointer("/metadata/resourceVersion")
        .is_some_and(|want| Some(want) != have)
    {
        return conflict(r.kind, name);
    }
    if next == current {
        return ok(current);
    }
    next = match validate::admit(r.kind, &next, strict(r.query)) {
        Ok(n) => n,
        Err(e) => return e.response(r.kind, name),
    };
    // Compared as stored: objects seeded by the test helpers may not be in canonical form.
    let before = validate::canonical(r.kind, &current);
    if next == before {
        return ok(current);
    }
    if next["spec"] != before["spec"]
        && let Some(g) = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
    {
        next["metadata"]["generation"] = json!(g + 1);
    }
    manage(&mut next, r);
    if dry {
        // As the API server answers a dry-run patch: the object as it would be stored, with
        // the resourceVersion it has now; nothing stored, no controller reacts.
        next["metadata"]["resourceVersion"] = have.cloned().unwrap_or(Value::Null);
        return ok(next);
    }
    next["metadata"]["resourceVersion"] = json!(c.next_rv());
    c.store(r.kind.resource).insert(key.clone(), next.clone());
    if r.kind.kind == "Deployment" {
        c.reconcile(r.ns, name);
    }
    ok(c.stored(r.kind.resource)
        .and_then(|st| st.get(&key))
        .cloned()
        .unwrap_or(next))
}
