//! A secure collective for end-to-end tests: a collective CA made with the real `mco pki`, a TLS
//! `nats-server` running the configuration `mco pki broker-config` wrote, responders that sign
//! their replies and check every request, and a client configuration per user.
//!
//! Everything lives in one temporary directory: `pki/` (the CA and every certificate), `policies/`
//! (the `policy_dir` every responder reads, empty at start), `audit/<identity>.jsonl` and
//! `users/<name>/client.toml`.
//!
//! `mco pki broker-config` admits the identities issued before it runs, so the builder issues every
//! certificate first: the users, the responders' nodes and any spare node certificates a test wants
//! to connect with itself.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_pki::Ca;
use mco_security::Credentials;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc;

use crate::replies::write_nodes_file;
use crate::{eventually, Cmd, NatsServer, Output, Responder, ResponderSpec};

/// The collective every secure collective serves.
pub const COLLECTIVE: &str = "mcollective";

/// How long [`SecureCollective::start`] waits for every responder to answer a ping.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`tls_connect`] waits for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on the server errors [`tls_connect`] keeps for a test to read.
const ERROR_CAPACITY: usize = 64;

/// What goes into a [`SecureCollective`], with written-out defaults.
#[derive(Debug, Clone)]
pub struct SecureCollectiveBuilder {
    users: Vec<String>,
    /// Each node, its default policy and extra `[security]` lines.
    nodes: Vec<(ResponderSpec, String, String)>,
    spare_nodes: Vec<String>,
    crl_publishers: Vec<String>,
    /// The registry bucket kept on the broker and the users who may use it.
    registry: Option<(String, Vec<String>)>,
    /// The inventory registry's admins, when the broker keeps it.
    inventory: Option<Vec<String>>,
}

impl Default for SecureCollectiveBuilder {
    fn default() -> Self {
        SecureCollectiveBuilder {
            // The caller the collective's own readiness checks use.
            users: vec!["alice".to_string()],
            nodes: Vec::new(),
            spare_nodes: Vec::new(),
            crl_publishers: Vec::new(),
            registry: None,
            inventory: None,
        }
    }
}

impl SecureCollectiveBuilder {
    /// The provisioner's expected-node registry, bucket `bucket`, kept on the broker
    /// (`mco pki broker-config --registry`), for `users` (who must be users of the collective).
    pub fn registry(mut self, bucket: &str, users: &[&str]) -> Self {
        self.registry = Some((
            bucket.to_string(),
            users.iter().map(|u| u.to_string()).collect(),
        ));
        self
    }

    /// One more user certificate (`user:NAME`) the broker admits, with a client config.
    pub fn user(mut self, name: &str) -> Self {
        if !self.users.iter().any(|u| u == name) {
            self.users.push(name.to_string());
        }
        self
    }

    /// A responder with `[security] default_policy = "deny"`. Its `collectives` must be
    /// [`COLLECTIVE`] only, and `fleet` unset.
    pub fn node(self, spec: ResponderSpec) -> Self {
        self.node_with_default_policy(spec, "deny")
    }

    /// A responder whose agents without a policy file get `default_policy` (`allow` or `deny`).
    pub fn node_with_default_policy(mut self, spec: ResponderSpec, default_policy: &str) -> Self {
        self.nodes
            .push((spec, default_policy.to_string(), String::new()));
        self
    }

    /// A node as [`node`](Self::node) makes, with `lines` added to its `[security]` table.
    pub fn node_with_security_lines(mut self, spec: ResponderSpec, lines: &str) -> Self {
        self.nodes
            .push((spec, "deny".to_string(), format!("{lines}\n")));
        self
    }

    /// Keeps the inventory registry on the broker (bucket `mco_inventory`, made with `mco
    /// registry init` by the first of `admins` before any responder starts); every responder
    /// rewrites its entry every second.
    pub fn inventory(mut self, admins: &[&str]) -> Self {
        self.inventory = Some(admins.iter().map(|a| a.to_string()).collect());
        self
    }

