//! Loading an agent DDL (`Ddl::from_json`, what the client and the
//! responder do with every DDL file they find), then each action's
//! defaults, input validation (`Action::validate`) and argument coercion
//! (`coerce_argument`), and the DDL's round trip through serialisation.
//!
//! The input is the DDL's text; after a first NUL byte, an optional JSON
//! object of action inputs to validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::ddl::coerce_argument;
use mco_core::Ddl;
use mco_fuzz::{on_worker_stack, split_nul};

fuzz_target!(|data: &[u8]| {
    let (ddl, inputs) = split_nul(data);
    let (Ok(ddl), Ok(inputs)) = (std::str::from_utf8(ddl), std::str::from_utf8(inputs)) else {
        return;
    };
    on_worker_stack(|| check(ddl, inputs));
});

fn check(text: &str, inputs: &str) {
    let Ok(ddl) = Ddl::from_json("fuzz.json", text) else {
        return;
    };
    // What loaded saves as something that loads again.
    let saved = serde_json::to_string(&ddl).expect("a loaded DDL serialises");
    if let Err(e) = Ddl::from_json("saved.json", &saved) {
        panic!("a loaded DDL does not load again once saved: {e}");
    }
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(inputs).unwrap_or_default();
    for action in &ddl.actions {
        let _ = action.output_defaults();
        let mut d = data.clone();
        let _ = action.validate(&mut d);
        let mut empty = serde_json::Map::new();
        let _ = action.validate(&mut empty);
        for (name, input) in &action.input {
            for text in [inputs, "", "1", "true", "x"] {
                if let Ok(v) = coerce_argument(name, input, text) {
                    let mut one = serde_json::Map::new();
                    one.insert(name.clone(), v);
                    let _ = action.validate(&mut one);
                }
            }
        }
    }
}
