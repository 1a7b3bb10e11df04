//! A request's inputs checked against the DDLs we ship (what the
//! responder does before any agent sees them), the command line's
//! argument coercion (`coerce_argument`), and the validators a DDL can
//! name (`Validator::parse`, `Validator::check`, `shellsafe`).
//!
//! The input: three bytes pick a shipped DDL, one of its actions, and
//! whether the data is msgpack (odd, as on the wire) or JSON; then, split
//! at NUL bytes, the request data, a command-line argument, a validator
//! and a text to check against it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::ddl::{coerce_argument, shellsafe, Validator};
use mco_fuzz::{on_worker_stack, shipped_ddls};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    on_worker_stack(|| check(data[0], data[1], data[2] % 2 == 1, &data[3..]));
});

fn check(ddl: u8, action: u8, msgpack: bool, rest: &[u8]) {
    let ddls = shipped_ddls();
    let ddl = &ddls[ddl as usize % ddls.len()];
    let action = &ddl.actions[action as usize % ddl.actions.len()];
    let mut parts = rest.splitn(4, |&b| b == 0);
    let data = parts.next().unwrap_or_default();
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let (argument, validator, sample) =
        (text(parts.next()), text(parts.next()), text(parts.next()));
    let data: Option<serde_json::Map<String, serde_json::Value>> = if msgpack {
        rmp_serde::from_slice(data).ok()
    } else {
        serde_json::from_slice(data).ok()
    };
    if let Some(mut data) = data {
        let before = data.clone();
        if action.validate(&mut data).is_ok() {
            // Validation only adds defaults; it never changes a given value.
            for (k, v) in &before {
                assert_eq!(data.get(k), Some(v));
            }
            // And what passed passes again.
            let mut again = data.clone();
            assert!(action.validate(&mut again).is_ok());
        }
    }
    for (name, def) in &action.input {
        if let Ok(v) = coerce_argument(name, def, &argument) {
            let mut one = serde_json::Map::new();
            one.insert(name.clone(), v);
            let _ = action.validate(&mut one);
        }
    }
    if let Ok(v) = Validator::parse(&validator) {
        let _ = v.check(&sample);
    }
    let _ = shellsafe(&sample);
}
