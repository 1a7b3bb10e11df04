//! `mco pki …`: the collective's CA, certificates, CSRs, revocation and broker configuration.
//!
//! Every verb works on one directory (`--dir`, default `~/.config/mco/pki`) and needs neither a
//! client configuration nor a broker.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use mco_pki::{
    self as pki, request_csr, Ca, CaOptions, CrlOptions, CsrOptions, Index, IssueOptions, Issued,
    Kind, PkiError, SignPolicy,
};

use super::pki_broker::{absolute, broker, provisioning_broker, Admit};
pub use super::pki_broker::{InventoryArgs, LinkArgs};
use super::{io, Exit};
use crate::error::ClientError;

/// Where the PKI lives unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "~/.config/mco/pki";

/// `mco pki …` verbs.
#[derive(Subcommand, Debug)]
pub enum PkiCommand {
    /// The collective CA.
    Ca {
        /// What to do.
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Create a key and a certificate for `user:NAME`, `node:NAME` or `broker:NAME`, signed by
    /// the CA.
    Issue {
        /// The name, without its kind (several: one certificate each, the index written once).
        #[arg(required = true, num_args = 1..)]
        names: Vec<String>,
        /// Caller, responder or broker.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Days of validity.
        #[arg(long, default_value_t = pki::DEFAULT_DAYS, value_name = "N")]
        days: u32,
        /// An IP address the certificate is valid for (node and broker certificates).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// An extra DNS name the certificate is valid for (node and broker certificates).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Replace an existing NAME.pem / NAME.key.
        #[arg(long)]
        force: bool,
    },
    /// Create a key and a certificate signing request where the key is to live; send NAME.csr to
    /// the CA and keep NAME.key.
    Csr {
        /// The name, without its kind.
        name: String,
        /// Caller, responder or broker.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Where to write NAME.key and NAME.csr (default: the PKI directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// An IP address to ask for (node and broker requests).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// An extra DNS name to ask for (node and broker requests).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Replace an existing NAME.key / NAME.csr.
        #[arg(long)]
        force: bool,
    },
    /// Check a CSR and sign it, writing NAME.pem into the PKI directory.
    Sign {
        /// The CSR file (PEM).
        csr: PathBuf,
        /// Days of validity.
        #[arg(long, default_value_t = pki::DEFAULT_DAYS, value_name = "N")]
        days: u32,
        /// Sign only this kind (repeatable; default: user and node, never broker unless named).
        #[arg(long = "allow-kind", value_enum, value_name = "KIND")]
        allow_kinds: Vec<KindArg>,
        /// Sign only names matching this regular expression as a whole.
        #[arg(long, value_name = "REGEX")]
        name_pattern: Option<String>,
        /// Copy a node's extra DNS names and IP addresses (otherwise such a request is refused).
        #[arg(long)]
        allow_sans: bool,
        /// Replace an existing NAME.pem.
        #[arg(long)]
        force: bool,
    },
    /// Revoke every certificate of NAME, or the one with SERIAL, and rewrite the CRL.
    Revoke {
        /// A name (without its kind) or a serial number in hex.
        #[arg(value_name = "NAME|SERIAL")]
        target: String,
        /// Days until the rewritten CRL's next update.
        #[arg(long, default_value_t = pki::crl::DEFAULT_CRL_DAYS, value_name = "N")]
        days: u32,
        /// Also publish the CRL on the bus, where every responder watching it puts it in force
        /// within seconds (connects with the client config; an inventory admin's right).
        #[arg(long)]
        publish: bool,
    },
    /// Write ca.crl: every revoked serial, signed by the CA.
    Crl {
        /// Days until the CRL's next update.
        #[arg(long, default_value_t = pki::crl::DEFAULT_CRL_DAYS, value_name = "N")]
        days: u32,
        /// Also publish the CRL on the bus (see `revoke --publish`).
        #[arg(long)]
        publish: bool,
    },
    /// Summarize a certificate, CSR or CRL (PEM or DER).
    Show {
        /// The file.
        file: PathBuf,
    },
    /// Print a nats-server configuration: TLS with certificates from the CA, one user per
    /// identity, each confined to its own subjects.
    BrokerConfig {
        /// Address for client connections.
        #[arg(long, default_value = pki::broker::DEFAULT_LISTEN, value_name = "HOST:PORT")]
        listen: String,
        /// The broker's certificate (`--kind broker`): NAME.pem and NAME.key in the PKI
        /// directory.
        #[arg(long, default_value = "broker", value_name = "NAME")]
        server_cert: String,
        /// A collective the identities may use (repeatable).
        #[arg(
            long = "collective",
            required_unless_present = "provisioning",
            value_name = "COLLECTIVE"
        )]
        collectives: Vec<String>,
        /// A responder to admit besides the live node certificates in the index (repeatable).
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
        /// A caller to admit besides the live user certificates in the index (repeatable).
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        /// An agent whose broadcasts responders may receive (repeatable; default: every agent).
        #[arg(long = "agent", value_name = "AGENT")]
        agents: Vec<String>,
        /// Admit only the keys of the live certificates in the index (nats-server
        /// `pinned_certs`), so that a revoked certificate of a name issued again stays out;
        /// regenerate and reload nats-server after every revoke, issue and sign.
        #[arg(long)]
        pin: bool,
        /// Keep the provisioner's expected-node registry, JetStream key-value bucket BUCKET,
        /// on this broker (JetStream on, its store in --jetstream-dir); only --registry-user
        /// callers reach it.
        #[arg(long, value_name = "BUCKET", requires_all = ["registry_users", "jetstream_dir"])]
        registry: Option<String>,
        /// A caller who may read and write the registry bucket: operators and the provisioner
        /// (repeatable).
        #[arg(long = "registry-user", value_name = "NAME", requires = "registry")]
        registry_users: Vec<String>,
        /// JetStream's store directory, with --registry or --inventory.
        #[arg(long, value_name = "DIR")]
        jetstream_dir: Option<PathBuf>,
        /// The inventory registry and the published CRL.
        #[command(flatten)]
        inventory: Box<InventoryArgs>,
        /// The provisioning broker's configuration instead: TLS with --server-cert, and the
        /// bootstrap token (--token-file) admitting user "provisioning" to the provisioning
        /// subjects only. The output holds the token: keep it readable by nats-server only.
        #[arg(long, requires = "token_file", conflicts_with_all = ["collectives", "nodes", "users", "agents", "pin", "registry"])]
        provisioning: bool,
        /// The bootstrap token file, with --provisioning.
        #[arg(long, value_name = "FILE", requires = "provisioning")]
        token_file: Option<PathBuf>,
        /// Routes and leaf-node links, for a server of a cluster or a site.
        #[command(flatten)]
        links: Box<LinkArgs>,
    },
}

