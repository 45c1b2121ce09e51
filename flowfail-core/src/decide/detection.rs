//! The runbook's "add monitoring/alerting if a detection gap is identified": failures the
//! function's logs show and the TaskDB does not — invocations Lambda's runtime ended at their
//! timeout (`Task timed out`, a line an `ERROR` filter misses) beyond the timeouts the TaskDB
//! recorded, and tasks error lines name that never reached `failed`. One finding per incident,
//! with counts and examples; no action (it is monitoring to add, not a fault to mend).

use super::{Builder, Ctx, Finding, IncidentState};
use crate::model::FailureKind;

/// Reports the detection gap once per incident, when there is one.
pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) {
    let Some(logs) = &cx.obs.logs else {
        return;
    };
    if next.detection_gap_reported {
        return;
    }
    // The TaskDB's side: the timeouts of the triage, and the tasks this incident retried
    // (pending again, out of the failed list). With the failed list cut at its limit, or the
    // logs read only in part, the counts do not compare.
    let db_timeouts =
        cx.classes.get(&FailureKind::Timeout).copied().unwrap_or(0) + cx.state.retries.len() as u64;
    let comparable = !cx.obs.failed_truncated && !logs.truncated;
    let lambda_gap = if comparable {
        logs.lambda_timeouts.saturating_sub(db_timeouts)
    } else {
        0
    };
    // A task flowfail itself sent back to pending is not missing from the TaskDB.
    let not_failed: Vec<_> = logs
        .not_failed
        .iter()
        .filter(|(id, _, _)| !cx.state.retries.contains_key(id))
        .collect();
    if lambda_gap == 0 && not_failed.is_empty() {
        return;
    }
    next.detection_gap_reported = true;
    let mut parts = Vec::new();
    if lambda_gap > 0 {
        parts.push(format!(
            "{} Lambda invocations timed out (`Task timed out`) against {db_timeouts} timeouts in the TaskDB",
            logs.lambda_timeouts
        ));
    }
    if !not_failed.is_empty() {
        let shown: Vec<String> = not_failed
            .iter()
            .take(5)
            .map(|(id, st, _)| match st {
                Some(s) => format!("{id} ({})", status_name(*s)),
                None => format!("{id} (not in the TaskDB, or not readable by flowfail)"),
            })
            .collect();
        parts.push(format!(
            "{} tasks logged errors but are not failed in the TaskDB: {}",
            not_failed.len(),
            shown.join(", ")
        ));
    }
    let examples: Vec<serde_json::Value> = not_failed
        .iter()
        .take(5)
        .map(|(id, st, line)| {
            serde_json::json!({
                "task_id": id,
                "status": st,
                "line": line,
            })
        })
        .collect();
    b.findings.push(Finding {
        kind: "detection_gap".into(),
        task_id: None,
        summary: format!(
            "detection gap: {}; add monitoring for what the TaskDB does not see",
            parts.join("; ")
        ),
        details: serde_json::json!({
            "lambda_timeouts": logs.lambda_timeouts,
            "taskdb_timeouts": db_timeouts,
            "timeout_example": logs.timeout_example,
            "not_failed": not_failed.len(),
            "examples": examples,
            "logs_truncated": logs.truncated,
        }),
    });
}

/// A status as the TaskDB spells it (`running`).
fn status_name(s: crate::model::TaskStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
