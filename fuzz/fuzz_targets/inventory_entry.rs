//! Inventory registry entries as a client reads them from the bucket
//! (`mco_client::inventory::check`, then `select` with a filter): any value
//! under any key is an entry or is left out with a warning, never a panic.
//! Whatever is kept names its key, survives its msgpack form, and is matched
//! by a filter as the node itself would be.
//!
//! The input is `KEY\nVALUE`: the key up to the first newline (the whole
//! input is also taken as a value under key `n1`, and as a bare body).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_client::inventory::{check, select};
use mco_core::inventory::InventoryBody;
use mco_fuzz::on_worker_stack;

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| run(data));
});

fn run(data: &[u8]) {
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("n1".to_string(), data),
    };
    let raw = vec![
        (key, bytes::Bytes::copy_from_slice(value), 1),
        (
            "n1".to_string(),
            bytes::Bytes::copy_from_slice(data),
            u64::MAX,
        ),
    ];
    let registry = check(None, raw);
    for e in &registry.entries {
        let b = &e.body;
        assert!(e.written_ms <= b.time_ms.max(1));
        let again = InventoryBody::decode(&b.encode()).expect("a kept body re-encodes");
        assert_eq!(&again, b);
        let _ = e.age_ms(u64::MAX);
    }
    assert!(registry.warnings.len() <= 1);
    let filter = mco_core::Filter {
        identity: vec!["/n/".into()],
        class: vec!["web".into()],
        ..Default::default()
    };
    if let Ok(chosen) = select(&registry, &filter, "mcollective") {
        for e in chosen {
            assert!(e.body.identity.contains('n'));
            assert!(e.body.classes.iter().any(|c| c == "web"));
            assert!(e.body.collectives.iter().any(|c| c == "mcollective"));
        }
    }
    if let Ok(body) = InventoryBody::decode(data) {
        assert_eq!(InventoryBody::decode(&body.encode()).ok(), Some(body));
    }
}