/// `mco pki ca …`.
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create the CA: an Ed25519 key (ca.key) and a self-signed certificate (ca.pem).
    Init {
        /// Replace an existing CA (every certificate it issued stops being trusted).
        #[arg(long)]
        force: bool,
        /// Days of validity.
        #[arg(long, default_value_t = pki::DEFAULT_CA_DAYS, value_name = "N")]
        days: u32,
        /// The CA certificate's common name.
        #[arg(long, default_value = pki::DEFAULT_CA_NAME, value_name = "CN")]
        name: String,
    },
}

/// `--kind`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindArg {
    /// A caller: `user:NAME`.
    User,
    /// A responder: `node:NAME`.
    Node,
    /// A nats-server: `broker:NAME`, the only kind that serves TLS.
    Broker,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::User => Kind::User,
            KindArg::Node => Kind::Node,
            KindArg::Broker => Kind::Broker,
        }
    }
}

impl PkiCommand {
    /// Whether the command asks for the CRL to be published once written.
    pub fn publishes(&self) -> bool {
        matches!(
            self,
            PkiCommand::Revoke { publish: true, .. } | PkiCommand::Crl { publish: true, .. }
        )
    }
}

/// The PKI directory: `--dir`, or the default under the home directory.
pub fn pki_dir(dir: Option<&Path>) -> Result<PathBuf, ClientError> {
    Ok(match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let d = mco_core::config::expand_home(DEFAULT_DIR);
            if d.starts_with("~") {
                return Err(ClientError::Usage(
                    "HOME is not set; say where the PKI is with --dir".to_string(),
                ));
            }
            d
        }
    })
}

