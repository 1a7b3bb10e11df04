//! A `nats-server` configuration that admits only the collective's certificates and confines
//! each identity to its own subjects.
//!
//! With `verify_and_map`, nats-server requires a client certificate signed by the CA and then
//! looks for a configured user named after it: first each email SAN, then each DNS SAN, then the
//! certificate's subject in RFC 2253 form. An mco certificate's subject is one common name, so a
//! caller maps as `CN=user:alice` and a responder as `CN=node:web1`. No SAN the CA signs can take
//! that form (SANs are host names and IP addresses only), so no certificate can map to another
//! identity, and a certificate whose identity is not listed cannot connect at all: that is how a
//! revoked identity is kept out (nats-server does not read our CRL) once the configuration is
//! regenerated without it and the server reloaded.
//!
//! That is not enough when a name is revoked and issued again: the old certificate still maps to
//! the listed name. With [`BrokerOptions::pinned_keys`] (from [`live_pins`]), the configuration
//! also has nats-server's `pinned_certs`, the SHA-256 of the public key of every live (unrevoked,
//! unexpired) user and node certificate in the CA's index: any other certificate, revoked or not
//! yet issued when the file was written, fails the TLS handshake. Such a configuration must be
//! regenerated and nats-server reloaded (`nats-server --signal reload`, which also drops
//! connected clients whose key is no longer pinned) after every `revoke` and every `issue` /
//! `sign`.
//!
//! The server certificate must be a broker certificate (`serverAuth`, see [`check_server_cert`]):
//! node certificates cannot serve TLS.
//!
//! Permissions, per collective `C`:
//! - a responder publishes `C.reply.>` (replies go to the caller's reply subject) and its own
//!   `C.registration.<identity>`, and subscribes to `C.node.<identity>` and the broadcast subjects
//!   of its agents, `C.broadcast.agent.<agent>` (or `C.broadcast.agent.>` when no list is given);
//! - a caller publishes `C.broadcast.agent.>` and `C.node.>`, and subscribes only to its own
//!   `C.reply.<caller-hash>.>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use x509_parser::prelude::{FromDer, X509Certificate};

pub use super::broker_cluster::{live_broker_pins, ClusterOptions, LeafOptions};
use super::broker_cluster::{write_links, LinkTls};
pub use super::broker_inventory::InventoryOptions;
use super::ca::pem_contents;
use super::index::{serial_hex, Index, IndexEntry};
use super::keys::{check_ed25519_key, is_key_pin, key_pin};
use super::{check_name, Kind, PkiError, CA_CERT};
use mco_core::subject;

/// The address a generated configuration listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4222";

/// What goes into [`broker_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// `host:port` for client connections (default [`DEFAULT_LISTEN`]).
    pub listen: String,
    /// The broker's certificate (issued by the CA with its host names or addresses as SANs).
    pub server_cert: PathBuf,
    /// The broker's private key.
    pub server_key: PathBuf,
    /// Collectives whose subjects the identities may use; at least one.
    pub collectives: Vec<String>,
    /// Responder identities (names without `node:`).
    pub nodes: Vec<String>,
    /// Caller names (without `user:`).
    pub users: Vec<String>,
    /// Agents whose broadcasts responders may receive; empty means every agent.
    pub agents: Vec<String>,
    /// Key pins (see [`super::keys::key_pin`]) of the only client certificates nats-server
    /// admits, as `pinned_certs`; empty means no pinning.
    pub pinned_keys: Vec<String>,
    /// The provisioner's expected-node registry, a JetStream key-value bucket kept on this
    /// broker, where only the collective's certificates reach it.
    pub registry: Option<RegistryOptions>,
    /// The inventory registry's bucket, which every node writes its entry in.
    pub inventory: Option<InventoryOptions>,
    /// This server's name (required in a cluster; shown to clients, which report it).
    pub server_name: Option<String>,
    /// This server's routes, when it is one of a cluster.
    pub cluster: Option<ClusterOptions>,
    /// Leaf-node links this server accepts (a hub) or makes (a site).
    pub leaf: Option<LeafOptions>,
    /// Key pins of the live broker certificates: the only keys routes and leaf-node links
    /// admit ([`live_broker_pins`]).
    pub broker_pins: Vec<String>,
}

/// A registry bucket on the main broker: JetStream on, and the named callers allowed to read
/// and write that one bucket (and nothing else of JetStream's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// The bucket's name.
    pub bucket: String,
    /// Callers (names without `user:`) who may use it: the operators and the provisioner.
    pub users: Vec<String>,
    /// JetStream's store directory.
    pub store_dir: PathBuf,
}

