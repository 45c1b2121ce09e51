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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

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

// ---------------------------------------------------------------------------------------------
// The span tree

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Leaf,
    Str,
    Array,
    Object,
}

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    start: usize,
    end: usize,
    /// Raw key span (with quotes) when a member of an object.
    key: (usize, usize),
    parent: u32,
    /// Children: `kids[kid_off..kid_off + kid_len]`.
    kid_off: u32,
    kid_len: u32,
    // --- state ---
    pinned: bool,
    /// Inside a pinned value (or pinned itself): immutable.
    frozen: bool,
    /// Has a pinned descendant: cannot be removed.
    holds_pin: bool,
    removed: bool,
    /// For truncated strings: bytes of raw content kept, and the marker.
    cut: Option<(usize, String)>,
    /// Current emitted size.
    size: u64,
    /// Live (not removed) children.
    live: u32,
}

struct Tree<'a> {
    src: &'a [u8],
    nodes: Vec<Node>,
    kids: Vec<u32>,
}

fn syntax(msg: &str, pos: usize) -> Error {
    Error::invalid_input(format!("invalid JSON: {msg} at byte {pos}")).with_operation("prune")
}

struct Frame {
    node: u32,
    kids: Vec<u32>,
    is_obj: bool,
    key: (usize, usize),
}

fn new_node(kind: Kind, start: usize, key: (usize, usize), parent: u32) -> Node {
    Node {
        kind,
        start,
        end: start,
        key,
        parent,
        kid_off: 0,
        kid_len: 0,
        pinned: false,
        frozen: false,
        holds_pin: false,
        removed: false,
        cut: None,
        size: 0,
        live: 0,
    }
}

impl<'a> Tree<'a> {
    fn parse(src: &'a [u8], max_depth: usize) -> Result<Self> {
        let mut t = Tree {
            src,
            nodes: Vec::new(),
            kids: Vec::new(),
        };
        let mut stack: Vec<Frame> = Vec::new();
        let mut pos = skip_ws(src, 0);
        // `true` when a value is expected next; `false` right after one.
        let mut want_value = true;
        let mut last: u32 = NONE;
        loop {
            if want_value {
                let (parent, key) = stack
                    .last()
                    .map(|f| (f.node, f.key))
                    .unwrap_or((NONE, (0, 0)));
                let Some(&b) = src.get(pos) else {
                    return Err(syntax("unexpected end of input", pos));
                };
                if t.nodes.len() >= (NONE - 1) as usize {
                    return Err(syntax("too many values", pos));
                }
                let idx = t.nodes.len() as u32;
                if b == b'{' || b == b'[' {
                    let is_obj = b == b'{';
                    let kind = if is_obj { Kind::Object } else { Kind::Array };
                    t.nodes.push(new_node(kind, pos, key, parent));
                    if stack.len() >= max_depth {
                        // Refused as soon as the bound is crossed: the parser never recurses.
                        return Err(Error::invalid_input(format!(
                            "input is nested deeper than {max_depth} levels"
                        ))
                        .with_operation("prune"));
                    }
                    stack.push(Frame {
                        node: idx,
                        kids: Vec::new(),
                        is_obj,
                        key: (0, 0),
                    });
                    pos = skip_ws(src, pos + 1);
                    let close = if is_obj { b'}' } else { b']' };
                    if src.get(pos) == Some(&close) {
                        last = t.close(&mut stack, pos);
                        pos += 1;
                        want_value = false;
                    } else if is_obj {
                        pos = read_key(src, &mut stack, pos)?;
                    }
                    continue;
                }
                let (kind, end) = match b {
                    b'"' => (Kind::Str, scan_string(src, pos)?),
                    b't' => (Kind::Leaf, literal(src, pos, b"true")?),
                    b'f' => (Kind::Leaf, literal(src, pos, b"false")?),
                    b'n' => (Kind::Leaf, literal(src, pos, b"null")?),
                    b'-' | b'0'..=b'9' => (Kind::Leaf, scan_number(src, pos)?),
                    _ => return Err(syntax("expected a value", pos)),
                };
                let mut node = new_node(kind, pos, key, parent);
                node.end = end;
                t.nodes.push(node);
                pos = end;
                last = idx;
                want_value = false;
            } else {
                let Some(frame) = stack.last_mut() else {
                    pos = skip_ws(src, pos);
                    if pos != src.len() {
                        return Err(syntax("trailing characters after the document", pos));
                    }
                    break;
                };
                frame.kids.push(last);
                let is_obj = frame.is_obj;
                pos = skip_ws(src, pos);
                match src.get(pos) {
                    Some(b',') => {
                        pos = skip_ws(src, pos + 1);
                        if is_obj {
                            pos = read_key(src, &mut stack, pos)?;
                        }
                        want_value = true;
                    }
                    Some(b'}') if is_obj => {
                        last = t.close(&mut stack, pos);
                        pos += 1;
                    }
                    Some(b']') if !is_obj => {
                        last = t.close(&mut stack, pos);
                        pos += 1;
                    }
                    Some(_) => return Err(syntax("expected ',' or a closing bracket", pos)),
                    None => return Err(syntax("unexpected end of input", pos)),
                }
            }
        }
        Ok(t)
    }

