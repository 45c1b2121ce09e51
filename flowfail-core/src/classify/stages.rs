//! The classification itself: the stages a message goes through (HTTP status, vendor codes,
//! rules, validation guard) and the verdict, with the trace [`RuleSet::explain`] records.

use std::borrow::Cow;

use FailureKind::{ModelApi5xx, RateLimit, Timeout, Unknown, Validation};

use super::ruleset::{self, Evidence, Stage};
use super::{Classification, Explanation, MAX_CLASSIFY_BYTES, RuleSet, Step, mask};
use crate::model::FailureKind;

/// Which step of the classification is recorded, for [`RuleSet::explain`].
type Trace<'a> = Option<&'a mut Vec<Step>>;

fn note(trace: &mut Trace<'_>, stage: &'static str, outcome: impl FnOnce() -> String) {
    if let Some(t) = trace {
        t.push(Step {
            stage,
            outcome: outcome(),
        });
    }
}

impl RuleSet {
    /// Classifies one failure from its message and, when known, its HTTP status.
    pub fn classify(&self, message: &str, http_status: Option<u16>) -> Classification {
        self.decide(message, http_status, &mut None)
    }

    /// Classifies like [`RuleSet::classify`] and says how: which stage and rule decided, and
    /// why each earlier stage did not.
    ///
    /// ```
    /// use flowfail_core::classify::RuleSet;
    /// let e = RuleSet::builtin().explain("upstream returned 503", None);
    /// assert_eq!(e.classification.rule, "status_in_message:5xx");
    /// assert_eq!(e.steps[0].stage, "validation");
    /// assert_eq!(e.steps[1].stage, "http_status");
    /// ```
    pub fn explain(&self, message: &str, http_status: Option<u16>) -> Explanation {
        let mut steps = Vec::new();
        let classification = self.decide(message, http_status, &mut Some(&mut steps));
        Explanation {
            classification,
            steps,
        }
    }

    fn decide(
        &self,
        message: &str,
        http_status: Option<u16>,
        trace: &mut Trace<'_>,
    ) -> Classification {
        let text = truncate_at_char(message, MAX_CLASSIFY_BYTES);
        let masked = mask::mask_echoes(text);
        if let (Cow::Owned(m), Some(t)) = (&masked, trace.as_mut()) {
            t.push(Step {
                stage: "mask",
                outcome: format!(
                    "echoed input masked ({} bytes): never evidence",
                    m.bytes().zip(text.bytes()).filter(|(a, b)| a != b).count()
                ),
            });
        }
        let mut ev = self.evidence(&masked);
        // The first read says which vendor codes appear at all; where a vendor puts them is
        // read only then (masking and placing can only take codes away).
        let body = if ev.first(Stage::VendorCode).is_some() {
            let body = mask::mask_body_values(&masked);
            ev.read_vendor_codes(&body);
            body
        } else {
            Cow::Borrowed(&*masked)
        };
        if ev.exhausted()
            && let Cow::Owned(prose) = mask::mask_quotes_in_values(&masked)
        {
            ev.recheck_exhausted(&prose);
        }
        if let Some(v) = ev.first(Stage::Validation) {
            // Two structured witnesses no tenant writes — the status the TaskDB recorded, and a
            // vendor code where a vendor puts it — that agree outrank validation words (a
            // title that says "schema validation failed").
            let witnessed = http_status.and_then(status_kind).is_some_and(|k| {
                ev.first(Stage::VendorCode)
                    .is_some_and(|r| r.kind == k && !r.user)
            });
            if !witnessed && !ev.vendor_leads(&body) {
                let c = Classification::new(Validation, false, v.name);
                note(trace, "validation", || decided_by(v.name, c));
                return c;
            }
            note(trace, "validation", || {
                if witnessed {
                    format!(
                        "rule `{}` matched, but the recorded HTTP status and the vendor's code agree: they decide",
                        v.name
                    )
                } else {
                    format!(
                        "rule `{}` matched inside a vendor's error that starts before it: the vendor's error decides",
                        v.name
                    )
                }
            });
        } else {
            note(trace, "validation", || "no rule matched".into());
        }
        let (c, by_user) = self.decide_stages(&ev, http_status, trace);
        guard_validation(&ev, c, by_user, trace)
    }

