//! The compound filter language (`mco -S`), which reaches every responder
//! inside a signed request: `parse_compound`, then `Filter::compile` and
//! `CompiledFilter::matches` against a node.
//!
//! The input is the expression's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::filter::{parse_compound, Filter};
use mco_fuzz::{on_worker_stack, Node};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    on_worker_stack(|| check(src));
});

fn check(src: &str) {
    let parsed = parse_compound(src);
    let filter = Filter {
        compound: vec![src.to_string()],
        ..Filter::default()
    };
    let compiled = filter.compile();
    assert!(
        parsed.is_ok() || compiled.is_err(),
        "an expression that does not parse compiled"
    );
    if let Ok(c) = compiled {
        c.matches(&Node::web());
        // The filter travels in msgpack: it must arrive as it left.
        let bytes = rmp_serde::to_vec_named(&filter).unwrap();
        let back: Filter = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, filter);
    }
}