    /// Closes the innermost container at `pos` (its closing bracket); returns its index.
    fn close(&mut self, stack: &mut Vec<Frame>, pos: usize) -> u32 {
        let Some(f) = stack.pop() else {
            return NONE;
        };
        let n = &mut self.nodes[f.node as usize];
        n.end = pos + 1;
        n.kid_off = self.kids.len() as u32;
        n.kid_len = f.kids.len() as u32;
        self.kids.extend_from_slice(&f.kids);
        f.node
    }

    fn children(&self, i: u32) -> &[u32] {
        let n = &self.nodes[i as usize];
        &self.kids[n.kid_off as usize..(n.kid_off + n.kid_len) as usize]
    }

    fn key_text(&self, i: u32) -> String {
        let (s, e) = self.nodes[i as usize].key;
        let raw = &self.src[s..e];
        if !raw.contains(&b'\\') {
            return String::from_utf8_lossy(&raw[1..raw.len() - 1]).into_owned();
        }
        serde_json::from_slice::<String>(raw)
            .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
    }

    /// Marks the value at `tokens` pinned; `false` if it does not resolve.
    fn pin(&mut self, tokens: &[String]) -> bool {
        let mut cur = 0u32;
        for tok in tokens {
            let n = &self.nodes[cur as usize];
            let next = match n.kind {
                Kind::Object => self
                    .children(cur)
                    .iter()
                    .rev() // JSON's last duplicate key wins
                    .find(|&&k| self.key_text(k) == *tok)
                    .copied(),
                Kind::Array => tok
                    .parse::<usize>()
                    .ok()
                    .filter(|_| tok == "0" || !tok.starts_with('0'))
                    .and_then(|i| self.children(cur).get(i).copied()),
                _ => None,
            };
            match next {
                Some(k) => cur = k,
                None => return false,
            }
        }
        self.nodes[cur as usize].pinned = true;
        let mut p = self.nodes[cur as usize].parent;
        while p != NONE {
            self.nodes[p as usize].holds_pin = true;
            p = self.nodes[p as usize].parent;
        }
        true
    }

    /// Computes frozen flags and compact sizes.
    fn prepare(&mut self) {
        for i in 0..self.nodes.len() {
            let p = self.nodes[i].parent;
            let parent_frozen = p != NONE && self.nodes[p as usize].frozen;
            let n = &mut self.nodes[i];
            n.frozen = n.pinned || parent_frozen;
        }
        // Children always come after their parent: sizes bottom-up in reverse order.
        for i in (0..self.nodes.len()).rev() {
            let size = self.compute_size(i as u32);
            let live = self.nodes[i].kid_len;
            let n = &mut self.nodes[i];
            n.size = size;
            n.live = live;
        }
    }

    fn contrib(&self, k: u32) -> u64 {
        let n = &self.nodes[k as usize];
        let key = if n.parent != NONE && self.nodes[n.parent as usize].kind == Kind::Object {
            (n.key.1 - n.key.0) as u64 + 1
        } else {
            0
        };
        key + n.size
    }

    fn compute_size(&self, i: u32) -> u64 {
        let n = &self.nodes[i as usize];
        if n.pinned || matches!(n.kind, Kind::Leaf | Kind::Str) {
            return (n.end - n.start) as u64;
        }
        let kids = self.children(i);
        let commas = kids.len().saturating_sub(1) as u64;
        2 + commas + kids.iter().map(|&k| self.contrib(k)).sum::<u64>()
    }

