//! Broker permissions for the inventory registry (ARCHITECTURE.md §11): a JetStream key-value
//! bucket in which every node writes its own entry and every caller reads them all.
//!
//! - A node may publish its own key only (`$KV.B.<identity>`) and ask the bucket's stream for
//!   its configuration (which the key-value client does on opening it); JetStream's answers come
//!   under the node's own inbox prefix, the only one it may subscribe to.
//! - A caller may read: the stream's configuration, its own consumers of the stream (ordered
//!   consumers, with flow control) and single messages; its answers come under its own inbox.
//! - An inventory admin may also create and update the bucket and delete entries.
//!
//! Nobody but an admin may create a consumer that delivers elsewhere than an inbox the creator
//! reads: see SECURITY.md's known gaps for what a caller's consumer may still name.

use std::path::PathBuf;

use mco_core::subject;

/// The inventory bucket on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryOptions {
    /// The bucket.
    pub bucket: String,
    /// Callers (names without `user:`) who may create the bucket and delete entries.
    pub admins: Vec<String>,
    /// JetStream's store directory.
    pub store_dir: PathBuf,
    /// The bucket the CA's CRL is published in: every node and caller reads it, admins write it.
    pub crl_bucket: String,
    /// Nodes (names without `node:`) that may publish the CRL: the CA agent's node.
    pub crl_publishers: Vec<String>,
}

/// What reading bucket `b` takes: the stream's info, single messages, and ordered consumers of
/// one's own (created, deleted, flow-controlled).
fn reader_publish(b: &str) -> Vec<String> {
    let stream = format!("KV_{b}");
    vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]
}

/// What node `identity` may publish and subscribe to for the inventory bucket `b` (its own
/// key) and the CRL's bucket `crl` (read; and write its one key when `crl_publisher`, the CA
/// agent's node).
pub fn node_permissions(
    b: &str,
    crl: &str,
    identity: &str,
    crl_publisher: bool,
) -> (Vec<String>, Vec<String>) {
    let mut publish = vec![
        format!("$JS.API.STREAM.INFO.KV_{b}"),
        format!("$KV.{b}.{identity}"),
    ];
    publish.extend(reader_publish(crl));
    if crl_publisher {
        publish.push(format!("$KV.{crl}.{}", mco_core::inventory::CRL_KEY));
    }
    (
        publish,
        vec![format!(
            "{}.>",
            subject::inbox_prefix(&format!("node:{identity}"))
        )],
    )
}

/// What caller `user` may publish and subscribe to for the inventory bucket `b` and the CRL's
/// bucket `crl` (read both); `admin` adds creating both buckets, deleting entries and
/// publishing the CRL.
pub fn user_permissions(b: &str, crl: &str, user: &str, admin: bool) -> (Vec<String>, Vec<String>) {
    let mut publish = reader_publish(b);
    publish.extend(reader_publish(crl));
    if admin {
        publish.push("$JS.API.INFO".to_string());
        for bucket in [b, crl] {
            publish.extend([
                format!("$JS.API.STREAM.CREATE.KV_{bucket}"),
                format!("$JS.API.STREAM.UPDATE.KV_{bucket}"),
                format!("$KV.{bucket}.>"),
            ]);
        }
    }
    let subscribe = vec![format!(
        "{}.>",
        subject::inbox_prefix(&format!("user:{user}"))
    )];
    (publish, subscribe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_writes_its_own_key_only() {
        let (publish, subscribe) = node_permissions("inv", "crl", "web1", false);
        assert!(publish.contains(&"$KV.inv.web1".to_string()));
        assert!(!publish
            .iter()
            .any(|p| p.starts_with("$KV.") && p != "$KV.inv.web1"));
        assert!(!publish
            .iter()
            .any(|p| p.contains("KV_inv") && p.ends_with(".>")));
        // It reads the CRL, and cannot write it.
        assert!(publish.contains(&"$JS.API.CONSUMER.CREATE.KV_crl".to_string()));
        assert_eq!(subscribe.len(), 1);
        assert!(subscribe[0].starts_with("_INBOX.") && subscribe[0] != "_INBOX.>");
        // The CA agent's node may write the CRL's one key, and nothing else of that bucket.
        let (publish, _) = node_permissions("inv", "crl", "ca1", true);
        assert!(publish.contains(&"$KV.crl.ca.crl".to_string()));
        assert_eq!(
            publish.iter().filter(|p| p.starts_with("$KV.crl")).count(),
            1
        );
        // Another node's inbox is another prefix.
        assert_ne!(node_permissions("inv", "crl", "web2", false).1, subscribe);
    }

    #[test]
    fn callers_read_and_only_admins_write() {
        let (publish, _) = user_permissions("inv", "crl", "bob", false);
        assert!(!publish.iter().any(|p| p.starts_with("$KV.")));
        assert!(!publish.iter().any(|p| p.contains("STREAM.CREATE")));
        let (publish, _) = user_permissions("inv", "crl", "alice", true);
        assert!(publish.contains(&"$KV.inv.>".to_string()));
        assert!(publish.contains(&"$KV.crl.>".to_string()));
        assert!(publish.contains(&"$JS.API.STREAM.CREATE.KV_inv".to_string()));
    }
}
