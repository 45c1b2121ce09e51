//! New failure modes, summarised: failures the classifier does not know, grouped into message
//! templates, each with a count, one example and a proposed classification rule.
//!
//! The runbook's `unknown` branch says "page on-call, new failure mode, add to runbook". A page
//! that lists 250 raw messages is not read; one that says "3 kinds: 120 × *Tool registry lookup
//! failed for `'<str>'`*, …, and here is the rule to add for each" is. [`TemplateMiner`] does
//! the grouping in two steps.
//!
//! 1. **Masking.** Each message (cut to [`MinerOptions::max_message_bytes`], control and
//!    invisible characters dropped) has its variable parts replaced by typed placeholders:
//!    UUIDs → `<uuid>`; runs of 8 or more hex digits with at least one digit (hashes, request
//!    ids) → `<hex>`; numbers → `<num>` (the digits of `t-00042`, `45s`, `gpt4` too); words that
//!    mix letters and digits more than once (`01HX3Y9KQ7`, `req8f3aZ2`) → `<id>`; quoted values
//!    (`'…'`, `"…"`, `` `…` ``) → `<str>` — except a quoted *key* (followed by `:`) and a quoted
//!    *code* (an identifier of at most 48 characters without digits, such as
//!    `'overloaded_error'` or `"tool_not_found"`), which name the failure and are kept.
//!    Credentials that messages echo (`Bearer …`, `api_key=…`, `token: …`, `sk-…`, `AKIA…`)
//!    are masked before anything else: `<secret>` in templates, `***` in examples.
//! 2. **A Drain-style fixed-depth tree** (He et al., *Drain: An Online Log Parsing Approach
//!    with Fixed Depth Tree*, ICWS 2017). The masked message is split on whitespace; the tree's
//!    first level is the token count, the next [`MinerOptions::depth`]` - 2` levels are the
//!    leading tokens (a token with a placeholder goes to the `<*>` child, as does any token once
//!    a node has [`MinerOptions::max_children`] children); a leaf holds templates. A message
//!    joins the leaf's most similar template (share of equal tokens ≥
//!    [`MinerOptions::similarity`]), whose differing tokens become `<*>`; otherwise it starts a
//!    new template.
//!
//! Memory and time are bounded: at most [`MinerOptions::max_templates`] templates (a message
//! that fits none once the cap is reached is counted as *ungrouped*), at most
//! [`MinerOptions::max_tokens`] tokens of at most `max_message_bytes` per message, so adding a
//! message costs O(templates in one leaf × tokens) and the miner never holds more than
//! `max_templates × max_message_bytes` bytes of text (about 256 KiB with the defaults).
//!
//! Maintained crates were considered first: `drain3` (Apache-2.0 only, pulls `bon`,
//! `snafu`, `string-interner`), `logdrain` (pulls `bincode` 1, which RustSec lists as
//! unmaintained, and `dashmap`), `drainrs` (0.1, unmaintained since 2023). None masks
//! quoted values and codes the way failure messages need, and none emits rules, so this module
//! is the ~400 lines it takes.
//!
//! # Proposed rules
//!
//! Every template comes with a [`ProposedRule`] in the classifier's rule-file format (TOML), for
//! the on-call to review, give the right `kind`, and add to a rules file:
//!
//! ```toml
//! # 120 unknown failures like: Tool registry lookup failed for 'web search' (request 3f2a…)
//! [[rule]]
//! name = "tool_registry_lookup_failed_for"
//! stage = "pattern"
//! kind = "unknown"
//! pattern = '''^\s*Tool\s+registry\s+lookup\s+failed\s+for\s+'[^']*'\s+\(request\s+[0-9a-fA-F]{8}-…\)\s*$'''
//! retryable = false
//! ```
//!
//! - `name`: the template's first literal words, lowercased, joined by `_` (at most 48
//!   characters; `_2`, `_3`, … when two templates would share a name).
//! - `stage`: `"pattern"`, the classifier's stage for free-form message patterns.
//! - `kind`: always `"unknown"`: nothing in the message said which runbook branch it belongs to
//!   (the classifier would have found it). The reviewer changes it to `timeout`, `rate_limit`,
//!   `validation` or `model_api_5xx`.
//! - `pattern`: a Rust `regex` anchored at both ends (`^\s*…\s*$`; without `$` when the message
//!   was cut at `max_message_bytes`): literal text escaped, tokens separated by `\s+`, and each
//!   placeholder replaced by what it stands for: `<num>` → `\d+`, `<hex>` → `[0-9a-fA-F]+`,
//!   `<uuid>` → `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`,
//!   `<id>` → `[A-Za-z0-9]+`, `<str>` → `[^']*` (or `[^"]*`, `` [^`]* `` for its quote), a
//!   merged token `<*>` → `\S+`. It is written as a TOML literal string, `'…'`, or `'''…'''`
//!   when it has a `'` (as a basic string, `"…"` with `\\` and `\"`, only when it has `'''`).
//! - `retryable = false`: an unknown failure is never retried blindly.
//!
//! A rule is proposed only when its pattern compiles, matches the template's own example, and
//! keeps at least one literal word of four or more letters (a template made only of
//! placeholders would match far more than its failures); [`FailureTemplate::proposed_rule`] is
//! `None` otherwise.
//!
//! ```
//! use flowfail_core::templates::TemplateMiner;
//! let mut m = TemplateMiner::new();
//! for i in 0..50 {
//!     m.add(&format!("Tool registry lookup failed for 'tool {i}' (request {i:08x}-aaaa-bbbb-cccc-{i:012x})"), None);
//!     m.add(&format!("worker {i} lost its lease after {} ms", i * 7), None);
//! }
//! let top = m.top(5);
//! assert_eq!(top.len(), 2);
//! assert_eq!(top[0].count, 50);
//! let rule = top[0].proposed_rule.as_ref().unwrap();
//! assert!(regex::Regex::new(&rule.pattern).unwrap().is_match("Tool registry lookup failed for 'x y' (request 00000000-aaaa-bbbb-cccc-000000000000)"));
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::FailureKind;