    /// The verdict, and whether a user's rule gave it.
    fn decide_stages(
        &self,
        ev: &Evidence<'_>,
        http_status: Option<u16>,
        trace: &mut Trace<'_>,
    ) -> (Classification, bool) {
        match http_status {
            None => note(trace, "http_status", || "no HTTP status given".into()),
            Some(s) => {
                if let Some(c) = by_status(s, ev, "http_status") {
                    note(trace, "http_status", || format!("decided: HTTP status {s}"));
                    return (c, false);
                }
                note(trace, "http_status", || {
                    format!("HTTP status {s} says nothing on its own; the message decides")
                });
            }
        }
        for stage in [Stage::VendorCode, Stage::Exception] {
            match ev.first(stage) {
                Some(r) => {
                    let c = self.refine(r, ev);
                    note(trace, stage.as_str(), || decided_by(r.name, c));
                    return (c, r.user);
                }
                None => note(trace, stage.as_str(), || "no rule matched".into()),
            }
        }
        match ev.status_in_text() {
            None => note(trace, "status_in_message", || {
                "no HTTP status in the message".into()
            }),
            Some((s, r)) => {
                let name = r.name;
                if let Some(c) = by_status(s, ev, "status_in_message") {
                    note(trace, "status_in_message", || {
                        format!("decided: status {s} found by rule `{name}`")
                    });
                    return (c, r.user);
                }
                note(trace, "status_in_message", || {
                    format!("status {s} found by rule `{name}` says nothing on its own")
                });
            }
        }
        if let Some(r) = ev.first(Stage::Pattern) {
            let c = Classification::new(r.kind, r.retryable, r.name);
            note(trace, "pattern", || decided_by(r.name, c));
            return (c, r.user);
        }
        note(trace, "pattern", || "no rule matched".into());
        let c = match http_status {
            Some(s) if (400..500).contains(&s) => {
                Classification::new(Unknown, false, "http_status:4xx")
            }
            _ => Classification::new(Unknown, false, "no_rule"),
        };
        note(trace, "fallback", || {
            format!("no evidence for a runbook kind: {}", c.rule)
        });
        (c, false)
    }

    /// A rule's verdict, corrected for quota exhaustion (a rate limit that must not be retried)
    /// and for vendor request errors that are really spend limits (Anthropic sends those as 400).
    fn refine(&self, r: &ruleset::Rule, ev: &Evidence<'_>) -> Classification {
        let exhausted = ev.exhausted();
        match r.kind {
            // A deadline the vendor answered with a 504 is the vendor failing, not our timeout.
            Timeout if ev.status_in_text().map(|s| s.0) == Some(504) => {
                Classification::new(ModelApi5xx, true, "status_in_message:504")
            }
            RateLimit if exhausted => Classification::new(RateLimit, false, "quota_exhausted"),
            Unknown if exhausted => Classification::new(RateLimit, false, "spend_limit"),
            Unknown => {
                // A client error wrapping a schema problem of our own TaskObject is still
                // validation.
                let validation = ev
                    .first(Stage::Validation)
                    .or_else(|| ev.first(Stage::Pattern).filter(|p| p.kind == Validation));
                match validation {
                    Some(p) if r.stage != Stage::VendorCode => {
                        Classification::new(Validation, false, p.name)
                    }
                    _ => Classification::new(Unknown, false, r.name),
                }
            }
            kind => Classification::new(kind, r.retryable, r.name),
        }
    }
}

/// Users' rules can never make a validation failure retryable: when the built-in rules see
/// validation evidence and a user's rule decided on a retryable verdict, validation wins;
/// a validation verdict is never retryable.
fn guard_validation(
    ev: &Evidence<'_>,
    c: Classification,
    by_user: bool,
    trace: &mut Trace<'_>,
) -> Classification {
    if c.kind == Validation && c.retryable {
        return Classification::new(Validation, false, c.rule);
    }
    if !c.retryable || !by_user {
        return c;
    }
    match ev.builtin_validation() {
        Some(v) => {
            note(trace, "guard", || {
                format!(
                    "user rule `{}` would retry, but built-in rule `{}` sees a validation failure: validation wins",
                    c.rule, v.name
                )
            });
            Classification::new(Validation, false, v.name)
        }
        None => c,
    }
}

fn decided_by(rule: &str, c: Classification) -> String {
    if c.rule == rule {
        format!(
            "decided: rule `{rule}` ({}, {})",
            c.kind,
            if c.retryable {
                "retryable"
            } else {
                "not retryable"
            }
        )
    } else {
        format!(
            "rule `{rule}` matched; with the rest of the evidence it is `{}` ({}, {})",
            c.rule,
            c.kind,
            if c.retryable {
                "retryable"
            } else {
                "not retryable"
            }
        )
    }
}

fn by_status(status: u16, ev: &Evidence<'_>, source: &'static str) -> Option<Classification> {
    let exhausted = || ev.exhausted();
    let c = match (status, source) {
        (429, _) if exhausted() => Classification::new(RateLimit, false, "quota_exhausted"),
        (429, "http_status") => Classification::new(RateLimit, true, "http_status:429"),
        (429, _) => Classification::new(RateLimit, true, "status_in_message:429"),
        (402, _) => Classification::new(RateLimit, false, "spend_limit"),
        (400 | 403, _) if exhausted() => Classification::new(RateLimit, false, "spend_limit"),
        (408, "http_status") => Classification::new(Timeout, true, "http_status:408"),
        (408, _) => Classification::new(Timeout, true, "status_in_message:408"),
        (500..=599, "http_status") => Classification::new(ModelApi5xx, true, "http_status:5xx"),
        (500..=599, _) => Classification::new(ModelApi5xx, true, "status_in_message:5xx"),
        // Other statuses say little on their own: let the body and the message decide.
        _ => return None,
    };
    Some(c)
}

/// The kind an HTTP status recorded with a task names on its own, if any.
fn status_kind(status: u16) -> Option<FailureKind> {
    match status {
        429 => Some(RateLimit),
        408 => Some(Timeout),
        500..=599 => Some(ModelApi5xx),
        _ => None,
    }
}

pub(super) fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