    /// Lets node `identity` publish the CA's CRL (`mco pki broker-config --crl-publisher`):
    /// the node the `ca` agent runs on. Goes with [`inventory`](Self::inventory).
    pub fn crl_publisher(mut self, identity: &str) -> Self {
        self.crl_publishers.push(identity.to_string());
        self
    }

    /// A node certificate the broker admits but no responder uses, for a test that connects as
    /// that node itself.
    pub fn spare_node(mut self, identity: &str) -> Self {
        self.spare_nodes.push(identity.to_string());
        self
    }

    /// Makes the PKI, starts the broker and the responders, and waits until every responder
    /// answers the first user's ping.
    ///
    /// # Panics
    ///
    /// If a `mco pki` step fails, the broker does not start, or a responder does not answer
    /// within [`READY_TIMEOUT`] (the message shows the responders' logs).
    #[track_caller]
    pub fn start(self) -> SecureCollective {
        let root = tempfile::Builder::new()
            .prefix("mco-secure-")
            .tempdir()
            .expect("a temporary directory for the collective");
        let pki = root.path().join("pki");
        let policy_dir = root.path().join("policies");
        let audit_dir = root.path().join("audit");
        for dir in [&policy_dir, &audit_dir] {
            fs::create_dir_all(dir).expect("create the collective's directories");
        }
        let run_pki = |args: &[&str]| pki_command(&pki, args);
        run_pki(&["ca", "init"]);
        run_pki(&[
            "issue",
            "broker",
            "--kind",
            "broker",
            "--ip",
            "127.0.0.1",
            "--dns",
            "localhost",
        ]);
        for user in &self.users {
            run_pki(&["issue", user, "--kind", "user"]);
        }
        let node_ids: Vec<String> = self
            .nodes
            .iter()
            .map(|(spec, _, _)| spec.identity.clone())
            .chain(self.spare_nodes.iter().cloned())
            .collect();
        for id in &node_ids {
            run_pki(&["issue", id, "--kind", "node"]);
        }
        run_pki(&["crl"]);
        let jetstream = root.path().join("jetstream");
        let mut args: Vec<String> = vec![
            "broker-config".into(),
            "--collective".into(),
            COLLECTIVE.into(),
        ];
        if let Some((bucket, users)) = &self.registry {
            args.extend(["--registry".into(), bucket.clone()]);
            args.extend(["--jetstream-dir".into(), path_str(&jetstream)]);
            for u in users {
                args.extend(["--registry-user".into(), u.clone()]);
            }
        }
        if let Some(admins) = &self.inventory {
            args.extend(["--inventory".into(), "mco_inventory".into()]);
            if self.registry.is_none() {
                args.extend(["--jetstream-dir".into(), path_str(&jetstream)]);
            }
            for a in admins {
                args.extend(["--inventory-admin".into(), a.clone()]);
            }
            for n in &self.crl_publishers {
                args.extend(["--crl-publisher".into(), n.clone()]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let config = run_pki(&args).stdout;
        let nats = NatsServer::builder().config_text(config).start();

        let mut collective = SecureCollective {
            nats,
            pki,
            policy_dir,
            audit_dir,
            users: self.users.clone(),
            responders: Vec::new(),
            root,
        };
        for user in &self.users {
            let path = collective.users_dir(user).join("client.toml");
            fs::create_dir_all(path.parent().expect("a parent"))
                .expect("create the user's directory");
            fs::write(&path, collective.client_toml(user, ""))
                .expect("write the user's client config");
        }
        if let Some(admin) = self.inventory.as_ref().and_then(|a| a.first()) {
            collective
                .mco(admin)
                .args(["registry", "init"])
                .run()
                .assert_success();
        }
        for (mut spec, default_policy, lines) in self.nodes {
            if self.inventory.is_some() {
                spec = spec.extra("[inventory]\ninterval = \"1s\"\n");
            }
            assert!(
                spec.fleet.is_none() && spec.collectives == [COLLECTIVE],
                "a secure collective's responders serve one node in {COLLECTIVE}"
            );
            let mut table = collective.security_table(&spec.identity, &default_policy) + &lines;
            if self.inventory.is_some() {
                // Each node keeps its own copy of the CRL, which only the bus updates.
                let own = collective.node_crl(&spec.identity);
                fs::create_dir_all(own.parent().expect("a parent")).expect("create crl/");
                fs::copy(collective.pki.join("ca.crl"), &own).expect("copy the CRL");
                table = table.replace(
                    &format!("crl = {:?}", path_str(&collective.pki.join("ca.crl"))),
                    &format!("crl = {:?}", path_str(&own)),
                );
            }
            let responder = Responder::spawn(&collective.nats, spec.secure(&table));
            collective.responders.push(responder);
        }
        let ids: Vec<String> = collective
            .responders
            .iter()
            .map(|r| r.spec.identity.clone())
            .collect();
        if !ids.is_empty() {
            collective.wait_ready(&ids);
        }
        collective
    }
}

/// A running secure collective; the broker and the responders stop when it is dropped.
pub struct SecureCollective {
    responders: Vec<Responder>,
    nats: NatsServer,
    pki: PathBuf,
    policy_dir: PathBuf,
    audit_dir: PathBuf,
    users: Vec<String>,
    root: TempDir,
}

impl SecureCollective {
    /// What goes into a collective; [`SecureCollectiveBuilder::start`] starts it.
    pub fn builder() -> SecureCollectiveBuilder {
        SecureCollectiveBuilder::default()
    }

    /// The broker.
    pub fn nats(&self) -> &NatsServer {
        &self.nats
    }

    /// The broker's URL (`nats://127.0.0.1:PORT`; the connection is TLS all the same).
    pub fn url(&self) -> String {
        self.nats.url()
    }

    /// The PKI directory: `ca.pem`, `ca.crl`, `NAME.pem` and `NAME.key` for every identity.
    pub fn pki_dir(&self) -> &Path {
        &self.pki
    }

    /// The CA, to issue certificates `mco pki` has no options for (validity in the past, …).
    ///
    /// # Panics
    ///
    /// If the CA does not load.
    pub fn ca(&self) -> Ca {
        Ca::load(&self.pki).expect("the collective's CA loads")
    }

    /// The key and certificate of `name` (a user or node name, without its kind).
    ///
    /// # Panics
    ///
    /// If they do not load.
    pub fn credentials(&self, name: &str) -> Credentials {
        let (cert, key) = self.cert_and_key(name);
        Credentials::load(&cert, &key)
            .unwrap_or_else(|e| panic!("cannot load the credentials of {name}: {e}"))
    }

    /// `PKI/NAME.pem` and `PKI/NAME.key`.
    pub fn cert_and_key(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.pki.join(format!("{name}.pem")),
            self.pki.join(format!("{name}.key")),
        )
    }

    /// The directory every responder reads its `<agent>.policy` and `groups` files from.
    pub fn policy_dir(&self) -> &Path {
        &self.policy_dir
    }

    /// The audit log of responder `identity`.
    pub fn audit_log(&self, identity: &str) -> PathBuf {
        self.audit_dir.join(format!("{identity}.jsonl"))
    }

    /// The CRL file of node `identity` in a collective with the inventory registry (each node
    /// has its own copy there, which the published CRL replaces).
    pub fn node_crl(&self, identity: &str) -> PathBuf {
        self.root.path().join("crl").join(format!("{identity}.crl"))
    }

    /// A scratch directory that lives as long as the collective.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.root.path().join("scratch");
        fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    }

    /// The client config of `user`: its certificate, the CA, the CRL and the broker.
    pub fn client_config(&self, user: &str) -> PathBuf {
        assert!(
            self.users.iter().any(|u| u == user),
            "{user} is not a user of this collective"
        );
        self.users_dir(user).join("client.toml")
    }

    /// Writes another client config for `user` named `file_name`, with `top_level` TOML (keys
    /// such as `ddl_dirs = [...]`) before its tables; returns its path.
    pub fn client_config_with(&self, user: &str, file_name: &str, top_level: &str) -> PathBuf {
        let path = self.users_dir(user).join(file_name);
        fs::write(&path, self.client_toml(user, top_level)).expect("write a client config");
        path
    }

    /// `mco --config CLIENT_CONFIG_OF_USER`, to add arguments to.
    pub fn mco(&self, user: &str) -> Cmd {
        Cmd::mco().arg("--config").arg(self.client_config(user))
    }

    /// Runs `mco pki --dir PKI ARGS` and checks that it succeeded.
    ///
    /// # Panics
    ///
    /// If it exits with another status than 0.
    #[track_caller]
    pub fn pki(&self, args: &[&str]) -> Output {
        pki_command(&self.pki, args)
    }

    /// The responder of `identity`.
    ///
    /// # Panics
    ///
    /// If there is none.
    pub fn responder(&self, identity: &str) -> &Responder {
        self.responders
            .iter()
            .find(|r| r.spec.identity == identity)
            .unwrap_or_else(|| panic!("no responder {identity}"))
    }

    /// The responder of `identity`, to signal it.
    ///
    /// # Panics
    ///
    /// If there is none.
    pub fn responder_mut(&mut self, identity: &str) -> &mut Responder {
        self.responders
            .iter_mut()
            .find(|r| r.spec.identity == identity)
            .unwrap_or_else(|| panic!("no responder {identity}"))
    }

    /// Every responder's identity, in the order they were added.
    pub fn identities(&self) -> Vec<String> {
        self.responders
            .iter()
            .map(|r| r.spec.identity.clone())
            .collect()
    }

    /// Polls until each of `ids` answers a direct ping from the first user.
    ///
    /// # Panics
    ///
    /// If they do not within [`READY_TIMEOUT`]; the message shows the responders' logs.
    #[track_caller]
    pub fn wait_ready(&self, ids: &[String]) {
        let list = self.scratch().join("ready-nodes.txt");
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        write_nodes_file(&list, &refs);
        let user = self.users[0].clone();
        let ping = self.mco(&user).args([
            "ping",
            "--nodes",
            list.to_str().expect("a UTF-8 path"),
            "-t",
            "1s",
        ]);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(READY_TIMEOUT, "secure responders to answer pings", || {
                ping.run().status == 0
            })
        }));
        if let Err(panic) = result {
            let logs: Vec<String> = self
                .responders
                .iter()
                .map(|r| format!("---- {} ----\n{}", r.spec.identity, r.child.stderr_text()))
                .collect();
            let last = ping.run();
            panic!(
                "{}\nlast ping:\n{last:?}\nresponder logs:\n{}\nbroker log:\n{}",
                panic.downcast_ref::<String>().cloned().unwrap_or_default(),
                logs.join("\n"),
                self.nats.log_text()
            );
        }
    }

    /// Each node's `rpcutil daemon_stats`, asked by `user` directly of `ids` (no discovery, so
    /// every node sees exactly one more request).
    ///
    /// # Panics
    ///
    /// If a node does not answer with status 0.
    #[track_caller]
    pub fn daemon_stats(
        &self,
        user: &str,
        ids: &[&str],
    ) -> BTreeMap<String, serde_json::Map<String, Value>> {
        let mut cmd = self
            .mco(user)
            .args(["rpc", "rpcutil", "daemon_stats", "-j", "-t", "10s"]);
        for id in ids {
            cmd = cmd.args(["-I", id]);
        }
        crate::replies::stats_by_node(&cmd.run(), ids.len())
    }

    /// Connects to the broker over TLS as `name` (a user or node of this collective), or with no
    /// client certificate at all.
    ///
    /// # Errors
    ///
    /// What the connection attempt said, or that it did not finish within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self, name: Option<&str>) -> Result<TlsClient, String> {
        let cert = name.map(|n| self.cert_and_key(n));
        tls_connect(&self.nats, &self.pki.join("ca.pem"), cert).await
    }

    fn users_dir(&self, user: &str) -> PathBuf {
        self.root.path().join("users").join(user)
    }

    fn client_toml(&self, user: &str, top_level: &str) -> String {
        let (cert, key) = self.cert_and_key(user);
        format!(
            "identity = {user:?}\ncollective = {COLLECTIVE:?}\n{top_level}\n\
             [nats]\nservers = [{url:?}]\n\
             [security]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\n",
            url = self.url(),
            ca = path_str(&self.pki.join("ca.pem")),
            cert = path_str(&cert),
            key = path_str(&key),
            crl = path_str(&self.pki.join("ca.crl")),
        )
    }

    fn security_table(&self, identity: &str, default_policy: &str) -> String {
        format!(
            "ca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\n\
             policy_dir = {policies:?}\ndefault_policy = {default_policy:?}\naudit_log = {audit:?}\n",
            ca = path_str(&self.pki.join("ca.pem")),
            cert = path_str(&self.pki.join("{identity}.pem")),
            key = path_str(&self.pki.join("{identity}.key")),
            crl = path_str(&self.pki.join("ca.crl")),
            policies = path_str(&self.policy_dir),
            audit = path_str(&self.audit_log(identity)),
        )
    }
}

