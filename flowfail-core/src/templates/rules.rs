//! The rule proposed for a template: a name, a pattern that matches its messages, and the TOML
//! to paste into a rules file.

use std::fmt::Write as _;

use super::mask::{ANY, is_placeholder, placeholder_regex};
use super::{Cluster, ProposedRule};
use crate::model::FailureKind;

/// The rule for a template, if one is safe to propose.
pub(super) fn propose(c: &Cluster, names: &mut Vec<String>) -> Option<ProposedRule> {
    let mut literal_words: Vec<String> = Vec::new();
    let mut pattern = String::from(r"^\s*");
    for (k, tok) in c.tokens.iter().enumerate() {
        if k > 0 {
            pattern.push_str(r"\s+");
        }
        if tok == ANY {
            pattern.push_str(placeholder_regex('\u{E00F}'));
            continue;
        }
        let mut lit = String::new();
        for ch in tok.chars() {
            if is_placeholder(ch) {
                pattern.push_str(&regex::escape(&lit));
                lit.clear();
                pattern.push_str(placeholder_regex(ch));
            } else {
                lit.push(ch);
            }
        }
        pattern.push_str(&regex::escape(&lit));
        literal_words.extend(
            tok.split(|ch: char| !ch.is_ascii_alphabetic())
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase),
        );
    }
    if !c.truncated {
        pattern.push_str(r"\s*$");
    }
    if !literal_words.iter().any(|w| w.len() >= 4) {
        return None;
    }
    let re = regex::Regex::new(&pattern).ok()?;
    if !re.is_match(&c.example) {
        return None;
    }
    let name = unique_name(&literal_words, names);
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# {} unknown failures like: {}",
        c.count,
        crate::model::sanitize(&c.example, 120)
    );
    let _ = writeln!(toml, "[[rule]]");
    let _ = writeln!(toml, "name = \"{name}\"");
    let _ = writeln!(toml, "stage = \"pattern\"");
    let _ = writeln!(toml, "kind = \"unknown\"");
    let _ = writeln!(toml, "pattern = {}", toml_string(&pattern));
    let _ = writeln!(toml, "retryable = false");
    Some(ProposedRule {
        name,
        kind: FailureKind::Unknown,
        pattern,
        retryable: false,
        toml,
    })
}

/// The template's first literal words, joined by `_`, unique among `names`.
fn unique_name(words: &[String], names: &mut Vec<String>) -> String {
    let mut base = String::new();
    for w in words.iter().take(5) {
        if base.len() + w.len() + 1 > 48 {
            break;
        }
        if !base.is_empty() {
            base.push('_');
        }
        base.push_str(w);
    }
    if base.is_empty() {
        base.push_str("new_failure_mode");
    }
    let mut name = base.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    names.push(name.clone());
    name
}

/// A TOML string for `s`: literal (`'…'`, or `'''…'''` when it has a `'`), so the regex reads
/// as written; basic (`"…"`) with escapes only for a pattern with `'''` in it.
pub(super) fn toml_string(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        if !s.contains('\'') {
            return format!("'{s}'");
        }
        if !s.contains("'''") {
            return format!("'''{s}'''");
        }
    }
    let mut out = String::with_capacity(s.len() + 8);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