    fn total(&self) -> u64 {
        self.nodes.first().map_or(0, |n| n.size)
    }

    /// Size with everything removable removed and every string cut to its marker.
    fn min_size(&self) -> u64 {
        let mut min = vec![0u64; self.nodes.len()];
        for i in (0..self.nodes.len()).rev() {
            let n = &self.nodes[i];
            min[i] = if n.frozen {
                n.size
            } else {
                match n.kind {
                    Kind::Leaf => n.size,
                    Kind::Str => {
                        let orig = (n.end - n.start - 2) as u64;
                        n.size.min(2 + marker(orig).len() as u64)
                    }
                    Kind::Array | Kind::Object => {
                        let kept: Vec<u64> = self
                            .children(i as u32)
                            .iter()
                            .filter(|&&k| {
                                let c = &self.nodes[k as usize];
                                c.pinned || c.holds_pin
                            })
                            .map(|&k| {
                                let c = &self.nodes[k as usize];
                                let key = if n.kind == Kind::Object {
                                    (c.key.1 - c.key.0) as u64 + 1
                                } else {
                                    0
                                };
                                key + min[k as usize]
                            })
                            .collect();
                        2 + kept.len().saturating_sub(1) as u64 + kept.iter().sum::<u64>()
                    }
                }
            };
        }
        min.first().copied().unwrap_or(0)
    }

    /// Whether `k` may be removed: not frozen, holds no pin, not removed.
    fn removable(&self, k: u32) -> bool {
        let n = &self.nodes[k as usize];
        !n.frozen && !n.holds_pin && !n.removed
    }

    /// Removes `k` and shrinks its ancestors. Returns the bytes saved.
    fn remove(&mut self, k: u32) -> u64 {
        let parent = self.nodes[k as usize].parent;
        if parent == NONE {
            return 0;
        }
        let live = self.nodes[parent as usize].live;
        let saved = self.contrib(k) + u64::from(live > 1);
        self.nodes[k as usize].removed = true;
        self.nodes[parent as usize].live -= 1;
        self.shrink_from(parent, saved);
        saved
    }

    fn shrink_from(&mut self, mut i: u32, by: u64) {
        while i != NONE {
            let n = &mut self.nodes[i as usize];
            n.size -= by;
            i = n.parent;
        }
    }

    fn is_live(&self, mut i: u32) -> bool {
        while i != NONE {
            if self.nodes[i as usize].removed {
                return false;
            }
            i = self.nodes[i as usize].parent;
        }
        true
    }

    /// Step 3: drop the oldest elements of sequences, largest sequence first, until the total
    /// fits; the element that would overshoot is shortened instead when it can be.
    fn drop_oldest(&mut self, budget: u64, log: &mut Log) {
        let mut cursor: Vec<u32> = vec![0; self.nodes.len()];
        let mut heap: BinaryHeap<(u64, Reverse<u32>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.kind == Kind::Array && !n.frozen && n.kid_len > 0)
            .map(|(i, n)| (n.size, Reverse(i as u32)))
            .collect();
        // Landing within this much under the budget is good enough.
        let slack = (budget / 50).max(64);
        while let Some((key, Reverse(a))) = heap.pop() {
            if self.total() <= budget {
                break;
            }
            if !self.is_live(a) {
                continue;
            }
            let size = self.nodes[a as usize].size;
            if size != key {
                heap.push((size, Reverse(a)));
                continue;
            }
            let (off, len) = {
                let n = &self.nodes[a as usize];
                (n.kid_off as usize, n.kid_len as usize)
            };
            let mut c = cursor[a as usize] as usize;
            while c < len && !self.removable(self.kids[off + c]) {
                c += 1;
            }
            if c >= len {
                continue; // nothing left to drop here
            }
            let e = self.kids[off + c];
            cursor[a as usize] = (c + 1) as u32;
            let live = self.nodes[a as usize].live;
            let after = self.total() - self.contrib(e) - u64::from(live > 1);
            if after <= budget && budget - after > slack {
                let need = self.total() - budget;
                let subtree = self.subtree(e);
                if self.truncate_strings(&subtree, need, log) {
                    break;
                }
            }
            let saved = self.remove(e);
            log.dropped(a, saved);
            heap.push((self.nodes[a as usize].size, Reverse(a)));
        }
    }

