//! The client's provisioning key pins file (`parse_pins`, `render_pins`):
//! what parses renders as text that parses to the same pins; and pins
//! checking (`KeyPins::check`) keeps the first key seen.
//!
//! The input is the file's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_client::pins::{parse_pins, render_pins, KeyPins};
use mco_fuzz::on_worker_stack;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    on_worker_stack(|| check(text));
});

fn check(text: &str) {
    let Ok(pins) = parse_pins("fuzz.pins", text) else {
        return;
    };
    let rendered = render_pins(&pins);
    let again = parse_pins("rendered.pins", &rendered).expect("rendered pins parse");
    assert_eq!(again, pins);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provisioning.pins");
    std::fs::write(&path, text).unwrap();
    let loaded = KeyPins::load(&path).expect("a file that parses loads");
    for (id, key) in &pins {
        assert!(
            loaded.check(id, key).is_ok(),
            "{id}: its pinned key is refused"
        );
        let mut other = *key;
        other[0] ^= 1;
        assert!(
            loaded.check(id, &other).is_err(),
            "{id}: another key passed"
        );
    }
}
