//! The runbook's schema-version check ("if invalid, check for schema version mismatch"), as one
//! finding per incident: the versions the failing TaskObjects carry, and the version the running
//! revision expects (from its env, [`crate::Policy::schema_version_env`], when set), with the
//! runbook's fix. Whether the mismatch is the deploy's (and so the rollback's) is decided by the
//! rollback branch; steady invalid tenant input never rolls back.

use std::collections::BTreeMap;

use super::{Builder, Ctx, Finding, IncidentState, SchemaObs};
use crate::model::FailureKind;

/// Reports the mismatch once per incident, when validation failures show one.
pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) {
    if next.schema_mismatch_reported {
        return;
    }
    let mut carried: BTreeMap<String, u64> = BTreeMap::new();
    let mut example = None;
    for t in cx
        .failed
        .iter()
        .filter(|t| t.class.kind == FailureKind::Validation)
    {
        if let Some(SchemaObs::Checked(r)) = &t.schema
            && let Some(m) = &r.version_mismatch
        {
            let v = r
                .declared_version
                .clone()
                .unwrap_or_else(|| "none declared".to_owned());
            *carried.entry(crate::model::sanitize(&v, 20)).or_default() += 1;
            example.get_or_insert_with(|| (t.task.task_id.clone(), crate::model::sanitize(m, 300)));
        }
    }
    let Some((task_id, mismatch)) = example else {
        return;
    };
    next.schema_mismatch_reported = true;
    let n: u64 = carried.values().sum();
    let versions: Vec<String> = carried.iter().map(|(v, k)| format!("{v} (×{k})")).collect();
    let env = &cx.policy.schema_version_env;
    let expected = cx
        .env
        .and_then(|e| e.get(env))
        .map(|v| crate::model::sanitize(v, 20));
    let revision = cx.obs.deployment.as_ref().map(|d| d.revision);
    let running = match (&expected, revision) {
        (Some(v), Some(r)) => format!("revision {r} expects {v} ({env})"),
        (Some(v), None) => format!("the running revision expects {v} ({env})"),
        (None, Some(r)) => {
            format!("revision {r} does not say which version it expects ({env} not set)")
        }
        (None, None) => format!("the running revision's version is not known ({env} not set)"),
    };
    b.findings.push(Finding {
        kind: "schema_version_mismatch".into(),
        task_id: None,
        summary: format!(
            "{n} failing TaskObjects carry schema version {}; {running}. Runbook fix: roll back to a compatible schema version, or update FlowEngine",
            versions.join(", ")
        ),
        details: serde_json::json!({
            "carried": carried,
            "expected": expected,
            "env": env,
            "revision": revision,
            "example": {"task_id": task_id, "mismatch": mismatch},
        }),
    });
}
