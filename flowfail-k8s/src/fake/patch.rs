//! The three patch types a client may send: strategic merge (for the lists a pod template
//! has, merged by their keys), JSON merge (RFC 7386) and JSON Patch (RFC 6902, via json-patch).

use serde_json::{Value, json};

/// Strategic merge for the lists a Deployment's pod template has, merged by their keys.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

pub(super) fn strategic_merge(target: &mut Value, patch: &Value) {
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

pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
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

/// Why a patch could not be applied.
#[derive(Debug)]
pub(super) enum PatchFailure {
    /// The body is not a patch of its type (`400`).
    BadRequest(String),
    /// A JSON Patch that does not apply, a failed `test` operation included (`422` with the API
    /// server's fixed message, naming neither the operation nor the object).
    JsonPatchRejected,
    /// An unknown patch content type (`415`).
    UnsupportedMediaType(String),
}

/// `target` with `body` applied as a patch of `content_type`.
pub(super) fn apply(
    content_type: &str,
    target: &Value,
    body: &[u8],
) -> Result<Value, PatchFailure> {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return Err(PatchFailure::BadRequest("patch is not JSON".into()));
    };
    let mut next = target.clone();
    if content_type.starts_with("application/json-patch+json") {
        let Ok(p) = serde_json::from_value::<json_patch::Patch>(patch) else {
            return Err(PatchFailure::BadRequest("invalid JSON Patch".into()));
        };
        // The API server answers every JSON Patch it cannot apply — a failed `test`, a path
        // that does not exist — alike (422, a fixed message), so the fake does too.
        if json_patch::patch(&mut next, &p).is_err() {
            return Err(PatchFailure::JsonPatchRejected);
        }
    } else if content_type.starts_with("application/merge-patch+json") {
        merge_patch(&mut next, &patch);
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        strategic_merge(&mut next, &patch);
    } else {
        return Err(PatchFailure::UnsupportedMediaType(format!(
            "unsupported patch type {content_type}"
        )));
    }
    Ok(next)
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
