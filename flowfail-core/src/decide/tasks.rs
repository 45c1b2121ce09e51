//! Per-task remediation (validation findings, prune then retry, backoff, the breaker's probe,
//! the retry budget) and the new-failure-mode page for unknown failures.

use super::actions;
use super::kinds::ActionKind;
use super::outage::OutageView;
use super::{
    Action, Builder, BundleObs, Ctx, Finding, IncidentState, ObservedTask, SchemaObs, backoff, secs,
};
use crate::breaker::{Admission, Breaker};
use crate::model::{FailureKind, TaskId, Timestamp};

/// What the per-task loop carries from one task to the next.
struct Pass<'a> {
    /// The breaker as planned for this pass (a probe chosen here is marked on it).
    breaker: &'a mut Breaker,
    admission: Admission,
    probe_chosen: bool,
    budget: usize,
}

/// Decides each failed task.
pub(super) fn decide(
    cx: &Ctx<'_>,
    next: &mut IncidentState,
    b: &mut Builder,
    breaker: &mut Breaker,
    outage: &OutageView,
    rollback_verified: bool,
) {
    let admission = breaker.admission();
    let mut pass = Pass {
        breaker,
        admission,
        probe_chosen: false,
        budget: cx.policy.retry_budget_per_pass,
    };
    for t in cx.failed {
        task(cx, next, b, &mut pass, outage, rollback_verified, t);
    }
    if pass.breaker.probe().is_some() {
        b.wait("half-open probe", None);
    }
}

fn task(
    cx: &Ctx<'_>,
    next: &mut IncidentState,
    b: &mut Builder,
    pass: &mut Pass<'_>,
    outage: &OutageView,
    rollback_verified: bool,
    t: &ObservedTask,
) {
    let (state, now) = (cx.state, cx.now);
    let id = &t.task.task_id;
    let kind = t.class.kind;
    match kind {
        FailureKind::Validation => {
            b.skip(ActionKind::RetryTask, id.to_string(), super::NEVER_AS_IS);
            if !state.findings_reported.contains(id) {
                b.findings.push(validation_finding(t));
                next.findings_reported.insert(id.clone());
            }
            return;
        }
        FailureKind::Unknown if !rollback_verified => {
            b.skip(
                ActionKind::RetryTask,
                id.to_string(),
                super::NO_FIX_FOR_UNKNOWN,
            );
            return;
        }
        _ => {}
    }
    if !retry_allowed(cx, b, t) {
        return;
    }
    let Some(after_prune) = prune_first(cx, b, pass, t) else {
        return;
    };
    let attempt = t.task.attempts + 1;
    let Some(due) = due(cx, b, outage, t, attempt) else {
        return;
    };
    let mut probe = false;
    if kind == FailureKind::RateLimit {
        match &pass.admission {
            Admission::All => {}
            Admission::Probe if !pass.probe_chosen => probe = true,
            Admission::Probe => {
                b.skip(
                    ActionKind::RetryTask,
                    id.to_string(),
                    "circuit breaker half-open: one probe first",
                );
                return;
            }
            Admission::None { reason, until } => {
                b.skip(ActionKind::RetryTask, id.to_string(), reason.clone());
                b.wait("circuit breaker", *until);
                return;
            }
        }
    }
    if due > now {
        b.skip(ActionKind::RetryTask, id.to_string(), "waiting for backoff");
        b.wait("retry backoff", Some(due));
        return;
    }
    if pass.budget == 0 {
        b.skip(
            ActionKind::RetryTask,
            id.to_string(),
            "retry budget for this pass used up",
        );
        b.wait("retry budget", None);
        return;
    }
    pass.budget -= 1;
    if probe {
        pass.probe_chosen = true;
        pass.breaker.probe_sent(id.clone());
    }
    b.actions.push(Action::RetryTask(actions::RetryTask {
        task_id: id.clone(),
        attempt,
        expected_attempts: t.task.attempts,
        failure_kind: kind,
        after_prune,
        probe,
    }));
}

