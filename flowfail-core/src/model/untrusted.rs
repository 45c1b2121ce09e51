//! Untrusted text made safe to print: in error messages, in URLs, in change records.

/// A short, printable description of untrusted text for an error message: at most 32
/// characters, control characters escaped, and the total length. For adapters that must
/// mention an id they could not validate.
pub fn describe_untrusted_pub(s: &str) -> String {
    describe_untrusted(s)
}

pub(crate) fn describe_untrusted(s: &str) -> String {
    let shown: String = s.chars().take(32).flat_map(char::escape_default).collect();
    if s.chars().count() > 32 {
        format!("\"{shown}…\" ({} bytes)", s.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// A connection URL (or libpq `key=value` string) with any password replaced by `***`
/// (`scheme://user:***@host`, `password=***`): safe for errors, logs and `--help`.
///
/// ```
/// use flowfail_core::model::redact_url;
/// assert_eq!(redact_url("postgres://ff:s3cret@db:5432/x"), "postgres://ff:***@db:5432/x");
/// assert_eq!(redact_url("host=db password=s3cret user=x"), "host=db password=*** user=x");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            out = format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
        }
    }
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

/// Outside text made safe to show a human: at most `max` bytes (cut on a character boundary,
/// marked with `…`), control characters (newlines, ANSI escapes, NUL) escaped.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 3);
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// `s` as one line of a change record: line breaks, tabs and other control characters become
/// spaces, invisible format characters (bidi controls, zero-width characters, soft hyphen, BOM)
/// are dropped, runs of spaces collapse, the ends are trimmed, and the text is cut to at most
/// `max` bytes at a character boundary, ending in `…` when cut.
///
/// ```
/// use flowfail_core::model::one_line;
/// assert_eq!(one_line(" a\r\n\tb\u{202E}c ", 64), "a bc");
/// assert_eq!(one_line("abcdef", 5), "ab…");
/// ```
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            c
        };
        if crate::text::is_format_char(c) || (c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_end();
    if out.len() <= max {
        return out.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", out[..end].trim_end())
}
