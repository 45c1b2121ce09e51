//! RBAC for one user bound to one Role: the rule matching of Kubernetes' RBAC authorizer
//! (group, resource, verb, and `resourceNames` only for requests that name an object), and its
//! `403 Forbidden` wording.

use serde_json::{Value, json};

use super::kinds::Kind;
use super::{Access, Shared, lock, status_with};

/// The Role the fake enforces, and who it is bound to.
#[derive(Debug, Clone)]
pub(super) struct EnforcedRole {
    user: String,
    namespace: String,
    rules: Vec<Value>,
}

impl EnforcedRole {
    /// From a Role object: `metadata.namespace` (default `default`) and `rules` (none: nothing
    /// is allowed).
    pub(super) fn new(user: &str, role: &Value) -> Self {
        EnforcedRole {
            user: user.to_owned(),
            namespace: role
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned(),
            rules: role
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn allows(&self, verb: &str, kind: &Kind, ns: &str, name: Option<&str>) -> bool {
        ns == self.namespace
            && self
                .rules
                .iter()
                .any(|r| rule_allows(r, verb, kind.group, kind.resource, name))
    }
}

/// Whether `list` (a rule's field) holds `item` or `*`.
fn holds(rule: &Value, field: &str, item: &str) -> bool {
    rule.get(field)
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|v| v == item || v == "*"))
}

/// One PolicyRule against one request. A rule with `resourceNames` matches only requests that
/// name one of them: never a create, nor a list without a `metadata.name` field selector.
fn rule_allows(rule: &Value, verb: &str, group: &str, resource: &str, name: Option<&str>) -> bool {
    let names = rule
        .get("resourceNames")
        .and_then(Value::as_array)
        .filter(|n| !n.is_empty());
    holds(rule, "apiGroups", group)
        && holds(rule, "resources", resource)
        && holds(rule, "verbs", verb)
        && names.is_none_or(|n| name.is_some_and(|name| n.iter().any(|v| v == name)))
}

/// Records the request and, when a Role is enforced and does not allow it, answers `403` as
/// the API server does.
pub(super) fn authorize(
    s: &Shared,
    verb: &str,
    kind: &Kind,
    ns: &str,
    name: Option<&str>,
) -> Option<axum::response::Response> {
    let mut c = lock(s);
    let denied_to = c
        .role
        .as_ref()
        .filter(|r| !r.allows(verb, kind, ns, name))
        .map(|r| r.user.clone());
    c.accesses.push(Access {
        verb: verb.to_owned(),
        group: kind.group.to_owned(),
        resource: kind.resource.to_owned(),
        namespace: ns.to_owned(),
        name: name.map(str::to_owned),
        allowed: denied_to.is_none(),
    });
    let user = denied_to?;
    let what = match name {
        Some(n) => format!("{} \"{n}\"", kind.qualified()),
        None => kind.qualified(),
    };
    Some(status_with(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" in the namespace \"{ns}\"",
            kind.resource, kind.group
        ),
        Some(json!({"name": name.unwrap_or_default(), "group": kind.group, "kind": kind.resource})),
    ))
}
