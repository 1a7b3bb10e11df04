//! A secure collective on a real cluster of `nats-server`s, each running the configuration
//! `mco pki broker-config --cluster` wrote for it, optionally with one server behind a link that
//! can be cut (a network namespace) and a site: a leaf-node server, in its own namespace, with
//! its own responders.
//!
//! Hub responders get every hub server's URL; a site's responders get only their leaf server's.
//! Servers and responders ping every second (`ping_interval`), so a cut link is noticed in
//! seconds rather than minutes.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::netns::Netns;
use crate::replies::write_nodes_file;
use crate::secure::{path_str, pki_command, COLLECTIVE};
use crate::{eventually, Cmd, NatsServer, Output, Responder, ResponderSpec};

/// How long [`SecureClusterBuilder::start`] waits for the routes and the responders.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `[nats]` keys of every responder and client of a test cluster.
pub const FAST_PINGS: &str = "ping_interval = \"1s\"\n";

/// What goes into a [`SecureCluster`].
#[derive(Debug, Clone)]
pub struct SecureClusterBuilder {
    servers: usize,
    isolated: Option<usize>,
    users: Vec<String>,
    nodes: Vec<ResponderSpec>,
    site: Option<Vec<ResponderSpec>>,
}

impl Default for SecureClusterBuilder {
    fn default() -> Self {
        SecureClusterBuilder {
            // The smallest cluster that survives the loss of one server with a majority.
            servers: 3,
            isolated: None,
            users: vec!["alice".to_string()],
            nodes: Vec::new(),
            site: None,
        }
    }
}

impl SecureClusterBuilder {
    /// The number of hub servers.
    pub fn servers(mut self, n: usize) -> Self {
        assert!(n >= 1, "a cluster has at least one server");
        self.servers = n;
        self
    }

    /// Puts hub server `i` in its own network namespace, so that its links can be cut.
    pub fn isolate(mut self, i: usize) -> Self {
        self.isolated = Some(i);
        self
    }

    /// A hub responder (connected to every hub server).
    pub fn node(mut self, spec: ResponderSpec) -> Self {
        self.nodes.push(spec);
        self
    }

    /// A site: a leaf-node server in its own namespace, linked to every hub server, with these
    /// responders on it.
    pub fn site(mut self, nodes: Vec<ResponderSpec>) -> Self {
        self.site = Some(nodes);
        self
    }

