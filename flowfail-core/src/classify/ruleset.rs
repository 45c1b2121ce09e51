//! Rule files: parsing, checking and compiling a set of classification rules.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::{LazyLock, Mutex, OnceLock};

use regex::{Regex, RegexSet};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::FailureKind;
use crate::prefilter::Prefilter;

/// The built-in rule file, compiled into the binary: the rules every [`RuleSet`] starts from,
/// and an example of the format.
pub const BUILTIN_RULES: &str = include_str!("rules.toml");

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

/// Which rules matched one message.
pub(crate) struct Evidence<'t> {
    set: &'t RuleSet,
    text: &'t str,
    /// Read with the ASCII build of the rules.
    ascii: bool,
    /// Indexes of the rules that matched, ascending.
    hits: Vec<usize>,
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

/// Where a vendor puts an error code: the value of a code field of a JSON or Python-dict body
/// (`"type": "…"`, `'code': '…'`; escaped inside a JSON log line too), botocore's
/// `An error occurred (…)`, or an exception class starting the message, a traceback's last
/// line (after an indented frame line), a logfmt `err=` / `error=` / `msg=` / `exception=`
/// value or a JSON log line's message.
const VENDOR_PLACES: &str = r#"(?:\\?['"](?:type|code|status|reason|__type|error_?type|errorType|error_?code|errorCode)\\?['"]\s*:\s*\\?['"]|An error occurred \(|(?:\A\s*|\n[ \t]+[^\n]*\n\s*|\b(?:err|error|msg|message|exception|exc|error_type)=\s*\\?['"]?|\\?['"](?:msg|message|error|err|exception)\\?['"]\s*:\s*\\?['"])(?:\[[A-Z]+\]\s+)?(?:[A-Za-z_]\w*\.)*)"#;

/// A rule's pattern as the vendor-code stage reads it: only at a vendor's places, unless it
/// starts at a quote (a field of its own).
fn vendor_form(pattern: &str) -> String {
    if pattern.starts_with("['") || pattern.starts_with("[\"'") || pattern.starts_with("\\?[") {
        pattern.to_owned()
    } else {
        format!("{VENDOR_PLACES}(?:{pattern})")
    }
}

/// Rule files larger than this are refused.
const MAX_RULE_FILE: u64 = 1 << 20;
/// Patterns may compile to at most this much memory each (the regex crate's own limit is 10 MiB).
const MAX_PATTERN_SIZE: usize = 4 << 20;

