//! Log lines that text from outside cannot split or forge.
//!
//! A node's identity, a reply's status message or a CSR's name can reach a
//! log line as a field or inside an error. The formatter escapes the
//! terminal's escape character in fields, but not line breaks: a `\n` in a
//! node's text would start a line of the attacker's choosing in the
//! responder's or the provisioner's log. [`Escaping`] wraps the writer the
//! formatter writes each whole event to and escapes, in that text, every
//! control character but the tab, the escape character (the formatter's own
//! colours) and the event's final newline, as `\n`, `\r`, `\x07`, `\u{9b}`.

use std::io::{self, Write};

/// A writer that escapes control characters inside each write, keeping a
/// final `\n`; give `|| Escaping(std::io::stderr())` to the log formatter.
#[derive(Debug)]
pub struct Escaping<W: Write>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `buf` with control characters escaped, all but a final newline, tabs and
/// the escape character (see the module documentation).
pub fn escape(buf: &[u8]) -> Vec<u8> {
    let (body, end) = match buf.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (buf, &b""[..]),
    };
    let mut out = Vec::with_capacity(buf.len() + end.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' | 0x1b => out.push(b),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            // C1 controls (U+0080..U+009F), which some terminals act on.
            0xc2 if matches!(body.get(i + 1), Some(0x80..=0x9f)) => {
                out.extend_from_slice(format!("\\u{{{:x}}}", body[i + 1]).as_bytes());
                i += 1;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        String::from_utf8(escape(s.as_bytes())).unwrap()
    }

    #[test]
    fn a_line_break_inside_an_event_cannot_start_a_line() {
        let forged = "WARN node=web1\nINFO provisioned node=ca\r\n";
        assert_eq!(
            esc(forged),
            "WARN node=web1\\nINFO provisioned node=ca\\r\n"
        );
        assert_eq!(esc(forged).matches('\n').count(), 1);
    }

    #[test]
    fn other_controls_are_escaped_and_text_is_kept() {
        assert_eq!(
            esc("a\u{7}b\u{0}c\u{7f}d\u{9b}2Je\n"),
            "a\\x07b\\x00c\\x7fd\\u{9b}2Je\n"
        );
        assert_eq!(
            esc("\u{1b}[2mtime\u{1b}[0m\tnode=wéb1 ✓\n"),
            "\u{1b}[2mtime\u{1b}[0m\tnode=wéb1 ✓\n"
        );
        assert_eq!(esc(""), "");
        assert_eq!(esc("\n"), "\n");
    }

    #[test]
    fn the_writer_passes_the_escaped_text_on() {
        let mut w = Escaping(Vec::new());
        let n = w.write(b"x\ny\n").unwrap();
        assert_eq!(n, 4);
        assert_eq!(w.0, b"x\\ny\n");
    }
}