    /// Makes the PKI, starts the servers, waits until every server routes to every other,
    /// starts the responders and waits until every one answers through every hub server.
    #[track_caller]
    pub fn start(self) -> SecureCluster {
        let root = tempfile::Builder::new()
            .prefix("mco-cluster-")
            .tempdir()
            .expect("a temporary directory");
        let pki = root.path().join("pki");
        let policies = root.path().join("policies");
        fs::create_dir_all(&policies).expect("create the policy directory");
        let isolated_ns = self.isolated.map(|_| Netns::new());
        let site_ns = self.site.as_ref().map(|_| Netns::new());

        let run_pki = |args: &[&str]| pki_command(&pki, args);
        run_pki(&["ca", "init"]);
        let mut ips: Vec<String> = vec!["127.0.0.1".into()];
        for ns in isolated_ns.iter().chain(&site_ns) {
            ips.push(ns.host_ip().to_string());
            ips.push(ns.ns_ip().to_string());
        }
        let issue_broker = |name: &str| {
            let mut args = vec!["issue", name, "--kind", "broker"];
            for ip in &ips {
                args.extend(["--ip", ip.as_str()]);
            }
            run_pki(&args);
        };
        let names: Vec<String> = (1..=self.servers).map(|i| format!("nats{i}")).collect();
        for n in &names {
            issue_broker(n);
        }
        if self.site.is_some() {
            issue_broker("site1");
        }
        for u in &self.users {
            run_pki(&["issue", u, "--kind", "user"]);
        }
        let site_nodes = self.site.clone().unwrap_or_default();
        for spec in self.nodes.iter().chain(&site_nodes) {
            run_pki(&["issue", &spec.identity, "--kind", "node"]);
        }
        run_pki(&["crl"]);

        // Addresses: a server in a namespace is reached at the namespace's end of its link;
        // from inside it, the others at the host's end.
        // Every port at once, from listeners held together: ports picked one by one can repeat.
        let ports = distinct_ports(3 * self.servers);
        let client_ports: Vec<u16> = ports[..self.servers].to_vec();
        let route_ports: Vec<u16> = ports[self.servers..2 * self.servers].to_vec();
        let leaf_ports: Vec<u16> = ports[2 * self.servers..].to_vec();
        let address = |i: usize| match (&isolated_ns, self.isolated) {
            (Some(ns), Some(k)) if k == i => ns.ns_ip(),
            _ => Ipv4Addr::LOCALHOST,
        };
        let seen_from = |from: usize, to: usize| match (&isolated_ns, self.isolated) {
            (Some(ns), Some(k)) if k == to => ns.ns_ip(),
            (Some(ns), Some(k)) if k == from => ns.host_ip(),
            _ => Ipv4Addr::LOCALHOST,
        };
        let wide = isolated_ns.is_some() || site_ns.is_some();
        let mut servers = Vec::new();
        for i in 0..self.servers {
            let mut args: Vec<String> = vec![
                "broker-config".into(),
                "--collective".into(),
                COLLECTIVE.into(),
                "--server-cert".into(),
                names[i].clone(),
                "--cluster".into(),
                "hub".into(),
                "--cluster-listen".into(),
                format!(
                    "{}:{}",
                    if wide && Some(i) != self.isolated {
                        Ipv4Addr::UNSPECIFIED
                    } else {
                        address(i)
                    },
                    route_ports[i]
                ),
            ];
            for j in (0..self.servers).filter(|&j| j != i) {
                args.push("--route".into());
                args.push(format!("{}:{}", seen_from(i, j), route_ports[j]));
            }
            if self.site.is_some() {
                args.push("--leaf-listen".into());
                args.push(format!("0.0.0.0:{}", leaf_ports[i]));
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let config = run_pki(&refs).stdout + "ping_interval: \"1s\"\nping_max: 3\n";
            let mut b = NatsServer::builder()
                .config_text(config)
                .port(client_ports[i])
                .address(address(i));
            if let (Some(ns), Some(k)) = (&isolated_ns, self.isolated) {
                if k == i {
                    b = b.netns(ns.name());
                }
            }
            servers.push(b.start());
        }
        let leaf = site_ns.as_ref().map(|ns| {
            let mut args: Vec<String> = vec![
                "broker-config".into(),
                "--collective".into(),
                COLLECTIVE.into(),
                "--server-cert".into(),
                "site1".into(),
            ];
            for p in &leaf_ports {
                args.push("--leaf-remote".into());
                args.push(format!("{}:{p}", ns.host_ip()));
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let config = run_pki(&refs).stdout + "ping_interval: \"1s\"\nping_max: 3\n";
            NatsServer::builder()
                .config_text(config)
                .address(ns.ns_ip())
                .netns(ns.name())
                .start()
        });

        let mut cluster = SecureCluster {
            responders: Vec::new(),
            servers,
            leaf,
            isolated_ns,
            site_ns,
            pki,
            policies,
            users: self.users.clone(),
            root,
        };
        for u in &self.users {
            let all: Vec<usize> = (0..self.servers).collect();
            cluster.write_client_config(u, "client.toml", &all);
        }
        let mut hub_urls = cluster.urls();
        let mut nats_toml = FAST_PINGS.to_string();
        if let Some(k) = self.isolated {
            // Every hub node starts on the isolated server, so that cutting its link moves
            // them all.
            hub_urls.rotate_left(k);
            nats_toml.push_str("servers_in_order = true\n");
        }
        for spec in self.nodes {
            let table = cluster.security_table(&spec.identity);
            let spec = spec.nats_toml(&nats_toml).secure(&table);
            cluster
                .responders
                .push(Responder::spawn_on(&hub_urls, spec));
        }
        if let (Some(leaf), Some(ns)) = (&cluster.leaf, &cluster.site_ns) {
            let urls = vec![leaf.url()];
            for mut spec in site_nodes {
                let table = cluster.security_table(&spec.identity);
                // The site's nodes run beside their server, on its side of the link.
                spec.netns = Some(ns.name().to_string());
                let spec = spec.nats_toml(FAST_PINGS).secure(&table);
                cluster.responders.push(Responder::spawn_on(&urls, spec));
            }
        }
        let ids = cluster.identities();
        for i in 0..cluster.servers.len() {
            cluster.wait_answering_via(i, &ids, READY_TIMEOUT);
        }
        cluster
    }
}

/// A running secure cluster; servers, responders and namespaces go when it is dropped.
pub struct SecureCluster {
    // Dropped first: the responders, then the servers, then the namespaces they ran in.
    responders: Vec<Responder>,
    servers: Vec<NatsServer>,
    leaf: Option<NatsServer>,
    isolated_ns: Option<Netns>,
    site_ns: Option<Netns>,
    pki: PathBuf,
    policies: PathBuf,
    users: Vec<String>,
    root: TempDir,
}

impl SecureCluster {
    /// What goes into a cluster; [`SecureClusterBuilder::start`] starts it.
    pub fn builder() -> SecureClusterBuilder {
        SecureClusterBuilder::default()
    }

    /// Every hub server's URL.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// Hub server `i` (0-based; its name is `nats{i+1}`).
    pub fn server(&self, i: usize) -> &NatsServer {
        &self.servers[i]
    }

    /// Hub server `i`, to kill or restart.
    pub fn server_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.servers[i]
    }

    /// The site's leaf-node server.
    pub fn leaf(&self) -> &NatsServer {
        self.leaf.as_ref().expect("a cluster with a site")
    }

    /// The namespace of the isolated hub server.
    pub fn isolated_link(&self) -> &Netns {
        self.isolated_ns
            .as_ref()
            .expect("a cluster with an isolated server")
    }

    /// The namespace of the site's leaf server.
    pub fn site_link(&self) -> &Netns {
        self.site_ns.as_ref().expect("a cluster with a site")
    }

    /// The PKI directory.
    pub fn pki_dir(&self) -> &Path {
        &self.pki
    }

    /// Every responder identity, sorted.
    pub fn identities(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .responders
            .iter()
            .map(|r| r.spec.identity.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The responders, to read their logs.
    pub fn responders(&self) -> &[Responder] {
        &self.responders
    }

    /// The responders, to check or signal their processes.
    pub fn responders_mut(&mut self) -> &mut [Responder] {
        &mut self.responders
    }

    /// Writes a client config for `user` that knows only the hub servers `on`; returns it.
    pub fn write_client_config(&self, user: &str, file: &str, on: &[usize]) -> PathBuf {
        let dir = self.root.path().join("users").join(user);
        fs::create_dir_all(&dir).expect("create the user's directory");
        let urls: Vec<String> = on
            .iter()
            .map(|&i| format!("{:?}", self.servers[i].url()))
            .collect();
        let text = format!(
            "identity = {user:?}\ncollective = {COLLECTIVE:?}\n\
             [nats]\nservers = [{urls}]\n{FAST_PINGS}\
             [security]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\n",
            urls = urls.join(", "),
            ca = path_str(&self.pki.join("ca.pem")),
            cert = path_str(&self.pki.join(format!("{user}.pem"))),
            key = path_str(&self.pki.join(format!("{user}.key"))),
            crl = path_str(&self.pki.join("ca.crl")),
        );
        let path = dir.join(file);
        fs::write(&path, text).expect("write a client config");
        path
    }

    /// `mco --config C` for `user` with a config that knows only hub server `i`.
    pub fn mco_via(&self, user: &str, i: usize) -> Cmd {
        let config = self.write_client_config(user, &format!("via-{i}.toml"), &[i]);
        Cmd::mco().arg("--config").arg(config)
    }

    /// `mco --config C` for `user` with every hub server.
    pub fn mco(&self, user: &str) -> Cmd {
        let config = self
            .root
            .path()
            .join("users")
            .join(user)
            .join("client.toml");
        Cmd::mco().arg("--config").arg(config)
    }

    /// The identities of `ids` that answer a direct ping sent through hub server `i`.
    pub fn answering_via(&self, i: usize, ids: &[String]) -> Vec<String> {
        let list = self.root.path().join(format!("ping-{i}.txt"));
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        write_nodes_file(&list, &refs);
        let out = self
            .mco_via(&self.users[0], i)
            .args(["ping", "--nodes", &path_str(&list), "-t", "2s"])
            .run();
        let mut seen: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| l.contains(" time="))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| ids.iter().any(|id| id == w))
            .map(str::to_string)
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    /// Polls until every one of `ids` answers through hub server `i`.
    ///
    /// # Panics
    ///
    /// If they do not within `timeout`; the message shows the servers' logs.
    #[track_caller]
    pub fn wait_answering_via(&self, i: usize, ids: &[String], timeout: Duration) {
        let mut want = ids.to_vec();
        want.sort();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(
                timeout,
                "every responder to answer through the server",
                || self.answering_via(i, ids) == want,
            )
        }));
        if let Err(panic) = result {
            let logs: Vec<String> = self
                .servers
                .iter()
                .chain(&self.leaf)
                .map(|s| format!("---- {} ----\n{}", s.url(), s.log_text()))
                .collect();
            panic!(
                "{}\nthrough nats{}: {:?} of {want:?}\n{}",
                panic.downcast_ref::<String>().cloned().unwrap_or_default(),
                i + 1,
                self.answering_via(i, ids),
                logs.join("\n")
            );
        }
    }

    /// Which server each node says it is on (`rpcutil daemon_stats`, `broker.server_name`),
    /// asked through hub server `via`; nodes that do not answer are left out.
    pub fn servers_of(&self, via: usize, ids: &[String]) -> BTreeMap<String, String> {
        let mut cmd = self.mco_via(&self.users[0], via).args([
            "rpc",
            "rpcutil",
            "daemon_stats",
            "-j",
            "-t",
            "3s",
        ]);
        for id in ids {
            cmd = cmd.args(["-I", id]);
        }
        let out = cmd.run();
        let replies: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
        replies
            .iter()
            .filter_map(|r| {
                let sender = r.get("sender")?.as_str()?.to_string();
                let name = r.pointer("/data/broker/server_name")?.as_str()?.to_string();
                Some((sender, name))
            })
            .collect()
    }

    /// Runs `mco pki --dir PKI ARGS`.
    pub fn pki(&self, args: &[&str]) -> Output {
        pki_command(&self.pki, args)
    }

    fn security_table(&self, identity: &str) -> String {
        format!(
            "ca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\n\
             policy_dir = {policies:?}\ndefault_policy = \"allow\"\n",
            ca = path_str(&self.pki.join("ca.pem")),
            cert = path_str(&self.pki.join(format!("{identity}.pem"))),
            key = path_str(&self.pki.join(format!("{identity}.key"))),
            crl = path_str(&self.pki.join("ca.crl")),
            policies = path_str(&self.policies),
        )
    }
}

impl std::fmt::Debug for SecureCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureCluster")
            .field("servers", &self.urls())
            .field("dir", &self.root.path())
            .finish()
    }
}

/// `n` ports free on 127.0.0.1 a moment ago, all different.
fn distinct_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a local address").port())
        .collect()
}