/// Limits and thresholds of the miner. `MinerOptions::default()` is what the decision engine
/// uses.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MinerOptions {
    /// Tree depth, counting the root and the token-count level (Drain's default: 4).
    pub depth: usize,
    /// Share of equal tokens at or above which a message joins a template.
    pub similarity: f64,
    /// Children per tree node before new tokens go to the `<*>` child.
    pub max_children: usize,
    /// Templates kept; messages fitting none beyond this are counted as ungrouped.
    pub max_templates: usize,
    /// Bytes of a message looked at (cut on a character boundary).
    pub max_message_bytes: usize,
    /// Tokens of a message looked at.
    pub max_tokens: usize,
}

impl Default for MinerOptions {
    fn default() -> Self {
        MinerOptions {
            depth: 4,
            similarity: 0.5,
            max_children: 64,
            max_templates: 256,
            max_message_bytes: 1024,
            max_tokens: 64,
        }
    }
}

impl MinerOptions {
    /// These options with at most `n` templates (at least 1).
    pub fn max_templates(mut self, n: usize) -> Self {
        self.max_templates = n.max(1);
        self
    }
}

/// A rule proposed for a template, in the rule-file format (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProposedRule {
    /// Rule name.
    pub name: String,
    /// Proposed kind: `unknown` until a human says otherwise.
    pub kind: FailureKind,
    /// Anchored, escaped regular expression.
    pub pattern: String,
    /// Always `false`: unknown failures are never retried blindly.
    pub retryable: bool,
    /// The `[[rule]]` block, ready to paste into a rules file.
    pub toml: String,
}