/// Runs one `mco pki` verb on `dir` (default [`DEFAULT_DIR`]).
pub fn run(
    dir: Option<&Path>,
    command: &PkiCommand,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let dir = pki_dir(dir)?;
    match command {
        PkiCommand::Ca {
            command: CaCommand::Init { force, days, name },
        } => {
            let opts = CaOptions {
                common_name: name.clone(),
                validity_days: *days,
                force: *force,
            };
            let ca = Ca::init(&dir, &opts).map_err(pki_err)?;
            writeln!(
                out,
                "Created the collective CA in {}\n  certificate  {}\n  key          {} (keep it secret)\n  SHA-256      {}",
                dir.display(),
                dir.join(pki::CA_CERT).display(),
                dir.join(pki::CA_KEY).display(),
                ca.fingerprint()
            )
            .map_err(io)?;
        }
        PkiCommand::Issue {
            names,
            kind,
            days,
            ips,
            dns,
            force,
        } => {
            let ca = Ca::load(&dir).map_err(pki_err)?;
            let opts = IssueOptions {
                validity_days: *days,
                dns: dns.clone(),
                ips: ips.clone(),
                force: *force,
                ..IssueOptions::default()
            };
            if let [name] = names.as_slice() {
                let issued = ca.issue(name, (*kind).into(), &opts).map_err(pki_err)?;
                report_issued(&issued, out)?;
            } else {
                let issued = ca
                    .issue_many(names, (*kind).into(), &opts)
                    .map_err(pki_err)?;
                for i in &issued {
                    report_issued(i, out)?;
                }
            }
        }
        PkiCommand::Csr {
            name,
            kind,
            out: target,
            ips,
            dns,
            force,
        } => {
            let target = target.clone().unwrap_or_else(|| dir.clone());
            let opts = CsrOptions {
                dns: dns.clone(),
                ips: ips.clone(),
                force: *force,
                key: None,
            };
            let req = request_csr(&target, name, (*kind).into(), &opts).map_err(pki_err)?;
            writeln!(
                out,
                "Wrote {} (keep it here) and {}; send the CSR to the CA for `mco pki sign`.",
                req.key_path.display(),
                req.csr_path.display()
            )
            .map_err(io)?;
        }
        PkiCommand::Sign {
            csr,
            days,
            allow_kinds,
            name_pattern,
            allow_sans,
            force,
        } => {
            let ca = Ca::load(&dir).map_err(pki_err)?;
            let text = std::fs::read_to_string(csr)
                .map_err(|e| ClientError::file(csr.display().to_string(), e))?;
            let name_pattern = match name_pattern {
                Some(p) => Some(regex::Regex::new(p).map_err(|e| {
                    ClientError::Usage(format!("--name-pattern {p:?} is not a regex: {e}"))
                })?),
                None => None,
            };
            let mut policy = SignPolicy {
                validity_days: *days,
                name_pattern,
                allow_extra_sans: *allow_sans,
                force: *force,
                ..SignPolicy::default()
            };
            if !allow_kinds.is_empty() {
                policy.allowed_kinds = allow_kinds.iter().map(|k| (*k).into()).collect();
            }
            let issued = ca.sign_csr(&text, &policy).map_err(pki_err)?;
            report_issued(&issued, out)?;
        }
        PkiCommand::Revoke { target, days, .. } => {
            let ca = Ca::load(&dir).map_err(pki_err)?;
            let revoked = ca.revoke(target).map_err(pki_err)?;
            for e in &revoked {
                writeln!(
                    out,
                    "Revoked {} (serial {})",
                    e.kind.identity(&e.name),
                    e.serial
                )
                .map_err(io)?;
            }
            write_crl(&ca, *days, out)?;
            writeln!(
                out,
                "Regenerate the broker configuration (mco pki broker-config, with --pin to keep \
                 out the revoked certificates of names still admitted) and reload nats-server \
                 (nats-server --signal reload) to keep revoked certificates off the bus."
            )
            .map_err(io)?;
        }
        PkiCommand::Crl { days, .. } => {
            let ca = Ca::load(&dir).map_err(pki_err)?;
            write_crl(&ca, *days, out)?;
        }
        PkiCommand::Show { file } => {
            let bytes = std::fs::read(file)
                .map_err(|e| ClientError::file(file.display().to_string(), e))?;
            let text = pki::show(&bytes)
                .map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
            out.write_all(text.as_bytes()).map_err(io)?;
        }
        PkiCommand::BrokerConfig {
            listen,
            server_cert,
            collectives,
            nodes,
            users,
            agents,
            pin,
            registry,
            registry_users,
            jetstream_dir,
            inventory,
            provisioning,
            token_file,
            links,
        } => {
            if *provisioning {
                let text = provisioning_broker(&dir, listen, server_cert, token_file.as_deref())?;
                out.write_all(text.as_bytes()).map_err(io)?;
                return Ok(0);
            }
            if let Some(bad) = agents.iter().find(|a| !mco_core::subject::valid_token(a)) {
                return Err(ClientError::Usage(format!(
                    "--agent {bad:?} is not an agent name"
                )));
            }
            let InventoryArgs {
                inventory,
                inventory_admins,
                crl_publishers,
            } = &**inventory;
            if let Some(bad) = crl_publishers
                .iter()
                .find(|n| !mco_core::subject::valid_token(n))
            {
                return Err(ClientError::Usage(format!(
                    "--crl-publisher {bad:?} is not a node name"
                )));
            }
            if jetstream_dir.is_some() && registry.is_none() && inventory.is_none() {
                return Err(ClientError::Usage(
                    "--jetstream-dir goes with --registry or --inventory".into(),
                ));
            }
            let registry = match (registry, jetstream_dir) {
                (Some(bucket), Some(store)) => Some(pki::broker::RegistryOptions {
                    bucket: bucket.clone(),
                    users: registry_users.clone(),
                    store_dir: absolute(store)?,
                }),
                _ => None,
            };
            let inventory = match (inventory, jetstream_dir) {
                (Some(bucket), Some(store)) => Some(pki::broker::InventoryOptions {
                    bucket: bucket.clone(),
                    admins: inventory_admins.clone(),
                    store_dir: absolute(store)?,
                    crl_bucket: mco_core::inventory::DEFAULT_CRL_BUCKET.to_string(),
                    crl_publishers: crl_publishers.clone(),
                }),
                _ => None,
            };
            let admit = Admit {
                nodes,
                users,
                pin: *pin,
                registry,
                inventory,
                links,
            };
            let text = broker(&dir, listen, server_cert, collectives, &admit, agents)?;
            out.write_all(text.as_bytes()).map_err(io)?;
        }
    }
    Ok(0)
}

