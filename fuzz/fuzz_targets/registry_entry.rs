//! The provisioner's expected-node registry entries (`classify::file_entry`,
//! `classify::bucket_value`) and the classification they carry
//! (`Classification::from_json`, as the node's `configure` reads it): any
//! line or value is an entry, nothing, or an error, never a panic; whatever
//! is accepted is a valid classification that survives its JSON form, and
//! its ENC YAML reads back as the same classes, parameters and environment.
//!
//! The input is one registry line, also taken as a bucket value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_fuzz::on_worker_stack;
use mco_provisioner::classify::{bucket_value, enc_yaml, file_entry, BucketValue, Classification};

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| check(data));
});

fn round_trip(c: &Classification) {
    c.check().expect("an accepted classification is valid");
    let again = Classification::from_json(&c.to_json()).expect("its JSON reads back");
    assert_eq!(&again, c);
    let yaml: serde_json::Value =
        serde_norway::from_str(&enc_yaml(c)).expect("the ENC answer is YAML");
    assert_eq!(yaml["classes"], serde_json::json!(c.classes));
    assert_eq!(
        yaml["parameters"],
        serde_json::Value::Object(c.parameters.clone())
    );
    match &c.environment {
        Some(e) => assert_eq!(yaml["environment"], serde_json::json!(e)),
        None => assert!(yaml.get("environment").is_none()),
    }
}

fn check(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(Some((pattern, c))) = file_entry(line) {
            assert!(!pattern.is_empty() && !pattern.contains(char::is_whitespace));
            if let Some(c) = c {
                round_trip(&c);
            }
        }
        if let Ok(c) = Classification::from_json(line) {
            round_trip(&c);
        }
    }
    if let Ok(BucketValue::Yes(Some(c))) = bucket_value(data) {
        round_trip(&c);
    }
}