/// What a registry user may publish to use bucket `b` as `nats kv` and the provisioner do,
/// and nothing else of JetStream's: the bucket's stream, its messages and its own consumers.
pub fn registry_publish(b: &str) -> Vec<String> {
    let stream = format!("KV_{b}");
    vec![
        "$JS.API.INFO".to_string(),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.CREATE.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$KV.{b}.>"),
    ]
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            listen: DEFAULT_LISTEN.to_string(),
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            collectives: Vec::new(),
            nodes: Vec::new(),
            users: Vec::new(),
            agents: Vec::new(),
            pinned_keys: Vec::new(),
            registry: None,
            inventory: None,
            server_name: None,
            cluster: None,
            leaf: None,
            broker_pins: Vec::new(),
        }
    }
}

/// The user string nats-server's `verify_and_map` matches for a certificate of ours:
/// `CN=user:alice`, `CN=node:web1`.
pub fn mapped_user(kind: Kind, name: &str) -> String {
    format!("CN={}", kind.identity(name))
}

/// A `nats-server` configuration: TLS with client certificates verified against `CA_DIR/ca.pem`
/// and mapped to users, and one user per identity with its permissions (see the module docs).
pub fn broker_config(ca_dir: &Path, opts: &BrokerOptions) -> Result<String, PkiError> {
    if opts.collectives.is_empty() {
        return Err(bad("at least one collective is needed"));
    }
    for c in &opts.collectives {
        if !subject::valid_token(c) {
            return Err(bad(&format!("{c:?} is not a valid collective name")));
        }
    }
    if opts.nodes.is_empty() && opts.users.is_empty() {
        // With no users at all, nats-server would admit every certificate with full rights.
        return Err(bad("no identities: name at least one node or user"));
    }
    for name in opts.nodes.iter().chain(&opts.users) {
        check_name(name)?;
    }
    let listen = quoted("listen", &opts.listen)?;
    let ca_file = quoted("ca_file", &ca_dir.join(CA_CERT).to_string_lossy())?;
    let cert_file = quoted("server certificate", &opts.server_cert.to_string_lossy())?;
    let key_file = quoted("server key", &opts.server_key.to_string_lossy())?;

    let mut nodes = opts.nodes.clone();
    nodes.sort();
    nodes.dedup();
    let mut users = opts.users.clone();
    users.sort();
    users.dedup();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# nats-server configuration for mco collectives: {}",
        opts.collectives.join(", ")
    );
    let _ = writeln!(
        out,
        "# Clients must present a certificate from the collective CA; each"
    );
    let _ = writeln!(
        out,
        "# certificate maps to the user named after its subject. nats-server does not"
    );
    let _ = writeln!(
        out,
        "# read the CRL: after `mco pki revoke`, regenerate this file with the same options"
    );
    let _ = writeln!(out, "# and run `nats-server --signal reload`.");
    let _ = writeln!(out, "listen: {listen}\n");
    write_links(
        &mut out,
        opts.server_name.as_deref(),
        opts.cluster.as_ref(),
        opts.leaf.as_ref(),
        &LinkTls {
            cert_file: &cert_file,
            key_file: &key_file,
            ca_file: &ca_file,
            pins: &opts.broker_pins,
        },
    )?;
    if let Some(reg) = &opts.registry {
        if !valid_bucket(&reg.bucket) {
            return Err(bad(&format!(
                "{:?} is not a bucket name (letters, digits, _ and -)",
                reg.bucket
            )));
        }
        if reg.users.is_empty() {
            return Err(bad("the registry needs at least one user"));
        }
        for u in &reg.users {
            if !opts.users.contains(u) {
                return Err(bad(&format!(
                    "registry user {u:?} is not a user of this broker"
                )));
            }
        }
        let dir = quoted(
            "JetStream store directory",
            &reg.store_dir.to_string_lossy(),
        )?;
        let _ = writeln!(
            out,
            "# JetStream holds the provisioner's expected-node registry, bucket {}.",
            reg.bucket
        );
        let _ = writeln!(out, "jetstream {{\n  store_dir: {dir}\n}}\n");
    } else if let Some(inv) = &opts.inventory {
        let dir = quoted(
            "JetStream store directory",
            &inv.store_dir.to_string_lossy(),
        )?;
        let _ = writeln!(
            out,
            "# JetStream holds the inventory registry, bucket {}.",
            inv.bucket
        );
        let _ = writeln!(out, "jetstream {{\n  store_dir: {dir}\n}}\n");
    }
    if let Some(inv) = &opts.inventory {
        if !valid_bucket(&inv.bucket) {
            return Err(bad(&format!(
                "{:?} is not a bucket name (letters, digits, _ and -)",
                inv.bucket
            )));
        }
        if !valid_bucket(&inv.crl_bucket) {
            return Err(bad(&format!("{:?} is not a bucket name", inv.crl_bucket)));
        }
        if let Some(u) = inv.admins.iter().find(|u| !opts.users.contains(u)) {
            return Err(bad(&format!(
                "inventory admin {u:?} is not a user of this broker"
            )));
        }
    }
    let _ = writeln!(out, "tls {{");
    let _ = writeln!(out, "  cert_file: {cert_file}");
    let _ = writeln!(out, "  key_file: {key_file}");
    let _ = writeln!(out, "  ca_file: {ca_file}");
    let _ = writeln!(out, "  verify_and_map: true");
    if !opts.pinned_keys.is_empty() {
        if let Some(bad) = opts.pinned_keys.iter().find(|p| !is_key_pin(p)) {
            return Err(self::bad(&format!(
                "{bad:?} is not a key pin (64 lowercase hex digits)"
            )));
        }
        let mut pins = opts.pinned_keys.clone();
        pins.sort();
        pins.dedup();
        let _ = writeln!(
            out,
            "  # Only the keys of the CA's live user and node certificates: regenerate this file"
        );
        let _ = writeln!(
            out,
            "  # and run `nats-server --signal reload` after every revoke, issue and sign."
        );
        let _ = writeln!(out, "  pinned_certs: [");
        for pin in &pins {
            let _ = writeln!(out, "    \"{pin}\"");
        }
        let _ = writeln!(out, "  ]");
    }
    let _ = writeln!(out, "}}\n");
    let _ = writeln!(out, "authorization {{");
    let _ = writeln!(out, "  users = [");
    for node in &nodes {
        let mut publish = Vec::new();
        let mut subscribe = Vec::new();
        for c in &opts.collectives {
            publish.push(format!("{c}.reply.>"));
            publish.push(subject::registration(c, node));
            subscribe.push(subject::node(c, node));
            if opts.agents.is_empty() {
                subscribe.push(format!("{c}.broadcast.agent.>"));
            } else {
                subscribe.extend(opts.agents.iter().map(|a| subject::broadcast(c, a)));
            }
        }
        if let Some(inv) = &opts.inventory {
            let (p, s) = super::broker_inventory::node_permissions(
                &inv.bucket,
                &inv.crl_bucket,
                node,
                inv.crl_publishers.iter().any(|n| n == node),
            );
            publish.extend(p);
            subscribe.extend(s);
        }
        user_entry(
            &mut out,
            &mapped_user(Kind::Node, node),
            &publish,
            &subscribe,
        );
    }
    for user in &users {
        let caller = Kind::User.identity(user);
        let mut publish = Vec::new();
        let mut subscribe = Vec::new();
        for c in &opts.collectives {
            publish.push(format!("{c}.broadcast.agent.>"));
            publish.push(format!("{c}.node.>"));
            subscribe.push(subject::reply_wildcard(c, &caller));
        }
        if let Some(inv) = &opts.inventory {
            let admin = inv.admins.contains(user);
            let (p, s) = super::broker_inventory::user_permissions(
                &inv.bucket,
                &inv.crl_bucket,
                user,
                admin,
            );
            publish.extend(p);
            subscribe.extend(s);
        }
        if let Some(reg) = opts.registry.as_ref().filter(|r| r.users.contains(user)) {
            publish.extend(registry_publish(&reg.bucket));
            // JetStream answers on the client's inbox.
            subscribe.push("_INBOX.>".to_string());
        }
        user_entry(
            &mut out,
            &mapped_user(Kind::User, user),
            &publish,
            &subscribe,
        );
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// The key pins of every live (unrevoked, unexpired at `now`) user and node certificate in the
/// index of the CA in `ca_dir`, sorted: what [`BrokerOptions::pinned_keys`] wants.
///
/// An entry written before pins were recorded takes its pin from `NAME.pem` when that file is
/// the same certificate (same serial); otherwise it cannot be pinned and this fails, as it does
/// when a live certificate shares its key with a revoked one (pins are per key, so the revoked
/// one would be let in too).
pub fn live_pins(ca_dir: &Path, now: i64) -> Result<Vec<String>, PkiError> {
    let index = Index::load(ca_dir)?;
    let mut pins = Vec::new();
    for e in &index.certs {
        if !e.kind.is_tls_client() || !e.is_live(now) {
            continue;
        }
        let pin = match &e.key_sha256 {
            Some(pin) => pin.clone(),
            None => legacy_pin(ca_dir, e)?,
        };
        if let Some(gone) = index
            .certs
            .iter()
            .find(|r| r.revoked_at.is_some() && r.key_sha256.as_deref() == Some(pin.as_str()))
        {
            return Err(bad(&format!(
                "{} (serial {}) has the key of revoked certificate {}; reissue it with a new key",
                e.kind.identity(&e.name),
                e.serial,
                gone.serial
            )));
        }
        pins.push(pin);
    }
    pins.sort();
    pins.dedup();
    Ok(pins)
}

/// The pin of an index entry without one, from `NAME.pem` if that is its certificate.
fn legacy_pin(ca_dir: &Path, e: &IndexEntry) -> Result<String, PkiError> {
    let path = ca_dir.join(format!("{}.pem", e.name));
    let unpinnable = || {
        bad(&format!(
            "{} (serial {}) has no key pin in the index and {} is another certificate; \
             revoke it or reissue it",
            e.kind.identity(&e.name),
            e.serial,
            path.display()
        ))
    };
    let Ok(pem) = std::fs::read_to_string(&path) else {
        return Err(unpinnable());
    };
    let der = pem_contents(&pem, &["CERTIFICATE"]).ok_or_else(unpinnable)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| unpinnable())?;
    if serial_hex(cert.raw_serial()) != e.serial {
        return Err(unpinnable());
    }
    Ok(key_pin(cert.tbs_certificate.subject_pki.raw))
}

