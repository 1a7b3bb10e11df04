//! `provisioner.toml`: what `mco provision run` needs.
//!
//! ```toml
//! main_config = "/etc/mco/provisioner.toml"         # client config: the main collective
//! provisioning_config = "/etc/mco/provisioning.toml" # client config: the provisioning broker
//! state_file = "/var/lib/mco/provisioner/state.jsonl"
//! workers = 20
//!
//! [expected]                     # nothing is signed for a node not listed here
//! identities = ["web-*", "db-0?"]
//! registry_file = "/var/lib/mco/expected-nodes"
//! kv_bucket = "expected"         # JetStream KV on the main broker (operators only)
//!
//! [ca]                           # the CA node, by name or among names
//! identities = ["ca-*"]
//!
//! [masters]                      # discovered in the main collective among these names
//! identities = ["puppet-*"]
//! classes = ["puppet::master"]
//! criteria = ["region", "country"]
//! load_fact = "load"
//!
//! [steps]
//! final_run = false
//!
//! [[notify]]                     # see notify: log, webhook (http/https) or exec
//! type = "webhook"
//! url = "https://hooks.example.com/provisioned"
//! ca = "/etc/mco/pki/ca.pem"     # optional; default: the system's roots
//! headers = { Authorization = "Bearer …" }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_core::config::{ConfigErrors, Reader};
use mco_core::filter::FactTerm;
use mco_core::Filter;
use toml::Table;

use super::notify::Notifier;

/// Which steps run; the lock, the inventory and the expected check always do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    /// `set_master` on the node.
    pub set_master: bool,
    /// Clean old certificates of the name on the CA and masters.
    pub clean: bool,
    /// `gencsr` on the node and `ca sign`.
    pub sign: bool,
    /// `configure` the node with its certificate.
    pub configure: bool,
    /// `run` the bootstrap command.
    pub bootstrap: bool,
    /// `run phase=final` after the bootstrap run.
    pub final_run: bool,
    /// `restart` the node into normal mode.
    pub restart: bool,
    /// Wait for it to answer `rpcutil ping` in the main collective.
    pub confirm: bool,
}

impl Default for Steps {
    fn default() -> Self {
        Steps {
            set_master: true,
            clean: true,
            sign: true,
            configure: true,
            bootstrap: true,
            final_run: false,
            restart: true,
            confirm: true,
        }
    }
}

/// How masters are found and chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct MastersConfig {
    /// The discovery filter in the main collective.
    pub filter: Filter,
    /// Facts a master should share with the node, most specific first.
    pub criteria: Vec<String>,
    /// The fact holding a master's load.
    pub load_fact: String,
    /// Load added to a master for each node given to it in this run.
    pub per_node: f64,
    /// The fact holding the address for the node's hosts file (default `ipaddress`).
    pub address_fact: String,
    /// The fact holding the name for the hosts file (default: the identity).
    pub name_fact: Option<String>,
    /// Masters are discovered again when the list is older than this.
    pub refresh: Duration,
    /// The fact holding broker URLs for nodes of this master (comma-separated
    /// or a list); without it, or where a master lacks it, `[node] servers`.
    pub servers_fact: Option<String>,
}

/// Which nodes may be provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Identities or globs.
    pub identities: Vec<String>,
    /// A file of identities or globs, one per line, `#` comments; re-read
    /// whenever a node is checked, so whatever boots nodes can append to it.
    pub registry_file: Option<PathBuf>,
    /// A JetStream key-value bucket on the main collective's broker (where
    /// only operators' certificates reach it): a node is expected while a
    /// key named by its identity holds anything but `0`, `false` or `no`.
    /// Created (history 1) if missing.
    pub kv_bucket: Option<String>,
    /// Address ranges: a node whose address fact lies in one is expected.
    /// The address is the node's own word, as for Puppet's autosign by network.
    pub networks: Vec<ipnet::IpNet>,
    /// The facts holding a node's address, tried in order.
    pub address_facts: Vec<String>,
    /// Names never signed or cleaned, besides `ca`, `broker`, the CA node,
    /// the masters and the provisioner's own (patterns).
    pub reserved: Vec<String>,
}

impl Default for Expected {
    fn default() -> Self {
        Expected {
            identities: Vec::new(),
            registry_file: None,
            kv_bucket: None,
            networks: Vec::new(),
            address_facts: default_address_facts(),
            reserved: Vec::new(),
        }
    }
}

fn default_address_facts() -> Vec<String> {
    vec!["networking.ip".into(), "ipaddress".into()]
}

