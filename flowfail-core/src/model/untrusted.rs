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

/// A connection URL (or libpq `key=value` string) with every password replaced by `***`
/// (`scheme://user:***@host`, `password=***`, a quoted `password='…'` whole): safe for errors,
/// logs and `--help`.
///
/// ```
/// use flowfail_core::model::redact_url;
/// assert_eq!(redact_url("postgres://ff:s3cret@db:5432/x"), "postgres://ff:***@db:5432/x");
/// assert_eq!(redact_url("host=db password=s3cret user=x"), "host=db password=*** user=x");
/// assert_eq!(redact_url("password = 'a b\\'c' user=x"), "password = *** user=x");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', '?', '#', ' ']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    redact_password_params(&out)
}

/// Every `password=` value (a URL query parameter or a libpq keyword, any case, spaces
/// around `=` allowed) replaced by `***`; a single-quoted value is replaced whole, escapes
/// included.
fn redact_password_params(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let bytes = s.as_bytes();
    let skip_spaces = |mut i: usize| {
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        i
    };
    let (mut out, mut copied, mut from) = (String::with_capacity(s.len()), 0, 0);
    while let Some(rel) = lower[from..].find("password") {
        let key = from + rel;
        from = key + "password".len();
        let starts_a_word = key == 0 || matches!(bytes[key - 1], b' ' | b'?' | b'&' | b';' | b'\t');
        let eq = skip_spaces(from);
        if !starts_a_word || bytes.get(eq) != Some(&b'=') {
            continue;
        }
        let value = skip_spaces(eq + 1);
        let end = if bytes.get(value) == Some(&b'\'') {
            let mut e = value + 1;
            while e < bytes.len() && bytes[e] != b'\'' {
                e += if bytes[e] == b'\\' { 2 } else { 1 };
            }
            (e + 1).min(bytes.len())
        } else {
            s[value..]
                .find([' ', '&', ';', '\t'])
                .map_or(s.len(), |e| value + e)
        };
        out.push_str(&s[copied..value]);
        out.push_str("***");
        copied = end;
        from = end;
    }
    out.push_str(&s[copied..]);
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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_password_is_redacted_quoted_values_whole() {
        for (given, shown) in [
            (
                "postgres://a:one@h/x and postgres://b:two@h/y",
                "postgres://a:***@h/x and postgres://b:***@h/y",
            ),
            (
                "host=db password='with spaces and \\' quote' user=x",
                "host=db password=*** user=x",
            ),
            (
                "postgres://h/x?password=one&user=u&password=two",
                "postgres://h/x?password=***&user=u&password=***",
            ),
            ("PASSWORD=Loud user=x", "PASSWORD=*** user=x"),
            ("password = spaced user=x", "password = *** user=x"),
            ("password='never closed", "password=***"),
            ("host=db user=x", "host=db user=x"),
            ("my_password_file=/p user=x", "my_password_file=/p user=x"),
        ] {
            assert_eq!(redact_url(given), shown, "{given}");
        }
    }
}
