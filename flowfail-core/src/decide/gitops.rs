//! A Deployment a GitOps controller owns (Argo CD, Flux): an env change of flowfail's that the
//! controller put back is recorded as such — not as a mysterious human change — with a page
//! that tells on-call to make the change in Git; flowfail does not set it again in the
//! incident (it would only fight the controller's next sync).

use super::actions::Action;
use super::{ActionKind, Builder, Finding, IncidentState, Observation};
use crate::policy::Policy;

/// Finds the env changes the GitOps controller reverted (back to the value before flowfail's)
/// and reports each once: a finding, and one page.
pub(super) fn detect(
    obs: &Observation,
    state: &IncidentState,
    policy: &Policy,
    next: &mut IncidentState,
    b: &mut Builder,
) {
    let Some(d) = &obs.deployment else {
        return;
    };
    let Some(owner) = &d.gitops else {
        return;
    };
    let mut reverted = Vec::new();
    for (name, rec) in &state.env_changes {
        let current = d.env.get(name);
        if current != rec.value.as_ref()
            && current == rec.previous.as_ref()
            && !next.gitops_reverted.contains(name)
        {
            next.gitops_reverted.insert(name.clone());
            reverted.push((name, rec));
        }
    }
    if reverted.is_empty() {
        return;
    }
    let what: Vec<String> = reverted
        .iter()
        .map(|(n, r)| {
            format!(
                "{n}={} (back to {})",
                r.value.as_deref().unwrap_or("(unset)"),
                r.previous.as_deref().unwrap_or("(unset)")
            )
        })
        .collect();
    let summary = format!(
        "{} reverted flowfail's change of {}: the Deployment is owned by GitOps; make the change in Git",
        owner.describe(),
        what.join(", ")
    );
    b.findings.push(Finding {
        kind: "gitops_reverted".into(),
        task_id: None,
        summary: summary.clone(),
        details: serde_json::json!({
            "tool": owner.tool,
            "owner": owner.name,
            "env": reverted.iter().map(|(n, r)| serde_json::json!({
                "name": n, "set_by_flowfail": r.value, "reverted_to": r.previous,
            })).collect::<Vec<_>>(),
        }),
    });
    b.page(
        state,
        policy,
        &policy.on_call_target,
        "gitops_reverted",
        summary,
    );
}

/// Drops this pass's env changes to variables the GitOps controller reverted, with the reason
/// (the outage fallback would otherwise be set again at every pass, and reverted at every sync).
pub(super) fn hold(next: &IncidentState, b: &mut Builder) {
    if next.gitops_reverted.is_empty() {
        return;
    }
    let (held, kept): (Vec<Action>, Vec<Action>) = std::mem::take(&mut b.actions)
        .into_iter()
        .partition(|a| matches!(a, Action::SetEnv(s) if next.gitops_reverted.contains(&s.name)));
    b.actions = kept;
    for a in held {
        if let Action::SetEnv(s) = a {
            b.skip(
                ActionKind::SetEnv,
                s.name,
                "reverted by the Deployment's GitOps controller: make the change in Git",
            );
        }
    }
}
