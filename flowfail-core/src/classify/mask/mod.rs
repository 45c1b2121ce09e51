//! What a tenant wrote is not evidence: echoed input is masked before any rule reads a message.
//!
//! Error messages repeat the input they refuse — pydantic's `input_value='…'`, a schema
//! validator's `'…' is not one of […]`, ajv's `(value: "…")`, zod's `received '…'`, serde's
//! `invalid type: string "…"`, FlowEngine's `validation failed: "…"`. A tenant who writes
//! `rate_limit_error` into a title must not turn a validation failure into a rate limit, so the
//! echoed part is replaced by `x`s before classification: the same number of bytes (positions
//! stay comparable between the masked forms), and runs of `x` between delimiters can form no
//! vendor code, exception name, status or phrase of the rules.
//!
//! A second form, for the vendor-code stage only, also masks the values of every field of a JSON
//! or Python-dict body except the fields a vendor puts its code in (`type`, `code`, `status`,
//! `reason` and their spellings): a `'type': 'rate_limit_error'` quoted inside a vendor's
//! `message` — or anywhere in a prompt the vendor repeats — is not the vendor's code.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

/// What an echo key starts.
#[derive(Clone, Copy)]
enum Echo {
    /// pydantic's `input_value=…`: a Python repr.
    InputValue,
    /// ajv's `(value: …)`.
    ValueParen,
    /// A quoted value right after the key: zod's `received '…'`, serde's `string "…"`,
    /// `` variant `…` ``, `` field `…` ``, `value: …`.
    Quoted,
    /// zod's JSON issue `"received": …`.
    ReceivedJson,
    /// python-jsonschema's `On instance[…]:` block.
    OnInstance,
    /// What follows a schema validator's instance (`'x' is not one of […]`).
    Follower,
    /// FlowEngine's own validation lines: every quoted value after one, to the end of its line.
    FlowEngine,
    /// ajv's instance path (`data/inputs/<key> must …`): the path after `data/`.
    AjvPath,
    /// serde's `` unknown field `…`, expected `` / `` unknown variant `…`, expected ``: serde
    /// does not escape a backtick inside the value, so it runs to `` `, expected ``.
    Serde,
}

/// Every key, found in one pass; a message without any of these is returned as it is. Keys
/// are matched as written, in the spellings the tools print (a SIMD literal search).
const KEYS: &[(&str, Echo)] = &[
    ("input_value=", Echo::InputValue),
    ("(value: ", Echo::ValueParen),
    ("\"received\":", Echo::ReceivedJson),
    ("received ", Echo::Quoted),
    ("string ", Echo::Quoted),
    ("variant ", Echo::Serde),
    ("field ", Echo::Serde),
    ("object: ", Echo::Quoted),
    ("value: ", Echo::Quoted),
    ("On instance", Echo::OnInstance),
    ("'input': ", Echo::InputValue),
    ("\"input\":", Echo::InputValue),
    ("'loc': ", Echo::InputValue),
    ("\"loc\":", Echo::InputValue),
    ("\"keys\":", Echo::InputValue),
    ("\"path\":", Echo::InputValue),
    ("\"additionalProperty\":", Echo::InputValue),
    ("\\\"input\\\":", Echo::InputValue),
    ("\\\"loc\\\":", Echo::InputValue),
    ("\\\"keys\\\":", Echo::InputValue),
    ("\\\"path\\\":", Echo::InputValue),
    ("\\\"additionalProperty\\\":", Echo::InputValue),
    ("\\\"received\\\":", Echo::ReceivedJson),
    ("does not allow ", Echo::Quoted),
    ("extra: ", Echo::Quoted),
    ("parsing ", Echo::Quoted),
    ("additionalProperties ", Echo::Quoted),
    ("KeyError: ", Echo::Quoted),
    ("data/", Echo::AjvPath),
    ("validation failed", Echo::FlowEngine),
    ("Validation failed", Echo::FlowEngine),
    ("VALIDATION FAILED", Echo::FlowEngine),
    ("invalid TaskObject", Echo::FlowEngine),
    ("Invalid TaskObject", Echo::FlowEngine),
    ("invalid taskobject", Echo::FlowEngine),
    ("TaskObject invalid", Echo::FlowEngine),
    ("failed schema validation", Echo::FlowEngine),
    ("is not", Echo::Follower),
    ("is too", Echo::Follower),
    ("is less", Echo::Follower),
    ("is greater", Echo::Follower),
    ("is a required", Echo::Follower),
    ("is longer", Echo::Follower),
    ("is shorter", Echo::Follower),
    ("is valid under", Echo::Follower),
    ("is disallowed", Echo::Follower),
    ("does not", Echo::Follower),
    ("should", Echo::Follower),
    ("has non", Echo::Follower),
    ("has less", Echo::Follower),
    ("has more", Echo::Follower),
    ("has fewer", Echo::Follower),
    ("must", Echo::Follower),
    ("was expected", Echo::Follower),
    ("was unexpected", Echo::Follower),
    ("is expected", Echo::Follower),
];

