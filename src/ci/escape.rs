//! Text from the store or the environment made safe to print: no control or invisible
//! character reaches a runner or agent raw.

/// Control characters (line breaks, escape sequences) and invisible ones (zero-width, bidi
/// overrides) shown as `\n`, `\u{1b}`, `\u{200b}`, never emitted raw: what a person reads is what
/// a runner parses.
#[must_use]
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if needs_visible_escape(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Controls, line and paragraph separators, and Unicode's default-ignorable code points: a
/// culture-aware comparison (as .NET's `IndexOf`/`StartsWith` may use) skips the latter, so
/// `#\u{200b}#[` could still match `##[`.
pub(super) fn needs_visible_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{ad}'
                | '\u{34f}'
                | '\u{61c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}
