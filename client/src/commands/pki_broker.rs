//! `mco pki broker-config`: the nats-server configuration of one broker, one server of a
//! cluster, a site's leaf node, or the provisioning broker.

use std::path::{Path, PathBuf};

use mco_pki::{self as pki, broker_config, BrokerOptions, Index, Kind, PkiError};

use super::pki::pki_err;
use crate::error::ClientError;

/// `broker-config`'s options for the inventory registry and the published CRL.
#[derive(clap::Args, Debug, Default)]
pub struct InventoryArgs {
    /// Keep the inventory registry, JetStream key-value bucket BUCKET, on this broker:
    /// every node may write its own entry, every caller read them all.
    #[arg(long, value_name = "BUCKET", requires = "jetstream_dir")]
    pub inventory: Option<String>,
    /// A caller who may create the inventory bucket (`mco registry init`) and delete its
    /// entries (repeatable).
    #[arg(long = "inventory-admin", value_name = "NAME", requires = "inventory")]
    pub inventory_admins: Vec<String>,
    /// A node that may publish the CA's CRL in the CRL bucket: the node the `ca` agent runs
    /// on, which publishes after every revocation (repeatable).
    #[arg(long = "crl-publisher", value_name = "NODE", requires = "inventory")]
    pub crl_publishers: Vec<String>,
}

/// `broker-config`'s cluster and leaf-node options. Every server of a cluster gets the same
/// command but for `--server-cert`, `--server-name`, `--listen` and `--cluster-listen`.
#[derive(clap::Args, Debug, Default)]
pub struct LinkArgs {
    /// This server's name (default: the --server-cert name when it has routes or leaf links).
    #[arg(long, value_name = "NAME")]
    pub(super) server_name: Option<String>,
    /// Join cluster NAME: routes over TLS, admitting only the CA's live broker keys.
    #[arg(long, value_name = "NAME", requires = "cluster_listen")]
    pub(super) cluster: Option<String>,
    /// Where this server listens for routes.
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    pub(super) cluster_listen: Option<String>,
    /// The route address of another server of the cluster (repeatable; the same list may go
    /// to every server, each ignores its own).
    #[arg(long = "route", value_name = "HOST:PORT", requires = "cluster")]
    pub(super) routes: Vec<String>,
    /// Accept leaf-node links (a site's server) here: this server is a hub.
    #[arg(long, value_name = "HOST:PORT")]
    pub(super) leaf_listen: Option<String>,
    /// Link to a hub's leaf-node port (repeatable): this server is a site's leaf node.
    #[arg(long = "leaf-remote", value_name = "HOST:PORT")]
    pub(super) leaf_remotes: Vec<String>,
}

impl LinkArgs {
    pub(super) fn any(&self) -> bool {
        self.cluster.is_some() || self.leaf_listen.is_some() || !self.leaf_remotes.is_empty()
    }
}

/// Who `broker-config` admits besides the index's live names, and whether it pins keys.
pub(super) struct Admit<'a> {
    pub(super) nodes: &'a [String],
    pub(super) users: &'a [String],
    pub(super) pin: bool,
    pub(super) registry: Option<pki::broker::RegistryOptions>,
    pub(super) inventory: Option<pki::broker::InventoryOptions>,
    pub(super) links: &'a LinkArgs,
}

/// `path` made absolute (created if missing), so the configuration works wherever
/// nats-server starts.
pub(super) fn absolute(path: &Path) -> Result<PathBuf, ClientError> {
    std::fs::create_dir_all(path).map_err(|e| ClientError::file(path.display().to_string(), e))?;
    std::fs::canonicalize(path).map_err(|e| ClientError::file(path.display().to_string(), e))
}

/// The PKI directory (absolute, so the configuration works wherever
/// nats-server starts), and the broker certificate `NAME.pem` and its key in
/// it, which must be a broker's (`--kind broker`).
pub(super) fn server_files(
    dir: &Path,
    server_cert: &str,
) -> Result<(PathBuf, PathBuf, PathBuf), ClientError> {
    pki::check_name(server_cert).map_err(pki_err)?;
    let dir =
        std::fs::canonicalize(dir).map_err(|e| ClientError::file(dir.display().to_string(), e))?;
    if !dir.join(pki::CA_CERT).exists() {
        return Err(pki_err(PkiError::NoCa { dir }));
    }
    let cert = dir.join(format!("{server_cert}.pem"));
    let key = dir.join(format!("{server_cert}.key"));
    if !cert.exists() || !key.exists() {
        return Err(ClientError::Io(format!(
            "no broker certificate {} with its key; issue one with \
             `mco pki issue {server_cert} --kind broker --ip ADDRESS --dns HOSTNAME`",
            cert.display()
        )));
    }
    let pem = std::fs::read_to_string(&cert)
        .map_err(|e| ClientError::file(cert.display().to_string(), e))?;
    pki::broker::check_server_cert(&pem).map_err(|e| match e {
        PkiError::BadBrokerOption(m) => ClientError::Usage(format!("{}: {m}", cert.display())),
        other => pki_err(other),
    })?;
    Ok((dir, cert, key))
}

