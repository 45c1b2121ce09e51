//! The span tree of a bundle: its nodes, the pins, and the pruning steps over it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Log, escape_token};

// ---------------------------------------------------------------------------------------------
// The span tree

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Leaf,
    Str,
    Array,
    Object,
}

pub(super) const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Raw key span (with quotes) when a member of an object.
    pub(super) key: (usize, usize),
    pub(super) parent: u32,
    /// Children: `kids[kid_off..kid_off + kid_len]`.
    pub(super) kid_off: u32,
    pub(super) kid_len: u32,
    // --- state ---
    pub(super) pinned: bool,
    /// Inside a pinned value (or pinned itself): immutable.
    pub(super) frozen: bool,
    /// Has a pinned descendant: cannot be removed.
    pub(super) holds_pin: bool,
    pub(super) removed: bool,
    /// For truncated strings: bytes of raw content kept, and the marker.
    pub(super) cut: Option<(usize, String)>,
    /// Current emitted size.
    pub(super) size: u64,
    /// Live (not removed) children.
    pub(super) live: u32,
}

pub(super) struct Tree<'a> {
    pub(super) src: &'a [u8],
    pub(super) nodes: Vec<Node>,
    pub(super) kids: Vec<u32>,
}

impl<'a> Tree<'a> {
    pub(super) fn children(&self, i: u32) -> &[u32] {
        let n = &self.nodes[i as usize];
        &self.kids[n.kid_off as usize..(n.kid_off + n.kid_len) as usize]
    }

    pub(super) fn key_text(&self, i: u32) -> String {
        let (s, e) = self.nodes[i as usize].key;
        let raw = &self.src[s..e];
        if !raw.contains(&b'\\') {
            return String::from_utf8_lossy(&raw[1..raw.len() - 1]).into_owned();
        }
        serde_json::from_slice::<String>(raw)
            .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
    }

    /// Marks the value at `tokens` pinned; `false` if it does not resolve.
    pub(super) fn pin(&mut self, tokens: &[String]) -> bool {
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
    pub(super) fn prepare(&mut self) {
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

    pub(super) fn contrib(&self, k: u32) -> u64 {
        let n = &self.nodes[k as usize];
        let key = if n.parent != NONE && self.nodes[n.parent as usize].kind == Kind::Object {
            (n.key.1 - n.key.0) as u64 + 1
        } else {
            0
        };
        key + n.size
    }

    pub(super) fn compute_size(&self, i: u32) -> u64 {
        let n = &self.nodes[i as usize];
        if n.pinned || matches!(n.kind, Kind::Leaf | Kind::Str) {
            return (n.end - n.start) as u64;
        }
        let kids = self.children(i);
        let commas = kids.len().saturating_sub(1) as u64;
        2 + commas + kids.iter().map(|&k| self.contrib(k)).sum::<u64>()
    }

    pub(super) fn total(&self) -> u64 {
        self.nodes.first().map_or(0, |n| n.size)
    }

    /// Size with everything removable removed and every string cut to its marker.
    pub(super) fn min_size(&self) -> u64 {
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
    pub(super) fn removable(&self, k: u32) -> bool {
        let n = &self.nodes[k as usize];
        !n.frozen && !n.holds_pin && !n.removed
    }

    /// Removes `k` and shrinks its ancestors. Returns the bytes saved.
    pub(super) fn remove(&mut self, k: u32) -> u64 {
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

    pub(super) fn shrink_from(&mut self, mut i: u32, by: u64) {
        while i != NONE {
            let n = &mut self.nodes[i as usize];
            n.size -= by;
            i = n.parent;
        }
    }

    pub(super) fn is_live(&self, mut i: u32) -> bool {
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
    pub(super) fn drop_oldest(&mut self, budget: u64, log: &mut Log) {
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
    pub(super) fn subtree(&self, root: u32) -> Vec<u32> {
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
    pub(super) fn truncate_strings(
        &mut self,
        candidates: &[u32],
        need: u64,
        log: &mut Log,
    ) -> bool {
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
    pub(super) fn drop_members(&mut self, budget: u64, log: &mut Log) {
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

    pub(super) fn emit(&self) -> Vec<u8> {
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

    pub(super) fn pointer(&self, mut i: u32) -> String {
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
pub(super) fn safe_cut(content: &[u8], cap: usize) -> usize {
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