/// The retry gates that do not depend on this pass: retryable kind, attempts left, no retry of
/// flowfail's still in flight. Shared with [`super::manual_retry`] (the CLI's `retry`).
pub(super) fn retry_allowed(cx: &Ctx<'_>, b: &mut Builder, t: &ObservedTask) -> bool {
    let (policy, state) = (cx.policy, cx.state);
    let id = &t.task.task_id;
    if let Err(why) = super::retry_gate(&t.task, &t.class, policy) {
        b.skip(ActionKind::RetryTask, id.to_string(), why);
        if t.class.kind == FailureKind::RateLimit && !t.class.retryable {
            b.page(
                state,
                policy,
                &policy.on_call_target,
                "quota_exhausted",
                format!(
                    "{} quota or spend limit exhausted: request a limit increase",
                    policy.primary_vendor
                ),
            );
        }
        return false;
    }
    if let Some(r) = state.retries.get(id)
        && r.attempts > t.task.attempts
    {
        b.skip(
            ActionKind::RetryTask,
            id.to_string(),
            "a retry flowfail scheduled is not reflected yet",
        );
        b.wait("scheduled retries to land", None);
        return false;
    }
    true
}

/// For a timeout: prune an oversized bundle first. `None`: no retry of this task this pass;
/// `Some(after_prune)`: retry, only after this pass's prune when `after_prune`.
fn prune_first(cx: &Ctx<'_>, b: &mut Builder, pass: &Pass<'_>, t: &ObservedTask) -> Option<bool> {
    let (policy, state) = (cx.policy, cx.state);
    let id = &t.task.task_id;
    if t.class.kind != FailureKind::Timeout {
        return Some(false);
    }
    match &t.bundle {
        BundleObs::Size { bytes } if *bytes > policy.timeout_bundle_threshold.bytes() => {
            if state.pruned.contains_key(id) {
                b.skip(
                    ActionKind::PruneContext,
                    id.to_string(),
                    "already pruned once in this incident and still over the threshold",
                );
                return None;
            } else if let Some(why) = state.prune_failed.get(id) {
                b.skip(
                    ActionKind::PruneContext,
                    id.to_string(),
                    format!("prune failed earlier: {why}"),
                );
                return None;
            }
            if pass.budget == 0 {
                b.skip(
                    ActionKind::PruneContext,
                    id.to_string(),
                    "retry budget for this pass used up",
                );
                b.wait("retry budget", None);
                return None;
            }
            b.actions.push(Action::PruneContext(actions::PruneContext {
                task_id: id.clone(),
                from_bytes: *bytes,
                max_bytes: policy.prune_target.bytes(),
            }));
            Some(true)
        }
        BundleObs::Size { .. } if !state.pruned.contains_key(id) => {
            b.skip(
                ActionKind::PruneContext,
                id.to_string(),
                format!(
                    "bundle within {}: retry without pruning",
                    policy.timeout_bundle_threshold
                ),
            );
            Some(false)
        }
        BundleObs::Missing => {
            b.skip(
                ActionKind::PruneContext,
                id.to_string(),
                "no context bundle found",
            );
            Some(false)
        }
        BundleObs::Unreadable { reason } => {
            b.skip(
                ActionKind::RetryTask,
                id.to_string(),
                format!("bundle size unknown ({reason}): no prune, no retry this pass"),
            );
            b.wait("bundle sizes readable", None);
            None
        }
        _ => Some(false),
    }
}

/// When the retry is due; `None` while a vendor outage holds 5xx retries.
pub(super) fn due(
    cx: &Ctx<'_>,
    b: &mut Builder,
    outage: &OutageView,
    t: &ObservedTask,
    attempt: u32,
) -> Option<Timestamp> {
    let (policy, state) = (cx.policy, cx.state);
    let id: &TaskId = &t.task.task_id;
    let kind = t.class.kind;
    let base = state
        .retries
        .get(id)
        .map_or_else(|| t.task.finished_or_created(), |r| r.last_at);
    let mut due = base + backoff(policy, id, attempt);
    if kind == FailureKind::RateLimit && attempt == 1 {
        due = due.max(base + secs(policy.retry_base_delay_s));
    }
    if kind == FailureKind::ModelApi5xx {
        if let Some(why) = &outage.hold_5xx {
            b.skip(ActionKind::RetryTask, id.to_string(), why.clone());
            return None;
        }
        if attempt == 1 && !outage.primary_healthy {
            due = due.max(base + secs(policy.retry_base_delay_s));
        }
    }
    Some(due)
}

