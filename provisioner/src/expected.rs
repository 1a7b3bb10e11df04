//! Whether a node is expected, and what it is: `[expected]` identities,
//! the registry file, the registry bucket (on the main collective's broker,
//! where the bootstrap token does not reach) and address ranges. Only the
//! registries carry a classification.
//!
//! A registry that cannot be read is a failure to retry, never a refusal
//! nor an acceptance.

use std::path::Path;

use mco_core::facts::lookup;
use mco_core::filter::Pattern;
use serde_json::{Map, Value};

use crate::classify::{bucket_value, file_entry, BucketValue, Classification};
use crate::config::Expected;
use crate::registry::ExpectedNodes;

/// Why a node is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `[expected] identities`.
    Identities,
    /// A line of the registry file.
    RegistryFile,
    /// A key of the registry bucket.
    RegistryBucket,
    /// Its self-reported address lies in `[expected] networks`.
    Network,
}

/// A node the registries know.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    /// The first reason found.
    pub why: Why,
    /// Its classification, from the registry file or else the bucket.
    pub classification: Option<Classification>,
}

/// The expected-node lists of a provisioner config.
pub struct Registries<'a> {
    /// `[expected]`.
    pub cfg: &'a Expected,
    /// The open registry bucket, when one is configured.
    pub bucket: Option<&'a ExpectedNodes>,
}

/// Whether `pattern` names `node`, ignoring case (host names do).
pub fn glob(pattern: &str, node: &str) -> bool {
    Pattern::parse(&pattern.to_ascii_lowercase())
        .map(|p| p.matches(&node.to_ascii_lowercase()))
        .unwrap_or(false)
}

impl Registries<'_> {
    /// Looks `node` up; `facts` (when known) for the address ranges.
    /// `Ok(None)`: not expected.
    pub async fn lookup(
        &self,
        node: &str,
        facts: Option<&Map<String, Value>>,
    ) -> Result<Option<Known>, String> {
        let mut why = None;
        let mut classification = None;
        if self.cfg.identities.iter().any(|p| glob(p, node)) {
            why = Some(Why::Identities);
        }
        if let Some(file) = &self.cfg.registry_file {
            if let Some(c) = read_file_entry(file, node).await? {
                why = why.or(Some(Why::RegistryFile));
                classification = c;
            }
        }
        if let (Some(kv), Some(bucket)) = (self.bucket, &self.cfg.kv_bucket) {
            let got = kv
                .get(node)
                .await
                .map_err(|e| format!("the registry bucket {bucket} cannot be read: {e}"))?;
            if let Some(v) = got {
                match bucket_value(&v) {
                    Ok(BucketValue::No) => {}
                    Ok(BucketValue::Yes(c)) => {
                        why = why.or(Some(Why::RegistryBucket));
                        classification = classification.or(c);
                    }
                    Err(e) => {
                        return Err(format!(
                            "the registry bucket {bucket}'s entry for {node}: {e}"
                        ))
                    }
                }
            }
        }
        if why.is_none() {
            if let Some(f) = facts {
                if in_networks(self.cfg, f) {
                    why = Some(Why::Network);
                }
            }
        }
        Ok(why.map(|why| Known {
            why,
            classification,
        }))
    }
}

/// Whether the node's address fact lies in one of `[expected] networks`.
pub fn in_networks(cfg: &Expected, facts: &Map<String, Value>) -> bool {
    if cfg.networks.is_empty() {
        return false;
    }
    cfg.address_facts
        .iter()
        .filter_map(|f| lookup(facts, f))
        .filter_map(Value::as_str)
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .any(|ip| cfg.networks.iter().any(|n| n.contains(&ip)))
}

/// The registry file's first line matching `node`: `Some(classification)`
/// when there is one.
async fn read_file_entry(
    file: &Path,
    node: &str,
) -> Result<Option<Option<Classification>>, String> {
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| format!("the registry {} cannot be read: {e}", file.display()))?;
    for (n, line) in text.lines().enumerate() {
        match file_entry(line) {
            Ok(Some((pattern, c))) if glob(&pattern, node) => return Ok(Some(c)),
            Ok(_) => {}
            // A broken line for this node is neither an acceptance nor a
            // refusal: the node waits until it is fixed, and no later line
            // (a `*`, say) decides in its place. Other nodes' broken lines
            // are the operator's to fix; they expect no one.
            Err(e) => {
                let pattern = line.split_whitespace().next().unwrap_or_default();
                if glob(pattern, node) {
                    return Err(format!("{}:{}: {e}", file.display(), n + 1));
                }
                tracing::warn!("{}:{}: {e}", file.display(), n + 1);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expected(networks: &[&str]) -> Expected {
        Expected {
            networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
            ..Expected::default()
        }
    }

    fn facts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_address_in_a_range_is_expected_and_one_outside_is_not() {
        let e = expected(&["10.20.0.0/16", "fd00::/8"]);
        assert!(in_networks(&e, &facts(json!({"ipaddress": "10.20.3.4"}))));
        assert!(in_networks(
            &e,
            &facts(json!({"networking": {"ip": "10.20.255.255"}}))
        ));
        assert!(in_networks(&e, &facts(json!({"ipaddress": "fd12::1"}))));
        assert!(!in_networks(&e, &facts(json!({"ipaddress": "10.21.0.1"}))));
        assert!(!in_networks(
            &e,
            &facts(json!({"ipaddress": "not an address"}))
        ));
        assert!(!in_networks(&e, &facts(json!({"ipaddress": 167_772_161}))));
        assert!(!in_networks(&e, &facts(json!({}))));
        assert!(!in_networks(
            &expected(&[]),
            &facts(json!({"ipaddress": "10.20.3.4"}))
        ));
    }

    #[tokio::test]
    async fn the_first_matching_line_of_the_file_classifies() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("expected");
        std::fs::write(
            &f,
            "# booted today\nweb-0001 {\"classes\": [\"role::web\"]}\nweb-* {\"classes\": [\"role::other\"]}\nbroken {\"classes\": [1]}\ndb-01\n",
        )
        .unwrap();
        let cfg = Expected {
            registry_file: Some(f.clone()),
            ..Expected::default()
        };
        let r = Registries {
            cfg: &cfg,
            bucket: None,
        };
        let k = r.lookup("web-0001", None).await.unwrap().unwrap();
        assert_eq!(k.why, Why::RegistryFile);
        assert_eq!(k.classification.unwrap().classes, vec!["role::web"]);
        let k = r.lookup("web-0002", None).await.unwrap().unwrap();
        assert_eq!(k.classification.unwrap().classes, vec!["role::other"]);
        assert_eq!(
            r.lookup("db-01", None)
                .await
                .unwrap()
                .unwrap()
                .classification,
            None
        );
        // A broken line for the node is an error (retried), not a fall-through.
        assert!(r.lookup("broken", None).await.unwrap_err().contains(":4:"));
        assert_eq!(r.lookup("other", None).await.unwrap(), None);
        std::fs::remove_file(&f).unwrap();
        assert!(r
            .lookup("web-0001", None)
            .await
            .unwrap_err()
            .contains("cannot be read"));
    }
}
