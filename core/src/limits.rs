//! Bounds on what arrives from outside: the bus, a node, a file or a user.
//!
//! Every recursive structure and every cache fed from outside is bounded by
//! one of these, so the cost of any one message is known in advance: no input
//! can overflow a stack, hold a regex compiler for seconds or fill memory.
//! `SECURITY.md` names each bound and the test that attacks it.

/// Deepest nesting of maps and arrays accepted in a message body (request
/// inputs, reply outputs, facts). Decoding refuses deeper values before they
/// are built, so nothing later (validation, audit, printing, drop) recurses
/// further.
pub const MAX_VALUE_DEPTH: usize = 64;

/// Longest compound filter expression (`-S`), in bytes.
pub const MAX_COMPOUND_LEN: usize = 4096;

/// Deepest nesting of `not`, `!` and parentheses in one compound expression.
pub const MAX_COMPOUND_DEPTH: usize = 32;

/// Most terms in one compound expression. A chain of `and`s builds a tree as
/// deep as it is long, so this also bounds every walk over the tree.
pub const MAX_COMPOUND_TERMS: usize = 256;

/// Most entries a filter may hold across its lists (identities, facts,
/// classes, agents, compound expressions).
pub const MAX_FILTER_ENTRIES: usize = 1024;

/// Longest single pattern (identity, class, agent, fact value or `/regex/`), in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Most memory one compiled regular expression may use (bytes), for its
/// program and, separately, for its lazy DFA cache.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Most patterns one filter may compile (regexes and globs, across every
/// list and every compound term), so a whole filter costs at most this many
/// times [`REGEX_SIZE_LIMIT`] to build, however its text is spread.
pub const MAX_FILTER_PATTERNS: usize = 16;

/// Largest certificate accepted in an envelope, in DER bytes. Ours are under
/// 1 KiB; anything larger is refused before it is parsed or remembered.
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// How far in the future a request's `time_ms` may be, in milliseconds:
/// room for clocks that disagree a little, and no more, so a request cannot
/// be dated ahead to hold its replay entry for longer than its TTL.
pub const MAX_FUTURE_SKEW_MS: u64 = 30_000;

/// Longest request id, in bytes (ours are 26-character ULIDs).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Most bytes of messages a responder lets wait in one subscription's queue
/// before it drops the excess (the broker counts it as a slow consumer): the
/// queue holds `RESPONDER_QUEUE_BYTES / max_payload` messages, at least 64
/// and at most 4,096, so a flood of maximal messages costs at most this much
/// memory before any of them is looked at.
pub const RESPONDER_QUEUE_BYTES: usize = 256 * 1024 * 1024;

/// How many messages a responder's subscription may queue for a bus whose
/// largest message is `max_payload` bytes (see [`RESPONDER_QUEUE_BYTES`]).
pub fn responder_queue_len(max_payload: usize) -> usize {
    (RESPONDER_QUEUE_BYTES / max_payload.max(1)).clamp(64, 4096)
}

/// Longest name in a request's envelope and header fields (sender, caller,
/// collective, agent, action), in bytes: every one of them is written to the
/// audit log and to metrics labels for each request, so none may be large.
pub const MAX_NAME_LEN: usize = 255;

/// Most node identities one request body may name as its target. A client
/// addressing more nodes signs one body per group of
/// [`TARGETS_PER_BODY`]; a responder reads at most this many.
pub const MAX_TARGETS: usize = 1024;

/// How many identities a client names in one signed body when it sends a
/// request to nodes directly: each group costs one signature, and each body
/// stays small however many nodes are called.
pub const TARGETS_PER_BODY: usize = 64;

/// Longest reply subject a request may name, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// How deeply `v` nests maps and arrays (a scalar is 0), found without
/// recursing, so it is safe on any value however it was built.
pub fn value_depth(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// An error if `v` nests deeper than facts may ([`MAX_VALUE_DEPTH`] less the
/// two levels a reply wraps them in), so a node's facts always fit in a
/// reply a client can decode.
pub fn check_facts_depth(v: &serde_json::Value) -> Result<(), String> {
    let max = MAX_VALUE_DEPTH - 2;
    let depth = value_depth(v);
    if depth > max {
        return Err(format!(
            "nested {depth} levels deep, over the bound of {max}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_of_values() {
        assert_eq!(value_depth(&serde_json::json!(1)), 0);
        assert_eq!(value_depth(&serde_json::json!({"a": [1, {"b": []}]})), 3);
        let mut v = serde_json::json!(0);
        for _ in 0..MAX_VALUE_DEPTH {
            v = serde_json::json!([v]);
        }
        assert!(check_facts_depth(&v).is_err());
        assert!(check_facts_depth(&v[0][0]).is_ok());
    }

    #[test]
    fn queue_length_follows_the_payload_bound() {
        assert_eq!(responder_queue_len(1024 * 1024), 256);
        assert_eq!(responder_queue_len(8 * 1024 * 1024), 64);
        assert_eq!(responder_queue_len(1024), 4096);
        assert_eq!(responder_queue_len(0), 4096);
    }
}
