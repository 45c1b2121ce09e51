//! What the API server checks before it stores an object, as far as the fake does it.
//!
//! - Decoding: the object must decode as its kind with k8s-openapi, whose types are generated
//!   from the Kubernetes OpenAPI schema: a wrong type, a missing required field or a wrong
//!   `apiVersion`/`kind` is `400 BadRequest`, as a failed decode is on a real server.
//! - Unknown fields: what decoding dropped (compared with the decoded object, field by field).
//!   With `fieldValidation=Strict` they are `400 BadRequest`, worded as the real
//!   `strict decoding error`; otherwise dropped, as a real server drops them.
//! - A few semantic rules, `422 Invalid`, worded as the real field errors: object names
//!   (DNS subdomains; path segments for RBAC objects); for Deployments and ReplicaSets, a
//!   non-empty selector that matches the template's labels, containers with a name and an
//!   image, volume mounts that name a volume of the pod, ConfigMap and Secret references (in
//!   volumes, projected volumes and env) that name something; for Roles, rules with verbs, API
//!   groups for resource rules and no non-resource URLs; for RoleBindings, a `roleRef` to a
//!   Role or ClusterRole of `rbac.authorization.k8s.io` and subjects of a known kind.
//!
//! Not done: the rest of the server's validation (quantities, ports, probes, ...), defaulting
//! beyond a Deployment's rollout fields, admission. The schema is k8s-openapi's newest
//! supported Kubernetes version, which may know a field a v1.32 server would not.

use std::collections::BTreeMap;

use axum::response::Response;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::kinds::Kind;
use super::status_with;

/// Why an object was refused.
#[derive(Debug)]
pub(super) enum Rejection {
    /// It does not decode as its kind, or (strict) has unknown fields: `400`.
    BadRequest(String),
    /// It decodes but breaks a rule: `422`.
    Invalid(Vec<FieldError>),
}

/// One field error, as the API server words it.
#[derive(Debug)]
pub(super) struct FieldError {
    field: String,
    reason: &'static str,
    message: String,
}

impl FieldError {
    fn required(field: String, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        FieldError {
            field,
            reason: "FieldValueRequired",
            message,
        }
    }

    fn invalid(field: String, value: &str, detail: &str) -> Self {
        FieldError {
            field,
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    fn not_found(field: String, value: &str) -> Self {
        FieldError {
            field,
            reason: "FieldValueNotFound",
            message: format!("Not found: \"{value}\""),
        }
    }

    fn unsupported(field: String, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldError {
            field,
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: \"{value}\": supported values: {}",
                list.join(", ")
            ),
        }
    }
}

impl Rejection {
    /// The API server's answer.
    pub(super) fn response(self, kind: &Kind, name: &str) -> Response {
        match self {
            Rejection::BadRequest(detail) => status_with(
                400,
                "BadRequest",
                format!(
                    "{k} in version \"{v}\" cannot be handled as a {k}: {detail}",
                    k = kind.kind,
                    v = kind.version
                ),
                None,
            ),
            Rejection::Invalid(errors) => {
                let each: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                let all = match each.as_slice() {
                    [one] => one.clone(),
                    many => format!("[{}]", many.join(", ")),
                };
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
                    .collect();
                status_with(
                    422,
                    "Invalid",
                    format!("{} \"{name}\" is invalid: {all}", kind.qualified_kind()),
                    Some(
                        json!({"name": name, "group": kind.group, "kind": kind.kind, "causes": causes}),
                    ),
                )
            }
        }
    }
}

fn decode<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// `obj` decoded as `kind` and encoded again: what the server keeps of it.
fn round_trip(kind: &Kind, obj: &Value) -> Result<Value, String> {
    match kind.kind {
        "Deployment" => decode::<Deployment>(obj),
        "ReplicaSet" => decode::<ReplicaSet>(obj),
        "ServiceAccount" => decode::<ServiceAccount>(obj),
        "Service" => decode::<Service>(obj),
        "ConfigMap" => decode::<ConfigMap>(obj),
        "Secret" => decode::<Secret>(obj),
        "Role" => decode::<Role>(obj),
        "NetworkPolicy" => decode::<k8s_openapi::api::networking::v1::NetworkPolicy>(obj),
        "RoleBinding" => decode::<RoleBinding>(obj),
        _ => Ok(obj.clone()),
    }
}

/// A Secret's `stringData` folded into `data` (it wins over a `data` key of the same name), as
/// the API server stores and answers it.
fn fold_string_data(secret: Value) -> Result<Value, String> {
    let mut s: Secret = serde_json::from_value(secret).map_err(|e| e.to_string())?;
    if let Some(strings) = s.string_data.take() {
        let data = s.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    serde_json::to_value(&s).map_err(|e| e.to_string())
}

/// Drops empty lists, as Go's `omitempty` does when the server encodes an object.
fn drop_empty_lists(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.as_array().is_some_and(Vec::is_empty));
            m.values_mut().for_each(drop_empty_lists);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_empty_lists),
        _ => {}
    }
}

