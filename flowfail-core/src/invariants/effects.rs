//! The effects of applied actions, as the ledger's records and the raw calls name them (N7).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::memory::World;
use crate::model::{TaskId, TaskStatus};
use crate::report::{ActionFields, Outcome};

/// What an applied action did, as both a record and a raw call name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Effect {
    /// A rollback to this revision.
    Rollback(u64),
    /// The rollout of a rollback verified complete (a record only: it needs a rollback call).
    RolloutVerified,
    /// An env var set (`Some`) or unset.
    Env(String, Option<String>),
    /// A bundle replaced by its pruned form.
    Prune(String),
    /// A task's retry to this attempt (1-based), which took effect.
    Retry(String, u32),
    /// A page, by its dedup key.
    Page(String),
    /// A notification of an incident to an audience.
    Notify(String, String),
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Rollback(to) => write!(f, "rollback to revision {to}"),
            Effect::RolloutVerified => write!(f, "a verified rollout"),
            Effect::Env(n, Some(v)) => write!(f, "set_env {n}={v}"),
            Effect::Env(n, None) => write!(f, "set_env {n} (unset)"),
            Effect::Prune(id) => write!(f, "prune_context {id}"),
            Effect::Retry(id, a) => write!(f, "retry_task {id} attempt {a}"),
            Effect::Page(k) => write!(f, "page {k}"),
            Effect::Notify(i, a) => write!(f, "notify {a} of incident {i}"),
        }
    }
}

