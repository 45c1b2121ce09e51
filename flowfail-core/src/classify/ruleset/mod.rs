//! Rule files: parsing, checking and compiling a set of classification rules.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::FailureKind;
use crate::prefilter::Prefilter;

mod evidence;
mod lazy;
mod load;

pub(crate) use evidence::Evidence;
use load::{compile, parse, read_capped};

/// The built-in rule file, compiled into the binary: the rules every [`RuleSet`] starts from,
/// and an example of the format.
pub const BUILTIN_RULES: &str = include_str!("../rules.toml");

/// The stages a rule can belong to, in the order they are weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    Validation,
    VendorCode,
    Exception,
    StatusInMessage,
    Pattern,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Validation,
        Stage::VendorCode,
        Stage::Exception,
        Stage::StatusInMessage,
        Stage::Pattern,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Validation => "validation",
            Stage::VendorCode => "vendor_code",
            Stage::Exception => "exception",
            Stage::StatusInMessage => "status_in_message",
            Stage::Pattern => "pattern",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: String,
    stage: Stage,
    pattern: String,
    kind: Option<FailureKind>,
    retryable: Option<bool>,
    #[serde(default)]
    quota_exhausted: bool,
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: &'static str,
    pub(crate) stage: Stage,
    pub(crate) kind: FailureKind,
    pub(crate) retryable: bool,
    pub(crate) quota_exhausted: bool,
    pub(crate) user: bool,
    pattern: String,
}

/// A compiled set of classification rules: the built-in ones ([`BUILTIN_RULES`]) and any a
/// user adds.
///
/// # Rule files
///
/// A rule file is TOML, a list of `[[rule]]` tables:
///
/// ```toml
/// [[rule]]
/// name = "flowengine:step_budget"          # unique; [a-z0-9_:.-], at most 64 bytes
/// stage = "pattern"                        # validation | vendor_code | exception | status_in_message | pattern
/// kind = "timeout"                         # timeout | rate_limit | validation | model_api_5xx | unknown
/// retryable = true                         # optional; validation and unknown are never retryable
/// pattern = '''step budget of \d+s spent'''  # Rust regex syntax
/// # quota_exhausted = true                 # optional: quota used up, not to be retried blindly
/// # about = "FlowEngine's own step budget"  # optional, for people
/// ```
///
/// `status_in_message` rules have no `kind`: their pattern captures an HTTP status in a group,
/// and the status decides as the built-in rule's does.
///
/// # Behavior
///
/// 1. Users' rules are weighed before the built-in rules of their stage; the stages keep their
///    order (validation evidence first, then an HTTP status recorded with the task). A
///    `validation` rule has `kind = "validation"`.
/// 2. Rules read the message with echoed tenant input masked (see
///    [`classify`](super) for the forms); `vendor_code` rules also read it with the values of
///    JSON / Python-dict fields other than `type`, `code`, `status` and `reason` masked.
/// 3. A rule with `kind = "validation"` and `retryable = true` is refused; a user's rule never
///    makes a failure the built-in rules see as validation retryable.
/// 4. A bad file is an [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error naming
///    the file, the rule and, for a bad regex or bad TOML, the line and column.
/// 5. Rule names are kept for the life of the process (verdicts carry them as `&'static str`);
///    loading the same names again does not grow memory.
pub struct RuleSet {
    rules: Vec<Rule>,
    stages: [Range<usize>; 5],
    /// Every pattern, ASCII build: what classifies ASCII text (nearly every message and log
    /// line). Built at once; the rest is built when first needed, so that a process that never
    /// sees non-ASCII text or never scans every line of a log does not pay for it.
    ascii: regex::bytes::RegexSet,
    /// The status rules, one ASCII regex each (to read the captured status).
    status: Vec<regex::bytes::Regex>,
    /// What is built on first use.
    lazy: Lazy,
}

