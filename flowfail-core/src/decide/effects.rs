//! Effect keys: the names under which the ledger reserves an at-most-once effect of an incident
//! (a page, a notification, the rollback), and from which pager and notifier dedup keys are
//! made. Built and read here only: `page:<target>:<reason>`, `notify:<audience>`,
//! `notify:<audience>:<reason>`, `rollback`.

use std::fmt;

/// The effect key of the rollback.
pub const ROLLBACK: &str = "rollback";

/// An effect key, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EffectKey<'a> {
    /// A page to `target` about `reason`.
    Page {
        /// The page target.
        target: &'a str,
        /// What about.
        reason: &'a str,
    },
    /// A notification to `audience`; `reason` when an incident tells it more than one thing.
    Notify {
        /// The audience.
        audience: &'a str,
        /// What about, after the first notice.
        reason: Option<&'a str>,
    },
    /// The incident's rollback.
    Rollback,
    /// A key of no known form (kept as it is).
    Other(&'a str),
}

impl<'a> EffectKey<'a> {
    /// Reads a key. A page key splits at the first `:` after `page:` (targets hold no `:`).
    pub fn parse(key: &'a str) -> Self {
        if key == ROLLBACK {
            return EffectKey::Rollback;
        }
        if let Some(rest) = key.strip_prefix("page:")
            && let Some((target, reason)) = rest.split_once(':')
        {
            return EffectKey::Page { target, reason };
        }
        if let Some(rest) = key.strip_prefix("notify:") {
            return match rest.split_once(':') {
                Some((audience, reason)) => EffectKey::Notify {
                    audience,
                    reason: Some(reason),
                },
                None => EffectKey::Notify {
                    audience: rest,
                    reason: None,
                },
            };
        }
        EffectKey::Other(key)
    }

    /// Whether it is a page to `target`.
    pub fn is_page_to(&self, target: &str) -> bool {
        matches!(self, EffectKey::Page { target: t, .. } if *t == target)
    }
}

impl fmt::Display for EffectKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EffectKey::Page { target, reason } => write!(f, "page:{target}:{reason}"),
            EffectKey::Notify {
                audience,
                reason: None,
            } => write!(f, "notify:{audience}"),
            EffectKey::Notify {
                audience,
                reason: Some(r),
            } => write!(f, "notify:{audience}:{r}"),
            EffectKey::Rollback => f.write_str(ROLLBACK),
            EffectKey::Other(k) => f.write_str(k),
        }
    }
}

/// The effect key of a page to `target` about `reason`.
pub fn page(target: &str, reason: &str) -> String {
    EffectKey::Page { target, reason }.to_string()
}

/// The effect key of a notification to `audience` (about `reason`, after the first).
pub fn notify(audience: &str, reason: Option<&str>) -> String {
    EffectKey::Notify { audience, reason }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_built() {
        for k in [
            page("on_call", "new_failure_mode"),
            page("sre", "approval_rollback"),
            notify("stakeholders", None),
            notify("stakeholders", Some("outage_over")),
            ROLLBACK.to_owned(),
            "cooldown_over".to_owned(),
        ] {
            assert_eq!(EffectKey::parse(&k).to_string(), k);
        }
        assert!(EffectKey::parse("page:on_call:x:y").is_page_to("on_call"));
        assert_eq!(
            EffectKey::parse("page:on_call:x:y"),
            EffectKey::Page {
                target: "on_call",
                reason: "x:y"
            }
        );
        assert_eq!(EffectKey::parse("pager"), EffectKey::Other("pager"));
    }
}