/// Checks that a PEM certificate may serve TLS as the broker: it has the `serverAuth` extended
/// key usage (a `broker:` certificate; `user:` and `node:` certificates do not have it), and its
/// Ed25519 key, if that is what it has, is not weak.
pub fn check_server_cert(pem: &str) -> Result<(), PkiError> {
    let der = pem_contents(pem, &["CERTIFICATE"])
        .ok_or_else(|| bad("the server certificate holds no PEM certificate"))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| bad(&format!("the server certificate does not parse: {e}")))?;
    if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" {
        check_ed25519_key(cert.public_key().subject_public_key.data.as_ref())?;
    }
    let serves = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.server_auth);
    if !serves {
        return Err(bad(&format!(
            "{} is not a broker certificate (it lacks the serverAuth usage); \
             issue one with `mco pki issue NAME --kind broker --ip ADDRESS --dns HOSTNAME`",
            cert.subject()
        )));
    }
    Ok(())
}

/// Whether a PEM broker certificate may also be the client end of a route or a leaf-node link
/// (`clientAuth`; broker certificates issued before clusters lack it).
pub fn can_link(pem: &str) -> bool {
    pem_contents(pem, &["CERTIFICATE"]).is_some_and(|der| {
        X509Certificate::from_der(&der).is_ok_and(
            |(_, cert)| matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth),
        )
    })
}

