//! Masking: the variable parts of a message (numbers, ids, hashes, quoted values, secrets)
//! replaced by placeholders, so messages of one kind share one template.

use super::MinerOptions;

// Placeholders inside masked text: private-use characters, removed from the input first, so a
// message can never forge one.
const NUM: char = '\u{E000}';
const HEX: char = '\u{E001}';
const UUID: char = '\u{E002}';
const ID: char = '\u{E003}';
const STR_SINGLE: char = '\u{E004}';
const STR_DOUBLE: char = '\u{E005}';
const STR_BACKTICK: char = '\u{E006}';
pub(super) const SECRET: char = '\u{E007}';
/// A whole token that differs between the messages of a template.
pub(super) const ANY: &str = "\u{E00F}";

pub(super) fn is_placeholder(c: char) -> bool {
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
pub(super) fn placeholder_regex(c: char) -> &'static str {
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
pub(super) fn prepare(message: &str, max: usize) -> (String, bool) {
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

/// The message with its variable parts replaced by placeholders (see the [module docs](super)).
pub fn mask(message: &str) -> String {
    let (clean, _) = prepare(message, MinerOptions::default().max_message_bytes);
    human(&mask_prepared(&clean))
}

pub(super) fn mask_prepared(s: &str) -> String {
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
pub(super) fn human(masked: &str) -> String {
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