static SEARCH: LazyLock<Option<aho_corasick::AhoCorasick>> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(KEYS.iter().map(|(k, _)| k))
        .ok()
});

/// `text` with every echo of tenant input replaced by `x`s (same length). Borrowed when
/// nothing is masked.
pub(crate) fn mask_echoes(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let Some(search) = &*SEARCH else {
        return Cow::Borrowed(text);
    };
    let mut spans: Vec<Range<usize>> = Vec::new();
    for m in search.find_iter(b) {
        let (at, end) = (m.start(), m.end());
        let span = match KEYS[m.pattern().as_usize()].1 {
            Echo::InputValue | Echo::ReceivedJson => python_value(b, end),
            Echo::ValueParen => value_or_until(b, end, b')'),
            Echo::Quoted => quoted_only(b, end),
            Echo::OnInstance => instance_block(b, at),
            Echo::Follower => schema_instance(b, at),
            Echo::FlowEngine => {
                if flowengine_marker(b, at) {
                    flowengine_line(b, end, &mut spans);
                }
                None
            }
            Echo::AjvPath => ajv_path(b, end),
            Echo::Serde => serde_value(b, end),
        };
        spans.extend(span);
    }
    apply(text, spans)
}

/// `text` as [`mask_echoes`] leaves it, with the values of a vendor's error body masked but for
/// its code fields: what the vendor-code stage reads. A *vendor body* is a JSON or Python-dict
/// object with a `type` / `code` / `status` / `reason` field; in it, every other string value
/// (its `message` included) is masked whole. Any other object — a JSON log line's envelope,
/// OpenAI's outer `{'error': {…}}` — is looked through: its strings are read as text, and the
/// bodies inside them are judged the same way.
pub(crate) fn mask_body_values(masked: &str) -> Cow<'_, str> {
    bodies(masked, Mode::Codes)
}

/// `text` with the quotes inside the string values of vendor bodies masked: a vendor's
/// message quoting a prompt, a parameter or a value (`prompt begins "…"`). What the
/// quota-exhausted evidence is read on when it is found inside a body.
pub(crate) fn mask_quotes_in_values(masked: &str) -> Cow<'_, str> {
    bodies(masked, Mode::InnerQuotes)
}

#[derive(Clone, Copy)]
enum Mode {
    /// Mask every string value of a vendor body but its code fields.
    Codes,
    /// Mask the quoted parts inside the string values of a vendor body.
    InnerQuotes,
}

fn bodies(masked: &str, mode: Mode) -> Cow<'_, str> {
    let bytes = masked.as_bytes();
    if memchr::memchr(b'{', bytes).is_none() {
        return Cow::Borrowed(masked);
    }
    let mut spans = Vec::new();
    text_bodies(bytes, 0..bytes.len(), mode, &mut spans, 0);
    apply(masked, spans)
}

/// Bodies nested deeper than this are left as they are.
const MAX_DEPTH: usize = 16;

/// The bodies found in the text `range` of `b`, each judged and masked.
fn text_bodies(
    b: &[u8],
    range: Range<usize>,
    mode: Mode,
    spans: &mut Vec<Range<usize>>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut pos = range.start;
    while let Some(i) = memchr::memchr(b'{', &b[pos..range.end]) {
        let open = pos + i;
        let mut p = Parse {
            end: range.end,
            furthest: 0,
        };
        match p.object(b, open, 0) {
            Some((end, entries)) => {
                if placed(b, range.start, open) {
                    judge(b, &entries, mode, spans, depth);
                } else if matches!(mode, Mode::Codes) {
                    // A body in prose (`unsupported inputs {'type': …}`) is what a tenant
                    // sent, not a vendor's answer.
                    mask_strings(&entries, spans);
                }
                pos = end;
            }
            // What a failed parse read is not read again: linear on any input.
            None => pos = p.furthest.clamp(open + 1, range.end),
        }
    }
}