fn user_entry(out: &mut String, user: &str, publish: &[String], subscribe: &[String]) {
    let list = |subjects: &[String]| {
        let quoted: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
        quoted.join(", ")
    };
    let _ = writeln!(out, "    {{");
    let _ = writeln!(out, "      user: \"{user}\"");
    let _ = writeln!(out, "      permissions: {{");
    let _ = writeln!(out, "        publish: {{ allow: [{}] }}", list(publish));
    let _ = writeln!(out, "        subscribe: {{ allow: [{}] }}", list(subscribe));
    let _ = writeln!(out, "      }}");
    let _ = writeln!(out, "    }}");
}

/// `value` in double quotes; refuses what would need escaping in nats-server's format.
pub(crate) fn quoted(what: &str, value: &str) -> Result<String, PkiError> {
    if value.is_empty() {
        return Err(bad(&format!("the {what} is empty")));
    }
    if value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(bad(&format!(
            "the {what} {value:?} contains a quote, backslash or control character"
        )));
    }
    Ok(format!("\"{value}\""))
}

/// Whether `b` can name a key-value bucket.
pub fn valid_bucket(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 64
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn bad(message: &str) -> PkiError {
    PkiError::BadBrokerOption(message.to_string())
}

#[cfg(test)]
#[path = "broker_tests.rs"]
mod tests;
