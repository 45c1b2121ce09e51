//! The span tree built from the input bytes: a strict JSON scanner that records where each
//! value starts and ends.

use super::tree::{Kind, NONE, Node, Tree};
use crate::error::{Error, Result};

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
    pub(super) fn parse(src: &'a [u8], max_depth: usize) -> Result<Self> {
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
