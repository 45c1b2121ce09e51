//! Settling: an incident with nothing left to do or to wait for is escalated to humans.

use super::actions;
use super::kinds::SkipKind;
use super::{Action, Builder, Ctx, Finding, IncidentState, Observation, ObservedTask, Settle, pct};
use crate::model::{FailureKind, Quota, Task, TaskId, TaskStatus};
use crate::policy::Policy;

/// Escalates when no mutation is planned and nothing is awaited; pages on-call then, unless
/// on-call was already paged in this incident (or is paged in this pass).
pub(super) fn decide(cx: &Ctx<'_>, next: &mut IncidentState, b: &mut Builder) -> Option<Settle> {
    let (policy, state, alert) = (cx.policy, cx.state, &cx.alert);
    let busy = b.actions.iter().any(Action::is_mutation) || !b.waiting.is_empty();
    if busy {
        return None;
    }
    // The operator's notices (paused, approval wanted) are not an escalation.
    let escalation = |k: &String| match super::effects::EffectKey::parse(k) {
        super::effects::EffectKey::Page { target, reason } => {
            target == policy.on_call_target
                && reason != crate::operator::PAUSED_NOTICE_REASON
                && !reason.starts_with("approval_")
        }
        _ => false,
    };
    let paged_on_call = state.effects.iter().any(escalation)
        || b.actions
            .iter()
            .filter_map(Action::effect_key)
            .any(|k| escalation(&k));
    if !paged_on_call {
        b.page(
            state,
            policy,
            &policy.on_call_target,
            "automation_exhausted",
            format!(
                "failure rate {} over {} tasks persists and no automated step remains",
                pct(alert.failure_rate),
                alert.window_tasks
            ),
        );
    }
    next.escalated_at = Some(cx.now);
    Some(Settle::Escalated)
}

/// What became of the retries flowfail scheduled in this incident, as read back this pass
/// (`obs.retried`): a retry seen finished is recorded on its [`super::RetryRecord`] (once), and
/// the retried tasks that failed again are reported (one finding a pass). Returns the retried
/// tasks not seen finished: still pending or running, a retry not reflected yet, or not read.
/// A task the TaskDB no longer holds is not waited for.
pub(super) fn retries(
    obs: &Observation,
    state: &IncidentState,
    next: &mut IncidentState,
    b: &mut Builder,
) -> Vec<TaskId> {
    let mut unfinished = Vec::new();
    let mut failed_again = Vec::new();
    for (id, rec) in state.retries.iter().filter(|(_, r)| r.finished.is_none()) {
        let task = match obs.retried.get(id) {
            Some(Some(t)) => t,
            Some(None) => continue,
            None => {
                unfinished.push(id.clone());
                continue;
            }
        };
        let status = task.status;
        let done = match status {
            TaskStatus::Succeeded => true,
            // Failed at the attempt flowfail scheduled (or later): it failed again. Failed
            // below it: the retry is not reflected yet.
            s if s.is_failure() => task.attempts >= rec.attempts,
            _ => false,
        };
        if !done {
            unfinished.push(id.clone());
            continue;
        }
        if let Some(r) = next.retries.get_mut(id) {
            r.finished = Some(status);
        }
        if status.is_failure() {
            failed_again.push(task);
        }
    }
    if let Some(f) = failed_again_finding(&failed_again) {
        b.findings.push(f);
    }
    unfinished
}

/// One finding for the retried tasks seen failing again in this pass (a storm of them is one
/// finding a pass, not one per task), with its count and ten examples.
fn failed_again_finding(tasks: &[&Task]) -> Option<Finding> {
    let first = tasks.first()?;
    let attempt = |t: &Task| format!("{} (attempt {})", t.task_id, t.attempts);
    let (task_id, summary) = if let [t] = tasks {
        let why = t
            .error_message
            .as_deref()
            .map(|m| format!(": {}", crate::model::sanitize(m, 200)))
            .unwrap_or_default();
        (
            Some(first.task_id.clone()),
            format!("retried task {} failed again{why}", attempt(t)),
        )
    } else {
        let shown: Vec<String> = tasks.iter().take(10).map(|t| attempt(t)).collect();
        let more = tasks.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        (
            None,
            format!(
                "{} retried tasks failed again: {}{more}",
                tasks.len(),
                shown.join(", ")
            ),
        )
    };
    let examples: Vec<serde_json::Value> = tasks
        .iter()
        .take(10)
        .map(|t| serde_json::json!({"task_id": t.task_id, "attempt": t.attempts, "status": t.status}))
        .collect();
    Some(Finding {
        kind: "retry_failed_again".into(),
        task_id,
        summary,
        details: serde_json::json!({"count": tasks.len(), "examples": examples}),
    })
}