/// Whether a body opening at `open` stands where a vendor's answer does: at the start of the
/// text (or of a string holding it), after an SDK's `Error code: 429 -`, a `:` or `=` of a log
/// field or a quote, a bracket or a comma — not after a word of prose.
fn placed(b: &[u8], start: usize, open: usize) -> bool {
    let before = b[start..open]
        .iter()
        .rev()
        .find(|c| !c.is_ascii_whitespace());
    match before {
        None => true,
        Some(c) => matches!(
            c,
            b'-' | b':' | b'=' | b'"' | b'\'' | b'(' | b'[' | b',' | b'|' | b'\\'
        ),
    }
}

/// Objects nested deeper than this are not bodies (a vendor's is 2–3 deep): the parse fails
/// instead of recursing without bound on hostile input.
const MAX_NESTING: usize = 32;

/// One parse of a body: where the text ends and how far the parse read (a failed parse resumes
/// the search for bodies after that).
struct Parse {
    end: usize,
    furthest: usize,
}

impl Parse {
    fn at(&mut self, i: usize) -> usize {
        self.furthest = self.furthest.max(i);
        i
    }

    /// A JSON or Python-dict object at `open` (a `{`): where it ends and its entries; `None`
    /// when it is not one (prose with a brace) or nests deeper than [`MAX_NESTING`].
    fn object(&mut self, b: &[u8], open: usize, depth: usize) -> Option<(usize, Vec<Entry>)> {
        if depth > MAX_NESTING {
            return None;
        }
        let end = self.end;
        let mut entries = Vec::new();
        let mut i = self.at(skip_ws(b, open + 1, end));
        if b.get(i) == Some(&b'}') {
            return Some((i + 1, entries));
        }
        loop {
            let (key, key_end) = string_at(b, i, end)?;
            i = self.at(skip_ws(b, key_end, end));
            if b.get(i) != Some(&b':') || i >= end {
                return None;
            }
            let (value, next) = self.value(b, skip_ws(b, i + 1, end), depth)?;
            entries.push(Entry {
                key: Some(key),
                value,
            });
            i = self.at(skip_ws(b, next, end));
            match b.get(i).filter(|_| i < end)? {
                b',' => i = skip_ws(b, i + 1, end),
                b'}' => return Some((i + 1, entries)),
                _ => return None,
            }
        }
    }

    /// A list at `open` (a `[`): where it ends and its elements.
    fn list(&mut self, b: &[u8], open: usize, depth: usize) -> Option<(usize, Vec<Entry>)> {
        if depth > MAX_NESTING {
            return None;
        }
        let end = self.end;
        let mut items = Vec::new();
        let mut i = self.at(skip_ws(b, open + 1, end));
        if b.get(i) == Some(&b']') {
            return Some((i + 1, items));
        }
        loop {
            let (value, next) = self.value(b, i, depth)?;
            items.push(Entry { key: None, value });
            i = self.at(skip_ws(b, next, end));
            match b.get(i).filter(|_| i < end)? {
                b',' => i = skip_ws(b, i + 1, end),
                b']' => return Some((i + 1, items)),
                _ => return None,
            }
        }
    }

    /// A value at `i`: a string, an object, a list, or a scalar (number, `None`, `null`, …).
    fn value(&mut self, b: &[u8], i: usize, depth: usize) -> Option<(Value, usize)> {
        let end = self.end;
        self.at(i);
        if let Some((inner, e)) = string_at(b, i, end) {
            return Some((Value::Str(inner), self.at(e)));
        }
        match *b.get(i).filter(|_| i < end)? {
            b'{' => self
                .object(b, i, depth + 1)
                .map(|(e, o)| (Value::Object(o), e)),
            b'[' => self.list(b, i, depth + 1).map(|(e, l)| (Value::List(l), e)),
            _ => {
                let e = b[i..end]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                    .map_or(end, |k| i + k);
                (e > i).then(|| (Value::Scalar, self.at(e)))
            }
        }
    }
}

/// One entry of an object (or an element of a list, without a key).
struct Entry {
    key: Option<Range<usize>>,
    value: Value,
}

enum Value {
    /// The inside of a quoted string.
    Str(Range<usize>),
    Object(Vec<Entry>),
    List(Vec<Entry>),
    Scalar,
}

