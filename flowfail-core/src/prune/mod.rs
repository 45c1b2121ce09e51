//! Context-bundle pruning to a byte budget.
//!
//! A FlowEngine context bundle is JSON; when it is too large the model call times out (the
//! runbook's most common failure). [`prune`] cuts it down to a byte budget while keeping what
//! matters, and reports what it removed.
//!
//! # Strategy
//!
//! In this order, each step only as far as needed:
//!
//! 1. **Pinned values are never touched.** They are copied byte for byte from the input. By
//!    default `/task`, `/system_prompt` and `/system` are pinned (when present); add more with
//!    [`PruneOptions::keep`].
//! 2. **Whitespace** outside pinned values is removed.
//! 3. **The oldest elements of sequences are dropped first**, from the largest sequence first, so
//!    conversation history keeps its newest turns. When dropping one more element would land
//!    far under the budget, that element is kept and shortened instead (its longest strings
//!    truncated), so the result uses the budget.
//! 4. **The longest strings are truncated**, all to a common length found by binary search, each
//!    ending in a marker recording its original length: `… [truncated: original 734003 bytes]`.
//! 5. **Unpinned object members are dropped**, largest first, as a last resort.
//!
//! A bundle already within budget is returned unchanged, so pruning is idempotent:
//! `prune(prune(x)) == prune(x)`. Pruning is deterministic. Input larger than
//! [`PruneOptions::max_input_bytes`] or nested deeper than [`PruneOptions::max_depth`] is refused
//! before any deep work, and so is invalid JSON or invalid UTF-8. If the pinned values alone do not
//! fit the budget, the result is an error and nothing is produced.
//!
//! # Example layout
//!
//! ```json
//! {
//!   "task": {"task_id": "t-42", "flow_type": "impl", "instructions": "…"},
//!   "system_prompt": "You are FlowEngine's implementation model…",
//!   "messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}],
//!   "files": [{"path": "src/lib.rs", "content": "…"}],
//!   "metadata": {"repo": "…", "created_at": "…"}
//! }
//! ```
//!
//! ```
//! use flowfail_core::prune::{prune, PruneOptions};
//! let turns: Vec<String> = (0..200).map(|i| format!(r#"{{"role":"user","content":"turn {i} {}"}}"#, "x".repeat(100))).collect();
//! let bundle = format!(r#"{{"task":{{"task_id":"t-1"}},"messages":[{}]}}"#, turns.join(","));
//! let out = prune(bundle.as_bytes(), 5_000, &PruneOptions::default()).unwrap();
//! assert!(out.bytes.len() <= 5_000);
//! let v: serde_json::Value = serde_json::from_slice(&out.bytes).unwrap();
//! assert_eq!(v["task"]["task_id"], "t-1");                         // pinned
//! assert!(v["messages"].as_array().unwrap().last().unwrap()["content"]
//!     .as_str().unwrap().starts_with("turn 199"));                // newest turn kept
//! ```

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

mod parse;
mod tree;

use tree::Tree;

/// Pointers pinned by default: the task, the system prompt.
pub const DEFAULT_PINNED: [&str; 3] = ["/task", "/system_prompt", "/system"];

/// Options of [`prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneOptions {
    /// JSON pointers (RFC 6901) whose values are kept byte for byte. Pointers that do not
    /// resolve in a given bundle are ignored (and listed in the manifest).
    pub pinned: Vec<String>,
    /// Refuse inputs larger than this.
    pub max_input_bytes: u64,
    /// Refuse inputs nested deeper than this (at most 10,000; the default). Pruning never
    /// recurses, so deep input costs no stack.
    pub max_depth: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            pinned: DEFAULT_PINNED.iter().map(|s| s.to_string()).collect(),
            max_input_bytes: 64 * 1024 * 1024,
            max_depth: 10_000,
        }
    }
}

impl PruneOptions {
    /// Default options without the default pins.
    pub fn without_default_pins() -> Self {
        PruneOptions {
            pinned: Vec::new(),
            ..Self::default()
        }
    }
    /// Pins one more pointer.
    pub fn keep(mut self, pointer: impl Into<String>) -> Self {
        self.pinned.push(pointer.into());
        self
    }
    /// Sets the input size bound.
    pub fn max_input_bytes(mut self, n: u64) -> Self {
        self.max_input_bytes = n;
        self
    }
    /// Sets the nesting bound.
    pub fn max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
}

/// One thing pruning removed or shortened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Removal {
    /// The oldest `count` elements of the sequence at `pointer` were dropped.
    DroppedOldest {
        /// The sequence.
        pointer: String,
        /// How many elements.
        count: usize,
        /// Their serialized size.
        bytes: u64,
    },
    /// The string at `pointer` was truncated.
    Truncated {
        /// The string.
        pointer: String,
        /// Its original length (bytes of its JSON text, without quotes).
        original_bytes: u64,
        /// Bytes kept before the marker.
        kept_bytes: u64,
    },
    /// The member at `pointer` was dropped.
    DroppedMember {
        /// The member.
        pointer: String,
        /// Its serialized size.
        bytes: u64,
    },
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Manifest {
    /// Input size.
    pub input_bytes: u64,
    /// Output size.
    pub output_bytes: u64,
    /// The budget.
    pub budget: u64,
    /// Whether anything changed (`false`: the input fit and is returned as is).
    pub changed: bool,
    /// Pinned pointers that resolved.
    pub pinned: Vec<String>,
    /// Pinned pointers that did not resolve in this bundle.
    pub pinned_missing: Vec<String>,
    /// What was removed, in the order it was decided (at most [`MAX_MANIFEST_ENTRIES`]).
    pub removed: Vec<Removal>,
    /// Entries left out of `removed` beyond the cap.
    pub removed_not_listed: u64,
}