/// One group of similar messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailureTemplate {
    /// The template: the messages' common text with `<num>`, `<hex>`, `<uuid>`, `<id>`, `<str>`
    /// and `<*>` where they differ.
    pub template: String,
    /// Messages in the group.
    pub count: u64,
    /// The first message of the group, made safe to show (at most 300 bytes).
    pub example: String,
    /// The task the example came from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_task_id: Option<String>,
    /// The proposed rule, or `None` when none would be safe (see the [module docs](self)).
    pub proposed_rule: Option<ProposedRule>,
}

// Placeholders inside masked text: private-use characters, removed from the input first, so a
// message can never forge one.
const NUM: char = '\u{E000}';
const HEX: char = '\u{E001}';
const UUID: char = '\u{E002}';
const ID: char = '\u{E003}';
const STR_SINGLE: char = '\u{E004}';
const STR_DOUBLE: char = '\u{E005}';
const STR_BACKTICK: char = '\u{E006}';
const SECRET: char = '\u{E007}';
/// A whole token that differs between the messages of a template.
const ANY: &str = "\u{E00F}";

fn is_placeholder(c: char) -> bool {
    ('\u{E000}'..='\u{E00F}').contains(&c)
}

/// How a placeholder reads in a template shown to a human.
fn placeholder_name(c: char) -> &'static str {
    match c {
        NUM => "<num>",
        HEX => "<hex>",
        UUID => "<uuid>",
        ID => "<id>",
        STR_SINGLE | STR_DOUBLE | STR_BACKTICK => "<str>",
        SECRET => "<secret>",
        _ => "<*>",
    }
}

/// What a placeholder matches in a proposed rule.
fn placeholder_regex(c: char) -> &'static str {
    match c {
        NUM => r"\d+",
        HEX => "[0-9a-fA-F]+",
        UUID => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        ID => "[A-Za-z0-9]+",
        STR_SINGLE => "[^']*",
        STR_DOUBLE => "[^\"]*",
        STR_BACKTICK => "[^`]*",
        SECRET => r#"[^\s"',;}]+"#,
        _ => r"\S+",
    }
}

/// Credentials that error messages are known to echo: an `Authorization`/`Bearer` value, a
/// `key=`/`token:`/`password=`/`secret=` value, and keys recognisable by their prefix (`sk-…`,
/// AWS `AKIA…`, Slack `xox?-…`, GitHub `gh?_…`).
static SECRETS: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r#"(?i)\bbearer\s+([^\s"',;}]+)|\b(?:x-api-key|api[_-]?key|access[_-]?token|token|password|passwd|secret|authorization)["']?\s*[:=]\s*["']?(?:bearer\s+)?([^\s"',;}]+)|\b(sk-[A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,})"#,
    )
    .ok()
});