    /// All nodes in `root`'s subtree, `root` included.
    fn subtree(&self, root: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend_from_slice(self.children(i));
        }
        out
    }

    /// Step 4: truncate the longest strings among `candidates` to a common length so that at
    /// least `need` bytes are saved. Returns `false` (changing nothing) if they cannot save that
    /// much.
    fn truncate_strings(&mut self, candidates: &[u32], need: u64, log: &mut Log) -> bool {
        // (node, original raw content length, marker length)
        let strings: Vec<(u32, u64, u64)> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let n = &self.nodes[i as usize];
                n.kind == Kind::Str && !n.frozen && n.cut.is_none() && self.is_live(i)
            })
            .map(|i| {
                let n = &self.nodes[i as usize];
                let len = (n.end - n.start - 2) as u64;
                (i, len, marker(len).len() as u64)
            })
            .collect();
        let saving = |cap: u64| -> u64 {
            strings
                .iter()
                .filter(|(_, len, m)| *len > cap + m)
                .map(|(_, len, m)| len - cap - m)
                .sum()
        };
        if saving(0) < need {
            return false;
        }
        // The largest cap that still saves enough.
        let (mut lo, mut hi) = (0u64, strings.iter().map(|s| s.1).max().unwrap_or(0));
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if saving(mid) >= need {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let cap = lo;
        for &(i, len, m) in &strings {
            if len <= cap + m {
                continue;
            }
            let n = &self.nodes[i as usize];
            let content = &self.src[n.start + 1..n.end - 1];
            let keep = safe_cut(content, cap as usize);
            let mk = marker(len);
            let new_size = 2 + keep as u64 + mk.len() as u64;
            let saved = n.size - new_size;
            let parent = n.parent;
            log.truncated(i, len, keep as u64);
            let n = &mut self.nodes[i as usize];
            n.cut = Some((keep, mk));
            n.size = new_size;
            self.shrink_from(parent, saved);
        }
        true
    }

    /// Step 5: drop unpinned object members, largest first, until the total fits.
    fn drop_members(&mut self, budget: u64, log: &mut Log) {
        let mut members: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| {
                let n = &self.nodes[i as usize];
                n.parent != NONE
                    && self.nodes[n.parent as usize].kind == Kind::Object
                    && self.removable(i)
            })
            .collect();
        members.sort_by_key(|&i| (Reverse(self.contrib(i)), i));
        for m in members {
            if self.total() <= budget {
                break;
            }
            if !self.is_live(m) {
                continue;
            }
            let saved = self.remove(m);
            log.member(m, saved);
        }
    }

    fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total() as usize);
        if self.nodes.is_empty() {
            return out;
        }
        // (node, next child position); usize::MAX marks "value not opened yet".
        let mut stack: Vec<(u32, usize)> = vec![(0, usize::MAX)];
        while let Some(top) = stack.last_mut() {
            let (i, pos) = *top;
            let n = &self.nodes[i as usize];
            if pos == usize::MAX {
                if n.pinned || matches!(n.kind, Kind::Leaf | Kind::Str) {
                    match &n.cut {
                        Some((keep, mk)) => {
                            out.push(b'"');
                            out.extend_from_slice(&self.src[n.start + 1..n.start + 1 + keep]);
                            out.extend_from_slice(mk.as_bytes());
                            out.push(b'"');
                        }
                        None => out.extend_from_slice(&self.src[n.start..n.end]),
                    }
                    stack.pop();
                    continue;
                }
                out.push(if n.kind == Kind::Object { b'{' } else { b'[' });
                top.1 = 0;
                continue;
            }
            let kids = self.children(i);
            let mut p = pos;
            while p < kids.len() && self.nodes[kids[p] as usize].removed {
                p += 1;
            }
            if p == kids.len() {
                out.push(if n.kind == Kind::Object { b'}' } else { b']' });
                stack.pop();
                continue;
            }
            let k = kids[p];
            // Nothing written since the opening bracket means this is the first member.
            let first = matches!(out.last(), Some(b'[' | b'{'));
            if !first {
                out.push(b',');
            }
            if n.kind == Kind::Object {
                let c = &self.nodes[k as usize];
                out.extend_from_slice(&self.src[c.key.0..c.key.1]);
                out.push(b':');
            }
            top.1 = p + 1;
            stack.push((k, usize::MAX));
        }
        out
    }

    fn pointer(&self, mut i: u32) -> String {
        let mut parts = Vec::new();
        while i != NONE {
            let n = &self.nodes[i as usize];
            if n.parent == NONE {
                break;
            }
            let p = &self.nodes[n.parent as usize];
            if p.kind == Kind::Object {
                parts.push(escape_token(&self.key_text(i)));
            } else {
                let idx = self
                    .children(n.parent)
                    .iter()
                    .position(|&k| k == i)
                    .unwrap_or(0);
                parts.push(idx.to_string());
            }
            i = n.parent;
        }
        parts.reverse();
        parts.iter().map(|p| format!("/{p}")).collect()
    }
}

