//! Text from outside made inert for Markdown and for Slack-style mrkdwn.

use crate::text::clean_text;

/// Text from outside made inert in Markdown (CommonMark, GFM tables, Slack-style `<!channel>`):
/// [`clean_text`] first (so nothing can start a new line: no heading, list or quote injection),
/// then `&`, `<`, `>` as entities (no HTML, no autolink, no `<!channel>`) and every other
/// character with a meaning inline (`` ` ``, `*`, `_`, `[`, `]`, `(`, `)`, `#`, `|`, `!`, `~`,
/// `\`, …) behind a backslash; a leading `-`, `+`, `=` or `1.` cannot start a block either.
pub fn md_escape(s: &str) -> String {
    let clean = clean_text(s);
    let mut out = String::with_capacity(clean.len() + 8);
    let digits = clean.chars().take_while(char::is_ascii_digit).count();
    for (i, c) in clean.chars().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' | '{' | '}'
            | '$' | '^' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '.' if i == digits && digits > 0 => out.push_str("\\."),
            _ => out.push(c),
        }
    }
    out
}

/// Text made inert in Slack's mrkdwn (the `text` of a chat webhook): [`clean_text`] first (no
/// control, format or line-separator characters), then `&`, `<` and `>` as the entities Slack
/// documents, so no `<!channel>`, `<!here>`, `<@U…>` mention, `<url|label>` link or
/// `<#C…>` channel reference can be formed; the plain-word mentions `@channel`, `@here` and
/// `@everyone` get a full-width at sign (`＠channel`), which Slack never expands.
///
/// ```
/// use flowfail_core::report::mrkdwn_escape;
/// assert_eq!(
///     mrkdwn_escape("<!channel> a&b <http://x|y> @Here\u{202E}\nok"),
///     "&lt;!channel&gt; a&amp;b &lt;http://x|y&gt; ＠Here ok"
/// );
/// ```
pub fn mrkdwn_escape(s: &str) -> String {
    let clean = clean_text(s);
    let mut out = String::with_capacity(clean.len() + 8);
    let mut rest = clean.as_str();
    while let Some(c) = rest.chars().next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' if ["channel", "here", "everyone"].iter().any(|w| {
                rest[1..]
                    .get(..w.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(w))
            }) =>
            {
                out.push('\u{FF20}');
            }
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}
