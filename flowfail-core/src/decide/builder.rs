//! The decision under construction: actions, skips (aggregated), findings, waits.

use super::actions;
use super::kinds::{ActionKind, SkipKind};
use std::collections::BTreeMap;

use super::actions::Action;
use super::types::{Finding, IncidentState, Skip};
use crate::model::Timestamp;
use crate::policy::Policy;

pub(super) struct Builder {
    pub(super) actions: Vec<Action>,
    skips: BTreeMap<(SkipKind, String), Skip>,
    skip_order: Vec<(SkipKind, String)>,
    pub(super) findings: Vec<Finding>,
    pub(super) waiting: Vec<String>,
    pub(super) wake_at: Option<Timestamp>,
}

impl Builder {
    pub(super) fn new() -> Self {
        Builder {
            actions: Vec::new(),
            skips: BTreeMap::new(),
            skip_order: Vec::new(),
            findings: Vec::new(),
            waiting: Vec::new(),
            wake_at: None,
        }
    }
    pub(super) fn skip(
        &mut self,
        action: impl Into<SkipKind>,
        subject: impl Into<String>,
        reason: impl Into<String>,
    ) {
        let key = (action.into(), reason.into());
        let e = self.skips.entry(key.clone()).or_insert_with(|| {
            self.skip_order.push(key.clone());
            Skip {
                action: key.0,
                reason: key.1.clone(),
                count: 0,
                examples: Vec::new(),
            }
        });
        e.count += 1;
        let s = subject.into();
        if e.examples.len() < 10 && !s.is_empty() {
            e.examples.push(s);
        }
    }
    pub(super) fn wait(&mut self, what: impl Into<String>, until: Option<Timestamp>) {
        let w = what.into();
        if !self.waiting.contains(&w) {
            self.waiting.push(w);
        }
        if let Some(u) = until {
            self.wake_at = Some(self.wake_at.map_or(u, |w| w.min(u)));
        }
    }
    pub(super) fn page(
        &mut self,
        state: &IncidentState,
        policy: &Policy,
        target: &str,
        reason: &str,
        summary: String,
    ) {
        self.page_with(
            state,
            policy,
            target,
            reason,
            summary,
            serde_json::Value::Null,
        );
    }
    /// A page with evidence beyond its summary.
    pub(super) fn page_with(
        &mut self,
        state: &IncidentState,
        policy: &Policy,
        target: &str,
        reason: &str,
        summary: String,
        details: serde_json::Value,
    ) {
        if !policy.is_page_target(target) {
            self.skip(
                ActionKind::Page,
                target,
                "target is not in the policy's page_targets",
            );
            return;
        }
        let a = Action::Page(actions::Page {
            target: target.to_owned(),
            reason: reason.to_owned(),
            summary,
            details,
        });
        if let Some(k) = a.effect_key()
            && !state.effects.contains(&k)
            && !self.actions.contains(&a)
        {
            self.actions.push(a);
        }
    }
    pub(super) fn skips(&self) -> Vec<Skip> {
        self.skip_order
            .iter()
            .filter_map(|k| self.skips.get(k).cloned())
            .collect()
    }
}