/// Masks what `mode` asks of one object's entries, recursing into nested objects and lists.
fn judge(b: &[u8], entries: &[Entry], mode: Mode, spans: &mut Vec<Range<usize>>, depth: usize) {
    let vendor = entries.iter().any(|e| {
        matches!(e.value, Value::Str(_)) && e.key.as_ref().is_some_and(|k| code_key(&b[k.clone()]))
    });
    for e in entries {
        match &e.value {
            Value::Str(inner) if vendor => {
                let code = e.key.as_ref().is_some_and(|k| code_key(&b[k.clone()]));
                match mode {
                    Mode::Codes if !code => spans.push(inner.clone()),
                    Mode::Codes => {}
                    Mode::InnerQuotes => inner_quotes(b, inner.clone(), spans),
                }
            }
            // Not a vendor's body: its strings are text that may hold bodies.
            Value::Str(inner) => text_bodies(b, inner.clone(), mode, spans, depth + 1),
            // Inside a vendor's body only its error objects are the vendor's; any other
            // object in it (a request or input it repeats) is masked whole.
            Value::Object(inner)
                if vendor
                    && !e
                        .key
                        .as_ref()
                        .is_some_and(|k| error_key(trim_escape(&b[k.clone()]))) =>
            {
                if matches!(mode, Mode::Codes) {
                    mask_strings(inner, spans);
                }
            }
            Value::Object(inner) => judge(b, inner, mode, spans, depth + 1),
            Value::List(items) => {
                for item in items {
                    match &item.value {
                        Value::Str(inner) if vendor => {
                            if matches!(mode, Mode::Codes) {
                                spans.push(inner.clone());
                            }
                        }
                        Value::Str(inner) => text_bodies(b, inner.clone(), mode, spans, depth + 1),
                        Value::Object(o) => judge(b, o, mode, spans, depth + 1),
                        Value::List(l) => judge(b, l, mode, spans, depth + 1),
                        Value::Scalar => {}
                    }
                }
            }
            Value::Scalar => {}
        }
    }
}

/// The quoted parts inside a string's inside.
fn inner_quotes(b: &[u8], range: Range<usize>, spans: &mut Vec<Range<usize>>) {
    let mut i = range.start;
    while i < range.end {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                let close = string_end(b, i, q).min(range.end);
                spans.push(inside(b, i, close));
                i = close;
            }
            _ => i += 1,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// A string at `i` ending before `end`: quoted (`'…'`, `"…"`) or, inside a string around it,
/// with escaped quotes (`\"…\"`, as a JSON log line carries a Python repr). Its inside and the
/// index after it.
fn string_at(b: &[u8], i: usize, end: usize) -> Option<(Range<usize>, usize)> {
    match *b.get(i).filter(|_| i < end)? {
        q @ (b'\'' | b'"') => {
            let e = string_end(b, i, q).min(end);
            Some((inside(b, i, e), e))
        }
        b'\\' if matches!(b.get(i + 1), Some(b'\'' | b'"')) && i + 1 < end => {
            let q = b[i + 1];
            let mut j = i + 2;
            while j + 1 < end {
                if b[j] == b'\\' && b[j + 1] == q {
                    return Some((i + 2..j, j + 2));
                }
                // Inside, the string's own escapes are escaped again: three backslashes and the
                // quote are a quote in the value, two backslashes are one backslash.
                j += if b[j..end].starts_with(&[b'\\', b'\\', b'\\', q]) {
                    4
                } else if b[j] == b'\\' && b[j + 1] == b'\\' {
                    2
                } else {
                    1
                };
            }
            Some((i + 2..end, end))
        }
        _ => None,
    }
}

/// The fields a vendor nests its error objects under.
fn error_key(key: &[u8]) -> bool {
    matches!(key, b"error" | b"errors" | b"details" | b"detail")
}

/// A key as written inside an escaped JSON string (`\"type\"`): without the backslash.
fn trim_escape(key: &[u8]) -> &[u8] {
    key.strip_suffix(b"\\").unwrap_or(key)
}

/// Every string inside these entries, however deep.
fn mask_strings(entries: &[Entry], spans: &mut Vec<Range<usize>>) {
    for e in entries {
        match &e.value {
            Value::Str(r) => spans.push(r.clone()),
            Value::Object(o) | Value::List(o) => mask_strings(o, spans),
            Value::Scalar => {}
        }
    }
}

/// The fields a vendor puts its error code in.
fn code_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"type"
            | b"code"
            | b"status"
            | b"__type"
            | b"error_type"
            | b"errortype"
            | b"errorType"
            | b"error_code"
            | b"errorcode"
            | b"errorCode"
            | b"reason"
    )
}

