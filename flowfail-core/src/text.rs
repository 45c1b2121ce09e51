//! Text from outside made safe to show: one place for what every renderer (the terminal
//! timeline, Markdown, Slack, the change cause on a Deployment) strips from it.

/// Text from outside (error messages, vendor names, env values, summaries) made safe to show on
/// a terminal: line breaks and tabs become spaces; control characters (ANSI escapes start with
/// one) and invisible format characters (bidi overrides such as U+202E, zero-width characters)
/// are dropped.
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}') {
            out.push(' ');
        } else if !(c.is_control() || is_format_char(c)) {
            out.push(c);
        }
    }
    out
}

/// Unicode general category Cf (format characters: bidi controls, zero-width characters, tags).
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}