/// How many message templates of unknown failures the page and the record show.
const TOP_TEMPLATES: usize = 5;

/// Unknown failures: page on-call once (a new failure mode) with the failures grouped into
/// message templates, each with its count, an example and a proposed rule
/// ([`crate::templates`]); the same evidence goes into a finding for the post-incident record.
pub(super) fn new_failure_mode(cx: &Ctx<'_>, b: &mut Builder, rollback_verified: bool) {
    let (policy, state) = (cx.policy, cx.state);
    let n = cx.classes[&FailureKind::Unknown];
    let page_key = super::effects::page(&policy.on_call_target, "new_failure_mode");
    if n == 0 || rollback_verified || state.effects.contains(&page_key) {
        return;
    }
    let evidence = unknown_templates(cx.failed);
    let templates = evidence["templates"].as_array().map_or(0, Vec::len);
    let top: Vec<String> = evidence["templates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}× {}",
                t["count"],
                crate::model::sanitize(t["template"].as_str().unwrap_or(""), 80)
            )
        })
        .collect();
    let summary = crate::model::sanitize(
        &format!(
            "{n} failed tasks match no known failure type: new failure mode; {templates} message template(s): {}",
            top.join("; ")
        ),
        600,
    );
    b.page_with(
        state,
        policy,
        &policy.on_call_target,
        "new_failure_mode",
        summary,
        serde_json::json!({ "new_failure_modes": evidence.clone() }),
    );
    b.findings.push(Finding {
        kind: "new_failure_mode".into(),
        task_id: None,
        summary: format!("{n} failures of unknown type, in {templates} message template(s)"),
        details: evidence,
    });
}

/// The unknown failures grouped into templates: `{total, without_message, ungrouped,
/// templates: [FailureTemplate]}`, the largest [`TOP_TEMPLATES`] templates.
fn unknown_templates(failed: &[ObservedTask]) -> serde_json::Value {
    let mut miner = crate::templates::TemplateMiner::new();
    let mut total = 0u64;
    let mut without_message = 0u64;
    for t in failed
        .iter()
        .filter(|t| t.class.kind == FailureKind::Unknown)
    {
        total += 1;
        match t.task.error_message.as_deref() {
            Some(m) if !m.trim().is_empty() => miner.add(m, Some(t.task.task_id.as_str())),
            _ => without_message += 1,
        }
    }
    serde_json::json!({
        "total": total,
        "without_message": without_message,
        "ungrouped": miner.ungrouped(),
        "templates": miner.top(TOP_TEMPLATES),
    })
}

fn validation_finding(t: &ObservedTask) -> Finding {
    let (summary, details) = match &t.schema {
        Some(SchemaObs::Checked(r)) => (
            match &r.version_mismatch {
                Some(m) => format!("TaskObject invalid: {} error(s); {m}", r.errors.len()),
                None => format!("TaskObject invalid: {} error(s)", r.errors.len()),
            },
            serde_json::to_value(r).unwrap_or_default(),
        ),
        Some(SchemaObs::Missing) => (
            "no TaskObject stored for the task".into(),
            serde_json::Value::Null,
        ),
        Some(SchemaObs::Unreadable { reason }) => (
            format!("TaskObject unreadable: {reason}"),
            serde_json::Value::Null,
        ),
        None => ("TaskObject not checked".into(), serde_json::Value::Null),
    };
    Finding {
        kind: "validation".into(),
        task_id: Some(t.task.task_id.clone()),
        summary,
        details: serde_json::json!({
            "error": t.task.error_message.as_deref().map(|m| crate::model::sanitize(m, 300)),
            "schema": details,
        }),
    }
}