/// The whole provisioner config.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// The file read.
    pub file: PathBuf,
    /// Client config of the main collective (masters, CA, confirmation).
    pub main_config: PathBuf,
    /// Client config of the provisioning broker.
    pub provisioning_config: PathBuf,
    /// The bootstrap token for `provision` actions; default: the
    /// provisioning config's `nats.token_file`.
    pub token_file: Option<PathBuf>,
    /// The journal.
    pub state_file: PathBuf,
    /// The key pins of provisioning nodes (default: beside the journal).
    pub pins_file: PathBuf,
    /// Discovery of unprovisioned nodes runs this often.
    pub interval: Duration,
    /// Nodes worked on at once.
    pub workers: usize,
    /// Attempts per node before it is given up.
    pub retries: u32,
    /// The first retry's delay; it doubles up to `max_backoff`.
    pub backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// How long a node lock lasts; renewed at each step.
    pub lock_expiry: Duration,
    /// The reply timeout of each step's request.
    pub request_timeout: Duration,
    /// The reply timeout of `run` (the bootstrap command).
    pub run_timeout: Duration,
    /// How long a restarted node has to answer in the main collective.
    pub confirm_timeout: Duration,
    /// Serve Prometheus counters here.
    pub metrics_listen: Option<SocketAddr>,
    /// Act on nodes' announcements at once, not only at each interval.
    pub registration: bool,
    /// The CA node's identity; default: discovered by its `ca` agent.
    pub ca_identity: Option<String>,
    /// Without `ca_identity`: the identity patterns the CA node is discovered
    /// among (`[ca] identities`); a node outside them is never the CA.
    pub ca_identities: Vec<String>,
    /// Requests in flight to the CA node at most (it serves a bounded
    /// number at once and refuses the rest as busy).
    pub ca_concurrency: usize,
    /// Broker URLs and collectives given to nodes; defaults from the main config.
    pub node_servers: Vec<String>,
    /// Collectives given to nodes.
    pub node_collectives: Vec<String>,
    /// Who may be provisioned.
    pub expected: Expected,
    /// Masters.
    pub masters: MastersConfig,
    /// Steps on or off.
    pub steps: Steps,
    /// Where outcomes go.
    pub notify: Vec<Notifier>,
    /// At shutdown, how long the steps in flight may take to finish.
    pub shutdown_grace: Duration,
}

const KEYS: &[&str] = &[
    "main_config",
    "provisioning_config",
    "token_file",
    "state_file",
    "pins_file",
    "interval",
    "workers",
    "retries",
    "backoff",
    "max_backoff",
    "lock_expiry",
    "request_timeout",
    "run_timeout",
    "confirm_timeout",
    "metrics_listen",
    "registration",
    "ca",
    "node",
    "expected",
    "masters",
    "steps",
    "notify",
    "shutdown_grace",
];

