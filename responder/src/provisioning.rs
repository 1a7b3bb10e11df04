//! Provisioning mode: a node without its certificate yet.
//!
//! Such a node makes a key of its own, connects to the provisioning broker
//! with the bootstrap token, joins only the `provisioning` collective, hosts
//! only `rpcutil` and `provision`, and signs its replies with its raw key
//! (`docs/ARCHITECTURE.md` §9). Everything that differs from a normal start
//! lives here: the checks before anything connects ([`preflight`]), the
//! trust it starts with ([`trust`]), each node's key ([`node_security`]),
//! and where `provision restart` goes ([`RestartSwitch`]).

use std::sync::{Arc, OnceLock};

use mco_core::config::ResponderConfig;
use mco_core::provisioning::{files, ProvisioningConfig, PROVISIONING_COLLECTIVE};
use mco_plugin_provision::RestartHook;
use mco_security::NodeKey;
use tracing::{info, warn};

use crate::daemon::DaemonError;
use crate::security::{self, NodeSecurity, SharedTrust};

/// The policy file that names who may drive the `provision` agent.
pub const PROVISION_POLICY: &str = "provision.policy";

/// The `[provisioning]` settings if this responder starts in provisioning
/// mode: configured, not disabled, and enabled or without its certificate —
/// but never a node that was provisioned before and lost its certificate
/// (see [`ProvisioningConfig::lost_certificate`]; [`preflight`] refuses it).
pub fn mode(cfg: &ResponderConfig) -> Option<&ProvisioningConfig> {
    cfg.provisioning
        .as_ref()
        .filter(|p| p.active(&cfg.security) && p.lost_certificate(&cfg.security).is_none())
}

/// Refuses to start a node that was provisioned before and lost its
/// certificate: the token must not be able to claim it again.
pub fn refuse_lost_certificate(cfg: &ResponderConfig) -> Result<(), DaemonError> {
    match cfg
        .provisioning
        .as_ref()
        .and_then(|p| p.lost_certificate(&cfg.security))
    {
        Some(msg) => Err(DaemonError::Unsupported(format!(
            "{}: {msg}",
            cfg.file.display()
        ))),
        None => Ok(()),
    }
}

/// What provisioning mode needs before anything connects: a policy naming
/// who may provision (the token ships in every image, so it decides
/// nothing alone), the CA certificate shipped with the node, a readable
/// token, and with `--fleet` a per-identity state directory.
pub fn preflight(
    cfg: &ResponderConfig,
    p: &ProvisioningConfig,
    fleet: bool,
) -> Result<(), DaemonError> {
    let file = cfg.file.display();
    let policy = cfg
        .security
        .policy_dir
        .as_ref()
        .map(|d| d.join(PROVISION_POLICY));
    if cfg.security.default_policy != "allow" && !policy.as_ref().is_some_and(|p| p.is_file()) {
        return Err(DaemonError::Unsupported(format!(
            "{file}: provisioning mode needs {} naming who may provision this node \
             (for example `allow<TAB>user:provisioner<TAB>*<TAB>*<TAB>*`); without it every \
             provision action would be denied",
            match &policy {
                Some(p) => p.display().to_string(),
                None => format!("security.policy_dir with a {PROVISION_POLICY}"),
            }
        )));
    }
    if !p.ca.as_ref().is_some_and(|ca| ca.exists()) {
        return Err(DaemonError::Unsupported(format!(
            "{file}: provisioning.ca must name the CA certificate shipped with the node"
        )));
    }
    if let Err(e) = p.read_token() {
        return Err(DaemonError::Unsupported(format!(
            "{file}: provisioning.token_file cannot be read: {e}"
        )));
    }
    if fleet && !p.state_dir.to_string_lossy().contains("{identity}") {
        return Err(DaemonError::Unsupported(format!(
            "{file}: --fleet in provisioning mode needs {{identity}} in provisioning.state_dir, so that each virtual node has its own key and state"
        )));
    }
    Ok(())
}

/// Says on every start that this node is in provisioning mode, and loads
/// the trust it starts with: the CA shipped with the node and, if one is
/// in place, the CRL.
pub fn trust(cfg: &ResponderConfig, p: &ProvisioningConfig) -> Result<SharedTrust, DaemonError> {
    warn!(
        servers = %p.servers.join(","),
        "PROVISIONING MODE: this node has no certificate yet; it joins only the {PROVISIONING_COLLECTIVE:?} collective and hosts only rpcutil and provision until it is provisioned"
    );
    if cfg.security.default_policy == "allow" {
        warn!("PROVISIONING MODE WITH security.default_policy = \"allow\": every holder of a user certificate and the bootstrap token may provision this node; ship a provision.policy instead");
    }
    let ca = p.ca.as_deref().unwrap_or(std::path::Path::new(""));
    // A CRL already in place (shipped, or left by an earlier configure) still
    // applies; one written later applies from then on.
    Ok(SharedTrust::load_provisioning(
        ca,
        cfg.security.crl.as_deref(),
    )?)
}

/// Node `name`'s security in provisioning mode: its own key, made at first
/// start in its state directory, and the provisioning trust.
pub fn node_security(
    cfg: &ResponderConfig,
    p: &ProvisioningConfig,
    name: &str,
    trust: Arc<SharedTrust>,
) -> Result<NodeSecurity, DaemonError> {
    let dir = security::for_identity(&p.state_dir, name);
    let key = NodeKey::load_or_create(&dir.join(files::NODE_KEY))?;
    info!(node = %name, key = %key.public_hex(), "provisioning key");
    Ok(NodeSecurity::provisioning(key, trust).bounded_by(&cfg.security))
}

/// Where `provision restart` goes, decided once the daemon runs: the
/// `provision` agent is built (at preflight) with [`hook`](Self::hook), and
/// [`crate::run`] [`set`](Self::set)s what it does — stop and re-execute a
/// single node, or restart one virtual node of a fleet.
#[derive(Clone, Default)]
pub struct RestartSwitch(Arc<OnceLock<RestartHook>>);

impl RestartSwitch {
    /// The hook to give the `provision` agent.
    pub fn hook(&self) -> RestartHook {
        let target = self.0.clone();
        Arc::new(move |identity: &str| match target.get() {
            Some(h) => h(identity),
            None => warn!("provision restart for {identity} before the responder serves; ignored"),
        })
    }

    /// Decides what a restart does; only the first call counts.
    pub fn set(&self, hook: RestartHook) {
        if self.0.set(hook).is_err() {
            warn!("the restart hook was set twice; the first stands");
        }
    }
}
