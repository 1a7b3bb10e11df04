//! NATS subject names (ARCHITECTURE.md §3).

use sha2::{Digest, Sha256};

/// `C.broadcast.agent.<agent>`: filtered broadcasts to every node hosting `agent`.
pub fn broadcast(collective: &str, agent: &str) -> String {
    format!("{collective}.broadcast.agent.{agent}")
}

/// `C.node.<identity>`: direct requests to one node.
pub fn node(collective: &str, identity: &str) -> String {
    format!("{collective}.node.{identity}")
}

/// `C.registration.<identity>`: a node's periodic registration.
pub fn registration(collective: &str, identity: &str) -> String {
    format!("{collective}.registration.{identity}")
}

/// `C.reply.<caller-hash>.<request-id>`: where replies to one request go.
pub fn reply(collective: &str, caller: &str, request_id: &str) -> String {
    format!("{collective}.reply.{}.{request_id}", caller_hash(caller))
}

/// `C.reply.<caller-hash>.>`: every reply subject of one caller (for broker permissions).
pub fn reply_wildcard(collective: &str, caller: &str) -> String {
    format!("{collective}.reply.{}.>", caller_hash(caller))
}

/// `_INBOX.<hash>`: the inbox prefix of principal `name` (`node:web1`, `user:alice`), under
/// which its JetStream answers come; the broker lets only it subscribe there.
pub fn inbox_prefix(name: &str) -> String {
    format!("_INBOX.{}", caller_hash(name))
}

/// A short hex SHA-256 of the caller name (16 hex digits), safe inside a subject.
pub fn caller_hash(caller: &str) -> String {
    let digest = Sha256::digest(caller.as_bytes());
    hex::encode(&digest[..8])
}

/// Whether `token` can stand as one subject token: non-empty, no whitespace,
/// no `.`, `*` or `>`.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| c.is_whitespace() || c == '.' || c == '*' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_have_the_documented_shape() {
        assert_eq!(broadcast("eu", "rpcutil"), "eu.broadcast.agent.rpcutil");
        assert_eq!(node("mcollective", "web1"), "mcollective.node.web1");
        let r = reply("mcollective", "user:alice", "01abc");
        assert!(r.starts_with("mcollective.reply."));
        assert!(r.ends_with(".01abc"));
        assert_eq!(caller_hash("user:alice").len(), 16);
        assert_ne!(caller_hash("user:alice"), caller_hash("user:bob"));
        assert!(valid_token("web-01"));
        assert!(!valid_token("a.b") && !valid_token("*") && !valid_token(""));
    }
}