/// The applied raw calls of a kind of record action (`actions_summary`'s keys), which the
/// post-incident records may not count more of; `u64::MAX` for a kind that is no effect: a
/// rollout check is a read, and two replicas may each record the verdict.
pub(super) fn calls_of_kind(calls: &[(&'static str, usize, Effect)], kind: &str) -> u64 {
    let of_kind = |k: &Effect| match kind {
        "rollback" => matches!(k, Effect::Rollback(_)),
        "set_env" => matches!(k, Effect::Env(..)),
        "prune_context" => matches!(k, Effect::Prune(_)),
        "retry_task" => matches!(k, Effect::Retry(..)),
        "page" => matches!(k, Effect::Page(_)),
        "notify" => matches!(k, Effect::Notify(..)),
        _ => false,
    };
    if matches!(
        kind,
        "rollback" | "set_env" | "prune_context" | "retry_task" | "page" | "notify"
    ) {
        calls.iter().filter(|(_, _, k)| of_kind(k)).count() as u64
    } else {
        u64::MAX
    }
}

/// The actions an incident's ledger timeline records as applied.
pub(super) fn applied_entries(r: &crate::ports::IncidentRecord) -> Vec<(ActionFields, Outcome)> {
    r.timeline
        .iter()
        .filter(|e| e.kind == crate::ports::TimelineKind::Action)
        .filter_map(|e| {
            let fields = serde_json::from_value::<ActionFields>(e.detail["action"].clone()).ok()?;
            let outcome = serde_json::from_value::<Outcome>(e.detail["outcome"].clone()).ok()?;
            (outcome == Outcome::Applied).then_some((fields, outcome))
        })
        .collect()
}

/// Every effect the ledger's records list as applied.
pub(super) fn recorded(world: &World) -> BTreeSet<Effect> {
    world
        .incidents
        .incidents()
        .iter()
        .flat_map(|r| {
            applied_entries(r)
                .into_iter()
                .filter_map(|(f, _)| effect_of(Some(&r.key), &f))
        })
        .collect()
}

/// The effect of an action recorded as applied (in `incident`'s record).
pub(super) fn effect_of(incident: Option<&str>, a: &ActionFields) -> Option<Effect> {
    Some(match a {
        ActionFields::Rollback { to_revision, .. } => Effect::Rollback(*to_revision),
        ActionFields::VerifyRollout { status, .. }
            if crate::decide::RolloutVerdict::parse(status).is_complete() =>
        {
            Effect::RolloutVerified
        }
        ActionFields::SetEnv { name, value, .. } => Effect::Env(name.clone(), value.clone()),
        ActionFields::PruneContext { task_id, .. } => Effect::Prune(task_id.clone()),
        ActionFields::RetryTask {
            task_id, attempt, ..
        } => Effect::Retry(task_id.clone(), *attempt),
        ActionFields::Page { target, reason, .. } => Effect::Page(crate::respond::dedup_key(
            incident?,
            &crate::decide::effects::page(target, reason),
        )),
        ActionFields::Notify { audience, .. } => {
            Effect::Notify(incident?.to_owned(), audience.clone())
        }
        _ => return None,
    })
}

/// Every applied raw call that is an action's effect: (operation, index in its backend's call
/// log, effect). A retry batch gives one effect per retry that took effect: the task's attempts
/// went past the count the retry was fenced on (attempts change only through retries), and the
/// task had not reached it before the run.
pub(super) fn applied_effects(
    world: &World,
    before: &BTreeMap<TaskId, (TaskStatus, u32)>,
) -> Vec<(&'static str, usize, Effect)> {
    let mut out = Vec::new();
    let attempts: BTreeMap<String, u32> = world
        .tasks
        .tasks()
        .into_iter()
        .map(|t| (t.task_id.to_string(), t.attempts))
        .collect();
    let logs = [
        world.deployment.calls().calls(),
        world.bundles.calls().calls(),
        world.tasks.calls().calls(),
        world.pager.calls().calls(),
        world.notifier.calls().calls(),
    ];
    for (i, c) in logs.iter().flat_map(|l| l.iter().enumerate()) {
        if !c.applied {
            continue;
        }
        let d = c.detail.as_str();
        match c.op {
            // "<deployment> to <revision> if rv=…"
            "deployment.rollback" => {
                if let Some(to) = d.split(' ').nth(2).and_then(|r| r.parse().ok()) {
                    out.push((c.op, i, Effect::Rollback(to)));
                }
            }
            // "<deployment> NAME=value NAME- … if rv=…"
            "deployment.set_env" => {
                for change in d.split(' ').skip(1).take_while(|w| *w != "if") {
                    let e = match change.split_once('=') {
                        Some((n, v)) => Effect::Env(n.to_owned(), Some(v.to_owned())),
                        None => Effect::Env(change.trim_end_matches('-').to_owned(), None),
                    };
                    out.push((c.op, i, e));
                }
            }
            // "<task> if <version> (<n> bytes)"
            "bundle.put_if_version" => {
                let id = d.split(' ').next().unwrap_or_default();
                out.push((c.op, i, Effect::Prune(id.to_owned())));
            }
            // "<task>@<expected attempts>,…"
            "task.schedule_retries" => {
                for r in d.split(',') {
                    let Some((id, k)) = r.split_once('@') else {
                        continue;
                    };
                    let Ok(k) = k.parse::<u32>() else { continue };
                    let took_effect = attempts.get(id).is_some_and(|a| *a > k)
                        && TaskId::parse(id)
                            .ok()
                            .and_then(|t| before.get(&t))
                            .is_none_or(|(_, a0)| *a0 <= k);
                    if took_effect {
                        out.push((c.op, i, Effect::Retry(id.to_owned(), k + 1)));
                    }
                }
            }
            // "<target> <dedup key>"
            "pager.page" => {
                let key = d.split_once(' ').map_or(d, |(_, k)| k);
                out.push((c.op, i, Effect::Page(key.to_owned())));
            }
            // "<audience> <dedup key>"
            "notifier.notify" => {
                let key = d.split_once(' ').map_or(d, |(_, k)| k);
                if let Some(at) = key.find(":notify:")
                    && let crate::decide::effects::EffectKey::Notify { audience, .. } =
                        crate::decide::effects::EffectKey::parse(&key[at + 1..])
                {
                    let incident = &key[..at];
                    out.push((
                        c.op,
                        i,
                        Effect::Notify(incident.to_owned(), audience.to_owned()),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}
