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

use regex::bytes::Regex;

/// Phrases that follow a schema validator's quoted instance (`'x' is not one of […]`).
const INSTANCE_FOLLOWERS: &[&[u8]] = &[
    b"is not",
    b"is too",
    b"is less",
    b"is greater",
    b"is a required",
    b"is longer",
    b"is shorter",
    b"is valid under",
    b"is disallowed",
    b"does not",
    b"should",
    b"has non",
    b"has less",
    b"has more",
    b"has fewer",
    b"must",
    b"was expected",
];

/// Where an echo may start; a message without any of these is returned as it is.
static TRIGGER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)input_value=|\(value: |received|on instance|\s(?:is|does|should|has|must|was)\s|validation failed|invalid taskobject|taskobject invalid|failed schema validation|variant `|field `|string \x22|value: `",
    )
    .ok()
});

/// FlowEngine's own validation lines: every quoted value after one of these, to the end of its
/// line, is the tenant's.
static FLOWENGINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)validation failed:?|invalid taskobject:?|taskobject invalid:?|failed schema validation:?",
    )
    .ok()
});

/// `text` with every echo of tenant input replaced by `x`s (same length). Borrowed when
/// nothing is masked.
pub(crate) fn mask_echoes(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let triggered = match &*TRIGGER {
        Some(t) => t.is_match(bytes),
        None => true,
    };
    if !triggered {
        return Cow::Borrowed(text);
    }
    let mut spans: Vec<Range<usize>> = Vec::new();
    echo_after(bytes, b"input_value=", &mut spans, python_value);
    echo_after(bytes, b"(value: ", &mut spans, |b, at| {
        value_or_until(b, at, b')')
    });
    echo_after(bytes, b"received ", &mut spans, quoted_only);
    echo_after(bytes, b"\"received\": ", &mut spans, python_value);
    echo_after(bytes, b"\"received\":", &mut spans, python_value);
    for key in [
        &b"string "[..],
        b"variant ",
        b"field ",
        b"value: ",
        b"On instance",
    ] {
        if key == b"On instance" {
            instance_blocks(bytes, &mut spans);
        } else {
            echo_after(bytes, key, &mut spans, quoted_only);
        }
    }
    schema_instances(bytes, &mut spans);
    flowengine_lines(bytes, &mut spans);
    apply(text, spans)
}

/// `text` as [`mask_echoes`] leaves it, with the values of every JSON / Python-dict field but
/// the code fields also masked: what the vendor-code stage reads.
pub(crate) fn mask_body_values(masked: &str) -> Cow<'_, str> {
    let bytes = masked.as_bytes();
    if memchr::memchr(b'{', bytes).is_none() {
        return Cow::Borrowed(masked);
    }
    let mut spans = Vec::new();
    let mut pos = 0;
    while let Some(i) = memchr::memchr(b'{', &bytes[pos..]) {
        pos = body_string_values(bytes, pos + i, &mut spans, false);
    }
    apply(masked, spans)
}

/// `text` with the quotes inside the string values of JSON / Python-dict bodies masked: a
/// vendor's message quoting a prompt, a parameter or a value (`prompt begins "…"`). What the
/// quota-exhausted evidence is read on when it is found inside a body.
pub(crate) fn mask_quotes_in_values(masked: &str) -> Cow<'_, str> {
    let bytes = masked.as_bytes();
    if memchr::memchr(b'{', bytes).is_none() {
        return Cow::Borrowed(masked);
    }
    let mut values = Vec::new();
    let mut pos = 0;
    while let Some(i) = memchr::memchr(b'{', &bytes[pos..]) {
        pos = body_string_values(bytes, pos + i, &mut values, true);
    }
    let mut spans = Vec::new();
    for v in values {
        let mut i = v.start;
        while i < v.end {
            match bytes[i] {
                q @ (b'\'' | b'"' | b'`') => {
                    let close = string_end(bytes, i, q).min(v.end);
                    spans.push(inside(bytes, i, close));
                    i = close;
                }
                _ => i += 1,
            }
        }
    }
    apply(masked, spans)
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