/// The cap on manifest entries.
pub const MAX_MANIFEST_ENTRIES: usize = 1000;

/// The pruned bundle and its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// The pruned JSON, at most the budget.
    pub bytes: Vec<u8>,
    /// What was removed.
    pub manifest: Manifest,
}

const HARD_MAX_DEPTH: usize = 10_000;

/// Prunes JSON `input` to at most `budget` bytes. See the [module docs](self).
pub fn prune(input: &[u8], budget: u64, options: &PruneOptions) -> Result<Pruned> {
    if input.len() as u64 > options.max_input_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "input is {} bytes, over the {}-byte limit",
                input.len(),
                options.max_input_bytes
            ),
        )
        .with_operation("prune"));
    }
    let max_depth = options.max_depth.min(HARD_MAX_DEPTH);
    std::str::from_utf8(input).map_err(|e| {
        Error::invalid_input(format!(
            "input is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
        .with_operation("prune")
    })?;
    let pointers = options
        .pinned
        .iter()
        .map(|p| parse_pointer(p).map(|t| (p.clone(), t)))
        .collect::<Result<Vec<_>>>()?;
    let mut tree = Tree::parse(input, max_depth)?;
    let mut pinned = Vec::new();
    let mut pinned_missing = Vec::new();
    for (raw, tokens) in &pointers {
        if tree.pin(tokens) {
            pinned.push(raw.clone());
        } else {
            pinned_missing.push(raw.clone());
        }
    }
    let mut manifest = Manifest {
        input_bytes: input.len() as u64,
        output_bytes: input.len() as u64,
        budget,
        changed: false,
        pinned,
        pinned_missing,
        removed: Vec::new(),
        removed_not_listed: 0,
    };
    if input.len() as u64 <= budget {
        return Ok(Pruned {
            bytes: input.to_vec(),
            manifest,
        });
    }
    tree.prepare();
    let floor = tree.min_size();
    if floor > budget {
        return Err(Error::invalid_input(format!(
            "cannot prune to {budget} bytes: the pinned content alone needs {floor} bytes"
        ))
        .with_operation("prune"));
    }
    let mut log = Log::default();
    if tree.total() > budget {
        tree.drop_oldest(budget, &mut log);
    }
    if tree.total() > budget {
        let all: Vec<u32> = (0..tree.nodes.len() as u32).collect();
        tree.truncate_strings(&all, tree.total() - budget, &mut log);
    }
    if tree.total() > budget {
        tree.drop_members(budget, &mut log);
    }
    let bytes = tree.emit();
    debug_assert_eq!(bytes.len() as u64, tree.total());
    if bytes.len() as u64 > budget {
        // The floor check makes this unreachable; refuse rather than return an oversize bundle.
        return Err(
            Error::new(ErrorKind::Unexpected, "pruning did not reach the budget")
                .with_operation("prune"),
        );
    }
    manifest.output_bytes = bytes.len() as u64;
    manifest.changed = true;
    manifest.removed = log.finish(&tree);
    manifest.removed_not_listed = log.not_listed;
    Ok(Pruned { bytes, manifest })
}

/// Parses an RFC 6901 JSON pointer into unescaped tokens.
fn parse_pointer(p: &str) -> Result<Vec<String>> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(Error::invalid_input(format!(
            "invalid JSON pointer {}: must be empty or start with '/'",
            crate::model::describe_untrusted(p)
        )));
    };
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(Error::invalid_input(format!(
                                "invalid JSON pointer {}: '~' must be followed by 0 or 1",
                                crate::model::describe_untrusted(p)
                            )));
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}
/// Collects manifest entries; pointers are rendered at the end.
#[derive(Default)]
struct Log {
    /// (array, count, bytes), in first-drop order.
    drops: Vec<(u32, usize, u64)>,
    /// (string, original, kept) or (member, bytes, 0) with a tag.
    others: Vec<(u8, u32, u64, u64)>,
    not_listed: u64,
}

impl Log {
    fn dropped(&mut self, array: u32, bytes: u64) {
        if let Some(d) = self.drops.iter_mut().find(|d| d.0 == array) {
            d.1 += 1;
            d.2 += bytes;
        } else {
            self.drops.push((array, 1, bytes));
        }
    }
    fn truncated(&mut self, node: u32, original: u64, kept: u64) {
        self.push((0, node, original, kept));
    }
    fn member(&mut self, node: u32, bytes: u64) {
        self.push((1, node, bytes, 0));
    }
    fn push(&mut self, e: (u8, u32, u64, u64)) {
        if self.drops.len() + self.others.len() >= MAX_MANIFEST_ENTRIES {
            self.not_listed += 1;
        } else {
            self.others.push(e);
        }
    }
    fn finish(&self, tree: &Tree<'_>) -> Vec<Removal> {
        let mut out: Vec<Removal> = self
            .drops
            .iter()
            .map(|&(a, count, bytes)| Removal::DroppedOldest {
                pointer: tree.pointer(a),
                count,
                bytes,
            })
            .collect();
        out.extend(self.others.iter().map(|&(tag, i, a, b)| match tag {
            0 => Removal::Truncated {
                pointer: tree.pointer(i),
                original_bytes: a,
                kept_bytes: b,
            },
            _ => Removal::DroppedMember {
                pointer: tree.pointer(i),
                bytes: a,
            },
        }));
        out
    }
}

#[cfg(test)]
mod tests;