fn marker(original: u64) -> String {
    format!("… [truncated: original {original} bytes]")
}

/// The largest prefix length ≤ `cap` of raw JSON string content that ends on a character
/// boundary, outside an escape sequence and not between the halves of a surrogate pair.
fn safe_cut(content: &[u8], cap: usize) -> usize {
    if cap >= content.len() {
        return content.len();
    }
    // Walk escapes from the start: positions inside an escape are not boundaries.
    let mut i = 0;
    let mut last_ok = 0;
    let mut prev_high_surrogate_at: Option<usize> = None;
    while i < content.len() && i <= cap {
        last_ok = i;
        let b = content[i];
        let (len, high) = if b == b'\\' {
            match content.get(i + 1) {
                Some(b'u') => {
                    let hex = content.get(i + 2..i + 6).unwrap_or(b"0000");
                    let v = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                        .unwrap_or(0);
                    (6, (0xD800..0xDC00).contains(&v))
                }
                _ => (2, false),
            }
        } else if b < 0x80 {
            (1, false)
        } else if b >= 0xF0 {
            (4, false)
        } else if b >= 0xE0 {
            (3, false)
        } else {
            (2, false)
        };
        if i + len > cap {
            break;
        }
        // Do not cut right after a high surrogate escape: its low half must follow.
        prev_high_surrogate_at = if high { Some(i) } else { None };
        i += len;
        last_ok = i;
    }
    if let Some(h) = prev_high_surrogate_at
        && last_ok == h + 6
    {
        return h;
    }
    last_ok
}

fn read_key(src: &[u8], stack: &mut [Frame], pos: usize) -> Result<usize> {
    if src.get(pos) != Some(&b'"') {
        return Err(syntax("expected a member name", pos));
    }
    let end = scan_string(src, pos)?;
    let after = skip_ws(src, end);
    if src.get(after) != Some(&b':') {
        return Err(syntax("expected ':'", after));
    }
    if let Some(f) = stack.last_mut() {
        f.key = (pos, end);
    }
    Ok(skip_ws(src, after + 1))
}

fn skip_ws(src: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = src.get(pos) {
        pos += 1;
    }
    pos
}

fn literal(src: &[u8], pos: usize, lit: &[u8]) -> Result<usize> {
    if src.get(pos..pos + lit.len()) == Some(lit) {
        Ok(pos + lit.len())
    } else {
        Err(syntax("invalid literal", pos))
    }
}

/// Scans a string starting at the opening quote; returns the position after the closing quote.
fn scan_string(src: &[u8], pos: usize) -> Result<usize> {
    let mut i = pos + 1;
    loop {
        // Fast path, eight bytes at a time: stop at a word holding '"', '\\' or a control byte.
        while let Some(chunk) = src.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let x = u64::from_le_bytes(w);
            const LO: u64 = 0x0101_0101_0101_0101;
            const HI: u64 = 0x8080_8080_8080_8080;
            let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
            let special = zero(x ^ (LO * u64::from(b'"')))
                | zero(x ^ (LO * u64::from(b'\\')))
                | (x.wrapping_sub(LO * 0x20) & !x & HI);
            if special != 0 {
                break;
            }
            i += 8;
        }
        while let Some(&b) = src.get(i) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            i += 1;
        }
        match src.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match src.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = src
                        .get(i + 2..i + 6)
                        .ok_or_else(|| syntax("unexpected end of input in an escape", i))?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(syntax("invalid \\u escape", i));
                    }
                    i += 6;
                }
                Some(_) => return Err(syntax("invalid escape", i)),
                None => return Err(syntax("unexpected end of input in a string", i)),
            },
            Some(_) => return Err(syntax("control character in a string", i)),
            None => return Err(syntax("unexpected end of input in a string", i)),
        }
    }
}