/// `s` with every credential value replaced by the [`SECRET`] placeholder.
fn redact(s: &str) -> String {
    let Some(re) = SECRETS.as_ref() else {
        return s.to_owned();
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for caps in re.captures_iter(s) {
        if let Some(m) = (1..=3).find_map(|i| caps.get(i)) {
            out.push_str(&s[last..m.start()]);
            out.push(SECRET);
            last = m.end();
        }
    }
    out.push_str(&s[last..]);
    out
}

/// The message as the miner sees it: at most `max` bytes, control and invisible characters
/// dropped, private-use characters (the placeholders' range) replaced by `?`, credentials
/// replaced by a placeholder (shown as `***` in examples, `<secret>` in templates).
fn prepare(message: &str, max: usize) -> (String, bool) {
    let mut cut = message.len().min(max);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let truncated = cut < message.len();
    let clean = crate::text::clean_text(&message[..cut]);
    let clean: String = clean
        .chars()
        .map(|c| {
            if ('\u{E000}'..='\u{F8FF}').contains(&c) {
                '?'
            } else {
                c
            }
        })
        .collect();
    (redact(&clean), truncated)
}

/// The message with its variable parts replaced by placeholders (see the [module docs](self)).
pub fn mask(message: &str) -> String {
    let (clean, _) = prepare(message, MinerOptions::default().max_message_bytes);
    human(&mask_prepared(&clean))
}

fn mask_prepared(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    mask_into(s, true, &mut out);
    out
}

fn mask_into(s: &str, quotes: bool, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let opens = quotes
            && matches!(c, b'\'' | b'"' | b'`')
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if opens && let Some(end) = closing_quote(b, i) {
            let content = &s[i + 1..end];
            out.push(char::from(c));
            if followed_by_colon(b, end + 1) || is_code(content) {
                mask_into(content, false, out);
            } else {
                out.push(match c {
                    b'\'' => STR_SINGLE,
                    b'"' => STR_DOUBLE,
                    _ => STR_BACKTICK,
                });
            }
            out.push(char::from(c));
            i = end + 1;
            continue;
        }
        if c.is_ascii_alphanumeric() {
            if let Some(len) = uuid_at(b, i) {
                out.push(UUID);
                i += len;
                continue;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            mask_word(&s[start..i], out);
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
}

/// The index of the quote closing the one at `open`, within 256 bytes, not escaped and not
/// inside a word (`'it's'` closes at the last quote).
fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    let q = b[open];
    let limit = b.len().min(open + 1 + 256);
    (open + 1..limit).find(|&j| {
        b[j] == q && b[j - 1] != b'\\' && b.get(j + 1).is_none_or(|n| !n.is_ascii_alphanumeric())
    })
}

fn followed_by_colon(b: &[u8], from: usize) -> bool {
    b.get(from..)
        .and_then(|rest| rest.iter().find(|c| **c != b' '))
        .is_some_and(|c| *c == b':')
}

/// A quoted code names the failure (`'overloaded_error'`, `"ToolNotFound"`): kept.
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=48).contains(&b.len())
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'.' | b'-'))
}

/// The length of a UUID starting at `i` (8-4-4-4-12 hex digits, not inside a longer word).
fn uuid_at(b: &[u8], i: usize) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut j = i;
    for (n, g) in GROUPS.iter().enumerate() {
        if n > 0 {
            if b.get(j) != Some(&b'-') {
                return None;
            }
            j += 1;
        }
        let part = b.get(j..j + g)?;
        if !part.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        j += g;
    }
    let end_ok = b.get(j).is_none_or(|c| !c.is_ascii_alphanumeric());
    end_ok.then_some(j - i)
}

/// One ASCII-alphanumeric word, masked: numbers, hashes, ids; `gpt4` and `45s` keep their
/// letters.
fn mask_word(w: &str, out: &mut String) {
    let b = w.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        out.push_str(w);
        return;
    }
    if digits == b.len() {
        out.push(NUM);
        return;
    }
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) {
        out.push(HEX);
        return;
    }
    let switches = b
        .windows(2)
        .filter(|p| p[0].is_ascii_digit() != p[1].is_ascii_digit())
        .count();
    if switches > 1 {
        out.push(ID);
        return;
    }
    let split = b
        .iter()
        .position(|c| c.is_ascii_digit() != b[0].is_ascii_digit())
        .unwrap_or(b.len());
    let (head, tail) = w.split_at(split);
    for part in [head, tail] {
        if part.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
            out.push(NUM);
        } else {
            out.push_str(part);
        }
    }
}