impl std::fmt::Debug for SecureCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureCollective")
            .field("nats", &self.nats)
            .field("dir", &self.root.path())
            .field("nodes", &self.identities())
            .field("users", &self.users)
            .finish()
    }
}

/// A TLS connection to the broker and the errors the server sent on it (permissions violations
/// and the like), newest last.
#[derive(Debug)]
pub struct TlsClient {
    /// The connection.
    pub client: async_nats::Client,
    /// `-ERR` messages from the server, as async-nats reports them.
    pub errors: mpsc::Receiver<String>,
}

impl TlsClient {
    /// Waits up to `timeout` for a server error mentioning `needle`, skipping others; `None` if
    /// none came.
    pub async fn error_about(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let wait = async {
            while let Some(e) = self.errors.recv().await {
                if e.contains(needle) {
                    return Some(e);
                }
            }
            None
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// Connects to `server` over TLS trusting the CA certificate `ca`, presenting the certificate
/// and key `cert` if given.
///
/// # Errors
///
/// What the connection attempt said, or that it did not finish within [`CONNECT_TIMEOUT`].
pub async fn tls_connect(
    server: &NatsServer,
    ca: &Path,
    cert: Option<(PathBuf, PathBuf)>,
) -> Result<TlsClient, String> {
    let (tx, errors) = mpsc::channel(ERROR_CAPACITY);
    let mut opts = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.to_path_buf())
        .require_tls(true)
        .connection_timeout(CONNECT_TIMEOUT)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.try_send(e.to_string());
                }
            }
        });
    if let Some((cert, key)) = cert {
        opts = opts.add_client_certificate(cert, key);
    }
    let url = format!("tls://127.0.0.1:{}", server.port());
    match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect(url)).await {
        Ok(Ok(client)) => Ok(TlsClient { client, errors }),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
    }
}

#[track_caller]
pub(crate) fn pki_command(dir: &Path, args: &[&str]) -> Output {
    let out = Cmd::mco().arg("pki").arg("--dir").arg(dir).args(args).run();
    out.assert_success();
    out
}

pub(crate) fn path_str(p: &Path) -> String {
    p.to_str().expect("temporary paths are UTF-8").to_string()
}
