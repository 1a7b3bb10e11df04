//! Fact files and classes files, which the responder reads at start and on
//! every refresh: `read_fact_file` (YAML or JSON by extension, else JSON
//! then YAML), `read_classes`, then what the responder does with the facts
//! (`facts::flatten`, `facts::lookup`, `facts::merge`).
//!
//! The first byte picks the file's extension; the rest is its content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::facts;
use mco_fuzz::on_worker_stack;
use mco_responder::facts::{read_classes, read_fact_file};

const EXTENSIONS: [&str; 5] = ["json", "yaml", "yml", "txt", "JSON"];

fuzz_target!(|data: &[u8]| {
    let Some((&ext, content)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[ext as usize % EXTENSIONS.len()];
    on_worker_stack(|| check(ext, content));
});

fn check(ext: &str, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("facts.{ext}"));
    std::fs::write(&path, content).unwrap();
    let _ = read_classes(&path);
    let Ok(map) = read_fact_file(&path) else {
        return;
    };
    for (path, value) in facts::flatten(&map) {
        // A flattened path that finds nothing, or something else, is a
        // fact a filter cannot reach as listed: only dotted keys may do so.
        if !path.contains('.') {
            assert_eq!(facts::lookup(&map, &path), Some(value), "{path}");
        }
    }
    let mut merged = map.clone();
    facts::merge(&mut merged, map.clone());
    let _ = serde_json::to_string(&merged).unwrap();
}