/// Masked text as a human reads it.
fn human(masked: &str) -> String {
    let mut out = String::with_capacity(masked.len() + 8);
    for c in masked.chars() {
        if is_placeholder(c) {
            out.push_str(placeholder_name(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Cluster {
    tokens: Vec<String>,
    count: u64,
    /// The first message (prepared: cut, cleaned, credentials as `***`) and its task.
    example: String,
    example_task: Option<String>,
    /// The first message was cut at `max_message_bytes` or `max_tokens`.
    truncated: bool,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    clusters: Vec<usize>,
}

/// Groups messages into templates. See the [module docs](self).
#[derive(Debug, Default)]
pub struct TemplateMiner {
    opts: MinerOptions,
    root: Node,
    clusters: Vec<Cluster>,
    ungrouped: u64,
    total: u64,
}

impl TemplateMiner {
    /// A miner with the default options.
    pub fn new() -> Self {
        Self::with_options(MinerOptions::default())
    }

    /// A miner with these options.
    pub fn with_options(opts: MinerOptions) -> Self {
        TemplateMiner {
            opts,
            ..TemplateMiner::default()
        }
    }

    /// Messages added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Messages that fit no template once `max_templates` was reached.
    pub fn ungrouped(&self) -> u64 {
        self.ungrouped
    }

    /// Adds one message (and the task it came from, for the example).
    pub fn add(&mut self, message: &str, task_id: Option<&str>) {
        self.total += 1;
        let (clean, cut) = prepare(message, self.opts.max_message_bytes);
        let masked = mask_prepared(&clean);
        let mut tokens: Vec<String> = masked
            .split_whitespace()
            .take(self.opts.max_tokens.saturating_add(1))
            .map(str::to_owned)
            .collect();
        let truncated = cut || tokens.len() > self.opts.max_tokens;
        tokens.truncate(self.opts.max_tokens);
        let opts = self.opts;
        let leaf = leaf_for(&mut self.root, &tokens, &opts);
        let best = leaf
            .clusters
            .iter()
            .map(|&i| (i, similarity(&self.clusters[i].tokens, &tokens)))
            .filter(|(_, s)| *s >= opts.similarity)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        if let Some((i, _)) = best {
            let c = &mut self.clusters[i];
            for (t, m) in c.tokens.iter_mut().zip(&tokens) {
                if t != m {
                    *t = ANY.to_owned();
                }
            }
            c.count += 1;
            return;
        }
        if self.clusters.len() >= opts.max_templates {
            self.ungrouped += 1;
            return;
        }
        leaf.clusters.push(self.clusters.len());
        self.clusters.push(Cluster {
            tokens,
            count: 1,
            example: clean.replace(SECRET, "***"),
            example_task: task_id.map(str::to_owned),
            truncated,
        });
    }

    /// The `n` largest templates, largest first (ties: first seen first), with their proposed
    /// rules (names unique among them).
    pub fn top(&self, n: usize) -> Vec<FailureTemplate> {
        let mut order: Vec<usize> = (0..self.clusters.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.clusters[i].count), i));
        let mut names: Vec<String> = Vec::new();
        order
            .into_iter()
            .take(n)
            .map(|i| {
                let c = &self.clusters[i];
                let rule = propose(c, &mut names);
                FailureTemplate {
                    template: human(&c.tokens.join(" ")),
                    count: c.count,
                    example: crate::model::sanitize(&c.example, 300),
                    example_task_id: c.example_task.clone(),
                    proposed_rule: rule,
                }
            })
            .collect()
    }
}

/// Descends (creating as needed) to the leaf for these tokens.
fn leaf_for<'a>(root: &'a mut Node, tokens: &[String], opts: &MinerOptions) -> &'a mut Node {
    let mut node = root.children.entry(tokens.len().to_string()).or_default();
    for t in tokens.iter().take(opts.depth.saturating_sub(2)) {
        let key = if t.chars().any(is_placeholder) {
            ANY.to_owned()
        } else if node.children.contains_key(t.as_str()) || node.children.len() < opts.max_children
        {
            t.clone()
        } else {
            ANY.to_owned()
        };
        node = node.children.entry(key).or_default();
    }
    node
}

/// Drain's similarity: the share of positions where the template and the message agree (a
/// `<*>` in the template agrees with nothing, so a template of wildcards attracts nothing).
fn similarity(template: &[String], tokens: &[String]) -> f64 {
    if template.is_empty() {
        return if tokens.is_empty() { 1.0 } else { 0.0 };
    }
    let same = template
        .iter()
        .zip(tokens)
        .filter(|(t, m)| t.as_str() != ANY && t == m)
        .count();
    same as f64 / template.len() as f64
}

/// The rule for a template, if one is safe to propose.
fn propose(c: &Cluster, names: &mut Vec<String>) -> Option<ProposedRule> {
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
fn toml_string(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_numbers_ids_hashes_uuids_and_quoted_values() {
        assert_eq!(
            mask("task t-00042 failed after 45s on gpt4 (attempt 3)"),
            "task t-<num> failed after <num>s on gpt<num> (attempt <num>)"
        );
        assert_eq!(
            mask("request 123e4567-e89b-12d3-a456-426614174000 hash 9f86d081884c7d65"),
            "request <uuid> hash <hex>"
        );
        assert_eq!(mask("lease 01HX3Y9KQ7 lost"), "lease <id> lost");
        assert_eq!(
            mask("Unknown tool 'web search v2' in \"plan\" step"),
            "Unknown tool '<str>' in \"plan\" step"
        );
        assert_eq!(
            mask(
                r#"{"type":"error","error":{"type":"flow_engine_panic","message":"boom at 0x1f"}}"#
            ),
            r#"{"type":"error","error":{"type":"flow_engine_panic","message":"<str>"}}"#
        );
        assert_eq!(mask("it's 'fine'"), "it's 'fine'");
    }

    #[test]
    fn credentials_never_reach_a_template_an_example_or_a_rule() {
        let mut m = TemplateMiner::new();
        for (i, key) in ["sk-abcdefghijklmnopqrstuv", "sk-zyxwvutsrqponmlkjihgf"]
            .iter()
            .enumerate()
        {
            m.add(
                &format!("Vault said no to api_key={key} and Authorization: Bearer tok{i}secretvalue for x-api-key: \"{key}\""),
                None,
            );
        }
        let t = &m.top(1)[0];
        assert_eq!(t.count, 2);
        let rule = t.proposed_rule.as_ref().unwrap();
        for text in [&t.template, &t.example, &rule.pattern, &rule.toml] {
            assert!(
                !text.contains("abcdefghij") && !text.contains("secretvalue"),
                "{text}"
            );
        }
        assert!(t.example.contains("api_key=***"), "{}", t.example);
        assert!(regex::Regex::new(&rule.pattern).unwrap().is_match(
            "Vault said no to api_key=sk-other1234567 and Authorization: Bearer abc for x-api-key: \"k\""
        ));
    }

    #[test]
    fn a_message_cannot_forge_a_placeholder() {
        assert_eq!(mask("a \u{E000} b"), "a ? b");
    }

    #[test]
    fn proposed_rules_parse_as_toml_and_match_their_examples() {
        let mut m = TemplateMiner::new();
        m.add(
            "Planner refused: step 'it''s' at 12 isn't valid",
            Some("t-1"),
        );
        m.add(
            "Planner refused: step 'other thing' at 13 isn't valid",
            None,
        );
        let t = m.top(1);
        let r = t[0].proposed_rule.as_ref().unwrap();
        let v: toml::Value = toml::from_str(&r.toml).unwrap();
        let rule = &v["rule"][0];
        assert_eq!(rule["kind"].as_str(), Some("unknown"));
        assert_eq!(rule["retryable"].as_bool(), Some(false));
        let re = regex::Regex::new(rule["pattern"].as_str().unwrap()).unwrap();
        assert!(re.is_match("Planner refused: step 'x' at 99 isn't valid"));
        assert!(!re.is_match("Planner refused: step 'x' at 99 isn't valid, and more"));
        assert_eq!(t[0].example_task_id.as_deref(), Some("t-1"));
    }

    /// What is proposed is what the classifier loads: `flowfail classify --rules` (and the
    /// config's `rules`) take the block as it is, and it then decides its own example.
    #[test]
    fn proposed_rules_load_into_the_classifier_and_decide_their_example() {
        let mut m = TemplateMiner::new();
        for i in 0..5 {
            m.add(
                &format!("ToolRegistryError: no handler registered for tool 'lint.plan.v{i}' (request 43d6c44a-01b4-457b-af9c-386e67c7ee{i:02})"),
                None,
            );
            m.add(
                &format!("Planner refused: step 'x{i}' at {i} isn't valid"),
                None,
            );
        }
        let top = m.top(5);
        assert_eq!(top.len(), 2);
        let blocks: Vec<String> = top
            .iter()
            .map(|t| t.proposed_rule.as_ref().unwrap().toml.clone())
            .collect();
        let text = blocks.join("\n");
        let rules =
            crate::classify::RuleSet::with_extra_toml([("proposed.toml", text.as_str())]).unwrap();
        for t in &top {
            let r = t.proposed_rule.as_ref().unwrap();
            let c = rules.classify(&t.example, None);
            assert_eq!(c.rule, r.name, "{}", t.example);
            assert_eq!(c.kind, FailureKind::Unknown);
            assert!(!c.retryable);
        }
    }

    #[test]
    fn every_pattern_is_written_as_a_toml_string_that_reads_back() {
        for p in [r"^a\s+b$", r"^'[^']*'\s+x$", r"^x'''y\\z\x22$", "^'$"] {
            let v: toml::Value = toml::from_str(&format!("pattern = {}", toml_string(p))).unwrap();
            assert_eq!(v["pattern"].as_str(), Some(p));
        }
    }

    #[test]
    fn templates_of_placeholders_only_get_no_rule() {
        let mut m = TemplateMiner::new();
        m.add("42 17", None);
        assert!(m.top(1)[0].proposed_rule.is_none());
    }

    #[test]
    fn the_template_cap_counts_the_rest_as_ungrouped() {
        let mut m = TemplateMiner::with_options(MinerOptions::default().max_templates(2));
        for w in ["alpha", "bravo", "charlie", "delta"] {
            m.add(w, None);
        }
        assert_eq!(m.top(10).len(), 2);
        assert_eq!(m.ungrouped(), 2);
        assert_eq!(m.total(), 4);
    }

    /// Three failure modes, each with every kind of variable part.
    fn variant(kind: usize, n: u64, word: &str) -> String {
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            n,
            n % 0xffff,
            n % 0xfff,
            n % 0xfff,
            n
        );
        match kind {
            0 => format!("Tool registry lookup failed for '{word} {n}' (request {uuid})"),
            1 => format!(
                "worker w-{n} lost its lease after {n}ms; checksum {:016x}",
                n + 0xabc0_0000
            ),
            _ => format!("Sandbox exited with code {n} in step \"{word} {n}\" of flow {uuid}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn variants_group_together_and_different_messages_stay_apart(
            cases in proptest::collection::vec((0usize..3, 0u64..u64::from(u32::MAX), "[a-z]{1,12}"), 1..60)
        ) {
            let mut m = TemplateMiner::new();
            let mut want = [0u64; 3];
            for (k, n, w) in &cases {
                m.add(&variant(*k, *n, w), None);
                want[*k] += 1;
            }
            let top = m.top(10);
            // One template per mode that occurred, with exactly that mode's count.
            proptest::prop_assert_eq!(top.len(), want.iter().filter(|n| **n > 0).count());
            for t in &top {
                let k = if t.template.starts_with("Tool") { 0 } else if t.template.starts_with("worker") { 1 } else { 2 };
                proptest::prop_assert_eq!(t.count, want[k], "{}", t.template);
                let re = regex::Regex::new(&t.proposed_rule.as_ref().unwrap().pattern).unwrap();
                for (j, n, w) in &cases {
                    proptest::prop_assert_eq!(re.is_match(&variant(*j, *n, w)), *j == k);
                }
            }
        }
    }

    #[test]
    fn long_messages_are_cut_and_their_rules_left_open() {
        let long = format!("Graph compiler aborted: {}", "node ".repeat(1000));
        let mut m = TemplateMiner::new();
        m.add(&long, None);
        let t = m.top(1);
        assert!(t[0].example.len() <= 304);
        let r = t[0].proposed_rule.as_ref().unwrap();
        assert!(!r.pattern.ends_with('$'));
        assert!(regex::Regex::new(&r.pattern).unwrap().is_match(&long));
    }
}
