//! Printing stored or remote text to a terminal safely.
//!
//! Anything a client could have put in the database (a user name tried at login, a key
//! name, an audit detail) or that a model generated may contain escape sequences that
//! rewrite the terminal, or newlines that forge extra lines of output. Every such value
//! goes through [`line()`] (one-line fields) or [`text()`] (multi-line text) before it is
//! printed; control characters come out as visible `\u{…}` escapes.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters that are never printed raw: C0/C1 controls, DEL, and the Unicode
/// directional overrides that reorder how a line reads.
fn dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(value: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !value.chars().any(|c| dangerous(c) && !keep(c)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if dangerous(c) && !keep(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A one-line field: every control character, newlines included, is escaped.
pub fn line(value: &str) -> Cow<'_, str> {
    escape(value, |_| false)
}

/// Multi-line text (a model's reply): newlines and tabs stay, other controls are
/// escaped.
pub fn text(value: &str) -> Cow<'_, str> {
    escape(value, |c| c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_forged_lines_are_made_visible() {
        assert_eq!(line("alice"), "alice");
        assert_eq!(line("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(line("x\nok login admin"), "x\\u{a}ok login admin");
        assert_eq!(line("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(text("one\ntwo\u{7}"), "one\ntwo\\u{7}");
        assert_eq!(text("\r\n"), "\\u{d}\n");
    }
}
