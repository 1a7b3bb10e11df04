//! The parts of a `nats-server` configuration that join servers together: the routes of a
//! cluster and the links of leaf nodes (a site's server to the hub). ARCHITECTURE.md §10.
//!
//! Every server of a cluster gets the same `authorization` block from [`super::broker_config`]
//! (same identities, same permissions); only its name, its addresses and its routes differ.
//!
//! A route or a leaf-node link is a TLS connection on which one server is the client of the
//! other, so broker certificates carry `clientAuth` as well as `serverAuth`. Routes and leaf-node
//! links are not subject to the per-identity permissions: a route sees every message. So both
//! ports verify the peer's certificate against the CA *and* admit only the keys of the CA's live
//! broker certificates (`pinned_certs`): a node's or user's certificate, which the CA also signed,
//! fails the handshake there. A leaf node's remote pins the hub's keys the same way.

use std::fmt::Write as _;
use std::path::Path;

use super::broker::{bad, quoted};
use super::index::Index;
use super::keys::is_key_pin;
use super::{Kind, PkiError};

/// A server's place in a cluster: the cluster's name, where this server listens for routes, and
/// the route addresses of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The cluster's name (the same on every server).
    pub name: String,
    /// `host:port` this server listens on for routes.
    pub listen: String,
    /// `host:port` of every other server's route listener (this server's own is ignored by
    /// nats-server, so the same list can go to every server).
    pub routes: Vec<String>,
}

/// Leaf-node links: a hub accepts them, a site's server makes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeafOptions {
    /// `host:port` on which this server (a hub) accepts leaf-node connections.
    pub listen: Option<String>,
    /// `host:port` of the hub servers this server (a site's leaf node) connects to.
    pub remotes: Vec<String>,
}

/// The key pins of every live (unrevoked, unexpired at `now`) broker certificate in the index
/// of the CA in `ca_dir`, sorted: the only keys a route or leaf-node link admits.
pub fn live_broker_pins(ca_dir: &Path, now: i64) -> Result<Vec<String>, PkiError> {
    let index = Index::load(ca_dir)?;
    let mut pins: Vec<String> = index
        .certs
        .iter()
        .filter(|e| e.kind == Kind::Broker && e.is_live(now))
        .filter_map(|e| e.key_sha256.clone())
        .collect();
    pins.sort();
    pins.dedup();
    Ok(pins)
}

/// The files a route or leaf link presents and checks.
pub(crate) struct LinkTls<'a> {
    pub cert_file: &'a str,
    pub key_file: &'a str,
    pub ca_file: &'a str,
    pub pins: &'a [String],
}

