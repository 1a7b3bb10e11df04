//! Every other part of a request's filter: fact terms (`-F`, `-W`, and
//! `FactTerm`s as they arrive on the wire with any operator), identities,
//! classes and agents (exact, glob or `/regex/`), compiled and matched
//! against a node; and the ordering of version facts (no value is both
//! below and above the node's `version`).
//!
//! The input is lines, each a letter then its text: `W` a `-W` term, `I`
//! an identity, `C` a class, `A` an agent, `F` a wire fact term
//! `FACT<tab>OP<tab>VALUE` (OP a digit, 0 to 6), `V` a version to compare
//! with the node's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::filter::{FactTerm, Filter};
use mco_fuzz::{on_worker_stack, Node};

const OPS: [&str; 7] = ["==", "!=", "<", ">", "<=", ">=", "=~"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    on_worker_stack(|| check(text));
});

fn check(text: &str) {
    let mut filter = Filter::default();
    let mut versions = Vec::new();
    for line in text.lines() {
        let mut chars = line.chars();
        let Some(tag) = chars.next() else {
            continue;
        };
        let rest = chars.as_str();
        match tag {
            'W' => {
                if filter.add_with(rest).is_ok() {
                    if let Ok(t) = FactTerm::parse(rest) {
                        // A parsed term prints as text that parses back to it.
                        let again = FactTerm::parse(&t.to_string());
                        assert_eq!(again.ok(), Some(t.clone()), "{t} does not parse back");
                    }
                }
            }
            'I' => filter.identity.push(rest.to_string()),
            'C' => filter.class.push(rest.to_string()),
            'A' => filter.agent.push(rest.to_string()),
            'F' => {
                let mut parts = rest.splitn(3, '\t');
                let (fact, op, value) = (parts.next(), parts.next(), parts.next());
                let op = op.and_then(|o| o.parse::<usize>().ok()).unwrap_or(0);
                let json = serde_json::json!({
                    "fact": fact.unwrap_or_default(),
                    "op": OPS[op % OPS.len()],
                    "value": value.unwrap_or_default(),
                });
                if let Ok(t) = serde_json::from_value::<FactTerm>(json) {
                    filter.fact.push(t);
                }
            }
            'V' => versions.push(rest.to_string()),
            _ => {}
        }
    }
    if let Ok(c) = filter.compile() {
        c.matches(&Node::web());
    }
    let node = Node::web();
    for v in &versions {
        let holds = |op: &str| {
            let mut f = Filter::default();
            f.add_with(&format!("version{op}{v}")).is_ok()
                && f.compile().is_ok_and(|c| c.matches(&node))
        };
        assert!(
            !(holds("<") && holds(">")),
            "{v:?} is both below and above the version"
        );
        assert!(!(holds("<") && holds(">=")), "{v:?}: < and >= both hold");
        assert!(!(holds(">") && holds("<=")), "{v:?}: > and <= both hold");
    }
}
