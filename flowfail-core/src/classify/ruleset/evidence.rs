//! The evidence of one message: which rules matched it, stage by stage.

use super::{Rule, RuleSet, Stage};
use crate::model::FailureKind;

/// Which rules matched one message.
pub(crate) struct Evidence<'t> {
    pub(super) set: &'t RuleSet,
    pub(super) text: &'t str,
    /// Read with the ASCII build of the rules.
    pub(super) ascii: bool,
    /// Indexes of the rules that matched, ascending.
    pub(super) hits: Vec<usize>,
}

impl<'t> Evidence<'t> {
    /// The first rule of a stage that matched.
    pub(crate) fn first(&self, stage: Stage) -> Option<&'t Rule> {
        let range = &self.set.stages[stage as usize];
        self.hits
            .iter()
            .find(|i| range.contains(i))
            .map(|i| &self.set.rules[*i])
    }

    /// Reads the vendor-code stage again, where a vendor puts codes ([`vendor_form`]), on
    /// `body`: the message with its body values masked (same length as the text the rest was
    /// read on). The first read, with every rule at once, only says which codes appear.
    pub(crate) fn read_vendor_codes(&mut self, body: &str) {
        let range = self.set.stages[Stage::VendorCode as usize].clone();
        if range.is_empty() {
            return;
        }
        let Some(vendor) = self.set.vendor_set() else {
            return;
        };
        self.hits.retain(|i| !range.contains(i));
        self.hits.extend(
            vendor
                .matches(body.as_bytes())
                .into_iter()
                .map(|k| range.start + k),
        );
        self.hits.sort_unstable();
    }

    /// Whether a vendor's error (a vendor code where a vendor puts it, or a non-validation
    /// exception class) starts before the validation evidence of `rule`: then the message is
    /// the vendor's error, quoting text that looks like validation.
    pub(crate) fn vendor_leads(&self, body: &str) -> bool {
        let vendor_stages =
            [Stage::VendorCode, Stage::Exception].map(|s| self.set.stages[s as usize].clone());
        let leads: Vec<usize> = self
            .hits
            .iter()
            .copied()
            .filter(|i| {
                vendor_stages.iter().any(|r| r.contains(i))
                    && self.set.rules[*i].kind != FailureKind::Validation
            })
            .collect();
        if leads.is_empty() {
            return false;
        }
        // The earliest validation evidence of any validation rule, not only of the first rule
        // that matched: more validation evidence can never hand the verdict to a vendor.
        let validation_stage = self.set.stages[Stage::Validation as usize].clone();
        let first = self
            .hits
            .iter()
            .filter(|i| validation_stage.contains(i))
            .filter_map(|i| self.set.rule_regex(*i))
            .filter_map(|r| r.find(self.text.as_bytes()))
            .map(|m| m.start())
            .min();
        let Some(v) = first else {
            return false;
        };
        let vendor_code = &self.set.stages[Stage::VendorCode as usize];
        leads.iter().any(|i| {
            let hay = if vendor_code.contains(i) {
                body
            } else {
                self.text
            };
            self.set
                .rule_regex(*i)
                .and_then(|r| r.find(hay.as_bytes()))
                .is_some_and(|m| m.start() < v)
        })
    }

    /// Keeps the quota-exhausted evidence only where it also matches `prose`, the message with
    /// the quotes inside its body values masked: a vendor's message quoting a prompt that says
    /// `insufficient_quota` is not quota used up.
    pub(crate) fn recheck_exhausted(&mut self, prose: &str) {
        let set = self.set;
        // A rule that cannot be built alone keeps its hit.
        self.hits.retain(|i| {
            !set.rules[*i].quota_exhausted
                || set
                    .rule_regex(*i)
                    .is_none_or(|r| r.is_match(prose.as_bytes()))
        });
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.hits.iter().any(|i| self.set.rules[*i].quota_exhausted)
    }

    /// The first built-in validation rule that matched.
    pub(crate) fn builtin_validation(&self) -> Option<&'t Rule> {
        self.hits.iter().map(|i| &self.set.rules[*i]).find(|r| {
            !r.user && r.kind == FailureKind::Validation && r.stage != Stage::StatusInMessage
        })
    }

    /// The status the first matching status rule captured, with that rule.
    pub(crate) fn status_in_text(&self) -> Option<(u16, &'t Rule)> {
        let range = self.set.stages[Stage::StatusInMessage as usize].clone();
        self.hits
            .iter()
            .filter(|i| range.contains(i))
            .find_map(|i| {
                let k = i - range.start;
                let unicode = if self.ascii {
                    None
                } else {
                    self.set.status_unicode().map(|u| &u[k])
                };
                let digits = match unicode {
                    None => {
                        let caps = self.set.status[k].captures(self.text.as_bytes())?;
                        (1..caps.len()).find_map(|g| caps.get(g))?.as_bytes()
                    }
                    Some(unicode) => {
                        let caps = unicode.captures(self.text)?;
                        (1..caps.len())
                            .find_map(|g| caps.get(g))?
                            .as_str()
                            .as_bytes()
                    }
                };
                let status = std::str::from_utf8(digits).ok()?.parse().ok()?;
                Some((status, &self.set.rules[*i]))
            })
    }
}