/// Walks one brace-delimited body from `start` (a `{`) and collects the insides of its string
/// values: all of them, or those of fields other than the code fields (and strings in lists).
/// Returns where the body ends (or the text).
fn body_string_values(b: &[u8], start: usize, spans: &mut Vec<Range<usize>>, all: bool) -> usize {
    // Per open `{` or `[`: the last key seen (objects) or `None` (lists).
    let mut keys: Vec<Option<Range<usize>>> = Vec::new();
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'{' => keys.push(None),
            b'[' => keys.push(None),
            b'}' | b']' => {
                keys.pop();
                if keys.is_empty() {
                    return i + 1;
                }
            }
            b',' => {
                if let Some(k) = keys.last_mut() {
                    *k = None;
                }
            }
            q @ (b'\'' | b'"') => {
                let end = string_end(b, i, q);
                let inner = inside(b, i, end);
                let mut j = end;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                // An escaped quote ends a key of JSON written inside a JSON string.
                let is_key = b.get(j) == Some(&b':');
                match keys.last_mut() {
                    Some(k) if is_key => *k = Some(inner),
                    Some(k) => {
                        let keep = !all
                            && k.as_ref()
                                .is_some_and(|r| code_key(trim_escape(&b[r.clone()])));
                        if !keep {
                            spans.push(inner);
                        }
                    }
                    None => {}
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// A key as written inside an escaped JSON string (`\"type\"`): without the backslash.
fn trim_escape(key: &[u8]) -> &[u8] {
    key.strip_suffix(b"\\").unwrap_or(key)
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

/// For every occurrence of `key`, the span `value(b, after_key)` returns is masked.
fn echo_after(
    b: &[u8],
    key: &[u8],
    spans: &mut Vec<Range<usize>>,
    value: impl Fn(&[u8], usize) -> Option<Range<usize>>,
) {
    for at in memchr::memmem::find_iter(b, key) {
        if let Some(r) = value(b, at + key.len()) {
            spans.push(r);
        }
    }
}

/// A quoted string (`'`, `"` or `` ` ``) starting at `at` (after spaces): its inside.
fn quoted_only(b: &[u8], at: usize) -> Option<Range<usize>> {
    let at = skip_spaces(b, at);
    let q = *b.get(at)?;
    if !matches!(q, b'\'' | b'"' | b'`') {
        return None;
    }
    Some(inside(b, at, string_end(b, at, q)))
}

/// A Python repr or JSON value starting at `at`: a quoted string's inside, a bracketed value's
/// inside (nested brackets and strings included), or a bare token up to `,`, `]`, `)` or
/// whitespace.
fn python_value(b: &[u8], at: usize) -> Option<Range<usize>> {
    let at = skip_spaces(b, at);
    match *b.get(at)? {
        q @ (b'\'' | b'"') => Some(inside(b, at, string_end(b, at, q))),
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

/// A schema validator's instance: a quoted or bracketed value that starts a line or follows
/// `: `, and is followed by `is not …`, `does not …`, `should …` and the like.
fn schema_instances(b: &[u8], spans: &mut Vec<Range<usize>>) {
    let starts = std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', b).map(|i| i + 1))
        .chain(memchr::memmem::find_iter(b, b": ").map(|i| i + 2));
    for s in starts {
        let s = skip_spaces(b, s);
        if !matches!(b.get(s), Some(b'\'' | b'"' | b'{' | b'[')) {
            continue;
        }
        let Some(inner) = python_value(b, s) else {
            continue;
        };
        let after = skip_spaces(b, (inner.end + 1).min(b.len()));
        if INSTANCE_FOLLOWERS.iter().any(|f| b[after..].starts_with(f)) {
            spans.push(inner);
        }
    }
}

/// python-jsonschema's `On instance['title']:` is followed by the instance, indented, on the
/// lines after it.
fn instance_blocks(b: &[u8], spans: &mut Vec<Range<usize>>) {
    for at in memchr::memmem::find_iter(b, b"On instance") {
        let Some(nl) = memchr::memchr(b'\n', &b[at..]).map(|i| at + i) else {
            continue;
        };
        let mut end = nl + 1;
        while end < b.len() && matches!(b[end], b' ' | b'\t') {
            end = memchr::memchr(b'\n', &b[end..]).map_or(b.len(), |i| end + i + 1);
        }
        let start = skip_spaces(b, nl + 1);
        if end > start {
            spans.push(start..end.min(b.len()));
        }
    }
}

/// After FlowEngine's `validation failed:` (and its other validation lines), every quoted value
/// to the end of the line.
fn flowengine_lines(b: &[u8], spans: &mut Vec<Range<usize>>) {
    let Some(re) = &*FLOWENGINE else { return };
    for m in re.find_iter(b) {
        let end = memchr::memchr(b'\n', &b[m.end()..]).map_or(b.len(), |i| m.end() + i);
        let mut i = m.end();
        while i < end {
            match b[i] {
                q @ (b'\'' | b'"' | b'`') => {
                    let close = string_end(b, i, q).min(end);
                    spans.push(inside(b, i, close));
                    i = close;
                }
                _ => i += 1,
            }
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn echoes_are_masked() {
        let m = mask_echoes(
            "1 validation error for TaskObject\ntitle\n  Input should be a valid integer [type=int_parsing, input_value='rate_limit_error', input_type=str]",
        );
        assert!(!m.contains("rate_limit_error"), "{m}");
        assert!(m.contains("input_type=str"), "{m}");
        let m = mask_echoes("'Error code: 503' is not one of ['plan', 'impl']");
        assert!(!m.contains("503"), "{m}");
        assert!(m.contains("is not one of ['plan', 'impl']"), "{m}");
        let m = mask_echoes(
            "TaskObject validation failed: title \"HTTP 429 Too Many Requests\" is too long",
        );
        assert!(!m.contains("429"), "{m}");
        let m = mask_echoes(
            "data/flow must be equal to one of the allowed values (value: \"openai.RateLimitError\")",
        );
        assert!(!m.contains("RateLimit"), "{m}");
        let m = mask_echoes(
            "Invalid enum value. Expected 'plan' | 'impl', received 'overloaded_error'",
        );
        assert!(!m.contains("overloaded"), "{m}");
        let m = mask_echoes(
            "Failed validating 'enum' in schema['properties']['flow']:\n    {'enum': ['plan']}\n\nOn instance['flow']:\n    'Task timed out after 45 seconds'",
        );
        assert!(!m.contains("timed out"), "{m}");
        // Same length: positions agree between the forms.
        let s = "input_value={'type': 'overloaded_error'}, input_type=dict";
        assert_eq!(mask_echoes(s).len(), s.len());
        assert!(!mask_echoes(s).contains("overloaded"));
        // Nothing to mask: borrowed.
        assert!(matches!(
            mask_echoes("Task timed out after 45.00 seconds"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn only_code_fields_keep_their_values_for_the_vendor_stage() {
        let s = "openai.BadRequestError: Error code: 400 - {'error': {'message': \"prompt: {'type': 'rate_limit_error'}\", 'type': 'invalid_request_error', 'param': None, 'code': 'x'}}";
        let m = mask_body_values(s);
        assert!(!m.contains("rate_limit_error"), "{m}");
        assert!(m.contains("'type': 'invalid_request_error'"), "{m}");
        let s = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let m = mask_body_values(s);
        assert!(
            m.contains(r#""type":"overloaded_error""#) && !m.contains("Overloaded\""),
            "{m}"
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        for s in [
            "input_value=",
            "input_value='",
            "(value: ",
            "{'a': '",
            "On instance",
            "\"x\" is",
            "validation failed: \"",
            "{{{{]]]",
            "received `",
            "é input_value='é' é",
        ] {
            let _ = mask_echoes(s);
            let _ = mask_body_values(s);
        }
    }
}