/// The index after the closing quote of the string opened at `open` (its quote `q`), or the
/// end of the text; a backslash escapes the next byte.
fn string_end(b: &[u8], open: usize, q: u8) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return i + 1,
            // A repr or JSON string ends at its line.
            b'\n' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// The inside of a string or bracket opened at `open` that [`string_end`] or [`bracket_end`]
/// says ends at `end`: without the closing byte when it is one (an unterminated one runs to
/// `end`).
fn inside(b: &[u8], open: usize, end: usize) -> Range<usize> {
    let closed = end >= open + 2 && matches!(b[end - 1], b'\'' | b'"' | b'`' | b'}' | b']' | b')');
    open + 1..if closed { end - 1 } else { end.max(open + 1) }
}

/// A quoted string (`'`, `"` or `` ` ``) starting at `at` (after spaces): its inside.
fn quoted_only(b: &[u8], at: usize) -> Option<Range<usize>> {
    let at = skip_spaces(b, at);
    let q = *b.get(at)?;
    if q == b'`' {
        return Some(inside(b, at, string_end(b, at, q)));
    }
    string_at(b, at, b.len()).map(|(inner, _)| inner)
}

/// A Python repr or JSON value starting at `at`: a quoted string's inside, a bracketed value's
/// inside (nested brackets and strings included), or a bare token up to `,`, `]`, `)` or
/// whitespace.
fn python_value(b: &[u8], at: usize) -> Option<Range<usize>> {
    let at = skip_spaces(b, at);
    if let Some((inner, _)) = string_at(b, at, b.len()) {
        return Some(inner);
    }
    match *b.get(at)? {
        b'{' | b'[' | b'(' => Some(inside(b, at, bracket_end(b, at))),
        _ => {
            let end = b[at..]
                .iter()
                .position(|c| matches!(c, b',' | b']' | b')' | b'}') || c.is_ascii_whitespace())
                .map_or(b.len(), |i| at + i);
            (end > at).then_some(at..end)
        }
    }
}

/// A value as [`python_value`] reads it, else everything up to `close`.
fn value_or_until(b: &[u8], at: usize, close: u8) -> Option<Range<usize>> {
    let start = skip_spaces(b, at);
    if matches!(b.get(start), Some(b'\'' | b'"' | b'{' | b'[')) {
        return python_value(b, start);
    }
    let end = memchr::memchr(close, &b[start..]).map_or(b.len(), |i| start + i);
    (end > start).then_some(start..end)
}

/// The index after the bracket that closes the one at `open`, or the end of the text.
fn bracket_end(b: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            q @ (b'\'' | b'"') => {
                i = string_end(b, i, q);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn skip_spaces(b: &[u8], mut at: usize) -> usize {
    while at < b.len() && b[at] == b' ' {
        at += 1;
    }
    at
}

/// A schema validator's instance: the quoted or bracketed value right before `at`, where
/// `is not …`, `does not …`, `should …` or the like starts, wherever it stands (at the start of
/// a message, after `ValidationError: `, inside a log line's `error="…"`).
fn schema_instance(b: &[u8], at: usize) -> Option<Range<usize>> {
    let mut close = at;
    while close > 0 && b[close - 1] == b' ' {
        close -= 1;
    }
    if close == at || close == 0 {
        return None;
    }
    let last = b[close - 1];
    // A quote escaped inside a string around it (`\"…\"` in a JSON log line) is opened by an
    // escaped quote too.
    let escaped = escaped_at(b, close - 1);
    let open = match last {
        b'\'' | b'"' | b'`' => (0..close - 1)
            .rev()
            .find(|&o| b[o] == last && escaped_at(b, o) == escaped),
        b']' | b'}' => opening_bracket(b, close - 1),
        _ => None,
    }?;
    Some(open + 1..close - 1)
}

/// Whether the byte at `at` is escaped: an odd number of backslashes right before it.
fn escaped_at(b: &[u8], at: usize) -> bool {
    b[..at].iter().rev().take_while(|c| **c == b'\\').count() % 2 == 1
}

/// The bracket that opens the one closing at `close`, scanning back (quotes are not tracked:
/// an instance's brackets balance).
fn opening_bracket(b: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for o in (0..=close).rev() {
        match b[o] {
            b']' | b'}' | b')' => depth += 1,
            b'[' | b'{' | b'(' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(o);
                }
            }
            _ => {}
        }
    }
    None
}

