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
mod mask;
mod rules;

pub use mask::mask;
use mask::{ANY, SECRET, human, is_placeholder, mask_prepared, prepare};
use rules::propose;

#[derive(Debug, Clone)]
pub(super) struct Cluster {
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

#[cfg(test)]
mod tests;