/// The parts of a [`RuleSet`] built on first use. A set with users' rules builds them all
/// while it is loaded, so that a rule set too large to compile is refused then, not later;
/// the built-in set is known to compile (a test builds every part).
#[derive(Default)]
struct Lazy {
    /// Every pattern, Unicode build, for non-ASCII text; `None` if it could not be built (the
    /// ASCII build then reads the bytes).
    unicode: OnceLock<Option<RegexSet>>,
    /// Every pattern in one ASCII multi-line regex, for the log scan of every line when the
    /// rules allow no prefilter; `None` if it could not be built (every line is then
    /// classified in full).
    evidence: OnceLock<Option<regex::bytes::Regex>>,
    /// The literal prefilter of that scan; `None` when the rules do not allow a sound one.
    prefilter: OnceLock<Option<Prefilter>>,
    /// The status rules, one Unicode regex each, for non-ASCII text; `None` if they could not
    /// be built (the ASCII ones then read the bytes).
    status_unicode: OnceLock<Option<Vec<Regex>>>,
    /// The vendor-code rules alone (ASCII build), for a message whose body values are masked
    /// (see `mask::mask_body_values`); `None` if they could not be built.
    vendor: OnceLock<Option<regex::bytes::RegexSet>>,
    /// Every rule alone (ASCII build), to find where its match starts; `None` if they could
    /// not be built. Used only when validation evidence and a vendor's error are both seen.
    each: OnceLock<Vec<OnceLock<Option<regex::bytes::Regex>>>>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field(
                "rules",
                &self.rules.iter().map(|r| r.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Clone for RuleSet {
    fn clone(&self) -> Self {
        // Compiled from the same checked rules, it cannot fail; fall back to the built-in set
        // rather than panic if it ever did.
        compile(self.rules.clone()).unwrap_or_else(|_| RuleSet::builtin_uncached())
    }
}

impl RuleSet {
    /// The built-in rules.
    pub fn builtin() -> &'static RuleSet {
        &super::BUILTIN
    }

    /// The built-in rules, shared: what a responder classifies with unless given other rules
    /// ([`ResponderBuilder::rules`](crate::respond::ResponderBuilder::rules)). Compiled once per
    /// process.
    pub fn shared_builtin() -> std::sync::Arc<RuleSet> {
        std::sync::Arc::clone(&super::BUILTIN)
    }

    pub(crate) fn builtin_uncached() -> RuleSet {
        parse("built-in rules", BUILTIN_RULES, false)
            .and_then(compile)
            .unwrap_or_else(|e| unreachable!("the built-in rules compile: {e}"))
    }

    /// The built-in rules and the rules of these files, in order.
    ///
    /// ```no_run
    /// use flowfail_core::classify::RuleSet;
    /// let rules = RuleSet::with_extra(&["flowengine-rules.toml"])?;
    /// let c = rules.classify("step budget of 45s spent", None);
    /// # Ok::<(), flowfail_core::Error>(())
    /// ```
    pub fn with_extra<P: AsRef<Path>>(files: &[P]) -> Result<RuleSet> {
        let mut sources = Vec::with_capacity(files.len());
        for f in files {
            let path = f.as_ref();
            let text = read_capped(path)?;
            sources.push((path.display().to_string(), text));
        }
        Self::with_extra_toml(sources.iter().map(|(o, t)| (o.as_str(), t.as_str())))
    }

    /// The built-in rules and rules given as TOML text, each with the name errors call it by.
    ///
    /// ```
    /// use flowfail_core::{classify::RuleSet, FailureKind};
    /// let rules = RuleSet::with_extra_toml([(
    ///     "extra.toml",
    ///     "[[rule]]\nname = \"flowengine:step_budget\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step budget of \\d+s spent'\n",
    /// )])?;
    /// assert_eq!(rules.classify("step budget of 45s spent", None).kind, FailureKind::Timeout);
    /// # Ok::<(), flowfail_core::Error>(())
    /// ```
    pub fn with_extra_toml<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RuleSet> {
        let mut user = Vec::new();
        for (origin, text) in sources {
            user.extend(parse(origin, text, true)?);
        }
        let builtin = parse("built-in rules", BUILTIN_RULES, false)?;
        let mut names: HashSet<&str> = HashSet::new();
        for r in user.iter().chain(&builtin) {
            if !names.insert(r.name) {
                return Err(Error::invalid_input(format!(
                    "rule `{}` is defined twice (names must be unique, the built-in ones included)",
                    r.name
                )));
            }
        }
        // Users' rules first within each stage: `compile` sorts stably by stage.
        user.extend(builtin);
        compile(user)
    }

    /// The number of rules, the built-in ones included.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rules (never: the built-in ones are always there).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn evidence<'t>(&'t self, text: &'t str) -> Evidence<'t> {
        let ascii = text.is_ascii();
        let unicode = if ascii { None } else { self.unicode_set() };
        let hits = match unicode {
            Some(unicode) => unicode.matches(text).into_iter().collect(),
            None => self.ascii.matches(text.as_bytes()).into_iter().collect(),
        };
        Evidence {
            set: self,
            text,
            ascii,
            hits,
        }
    }
}