/// The fields of `input` that `decoded` does not have, as dotted paths
/// (`spec.template.spec.containers[0].securityContex`).
fn unknown_fields(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (k, v) in i.iter().filter(|(_, v)| !v.is_null()) {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match d.get(k) {
                    Some(dv) => unknown_fields(v, dv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(d)) => {
            for (n, (iv, dv)) in i.iter().zip(d).enumerate() {
                unknown_fields(iv, dv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The object as it would be stored, or why it would be refused.
pub(super) fn admit(kind: &Kind, obj: &Value, strict: bool) -> Result<Value, Rejection> {
    let decoded = round_trip(kind, obj).map_err(Rejection::BadRequest)?;
    if strict {
        let mut unknown = Vec::new();
        unknown_fields(obj, &decoded, "", &mut unknown);
        if !unknown.is_empty() {
            let each: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(Rejection::BadRequest(format!(
                "strict decoding error: {}",
                each.join(", ")
            )));
        }
    }
    let errors = semantic(kind, &decoded);
    if !errors.is_empty() {
        return Err(Rejection::Invalid(errors));
    }
    let mut stored = if kind.kind == "Secret" {
        fold_string_data(decoded).map_err(Rejection::BadRequest)?
    } else {
        decoded
    };
    drop_empty_lists(&mut stored);
    Ok(stored)
}

/// `obj` in the form the server stores (best effort: as it is when it does not decode).
pub(super) fn canonical(kind: &Kind, obj: &Value) -> Value {
    let mut v = round_trip(kind, obj).unwrap_or_else(|_| obj.clone());
    drop_empty_lists(&mut v);
    v
}

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn semantic(kind: &Kind, o: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(o, "/metadata/name");
    let rbac = matches!(kind.kind, "Role" | "RoleBinding");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name".into(),
            "name or generateName is required",
        ));
    } else if rbac && (name == "." || name == ".." || name.contains(['/', '%'])) {
        errs.push(FieldError::invalid(
            "metadata.name".into(),
            &format!("\"{name}\""),
            "may not contain '/' or '%' and may not be '.' or '..'",
        ));
    } else if !rbac && !dns_subdomain(name) {
        errs.push(FieldError::invalid(
            "metadata.name".into(),
            &format!("\"{name}\""),
            SUBDOMAIN,
        ));
    }
    match kind.kind {
        "Deployment" | "ReplicaSet" => workload(kind, o, &mut errs),
        "Role" => role(o, &mut errs),
        "RoleBinding" => role_binding(o, &mut errs),
        _ => {}
    }
    errs
}

/// A Deployment's or ReplicaSet's selector and pod template.
fn workload(kind: &Kind, o: &Value, errs: &mut Vec<FieldError>) {
    let selector = &o["spec"]["selector"];
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty());
    let has_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    if match_labels.is_none() && !has_expressions {
        errs.push(FieldError::invalid(
            "spec.selector".into(),
            &selector.to_string(),
            &format!(
                "empty selector is invalid for {}",
                kind.resource.trim_end_matches('s')
            ),
        ));
    }
    let labels = &o["spec"]["template"]["metadata"]["labels"];
    if match_labels.is_some_and(|m| m.iter().any(|(k, v)| labels.get(k) != Some(v))) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels".into(),
            &labels.to_string(),
            "`selector` does not match template `labels`",
        ));
    }
    pod_spec(&o["spec"]["template"]["spec"], "spec.template.spec", errs);
}

/// The name a ConfigMap or Secret reference must carry.
fn reference(name: &str, field: String, errs: &mut Vec<FieldError>) {
    if name.is_empty() {
        errs.push(FieldError::required(field, ""));
    } else if !dns_subdomain(name) {
        errs.push(FieldError::invalid(
            field,
            &format!("\"{name}\""),
            SUBDOMAIN,
        ));
    }
}

fn volumes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) -> Vec<String> {
    let mut names = Vec::new();
    for (i, v) in items(spec, "volumes") {
        let p = format!("{path}.volumes[{i}]");
        names.push(str_at(v, "/name").to_owned());
        if let Some(cm) = v.get("configMap") {
            reference(str_at(cm, "/name"), format!("{p}.configMap.name"), errs);
        }
        if let Some(s) = v.get("secret") {
            reference(
                str_at(s, "/secretName"),
                format!("{p}.secret.secretName"),
                errs,
            );
        }
        for (j, src) in items(&v["projected"], "sources") {
            let sp = format!("{p}.projected.sources[{j}]");
            if let Some(cm) = src.get("configMap") {
                reference(str_at(cm, "/name"), format!("{sp}.configMap.name"), errs);
            }
            if let Some(s) = src.get("secret") {
                reference(str_at(s, "/name"), format!("{sp}.secret.name"), errs);
            }
        }
    }
    names
}

fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let volume_names = volumes(spec, path, errs);
    for list in ["initContainers", "containers"] {
        for (i, c) in items(spec, list) {
            let p = format!("{path}.{list}[{i}]");
            let name = str_at(c, "/name");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            } else if !dns_label(name) {
                errs.push(FieldError::invalid(
                    format!("{p}.name"),
                    &format!("\"{name}\""),
                    LABEL,
                ));
            }
            if str_at(c, "/image").is_empty() {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
            for (k, m) in items(c, "volumeMounts") {
                let mount = str_at(m, "/name");
                if !volume_names.iter().any(|v| v == mount) {
                    errs.push(FieldError::not_found(
                        format!("{p}.volumeMounts[{k}].name"),
                        mount,
                    ));
                }
            }
            for (k, e) in items(c, "env") {
                for (key, field) in [
                    ("secretKeyRef", "secretKeyRef"),
                    ("configMapKeyRef", "configMapKeyRef"),
                ] {
                    if let Some(r) = e.pointer(&format!("/valueFrom/{key}")) {
                        reference(
                            str_at(r, "/name"),
                            format!("{p}.env[{k}].valueFrom.{field}.name"),
                            errs,
                        );
                    }
                }
            }
        }
    }
}

fn non_empty(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn role(o: &Value, errs: &mut Vec<FieldError>) {
    for (i, r) in items(o, "rules") {
        let p = format!("rules[{i}]");
        if !non_empty(r, "verbs") {
            errs.push(FieldError::required(
                format!("{p}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        if non_empty(r, "nonResourceURLs") {
            errs.push(FieldError::invalid(
                format!("{p}.nonResourceURLs"),
                &r["nonResourceURLs"].to_string(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        } else if !non_empty(r, "resources") {
            errs.push(FieldError::required(
                format!("{p}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
        if non_empty(r, "resources") && !non_empty(r, "apiGroups") {
            errs.push(FieldError::required(
                format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
    }
}

fn role_binding(o: &Value, errs: &mut Vec<FieldError>) {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let group = str_at(o, "/roleRef/apiGroup");
    if group != RBAC {
        errs.push(FieldError::unsupported(
            "roleRef.apiGroup".into(),
            group,
            &[RBAC],
        ));
    }
    let kind = str_at(o, "/roleRef/kind");
    if !matches!(kind, "Role" | "ClusterRole") {
        errs.push(FieldError::unsupported(
            "roleRef.kind".into(),
            kind,
            &["Role", "ClusterRole"],
        ));
    }
    if str_at(o, "/roleRef/name").is_empty() {
        errs.push(FieldError::required("roleRef.name".into(), ""));
    }
    for (i, s) in items(o, "subjects") {
        let p = format!("subjects[{i}]");
        if str_at(s, "/name").is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        let group = str_at(s, "/apiGroup");
        match str_at(s, "/kind") {
            "ServiceAccount" if !group.is_empty() => errs.push(FieldError::unsupported(
                format!("{p}.apiGroup"),
                group,
                &[""],
            )),
            "User" | "Group" if group != RBAC => errs.push(FieldError::unsupported(
                format!("{p}.apiGroup"),
                group,
                &[RBAC],
            )),
            "ServiceAccount" | "User" | "Group" => {}
            other => errs.push(FieldError::unsupported(
                format!("{p}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::kinds;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "flowfail"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "env": [],
                        "securityContext": {"readOnlyRootFilesystem": true}}]}}}})
    }

    fn kind(k: &str) -> &'static Kind {
        kinds::KINDS.iter().find(|x| x.kind == k).unwrap()
    }

    #[test]
    fn unknown_fields_are_named_by_path_and_refused_only_when_strict() {
        let d = kind("Deployment");
        let stored = admit(d, &deployment(), true).unwrap();
        assert!(
            stored["spec"]["template"]["spec"]["containers"][0]
                .get("env")
                .is_none(),
            "an empty list is not kept"
        );
        let mut typo = deployment();
        typo["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
            json!({"readOnlyRootFilesytem": true});
        typo["spec"]["replica"] = json!(1);
        match admit(d, &typo, true) {
            Err(Rejection::BadRequest(m)) => assert_eq!(
                m,
                "strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem\""
            ),
            other => panic!("{other:?}"),
        }
        let lax = admit(d, &typo, false).unwrap();
        assert!(lax["spec"].get("replica").is_none(), "dropped");
    }

    #[test]
    fn types_and_rules_are_checked() {
        let d = kind("Deployment");
        let mut wrong = deployment();
        wrong["spec"]["replicas"] = json!("two");
        assert!(matches!(
            admit(d, &wrong, false),
            Err(Rejection::BadRequest(_))
        ));
        let mut mount = deployment();
        mount["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "cfg", "mountPath": "/etc/x"}]);
        mount["metadata"]["name"] = json!("Flow_Fail");
        match admit(d, &mount, true) {
            Err(Rejection::Invalid(errs)) => {
                let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(
                    fields,
                    [
                        "metadata.name",
                        "spec.template.spec.containers[0].volumeMounts[0].name"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "eA=="}, "stringData": {"a": "y", "b": "z"}});
        let stored = admit(kind("Secret"), &secret, true).unwrap();
        assert_eq!(stored["data"], json!({"a": "eQ==", "b": "eg=="}));
        assert!(stored.get("stringData").is_none());
    }
}
