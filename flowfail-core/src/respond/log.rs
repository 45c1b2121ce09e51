//! The log lines of a pass's actions: what each touched and why, as structured fields (task
//! ids grouped, bundle sizes, env name and value, revisions, outcome and reason). Every value
//! from outside passes [`clean_text`]; the JSON log format escapes it again.

use crate::report::{
    ActionFields, ActionRecord, GroupKey, Outcome, collapse_ids, group_key, group_totals,
};
use crate::text::clean_text;

/// Logs the actions a pass recorded for `incident`: per-task actions one line per group,
/// every other action on a line of its own. Dry-run outcomes (shadow, dry run) are logged at
/// debug: the decision line already says what would have been done.
pub(super) fn log_actions(incident: &str, done: &[ActionRecord]) {
    let mut i = 0;
    while i < done.len() {
        let a = &done[i];
        let Some(g) = group_key(a) else {
            log_one(incident, a);
            i += 1;
            continue;
        };
        let n = done[i..]
            .iter()
            .take_while(|b| group_key(b).as_ref() == Some(&g))
            .count();
        log_group(incident, &g, &done[i..i + n]);
        i += n;
    }
}

fn log_group(incident: &str, g: &GroupKey<'_>, members: &[ActionRecord]) {
    let (ids, from, to) = group_totals(members.iter());
    let tasks = clean_text(&collapse_ids(&ids));
    let reason = clean_text(g.detail.unwrap_or(""));
    let outcome = g.outcome.as_str();
    let count = members.len();
    if g.outcome == Outcome::DryRun {
        tracing::debug!(incident, action = g.kind, outcome, count, %tasks, "action");
    } else if g.kind == "retry_task" {
        let failure_kind = g.failure_kind.map(|k| k.to_string()).unwrap_or_default();
        tracing::info!(incident, action = g.kind, outcome, count, %tasks, attempt = g.attempt, %failure_kind, %reason, "action");
    } else {
        tracing::info!(incident, action = g.kind, outcome, count, %tasks, from_bytes = from, to_bytes = to, %reason, "action");
    }
}

fn log_one(incident: &str, a: &ActionRecord) {
    let outcome = a.outcome.as_str();
    let reason = clean_text(a.detail.as_deref().unwrap_or(""));
    if a.outcome == Outcome::DryRun {
        tracing::debug!(incident, action = a.action.kind(), outcome, "action");
        return;
    }
    match &a.action {
        ActionFields::SetEnv {
            deployment,
            name,
            value,
            purpose,
        } => {
            let value = clean_text(value.as_deref().unwrap_or("(unset)"));
            tracing::info!(incident, action = "set_env", outcome, deployment = %clean_text(deployment), env = %clean_text(name), %value, purpose = %clean_text(purpose), %reason, "action");
        }
        ActionFields::Rollback {
            deployment,
            from_revision,
            to_revision,
        } => {
            tracing::info!(incident, action = "rollback", outcome, deployment = %clean_text(deployment), from_revision, to_revision, %reason, "action");
        }
        ActionFields::VerifyRollout { deployment, status } => {
            tracing::info!(incident, action = "verify_rollout", outcome, deployment = %clean_text(deployment), status = %clean_text(status), %reason, "action");
        }
        ActionFields::Page {
            target,
            reason: why,
            ..
        } => {
            tracing::info!(incident, action = "page", outcome, target = %clean_text(target), page_reason = %clean_text(why), %reason, "action");
        }
        ActionFields::RetryTask {
            task_id,
            attempt,
            failure_kind,
            ..
        } => {
            tracing::info!(incident, action = "retry_task", outcome, tasks = %clean_text(task_id), attempt, %failure_kind, probe = true, %reason, "action");
        }
        ActionFields::Notify { audience, .. } => {
            tracing::info!(incident, action = "notify", outcome, audience = %clean_text(audience), %reason, "action");
        }
        other => {
            tracing::info!(incident, action = other.kind(), outcome, %reason, "action");
        }
    }
}