/// `broker-config --provisioning`.
pub(super) fn provisioning_broker(
    dir: &Path,
    listen: &str,
    server_cert: &str,
    token_file: Option<&Path>,
) -> Result<String, ClientError> {
    let (_, cert, key) = server_files(dir, server_cert)?;
    let token_file =
        token_file.ok_or_else(|| ClientError::Usage("--provisioning needs --token-file".into()))?;
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| ClientError::file(token_file.display().to_string(), e))?;
    let opts = pki::broker_provisioning::ProvisioningBrokerOptions {
        listen: listen.to_string(),
        server_cert: cert,
        server_key: key,
        token: token.trim().to_string(),
    };
    pki::broker_provisioning::provisioning_broker_config(&opts).map_err(|e| match e {
        PkiError::BadBrokerOption(m) => ClientError::Usage(m),
        other => pki_err(other),
    })
}

pub(super) fn broker(
    dir: &Path,
    listen: &str,
    server_cert: &str,
    collectives: &[String],
    admit: &Admit<'_>,
    agents: &[String],
) -> Result<String, ClientError> {
    let (dir, cert, key) = server_files(dir, server_cert)?;
    let index = Index::load(&dir).map_err(pki_err)?;
    let now = pki::index::unix_now();
    let mut nodes: Vec<String> = index
        .live_names(Kind::Node, now)
        .into_iter()
        .filter(|n| n != server_cert)
        .collect();
    nodes.extend(admit.nodes.iter().cloned());
    let mut users = index.live_names(Kind::User, now);
    users.extend(admit.users.iter().cloned());
    let pinned_keys = if admit.pin {
        let pins = pki::broker::live_pins(&dir, now).map_err(pki_err)?;
        if pins.is_empty() {
            // No pinned_certs at all would admit every certificate of the CA.
            return Err(ClientError::Usage(
                "--pin: the index has no live user or node certificate to pin".to_string(),
            ));
        }
        pins
    } else {
        Vec::new()
    };
    let links = admit.links;
    let broker_pins = if links.any() {
        let pem = std::fs::read_to_string(&cert)
            .map_err(|e| ClientError::file(cert.display().to_string(), e))?;
        if !pki::broker::can_link(&pem) {
            return Err(ClientError::Usage(format!(
                "{}: this broker certificate cannot make routes or leaf-node links (it lacks the \
                 clientAuth usage, from before clusters); issue it again with \
                 `mco pki issue {server_cert} --kind broker --force --ip ADDRESS`",
                cert.display()
            )));
        }
        pki::broker::live_broker_pins(&dir, now).map_err(pki_err)?
    } else {
        Vec::new()
    };
    let server_name = links
        .server_name
        .clone()
        .or_else(|| links.any().then(|| server_cert.to_string()));
    let opts = BrokerOptions {
        listen: listen.to_string(),
        server_cert: cert,
        server_key: key,
        collectives: collectives.to_vec(),
        nodes,
        users,
        agents: agents.to_vec(),
        pinned_keys,
        registry: admit.registry.clone(),
        inventory: admit.inventory.clone(),
        server_name,
        cluster: links
            .cluster
            .as_ref()
            .map(|name| pki::broker::ClusterOptions {
                name: name.clone(),
                listen: links.cluster_listen.clone().unwrap_or_default(),
                routes: links.routes.clone(),
            }),
        leaf: (links.leaf_listen.is_some() || !links.leaf_remotes.is_empty()).then(|| {
            pki::broker::LeafOptions {
                listen: links.leaf_listen.clone(),
                remotes: links.leaf_remotes.clone(),
            }
        }),
        broker_pins,
    };
    broker_config(&dir, &opts).map_err(pki_err)
}