/// python-jsonschema's `On instance['title']:` at `at` is followed by the instance, indented,
/// on the lines after it.
fn instance_block(b: &[u8], at: usize) -> Option<Range<usize>> {
    let nl = memchr::memchr(b'\n', &b[at..]).map(|i| at + i)?;
    let mut end = nl + 1;
    while end < b.len() && matches!(b[end], b' ' | b'\t') {
        end = memchr::memchr(b'\n', &b[end..]).map_or(b.len(), |i| end + i + 1);
    }
    let start = skip_spaces(b, nl + 1);
    (end > start).then(|| start..end.min(b.len()))
}

/// After FlowEngine's `validation failed` (and its other validation lines), from `from`, every
/// quoted value to the end of the line.
fn flowengine_line(b: &[u8], from: usize, spans: &mut Vec<Range<usize>>) {
    {
        let end = memchr::memchr(b'\n', &b[from..]).map_or(b.len(), |i| from + i);
        let mut i = from;
        while i < end {
            match b[i] {
                // Only a quote that opens (after a space, `=`, `:`, a bracket or a comma):
                // one after a word or a backslash closes, or is escaped inside, a string
                // around the line (a logfmt value).
                b'\'' | b'"' | b'`'
                    if i > 0
                        && !matches!(
                            b[i - 1],
                            b' ' | b'\t' | b'=' | b':' | b'(' | b'[' | b'{' | b','
                        ) =>
                {
                    i += 1
                }
                q @ (b'\'' | b'"' | b'`') => {
                    let close = string_end(b, i, q).min(end);
                    // Only a quote closed on the line: an unmatched one may be the closing
                    // quote of something around the line, which must stay readable.
                    if close > i + 1 && b[close - 1] == q {
                        spans.push(inside(b, i, close));
                        i = close;
                    } else {
                        i += 1;
                    }
                }
                _ => i += 1,
            }
        }
    }
}

/// serde's backticked value: to `` `, expected `` on the same line when there is one (serde
/// does not escape a backtick in it), else the quoted value.
fn serde_value(b: &[u8], at: usize) -> Option<Range<usize>> {
    if b.get(at) == Some(&b'`') {
        let line_end = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |i| at + i);
        if let Some(i) = memchr::memmem::rfind(&b[at + 1..line_end], b"`, expected") {
            return Some(at + 1..at + 1 + i);
        }
    }
    quoted_only(b, at)
}

/// Whether FlowEngine's validation marker at `at` is FlowEngine's own line, not words inside
/// a title or a prompt: it starts the message or a line, follows a `:`, `]`, `-` or `|` (a log
/// prefix, a task id), or names the TaskObject (`TaskObject validation failed`).
fn flowengine_marker(b: &[u8], at: usize) -> bool {
    let before = b[..at].strip_suffix(b"TaskObject ").unwrap_or(&b[..at]);
    match before.iter().rev().find(|c| **c != b' ' && **c != b'\t') {
        None => true,
        Some(c) => matches!(c, b'\n' | b':' | b']' | b'-' | b'|'),
    }
}

/// ajv's instance path after `data/`: up to ` must ` on the same line (a key may hold spaces),
/// else up to the next space.
fn ajv_path(b: &[u8], from: usize) -> Option<Range<usize>> {
    let line_end = memchr::memchr(b'\n', &b[from..]).map_or(b.len(), |i| from + i);
    let line = &b[from..line_end];
    let end = memchr::memmem::find(line, b" must ")
        .or_else(|| line.iter().position(|c| c.is_ascii_whitespace()))
        .map_or(line_end, |i| from + i);
    (end > from).then_some(from..end)
}

/// `text` with the bytes of `spans` replaced by `x`.
fn apply(text: &str, mut spans: Vec<Range<usize>>) -> Cow<'_, str> {
    spans.retain(|r| r.start < r.end && r.end <= text.len());
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = text.as_bytes().to_vec();
    for r in spans {
        out[r].fill(b'x');
    }
    // Whole multi-byte characters may be cut by a span's edge: read lossily then (the length
    // may change only in that case, and only positions inside the mask move).
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests;