/// Writes `server_name`, the `cluster` block and the `leafnodes` block as asked.
pub(crate) fn write_links(
    out: &mut String,
    server_name: Option<&str>,
    cluster: Option<&ClusterOptions>,
    leaf: Option<&LeafOptions>,
    tls: &LinkTls<'_>,
) -> Result<(), PkiError> {
    if let Some(name) = server_name {
        if !valid_server_name(name) {
            return Err(bad(&format!(
                "{name:?} is not a server name (letters, digits, _ and -)"
            )));
        }
        let _ = writeln!(out, "server_name: \"{name}\"\n");
    }
    if cluster.is_none() && leaf.is_none() {
        return Ok(());
    }
    if tls.pins.is_empty() {
        return Err(bad(
            "no live broker certificate to pin for routes and leaf-node links; \
             issue one per server with `mco pki issue NAME --kind broker --ip ADDRESS`",
        ));
    }
    if let Some(p) = tls.pins.iter().find(|p| !is_key_pin(p)) {
        return Err(bad(&format!("{p:?} is not a key pin")));
    }
    if let Some(c) = cluster {
        if server_name.is_none() {
            return Err(bad("a cluster's servers need a server name each"));
        }
        if !valid_server_name(&c.name) {
            return Err(bad(&format!(
                "{:?} is not a cluster name (letters, digits, _ and -)",
                c.name
            )));
        }
        let _ = writeln!(
            out,
            "# Routes: TLS both ways, and only the collective's broker keys."
        );
        let _ = writeln!(out, "cluster {{");
        let _ = writeln!(out, "  name: \"{}\"", c.name);
        let _ = writeln!(
            out,
            "  listen: {}",
            quoted("route listen address", &c.listen)?
        );
        write_tls(out, "  ", tls, true);
        let mut routes = c.routes.clone();
        routes.sort();
        routes.dedup();
        let _ = writeln!(out, "  routes: [");
        for r in &routes {
            check_host_port("route", r)?;
            let _ = writeln!(out, "    \"nats-route://{r}\"");
        }
        let _ = writeln!(out, "  ]");
        let _ = writeln!(out, "}}\n");
    }
    if let Some(l) = leaf {
        if l.listen.is_none() && l.remotes.is_empty() {
            return Err(bad("a leaf-node link needs a listen address or a remote"));
        }
        let _ = writeln!(
            out,
            "# Leaf-node links: TLS both ways, and only the collective's broker keys."
        );
        let _ = writeln!(out, "leafnodes {{");
        if let Some(listen) = &l.listen {
            let _ = writeln!(
                out,
                "  listen: {}",
                quoted("leaf-node listen address", listen)?
            );
            write_tls(out, "  ", tls, true);
        }
        if !l.remotes.is_empty() {
            let _ = writeln!(out, "  remotes: [");
            let _ = writeln!(out, "    {{");
            let _ = writeln!(out, "      urls: [");
            for r in &l.remotes {
                check_host_port("leaf-node remote", r)?;
                let _ = writeln!(out, "        \"tls://{r}\"");
            }
            let _ = writeln!(out, "      ]");
            write_tls(out, "      ", tls, false);
            let _ = writeln!(out, "    }}");
            let _ = writeln!(out, "  ]");
        }
        let _ = writeln!(out, "}}\n");
    }
    Ok(())
}

/// A `tls` block presenting this broker's certificate and admitting only the pinned keys;
/// `verify` asks the peer for its certificate (the accepting side).
fn write_tls(out: &mut String, indent: &str, tls: &LinkTls<'_>, verify: bool) {
    let _ = writeln!(out, "{indent}tls {{");
    let _ = writeln!(out, "{indent}  cert_file: {}", tls.cert_file);
    let _ = writeln!(out, "{indent}  key_file: {}", tls.key_file);
    let _ = writeln!(out, "{indent}  ca_file: {}", tls.ca_file);
    if verify {
        let _ = writeln!(out, "{indent}  verify: true");
    }
    let _ = writeln!(out, "{indent}  timeout: 5");
    let _ = writeln!(out, "{indent}  pinned_certs: [");
    for pin in tls.pins {
        let _ = writeln!(out, "{indent}    \"{pin}\"");
    }
    let _ = writeln!(out, "{indent}  ]");
    let _ = writeln!(out, "{indent}}}");
}