fn write_crl(ca: &Ca, days: u32, out: &mut dyn Write) -> Result<(), ClientError> {
    ca.crl(&CrlOptions {
        next_update_days: days,
    })
    .map_err(pki_err)?;
    let revoked = Index::load(ca.dir())
        .map_err(pki_err)?
        .certs
        .iter()
        .filter(|e| e.revoked_at.is_some())
        .count();
    writeln!(
        out,
        "Wrote {} ({revoked} revoked, next update in {days} days)",
        ca.dir().join(pki::CA_CRL).display()
    )
    .map_err(io)
}

fn report_issued(issued: &Issued, out: &mut dyn Write) -> Result<(), ClientError> {
    writeln!(
        out,
        "Issued {} (serial {}), valid until {}\n  certificate  {}",
        issued.kind.identity(&issued.name),
        issued.serial,
        pki::index::format_unix(issued.not_after),
        issued.cert_path.display()
    )
    .map_err(io)?;
    if let Some(key) = &issued.key_path {
        writeln!(out, "  key          {}", key.display()).map_err(io)?;
    }
    Ok(())
}

/// Usage-type PKI errors exit 64, the rest 1.
pub(super) fn pki_err(e: PkiError) -> ClientError {
    if e.is_usage() {
        ClientError::Usage(e.to_string())
    } else {
        ClientError::Io(e.to_string())
    }
}