fn scan_number(src: &[u8], pos: usize) -> Result<usize> {
    let digits = |mut i: usize| {
        let s = i;
        while src.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - s)
    };
    let mut i = pos;
    if src.get(i) == Some(&b'-') {
        i += 1;
    }
    match src.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i).0,
        _ => return Err(syntax("invalid number", pos)),
    }
    if src.get(i) == Some(&b'.') {
        let (j, n) = digits(i + 1);
        if n == 0 {
            return Err(syntax("invalid number", pos));
        }
        i = j;
    }
    if let Some(b'e' | b'E') = src.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = src.get(i) {
            i += 1;
        }
        let (j, n) = digits(i);
        if n == 0 {
            return Err(syntax("invalid number", pos));
        }
        i = j;
    }
    Ok(i)
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn opts() -> PruneOptions {
        PruneOptions::default()
    }

    fn chat(turns: usize, each: usize) -> Vec<u8> {
        let msgs: Vec<Value> = (0..turns)
            .map(|i| json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": format!("turn {i} {}", "w".repeat(each))}))
            .collect();
        serde_json::to_vec(&json!({
            "task": {"task_id": "t-1", "instructions": "do it"},
            "system_prompt": "be good",
            "messages": msgs,
        }))
        .unwrap()
    }

    #[test]
    fn chat_history_keeps_newest_turns_and_pins() {
        let input = chat(2000, 400);
        let out = prune(&input, 180_000, &opts()).unwrap();
        assert!(out.bytes.len() <= 180_000);
        assert!(
            out.bytes.len() >= 162_000,
            "uses the budget: {}",
            out.bytes.len()
        );
        let v: Value = serde_json::from_slice(&out.bytes).unwrap();
        assert_eq!(v["task"]["task_id"], "t-1");
        assert_eq!(v["system_prompt"], "be good");
        let msgs = v["messages"].as_array().unwrap();
        assert!(
            msgs.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .starts_with("turn 1999 ")
        );
        assert!(
            matches!(out.manifest.removed[0], Removal::DroppedOldest { ref pointer, .. } if pointer == "/messages")
        );
    }

    #[test]
    fn one_huge_string_is_truncated_with_a_marker() {
        let input =
            serde_json::to_vec(&json!({"task": {"id": 1}, "dump": "é".repeat(400_000)})).unwrap();
        let out = prune(&input, 180_000, &opts()).unwrap();
        assert!(
            out.bytes.len() <= 180_000 && out.bytes.len() > 179_000,
            "{}",
            out.bytes.len()
        );
        let v: Value = serde_json::from_slice(&out.bytes).unwrap();
        assert!(
            v["dump"]
                .as_str()
                .unwrap()
                .ends_with("[truncated: original 800000 bytes]")
        );
    }

    #[test]
    fn large_file_dumps_use_the_budget() {
        let files: Vec<Value> = (0..12)
            .map(
                |i| json!({"path": format!("src/f{i}.rs"), "content": "fn x() {}\n".repeat(5_000)}),
            )
            .collect();
        let input = serde_json::to_vec(&json!({"task": {}, "files": files})).unwrap();
        let out = prune(&input, 180_000, &opts()).unwrap();
        let n = out.bytes.len();
        assert!((162_000..=180_000).contains(&n), "{n}");
        let v: Value = serde_json::from_slice(&out.bytes).unwrap();
        let files = v["files"].as_array().unwrap();
        assert_eq!(files.last().unwrap()["path"], "src/f11.rs");
        assert_eq!(
            files.last().unwrap()["content"].as_str().unwrap().len(),
            50_000
        );
    }

    #[test]
    fn pinned_content_over_budget_is_an_error() {
        let input = serde_json::to_vec(&json!({"task": "x".repeat(5000), "m": [1, 2, 3]})).unwrap();
        let e = prune(&input, 1000, &opts()).unwrap_err();
        assert!(e.to_string().contains("pinned"), "{e}");
    }

    #[test]
    fn pinned_values_are_byte_identical_even_pretty_printed() {
        let input = br#"{ "keep" : { "b" : 1.50, "a" : [ 1 , 2 ] }, "junk": [ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" ] }"#;
        let out = prune(
            input,
            100,
            &PruneOptions::without_default_pins().keep("/keep"),
        )
        .unwrap();
        let s = String::from_utf8(out.bytes).unwrap();
        assert!(s.contains(r#"{ "b" : 1.50, "a" : [ 1 , 2 ] }"#), "{s}");
        assert!(s.len() <= 100);
    }

    #[test]
    fn hostile_input_is_refused_cleanly() {
        let deep = "[".repeat(100_000);
        assert!(
            prune(deep.as_bytes(), 10, &opts())
                .unwrap_err()
                .to_string()
                .contains("nested")
        );
        assert!(prune(b"{\"a\": [1, 2", 10, &opts()).is_err());
        assert!(
            prune(b"{\"a\": \"\xff\xfe\"}", 10, &opts())
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
        assert!(prune(b"{} x", 10, &opts()).is_err());
        assert!(prune(b"", 10, &opts()).is_err());
        let big = vec![b' '; 100];
        assert_eq!(
            prune(&big, 10, &opts().max_input_bytes(50))
                .unwrap_err()
                .kind(),
            ErrorKind::TooLarge
        );
        assert!(prune(b"{}", 10, &opts().keep("no-slash")).is_err());
    }

    #[test]
    fn numeric_arrays_drop_oldest() {
        let v: Vec<u64> = (0..100_000).collect();
        let input = serde_json::to_vec(&json!({"series": v})).unwrap();
        let out = prune(&input, 50_000, &opts()).unwrap();
        let n = out.bytes.len();
        assert!((49_000..=50_000).contains(&n), "{n}");
        let v: Value = serde_json::from_slice(&out.bytes).unwrap();
        assert_eq!(v["series"].as_array().unwrap().last().unwrap(), 99_999);
    }

    #[test]
    fn safe_cut_respects_escapes_and_surrogates() {
        assert_eq!(safe_cut(br"ab\ncd", 3), 2);
        assert_eq!(safe_cut(br"ab\u00e9cd", 5), 2);
        assert_eq!(safe_cut(br"a\ud83d\ude00b", 7), 1);
        assert_eq!(safe_cut(br"a\ud83d\ude00b", 13), 13);
        assert_eq!(safe_cut("aé".as_bytes(), 2), 1);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z\u{e9}\u{1F600}\"\\\\\n]{0,300}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 200, 12, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z/~]{1,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn output_is_valid_within_budget_idempotent_and_keeps_pins(
            v in arb_json(),
            budget in 50u64..3000,
            pretty in any::<bool>(),
        ) {
            let input = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
            // Pin the first member of the root object, if any.
            let pin = v.as_object().and_then(|m| m.keys().next().cloned())
                .map(|k| format!("/{}", escape_token(&k)));
            let mut o = PruneOptions::without_default_pins();
            if let Some(p) = &pin { o = o.keep(p.clone()); }
            match prune(&input, budget, &o) {
                Ok(out) => {
                    prop_assert!(out.bytes.len() as u64 <= budget.max(input.len() as u64));
                    if (input.len() as u64) > budget { prop_assert!(out.bytes.len() as u64 <= budget); }
                    let parsed: Value = serde_json::from_slice(&out.bytes).unwrap();
                    if let Some(p) = &pin {
                        prop_assert_eq!(parsed.pointer(p), v.pointer(p));
                    }
                    let again = prune(&out.bytes, budget, &o).unwrap();
                    prop_assert_eq!(&again.bytes, &out.bytes);
                    let twice = prune(&input, budget, &o).unwrap();
                    prop_assert_eq!(&twice.bytes, &out.bytes);
                }
                Err(e) => prop_assert!(e.to_string().contains("pinned"), "{}", e),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), budget in 0u64..200) {
            let _ = prune(&bytes, budget, &PruneOptions::default());
        }
    }
}
