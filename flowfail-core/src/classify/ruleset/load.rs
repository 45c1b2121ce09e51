//! Rule files read, parsed and checked, and the rules compiled into a set.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use regex::Regex;

use super::{Lazy, Rule, RuleDef, RuleFile, RuleSet, Stage};
use crate::error::{Error, Result};
use crate::model::FailureKind;

/// Rule files larger than this are refused.
const MAX_RULE_FILE: u64 = 1 << 20;
/// Patterns may compile to at most this much memory each (the regex crate's own limit is 10 MiB).
pub(super) const MAX_PATTERN_SIZE: usize = 4 << 20;

pub(super) fn read_capped(path: &Path) -> Result<String> {
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

pub(super) fn parse(origin: &str, text: &str, user: bool) -> Result<Vec<Rule>> {
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

pub(super) fn compile(mut rules: Vec<Rule>) -> Result<RuleSet> {
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

pub(super) fn too_big_rule(name: &str) -> Error {
    Error::invalid_input(format!("rule `{name}` is too large to compile on its own"))
}

pub(super) fn too_big(e: regex::Error) -> Error {
    Error::invalid_input(format!("the rules together are too large to compile: {e}"))
}
