//! actionpolicy files (`Policy::parse`) and groups files (`Groups::parse`),
//! then decisions (`Policy::decide`) for a few callers and actions on a
//! node: what a responder does for each request.
//!
//! The input is the policy's text; after a first NUL byte, the groups
//! file's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_fuzz::{on_worker_stack, split_nul, Node};
use mco_security::policy::{Groups, Policy};

fuzz_target!(|data: &[u8]| {
    let (policy, groups) = split_nul(data);
    let (Ok(policy), Ok(groups)) = (std::str::from_utf8(policy), std::str::from_utf8(groups))
    else {
        return;
    };
    on_worker_stack(|| check(policy, groups));
});

fn check(policy: &str, groups: &str) {
    let groups = Groups::parse("groups", groups).unwrap_or_default();
    let Ok(policy) = Policy::parse("fuzz.policy", policy) else {
        return;
    };
    let node = Node::web();
    for caller in [
        "user:alice",
        "user:mallory",
        "node:web-01.example.net",
        "ops",
    ] {
        for action in ["status", "restart", "ping", ""] {
            let d = policy.decide(caller, action, &node, &groups);
            match d.rule {
                Some(line) => {
                    let rule = policy.rules().iter().find(|r| r.line == line);
                    let rule = rule.expect("a decision names a rule that is there");
                    assert_eq!(d.allowed, rule.allow, "the deciding rule's word decides");
                }
                None => assert_eq!(d.allowed, policy.default_allow()),
            }
        }
    }
}