/// Whether `name` can name a server or a cluster.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `host:port`, with a port and no scheme, user or path.
fn check_host_port(what: &str, value: &str) -> Result<(), PkiError> {
    let ok = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|p| p != 0)
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    });
    if ok {
        Ok(())
    } else {
        Err(bad(&format!("the {what} {value:?} is not HOST:PORT")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{broker_config, BrokerOptions};

    fn pin() -> String {
        "ab".repeat(32)
    }

    fn opts() -> BrokerOptions {
        BrokerOptions {
            server_cert: "/pki/nats1.pem".into(),
            server_key: "/pki/nats1.key".into(),
            collectives: vec!["mcollective".into()],
            nodes: vec!["web1".into()],
            users: vec!["alice".into()],
            server_name: Some("nats1".into()),
            broker_pins: vec![pin()],
            cluster: Some(ClusterOptions {
                name: "hub".into(),
                listen: "10.0.0.1:6222".into(),
                routes: vec!["10.0.0.2:6222".into(), "10.0.0.1:6222".into()],
            }),
            ..BrokerOptions::default()
        }
    }

    #[test]
    fn a_cluster_server_has_pinned_tls_routes_and_the_same_users() {
        let text = broker_config(Path::new("/pki"), &opts()).unwrap();
        assert!(text.contains("server_name: \"nats1\""), "{text}");
        let cluster = &text[text.find("cluster {").unwrap()..text.find("tls {\n  cert").unwrap()];
        assert!(cluster.contains("name: \"hub\""), "{cluster}");
        assert!(cluster.contains("listen: \"10.0.0.1:6222\""), "{cluster}");
        assert!(cluster.contains("verify: true"), "{cluster}");
        assert!(cluster.contains(&format!("\"{}\"", pin())), "{cluster}");
        assert!(
            cluster.contains("\"nats-route://10.0.0.2:6222\""),
            "{cluster}"
        );
        // The client block and the users are what a single server has.
        let single = broker_config(
            Path::new("/pki"),
            &BrokerOptions {
                cluster: None,
                server_name: None,
                ..opts()
            },
        )
        .unwrap();
        let auth = |t: &str| t[t.find("authorization {").unwrap()..].to_string();
        assert_eq!(auth(&text), auth(&single));
    }

    #[test]
    fn a_leaf_node_links_to_the_hub_with_pinned_tls() {
        let o = BrokerOptions {
            cluster: None,
            leaf: Some(LeafOptions {
                listen: None,
                remotes: vec!["hub1:7422".into(), "hub2:7422".into()],
            }),
            ..opts()
        };
        let text = broker_config(Path::new("/pki"), &o).unwrap();
        let leaf = &text[text.find("leafnodes {").unwrap()..text.find("tls {\n  cert").unwrap()];
        assert!(leaf.contains("\"tls://hub1:7422\""), "{leaf}");
        assert!(leaf.contains("\"tls://hub2:7422\""), "{leaf}");
        assert!(leaf.contains("pinned_certs"), "{leaf}");
        let hub = BrokerOptions {
            leaf: Some(LeafOptions {
                listen: Some("0.0.0.0:7422".into()),
                remotes: Vec::new(),
            }),
            ..opts()
        };
        let text = broker_config(Path::new("/pki"), &hub).unwrap();
        let leaf = &text[text.find("leafnodes {").unwrap()..text.find("tls {\n  cert").unwrap()];
        assert!(leaf.contains("listen: \"0.0.0.0:7422\""), "{leaf}");
        assert!(leaf.contains("verify: true"), "{leaf}");
    }

    #[test]
    fn links_refuse_unusable_options() {
        let cases = [
            BrokerOptions {
                broker_pins: Vec::new(),
                ..opts()
            },
            BrokerOptions {
                broker_pins: vec!["x\"]".into()],
                ..opts()
            },
            BrokerOptions {
                server_name: None,
                ..opts()
            },
            BrokerOptions {
                server_name: Some("a b".into()),
                ..opts()
            },
            BrokerOptions {
                cluster: Some(ClusterOptions {
                    name: "hub".into(),
                    listen: "10.0.0.1:6222".into(),
                    routes: vec!["user:pw@h:1".into()],
                }),
                ..opts()
            },
            BrokerOptions {
                cluster: Some(ClusterOptions {
                    name: "hub".into(),
                    listen: "10.0.0.1:6222".into(),
                    routes: vec!["h:0".into()],
                }),
                ..opts()
            },
            BrokerOptions {
                cluster: None,
                leaf: Some(LeafOptions::default()),
                ..opts()
            },
        ];
        for o in cases {
            let err = broker_config(Path::new("/pki"), &o).unwrap_err();
            assert!(matches!(err, PkiError::BadBrokerOption(_)), "{o:?}: {err}");
        }
    }

    #[test]
    fn only_live_broker_keys_are_pinned_for_links() {
        use crate::{Ca, CaOptions, IssueOptions};
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        for (name, kind) in [
            ("nats1", Kind::Broker),
            ("nats2", Kind::Broker),
            ("web1", Kind::Node),
            ("alice", Kind::User),
        ] {
            ca.issue(name, kind, &IssueOptions::default()).unwrap();
        }
        ca.revoke("nats2").unwrap();
        let index = Index::load(tmp.path()).unwrap();
        let nats1 = index
            .certs
            .iter()
            .find(|e| e.name == "nats1")
            .and_then(|e| e.key_sha256.clone())
            .unwrap();
        let now = crate::index::unix_now();
        assert_eq!(live_broker_pins(tmp.path(), now).unwrap(), vec![nats1]);
    }
}
