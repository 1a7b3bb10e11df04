//! First-boot fact sources, which the responder reads at start and on every
//! refresh: `parse_keyvalue` (`/etc/facts.txt`), `parse_value` (`/etc/role`)
//! and `parse_userdata` (cloud user data's `facts:` mapping), each on the
//! whole input.
//!
//! Properties: every `key=value` fact has a name `check_fact_name` accepts
//! and a trimmed one-line string value, and rendering the facts back as
//! `key=value` lines parses to the same facts with no error; bad lines are
//! counted, at most `MAX_LINE_WARNINGS` listed, in order, each within the
//! input; a value parses to itself; user-data facts are within the depth a
//! reply can carry and serialize as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::facts::check_fact_name;
use mco_fuzz::on_worker_stack;
use mco_responder::facts::{parse_keyvalue, parse_userdata, parse_value, MAX_LINE_WARNINGS};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| check(data));
});

fn check(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count();
    keyvalue(data, lines);
    value(data, lines);
    userdata(data);
}

fn keyvalue(data: &[u8], lines: usize) {
    let got = parse_keyvalue(data);
    assert!(got.errors.len() <= MAX_LINE_WARNINGS);
    assert!(got.bad_lines >= got.errors.len());
    assert!(got.errors.len() == got.bad_lines.min(MAX_LINE_WARNINGS));
    for pair in got.errors.windows(2) {
        assert!(pair[0].line < pair[1].line, "{:?}", got.errors);
    }
    for e in &got.errors {
        assert!((1..=lines).contains(&e.line), "{e} of {lines} lines");
    }
    let mut rendered = String::new();
    for (key, v) in &got.facts {
        assert_eq!(check_fact_name(key), Ok(()), "{key:?}");
        let Value::String(s) = v else {
            panic!("{key}: not a string: {v}");
        };
        assert_eq!(s.trim(), s, "{key}");
        assert!(!s.contains('\n'), "{key}: {s:?}");
        rendered.push_str(&format!("{key}={s}\n"));
    }
    let again = parse_keyvalue(rendered.as_bytes());
    assert_eq!(again.bad_lines, 0, "{rendered:?}: {:?}", again.errors);
    assert_eq!(again.facts, got.facts, "{rendered:?}");
}

fn value(data: &[u8], lines: usize) {
    match parse_value(data) {
        Ok(Some(v)) => {
            assert!(!v.is_empty());
            assert_eq!(v.trim(), v);
            assert!(!v.contains('\n'), "{v:?}");
            // A second byte-order mark is content, and the first is dropped on reading.
            if !v.starts_with('\u{feff}') {
                assert_eq!(parse_value(v.as_bytes()), Ok(Some(v.clone())));
            }
        }
        Ok(None) => {}
        Err(e) => assert!((1..=lines).contains(&e.line), "{e} of {lines} lines"),
    }
}

fn userdata(data: &[u8]) {
    match parse_userdata(data) {
        Ok(facts) => {
            let facts = Value::Object(facts);
            assert_eq!(mco_core::limits::check_facts_depth(&facts), Ok(()));
            let _ = serde_json::to_string(&facts).unwrap();
        }
        Err(e) => {
            if let Some(line) = e.line {
                // At the end of the stream the parser starts a new line when the last one has
                // no break, and an error there (an unclosed `[`) points at it.
                let lines = yaml_lines(data) + 1;
                assert!((1..=lines).contains(&line), "{e} of {lines} lines");
            }
        }
    }
}

/// How many lines the YAML parser sees in `data` (user data that reaches it is UTF-8): its
/// line breaks are LF, CR LF, a lone CR, NEL, LS and PS, and a break at the very end starts
/// one more (empty) line.
fn yaml_lines(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let mut chars = text.chars().peekable();
    let mut lines = 1;
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => lines += 1,
            _ => {}
        }
    }
    lines
}
