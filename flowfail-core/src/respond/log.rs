//! The log lines of a pass's actions: what each touched and why, as structured fields (task
//! ids grouped, bundle sizes, env name and value, revisions, outcome and reason). Every value
//! from outside passes [`clean_text`]; the JSON log format escapes it again.

use crate::model::FailureKind;
use crate::report::{ActionFields, ActionRecord, Outcome, collapse_ids};
use crate::text::clean_text;

/// What per-task actions of one pass are grouped by in the log: kind, outcome, attempt,
/// failure kind and reason.
#[derive(PartialEq)]
struct Group<'a> {
    kind: &'static str,
    outcome: Outcome,
    attempt: u32,
    failure_kind: Option<FailureKind>,
    detail: Option<&'a str>,
}

fn group_of(a: &ActionRecord) -> Option<Group<'_>> {
    match &a.action {
        ActionFields::RetryTask {
            attempt,
            failure_kind,
            ..
        } => Some(Group {
            kind: "retry_task",
            outcome: a.outcome,
            attempt: *attempt,
            failure_kind: Some(*failure_kind),
            detail: a.detail.as_deref(),
        }),
        ActionFields::PruneContext { .. } => Some(Group {
            kind: "prune_context",
            outcome: a.outcome,
            attempt: 0,
            failure_kind: None,
            detail: (a.outcome != Outcome::Applied)
                .then_some(a.detail.as_deref())
                .flatten(),
        }),
        _ => None,
    }
}

/// Logs the actions a pass recorded for `incident`: per-task actions one line per group,
/// every other action on a line of its own. Dry-run outcomes (shadow, dry run) are logged at
/// debug: the decision line already says what would have been done.
pub(super) fn log_actions(incident: &str, done: &[ActionRecord]) {
    let mut i = 0;
    while i < done.len() {
        let a = &done[i];
        let Some(g) = group_of(a) else {
            log_one(incident, a);
            i += 1;
            continue;
        };
        let n = done[i..]
            .iter()
            .take_while(|b| group_of(b).as_ref() == Some(&g))
            .count();
        log_group(incident, &g, &done[i..i + n]);
        i += n;
    }
}

fn log_group(incident: &str, g: &Group<'_>, members: &[ActionRecord]) {
    let mut ids = Vec::with_capacity(members.len());
    let (mut from, mut to) = (0u64, 0u64);
    for m in members {
        match &m.action {
            ActionFields::RetryTask { task_id, .. } => ids.push(task_id.as_str()),
            ActionFields::PruneContext {
                task_id,
                from_bytes,
                to_bytes,
            } => {
                ids.push(task_id.as_str());
                from = from.saturating_add(*from_bytes);
                to = to.saturating_add(*to_bytes);
            }
            _ => {}
        }
    }
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
        ActionFields::Notify { audience, .. } => {
            tracing::info!(incident, action = "notify", outcome, audience = %clean_text(audience), %reason, "action");
        }
        other => {
            tracing::info!(incident, action = other.kind(), outcome, %reason, "action");
        }
    }
}