fn read_capped(path: &Path) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::invalid_input(format!("rule file {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_RULE_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid_input(format!("rule file {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_RULE_FILE {
        return Err(Error::invalid_input(format!(
            "rule file {}: larger than {MAX_RULE_FILE} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

fn parse(origin: &str, text: &str, user: bool) -> Result<Vec<Rule>> {
    let file: RuleFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let (l, c) = line_col(text, s.start);
                format!(" (line {l}, column {c})")
            })
            .unwrap_or_default();
        Error::invalid_input(format!("{origin}{at}: {}", e.message().trim()))
    })?;
    if user && file.rule.is_empty() {
        return Err(Error::invalid_input(format!(
            "{origin}: no [[rule]] tables"
        )));
    }
    file.rule
        .into_iter()
        .enumerate()
        .map(|(i, d)| check(origin, i + 1, d, user))
        .collect()
}

fn check(origin: &str, n: usize, d: RuleDef, user: bool) -> Result<Rule> {
    let bad = |why: String| {
        Error::invalid_input(format!(
            "{origin}: rule {n} (`{}`): {why}",
            d.name.escape_debug()
        ))
    };
    let name_ok = !d.name.is_empty()
        && d.name.len() <= 64
        && d.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_:.-".contains(&b));
    if !name_ok {
        return Err(bad(
            "a name is 1 to 64 of a-z, 0-9, `_`, `:`, `.`, `-`".into()
        ));
    }
    // The built-in patterns are checked by compiling them (a test does); users' are checked
    // one by one, for an error that names the rule and the position.
    if user {
        check_pattern(&d.pattern).map_err(bad)?;
    }
    let status_rule = d.stage == Stage::StatusInMessage;
    if status_rule && (d.kind.is_some() || d.retryable.is_some() || d.quota_exhausted) {
        return Err(bad(
            "a status_in_message rule has no kind, retryable or quota_exhausted: the status it captures decides"
                .into(),
        ));
    }
    let (kind, retryable) = match (d.stage, d.kind) {
        (Stage::StatusInMessage, _) => {
            if Regex::new(&d.pattern).map_or(0, |r| r.captures_len()) < 2 {
                return Err(bad(
                    "a status_in_message pattern captures the status in a group".into(),
                ));
            }
            (FailureKind::Unknown, false)
        }
        (Stage::Validation, kind) if kind != Some(FailureKind::Validation) => {
            return Err(bad("a validation rule has kind = \"validation\"".into()));
        }
        (_, None) => return Err(bad("missing `kind`".into())),
        (_, Some(kind)) => {
            let default = matches!(
                kind,
                FailureKind::Timeout | FailureKind::RateLimit | FailureKind::ModelApi5xx
            );
            let retryable = d.retryable.unwrap_or(default && !d.quota_exhausted);
            if retryable && matches!(kind, FailureKind::Validation | FailureKind::Unknown) {
                return Err(bad(format!(
                    "a {kind} failure is never retryable (remove `retryable = true`)"
                )));
            }
            (kind, retryable)
        }
    };
    if d.quota_exhausted && (kind != FailureKind::RateLimit || retryable) {
        return Err(bad(
            "a quota_exhausted rule is a rate_limit that is not retryable".into(),
        ));
    }
    Ok(Rule {
        name: intern(&d.name),
        stage: d.stage,
        kind,
        retryable,
        quota_exhausted: d.quota_exhausted,
        user,
        pattern: d.pattern,
    })
}

/// Parses a pattern; a syntax error says where (column in the pattern) and what.
fn check_pattern(pattern: &str) -> std::result::Result<(), String> {
    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
        let (what, span) = match &e {
            regex_syntax::Error::Parse(p) => (p.kind().to_string(), Some(*p.span())),
            regex_syntax::Error::Translate(t) => (t.kind().to_string(), Some(*t.span())),
            _ => (e.to_string(), None),
        };
        return Err(match span {
            Some(s) => format!(
                "bad pattern at column {} (byte {}): {what}",
                s.start.column, s.start.offset
            ),
            None => format!("bad pattern: {what}"),
        });
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .map_err(|e| format!("bad pattern: {e}"))?;
    // Logs are read with an ASCII build of the rules; Unicode classes (`\pL`) have no ASCII
    // form.
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .map(|_| ())
        .map_err(|e| format!("bad pattern (Unicode classes are not supported): {e}"))
}

/// Rule names live as long as the process; each distinct name is allocated once.
fn intern(name: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> =
        LazyLock::new(|| Mutex::new(HashSet::new()));
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

fn compile(mut rules: Vec<Rule>) -> Result<RuleSet> {
    rules.sort_by_key(|r| r.stage as usize);
    let mut stages: [Range<usize>; 5] = Default::default();
    for s in Stage::ALL {
        let start = rules
            .iter()
            .position(|r| r.stage == s)
            .unwrap_or(rules.len());
        let len = rules.iter().filter(|r| r.stage == s).count();
        stages[s as usize] = start..start + len;
    }
    let patterns: Vec<&str> = rules.iter().map(|r| r.pattern.as_str()).collect();
    let ascii = regex::bytes::RegexSetBuilder::new(&patterns)
        .unicode(false)
        .size_limit(64 << 20)
        // The lazy DFA of every rule at once has many states (the vendor stage's field and
        // line-start prefixes); a cache that holds them all keeps it from being rebuilt.
        .dfa_size_limit(16 << 20)
        .build()
        .map_err(too_big)?;
    let mut status = Vec::new();
    for r in &rules[stages[Stage::StatusInMessage as usize].clone()] {
        status.push(
            regex::bytes::RegexBuilder::new(&r.pattern)
                .unicode(false)
                .build()
                .map_err(too_big)?,
        );
    }
    let set = RuleSet {
        rules,
        stages,
        ascii,
        status,
        lazy: Lazy::default(),
    };
    if set.rules.iter().any(|r| r.user) {
        set.build_all()?;
    }
    Ok(set)
}

fn too_big_rule(name: &str) -> Error {
    Error::invalid_input(format!("rule `{name}` is too large to compile on its own"))
}

fn too_big(e: regex::Error) -> Error {
    Error::invalid_input(format!("the rules together are too large to compile: {e}"))
}

impl RuleSet {
    fn patterns(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.pattern.as_str()).collect()
    }

    fn build_unicode(&self) -> Result<RegexSet> {
        regex::RegexSetBuilder::new(self.patterns())
            .size_limit(64 << 20)
            .build()
            .map_err(too_big)
    }

    fn build_evidence(&self) -> Result<regex::bytes::Regex> {
        let union = self
            .patterns()
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        // On ASCII text the ASCII forms of `\b`, `\w`, `\d`, `\s` and `(?i)` mean exactly what
        // the Unicode forms mean, so the union is exact there; lines with other bytes are
        // always classified in full.
        regex::bytes::RegexBuilder::new(&union)
            .unicode(false)
            .multi_line(true)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(too_big)
    }

    /// Builds every lazily built part now; an error says the rules are too large together.
    pub(crate) fn build_all(&self) -> Result<()> {
        let unicode = self.build_unicode()?;
        let evidence = self.build_evidence()?;
        let status = self.build_status_unicode()?;
        let vendor = self.build_vendor()?;
        for i in 0..self.rules.len() {
            if self.rule_regex(i).is_none() {
                return Err(too_big_rule(self.rules[i].name));
            }
        }
        let _ = self.lazy.vendor.set(Some(vendor));
        let _ = self.lazy.unicode.set(Some(unicode));
        let _ = self.lazy.evidence.set(Some(evidence));
        let _ = self.lazy.status_unicode.set(Some(status));
        self.prefilter();
        Ok(())
    }

    /// Whether some rule matches this ASCII line (the ASCII set, stopping at the first match).
    pub(crate) fn may_match(&self, line: &[u8]) -> bool {
        self.ascii.is_match(line)
    }

    fn build_vendor(&self) -> Result<regex::bytes::RegexSet> {
        let range = self.stages[Stage::VendorCode as usize].clone();
        regex::bytes::RegexSetBuilder::new(
            self.rules[range].iter().map(|r| vendor_form(&r.pattern)),
        )
        .unicode(false)
        .size_limit(64 << 20)
        .build()
        .map_err(too_big)
    }

    /// The vendor-code rules alone, for a message whose body values are masked.
    fn vendor_set(&self) -> Option<&regex::bytes::RegexSet> {
        self.lazy
            .vendor
            .get_or_init(|| self.build_vendor().ok())
            .as_ref()
    }

    /// Rule `i` alone (ASCII build; a vendor-code rule in its [`vendor_form`]), built on first
    /// use, to find where its match starts.
    fn rule_regex(&self, i: usize) -> Option<&regex::bytes::Regex> {
        let each = self
            .lazy
            .each
            .get_or_init(|| self.rules.iter().map(|_| OnceLock::new()).collect());
        each.get(i)?
            .get_or_init(|| {
                let r = &self.rules[i];
                // Vendor codes, and exception names when they say a vendor's error leads,
                // count only at a vendor's places.
                let pattern = if matches!(r.stage, Stage::VendorCode | Stage::Exception) {
                    vendor_form(&r.pattern)
                } else {
                    r.pattern.clone()
                };
                regex::bytes::RegexBuilder::new(&pattern)
                    .unicode(false)
                    .size_limit(MAX_PATTERN_SIZE)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Which lazily built parts exist: (Unicode set, evidence regex, prefilter).
    #[cfg(test)]
    pub(crate) fn lazy_parts_built(&self) -> (bool, bool, bool) {
        (
            self.lazy.unicode.get().is_some(),
            self.lazy.evidence.get().is_some(),
            self.lazy.prefilter.get().is_some(),
        )
    }

    fn build_status_unicode(&self) -> Result<Vec<Regex>> {
        self.rules[self.stages[Stage::StatusInMessage as usize].clone()]
            .iter()
            .map(|r| Regex::new(&r.pattern).map_err(too_big))
            .collect()
    }

    /// The status rules' Unicode regexes, for non-ASCII text.
    fn status_unicode(&self) -> Option<&Vec<Regex>> {
        self.lazy
            .status_unicode
            .get_or_init(|| self.build_status_unicode().ok())
            .as_ref()
    }

    /// The Unicode build of every pattern, for non-ASCII text.
    fn unicode_set(&self) -> Option<&RegexSet> {
        self.lazy
            .unicode
            .get_or_init(|| self.build_unicode().ok())
            .as_ref()
    }

    /// Every pattern in one ASCII multi-line regex, for the log scan of every line.
    pub(crate) fn evidence_regex(&self) -> Option<&regex::bytes::Regex> {
        self.lazy
            .evidence
            .get_or_init(|| self.build_evidence().ok())
            .as_ref()
    }

    /// The literal prefilter of the log scan of every line; `None` when the rules do not allow
    /// a sound one.
    pub(crate) fn prefilter(&self) -> Option<&Prefilter> {
        self.lazy
            .prefilter
            .get_or_init(|| Prefilter::build(&self.patterns()))
            .as_ref()
    }
}
