//! Text for the operator's terminal, with control characters made visible.
//!
//! Replies, facts and identities come from nodes, and a node (or whoever is
//! root on one) chooses every byte of them. Written raw to a terminal, an
//! escape sequence could rewrite what the operator sees (move the cursor,
//! erase a failed result, retitle the window) and a carriage return could
//! overwrite a line, and a bidirectional override or an invisible character
//! could make a node's name or message read as something else. So
//! everything `mco` and `check_mco_nrpe` print passes through [`clean`] last:
//! each control character other than newline and tab (C0, DEL and C1), each
//! bidirectional control and each invisible separator or joiner becomes the
//! visible text `\uXXXX`: JSON's own escape, so inside a JSON string it
//! stands for the same character, and JSON output stays valid and means the
//! same.

use std::borrow::Cow;

/// `text` with every control character but `\n` and `\t` replaced by its
/// `\uXXXX` escape; bytes that are not UTF-8 become U+FFFD.
pub fn clean(text: &[u8]) -> Cow<'_, [u8]> {
    let s = String::from_utf8_lossy(text);
    if !s.chars().any(unsafe_char) {
        return match s {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(o) => Cow::Owned(o.into_bytes()),
        };
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out.into_bytes())
}

/// [`clean`] for a string.
pub fn clean_str(text: &str) -> Cow<'_, str> {
    match clean(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(b) => Cow::Owned(String::from_utf8(b).unwrap_or_default()),
    }
}

fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' // zero-width space, joiners, LRM, RLM
                | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidirectional isolates
                | '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{061c}' // Arabic letter mark
                | '\u{feff}' // zero-width no-break space
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_made_visible_and_lines_kept() {
        let got = clean("web-01\x1b[2J\x1b]0;owned\x07 ok\r\nnext\tcol\u{9b}31m\x7f".as_bytes());
        assert_eq!(
            String::from_utf8(got.into_owned()).unwrap(),
            "web-01\\u001b[2J\\u001b]0;owned\\u0007 ok\\u000d\nnext\tcol\\u009b31m\\u007f"
        );
    }

    #[test]
    fn bidi_overrides_and_invisible_characters_are_made_visible() {
        let got = clean_str("web-01\u{202e}KO\u{202c} \u{200b}x\u{2066}y\u{2028}z\u{feff}");
        assert_eq!(
            got,
            "web-01\\u202eKO\\u202c \\u200bx\\u2066y\\u2028z\\ufeff"
        );
        assert_eq!(clean_str("café ünïcödé 日本"), "café ünïcödé 日本");
    }

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(
            clean(b"plain \xc3\xa9t\xc3\xa9\n"),
            Cow::Borrowed(_)
        ));
        assert_eq!(clean_str("x"), "x");
    }

    #[test]
    fn json_stays_valid_and_equal() {
        let v = serde_json::json!({"m": "a\u{9b}b\u{7f}c\u{1b}"});
        let text = serde_json::to_string(&v).unwrap();
        let cleaned = clean(text.as_bytes()).into_owned();
        assert!(!cleaned.iter().any(|b| *b == 0x7f || *b == 0x1b));
        let back: serde_json::Value = serde_json::from_slice(&cleaned).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(clean_str(&String::from_utf8_lossy(b"a\xffb")), "a\u{fffd}b");
        assert_eq!(&*clean(b"a\xffb"), "a\u{fffd}b".as_bytes());
    }
}