impl ProvisionerConfig {
    /// Reads and checks `path`; every problem is reported with its key.
    pub fn load(path: &Path) -> Result<ProvisionerConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![mco_core::config::ConfigError {
                file: path.display().to_string(),
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses `text` as the contents of `path`; relative paths in it are
    /// taken relative to the file's directory.
    pub fn from_toml(path: &Path, text: &str) -> Result<ProvisionerConfig, ConfigErrors> {
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let (mut r, t) = Reader::parse(path, text);
        r.unknown(&t, "", KEYS);
        let main_config = r.path(&t, "", "main_config").map(rel);
        let provisioning_config = r.path(&t, "", "provisioning_config").map(rel);
        if main_config.is_none() {
            r.error(
                "main_config",
                "required: the client config of the main collective",
            );
        }
        if provisioning_config.is_none() {
            r.error(
                "provisioning_config",
                "required: the client config of the provisioning broker",
            );
        }
        let state_file = r
            .path(&t, "", "state_file")
            .map(rel)
            .unwrap_or_else(|| base.join("provisioner.state.jsonl"));
        let pins_file = r
            .path(&t, "", "pins_file")
            .map(rel)
            .unwrap_or_else(|| state_file.with_extension("pins"));
        let workers = r.unsigned(&t, "", "workers").unwrap_or(20);
        if !(1..=10_000).contains(&workers) {
            r.error("workers", "must be between 1 and 10000");
        }
        let retries = r.unsigned(&t, "", "retries").unwrap_or(5);
        if retries == 0 || retries > 1000 {
            r.error("retries", "must be between 1 and 1000");
        }
        let metrics_listen = r.string(&t, "", "metrics_listen").and_then(|s| {
            s.parse::<SocketAddr>()
                .map_err(|e| r.error("metrics_listen", format!("{s:?}: {e} (want HOST:PORT)")))
                .ok()
        });
        let lock_expiry = r
            .duration(&t, "", "lock_expiry")
            .unwrap_or(Duration::from_secs(600));
        if lock_expiry < Duration::from_secs(1) {
            r.error("lock_expiry", "must be at least 1s");
        }

        let (ca_identity, ca_identities, ca_concurrency) = match r.table(&t, "", "ca") {
            Some(ca) => {
                r.unknown(ca, "ca", &["identity", "identities", "concurrency"]);
                let n = r.unsigned(ca, "ca", "concurrency").unwrap_or(16);
                if !(1..=1024).contains(&n) {
                    r.error("ca.concurrency", "must be between 1 and 1024");
                }
                let patterns = r.strings(ca, "ca", "identities").unwrap_or_default();
                for p in &patterns {
                    if let Err(e) = mco_core::filter::Pattern::parse(p) {
                        r.error("ca.identities", e.to_string());
                    }
                }
                (
                    r.string(ca, "ca", "identity"),
                    patterns,
                    n.clamp(1, 1024) as usize,
                )
            }
            None => (None, Vec::new(), 16),
        };
        if ca_identity.is_none() && ca_identities.is_empty() {
            r.error(
                "ca",
                "name the CA node: identity = \"NAME\", or identities = [patterns] it is \
                 discovered among; a node that merely hosts the ca agent is not trusted as the CA",
            );
        }
        let (node_servers, node_collectives) = match r.table(&t, "", "node") {
            Some(n) => {
                r.unknown(n, "node", &["servers", "collectives"]);
                (
                    r.strings(n, "node", "servers").unwrap_or_default(),
                    r.strings(n, "node", "collectives").unwrap_or_default(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };

        let expected = match r.table(&t, "", "expected") {
            Some(e) => {
                r.unknown(
                    e,
                    "expected",
                    &[
                        "identities",
                        "registry_file",
                        "kv_bucket",
                        "networks",
                        "address_facts",
                        "reserved",
                    ],
                );
                let kv_bucket = r.string(e, "expected", "kv_bucket");
                if let Some(b) = &kv_bucket {
                    if b.is_empty()
                        || !b
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        r.error(
                            "expected.kv_bucket",
                            format!("{b:?}: a bucket name is letters, digits, _ and -"),
                        );
                    }
                }
                let mut networks = Vec::new();
                for n in r.strings(e, "expected", "networks").unwrap_or_default() {
                    match n.parse::<ipnet::IpNet>() {
                        Ok(net) => networks.push(net.trunc()),
                        Err(err) => r.error(
                            "expected.networks",
                            format!("{n:?}: {err} (want an address range such as 10.20.0.0/16)"),
                        ),
                    }
                }
                Expected {
                    identities: r.strings(e, "expected", "identities").unwrap_or_default(),
                    registry_file: r.path(e, "expected", "registry_file").map(rel),
                    kv_bucket,
                    networks,
                    address_facts: r
                        .strings(e, "expected", "address_facts")
                        .unwrap_or_else(default_address_facts),
                    reserved: r.strings(e, "expected", "reserved").unwrap_or_default(),
                }
            }
            None => Expected::default(),
        };
        if expected.identities.is_empty()
            && expected.registry_file.is_none()
            && expected.kv_bucket.is_none()
            && expected.networks.is_empty()
        {
            r.error(
                "expected",
                "say which nodes may be provisioned: identities (globs; [\"*\"] for any), a registry_file, a kv_bucket or networks",
            );
        }
        for i in expected.identities.iter().chain(&expected.reserved) {
            if let Err(e) = mco_core::filter::Pattern::parse(i) {
                r.error("expected.identities", format!("{i:?}: {e}"));
            }
        }

        let masters = masters(&mut r, &t);
        let steps = steps(&mut r, &t);
        let notify = super::notify::notifiers(&mut r, &t, base);

        let cfg = ProvisionerConfig {
            file: path.to_path_buf(),
            main_config: main_config.unwrap_or_default(),
            provisioning_config: provisioning_config.unwrap_or_default(),
            token_file: r.path(&t, "", "token_file").map(rel),
            state_file,
            pins_file,
            interval: r
                .duration(&t, "", "interval")
                .unwrap_or(Duration::from_secs(30))
                .max(Duration::from_millis(100)),
            workers: workers as usize,
            retries: retries as u32,
            backoff: r
                .duration(&t, "", "backoff")
                .unwrap_or(Duration::from_secs(30)),
            max_backoff: r
                .duration(&t, "", "max_backoff")
                .unwrap_or(Duration::from_secs(600)),
            lock_expiry,
            request_timeout: r
                .duration(&t, "", "request_timeout")
                .unwrap_or(Duration::from_secs(20)),
            run_timeout: r
                .duration(&t, "", "run_timeout")
                .unwrap_or(Duration::from_secs(1800)),
            confirm_timeout: r
                .duration(&t, "", "confirm_timeout")
                .unwrap_or(Duration::from_secs(120)),
            metrics_listen,
            registration: r.boolean(&t, "", "registration").unwrap_or(true),
            ca_identity,
            ca_identities,
            ca_concurrency,
            node_servers,
            node_collectives,
            expected,
            shutdown_grace: r
                .duration(&t, "", "shutdown_grace")
                .unwrap_or(Duration::from_secs(30)),
            masters,
            steps,
            notify,
        };
        r.finish()?;
        Ok(cfg)
    }

    /// The delay before attempt `attempts + 1`.
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

fn masters(r: &mut Reader, t: &Table) -> MastersConfig {
    let mut m = MastersConfig {
        filter: Filter::default(),
        criteria: vec!["region".into(), "country".into()],
        load_fact: "load".into(),
        per_node: 1.0,
        address_fact: "ipaddress".into(),
        name_fact: None,
        servers_fact: None,
        refresh: Duration::from_secs(10),
    };
    let Some(mt) = r.table(t, "", "masters") else {
        r.error(
            "masters",
            "say how masters are discovered: classes, facts, agents, identities or compound",
        );
        return m;
    };
    r.unknown(
        mt,
        "masters",
        &[
            "classes",
            "facts",
            "agents",
            "identities",
            "compound",
            "criteria",
            "load_fact",
            "per_node",
            "address_fact",
            "name_fact",
            "servers_fact",
            "refresh",
        ],
    );
    m.filter.class = r.strings(mt, "masters", "classes").unwrap_or_default();
    m.filter.agent = r.strings(mt, "masters", "agents").unwrap_or_default();
    m.filter.identity = r.strings(mt, "masters", "identities").unwrap_or_default();
    m.filter.compound = r.strings(mt, "masters", "compound").unwrap_or_default();
    for f in r.strings(mt, "masters", "facts").unwrap_or_default() {
        match FactTerm::parse(&f) {
            Ok(term) => m.filter.fact.push(term),
            Err(e) => r.error("masters.facts", e.to_string()),
        }
    }
    if m.filter.identity.is_empty() {
        r.error(
            "masters.identities",
            "name the identities masters may have (patterns such as \"puppet-*\"): a node \
             becomes a master only if the configuration names it, whatever class or load it claims",
        );
    }
    if m.filter.is_empty() {
        r.error(
            "masters",
            "a filter is required (classes, facts, agents, identities or compound): masters are discovered, never assumed",
        );
    } else if let Err(e) = m.filter.compile() {
        r.error("masters", e.to_string());
    }
    if let Some(c) = r.strings(mt, "masters", "criteria") {
        m.criteria = c;
    }
    if let Some(l) = r.string(mt, "masters", "load_fact") {
        m.load_fact = l;
    }
    if let Some(v) = mt.get("per_node") {
        match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(f) if f >= 0.0 && f.is_finite() => m.per_node = f,
            _ => r.error("masters.per_node", "expected a non-negative number"),
        }
    }
    if let Some(a) = r.string(mt, "masters", "address_fact") {
        m.address_fact = a;
    }
    m.name_fact = r.string(mt, "masters", "name_fact");
    m.servers_fact = r.string(mt, "masters", "servers_fact");
    if let Some(d) = r.duration(mt, "masters", "refresh") {
        m.refresh = d;
    }
    m
}

fn steps(r: &mut Reader, t: &Table) -> Steps {
    let mut s = Steps::default();
    let Some(st) = r.table(t, "", "steps") else {
        return s;
    };
    const NAMES: &[&str] = &[
        "set_master",
        "clean",
        "sign",
        "configure",
        "bootstrap",
        "final_run",
        "restart",
        "confirm",
    ];
    r.unknown(st, "steps", NAMES);
    for name in NAMES {
        if let Some(on) = r.boolean(st, "steps", name) {
            let slot = match *name {
                "set_master" => &mut s.set_master,
                "clean" => &mut s.clean,
                "sign" => &mut s.sign,
                "configure" => &mut s.configure,
                "bootstrap" => &mut s.bootstrap,
                "final_run" => &mut s.final_run,
                "restart" => &mut s.restart,
                _ => &mut s.confirm,
            };
            *slot = on;
        }
    }
    for (step, on, needs, has) in [
        ("configure", s.configure, "sign", s.sign),
        ("restart", s.restart, "configure", s.configure),
        ("confirm", s.confirm, "restart", s.restart),
        ("final_run", s.final_run, "bootstrap", s.bootstrap),
    ] {
        if on && !has {
            r.error(
                &format!("steps.{step}"),
                format!("needs steps.{needs}, which is off"),
            );
        }
    }
    s
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