/// The alert is clear but retried tasks have not finished: the incident waits for them (their
/// own status change took them out of the alert's failure count; that is not a recovery).
/// Returns `true` while it waits.
pub(super) fn wait_for_retries(unfinished: &[TaskId], b: &mut Builder) -> bool {
    if unfinished.is_empty() {
        return false;
    }
    for id in unfinished {
        b.skip(
            SkipKind::Resolve,
            id.to_string(),
            "the alert is clear but retried tasks have not finished",
        );
    }
    let n = unfinished.len();
    let s = if n == 1 { "" } else { "s" };
    b.wait(format!("{n} retried task{s} not finished yet"), None);
    true
}

/// The alert cleared: the failed tasks this incident covers and never retried (a process that
/// stopped before handling them, failures read only now) are not retried on the way out — the
/// cause is over, and retrying now is on-call's call — but each is named in the record with
/// why, never dropped without a word.
pub(super) fn left_failed(
    failed: &[ObservedTask],
    truncated: bool,
    state: &IncidentState,
    b: &mut Builder,
) {
    if truncated {
        b.skip(
            SkipKind::RetryTask,
            "",
            "more failed tasks exist than the triage read (its limit): those beyond it are neither retried nor named here",
        );
    }
    for t in failed {
        let id = &t.task.task_id;
        if t.task.status != TaskStatus::Failed || state.retries.contains_key(id) {
            continue;
        }
        let why = match t.class.kind {
            FailureKind::Validation => super::NEVER_AS_IS.to_owned(),
            FailureKind::Unknown => super::NO_FIX_FOR_UNKNOWN.to_owned(),
            kind => format!(
                "the alert cleared before this incident retried it ({kind}): left failed for on-call"
            ),
        };
        b.skip(SkipKind::RetryTask, id.to_string(), why);
    }
}

/// The alert cleared: the env changes flowfail made and that still hold its value are restored
/// when that is safe (the breaker once quota is back under `quota_breaker_clear`, the fallback
/// and manual review once the primary vendor is operational); otherwise, and for a change a
/// human has since overwritten, on-call is paged once with what is left in place (the record's
/// `left_in_place` lists them too). Returns `true` while a restore is under way (the incident
/// stays open until it lands).
pub(super) fn restore_on_close(
    obs: &Observation,
    state: &IncidentState,
    policy: &Policy,
    b: &mut Builder,
) -> bool {
    if state.env_changes.is_empty() {
        return false;
    }
    let Some(deployment) = &obs.deployment else {
        b.wait(
            "deployment state readable, to restore flowfail's env changes",
            None,
        );
        return true;
    };
    let mut restoring = false;
    let mut handed_over = Vec::new();
    for (name, rec) in &state.env_changes {
        let current = deployment.env.get(name);
        if current != rec.value.as_ref() {
            handed_over.push(match &deployment.gitops {
                Some(o) if state.gitops_reverted.contains(name) => format!(
                    "{name} (reverted by {}: make the change in Git)",
                    o.describe()
                ),
                _ => format!("{name} (changed since by someone else)"),
            });
            continue;
        }
        let safe = if *name == policy.breaker_env {
            matches!(&obs.quota, Quota::Known(u) if u.used_ratio <= policy.quota_breaker_clear)
        } else {
            obs.vendor(&policy.primary_vendor).is_operational()
        };
        if safe {
            b.actions.push(Action::SetEnv(actions::SetEnv {
                deployment: policy.deployment.clone(),
                name: name.clone(),
                value: rec.previous.clone(),
                purpose: "incident resolved: restore what flowfail changed".into(),
            }));
            restoring = true;
        } else {
            let value = rec.value.as_deref().unwrap_or("unset");
            handed_over.push(format!("{name}={value} (not yet safe to restore)"));
        }
    }
    if restoring {
        b.wait("flowfail's env changes restored", None);
    }
    if !handed_over.is_empty() && !restoring {
        b.page(
            state,
            policy,
            &policy.on_call_target,
            "changes_left_in_place",
            format!(
                "incident resolved with flowfail's changes left in place for a human: {}",
                handed_over.join(", ")
            ),
        );
    }
    restoring
}
