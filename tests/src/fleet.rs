//! Real responders for end-to-end tests: a config written to a temp dir, the
//! real `mco-responder` binary, and readiness proved by a real `mco` ping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::{bin_path, eventually, mco, ChildGuard, NatsServer};

/// How one responder process is set up.
#[derive(Debug, Clone)]
pub struct ResponderSpec {
    /// Identity (the base name with `fleet`).
    pub identity: String,
    /// Facts, written to a YAML file.
    pub facts: serde_json::Value,
    /// Classes, written to a classes.txt file.
    pub classes: Vec<String>,
    /// Collectives.
    pub collectives: Vec<String>,
    /// Serve this many virtual nodes.
    pub fleet: Option<usize>,
    /// Extra TOML appended to the config.
    pub extra_toml: String,
    /// Extra keys inside the config's `[facts]` table (e.g. `keyvalue_files = [...]`).
    pub facts_toml: String,
    /// `nats.max_payload`, if set.
    pub max_payload: Option<usize>,
    /// Extra keys inside the config's `[nats]` table (e.g. `ping_interval = "1s"\n`).
    pub nats_toml: String,
    /// Run inside this network namespace (`ip netns exec`), beside a site's server.
    pub netns: Option<String>,
    /// The body of the `[security]` table; `None` runs the responder in insecure mode.
    pub security: Option<String>,
}

impl ResponderSpec {
    /// A responder named `identity` with no facts or classes.
    pub fn new(identity: &str) -> ResponderSpec {
        ResponderSpec {
            identity: identity.to_string(),
            facts: serde_json::json!({}),
            classes: Vec::new(),
            collectives: vec!["mcollective".into()],
            fleet: None,
            extra_toml: String::new(),
            facts_toml: String::new(),
            max_payload: None,
            nats_toml: String::new(),
            netns: None,
            security: None,
        }
    }

    /// Sets the facts.
    pub fn facts(mut self, facts: serde_json::Value) -> ResponderSpec {
        self.facts = facts;
        self
    }

    /// Sets the classes.
    pub fn classes(mut self, classes: &[&str]) -> ResponderSpec {
        self.classes = classes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the collectives.
    pub fn collectives(mut self, c: &[&str]) -> ResponderSpec {
        self.collectives = c.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Runs N virtual nodes.
    pub fn fleet(mut self, n: usize) -> ResponderSpec {
        self.fleet = Some(n);
        self
    }

    /// Sets the responder's message size bound.
    pub fn max_payload(mut self, bytes: usize) -> ResponderSpec {
        self.max_payload = Some(bytes);
        self
    }

    /// Runs the responder in secure mode with `table` as the body of its `[security]` table
    /// (`ca`, `cert`, `key`, …; see [`crate::SecureCollective`], which writes it).
    pub fn secure(mut self, table: &str) -> ResponderSpec {
        self.security = Some(table.to_string());
        self
    }

    /// Adds raw TOML keys to the `[nats]` table.
    pub fn nats_toml(mut self, toml: &str) -> ResponderSpec {
        self.nats_toml.push_str(toml);
        self
    }

    /// Appends raw TOML to the config (e.g. an `[agents]` table).
    pub fn extra(mut self, toml: &str) -> ResponderSpec {
        self.extra_toml.push_str(toml);
        self
    }

    /// Adds raw TOML keys to the `[facts]` table, after `files`, `classes_file` and
    /// `refresh` (which the spec always writes), e.g. `value_files = { role = "/etc/role" }\n`.
    pub fn facts_toml(mut self, toml: &str) -> ResponderSpec {
        self.facts_toml.push_str(toml);
        self
    }

    /// The identities this spec serves.
    pub fn identities(&self) -> Vec<String> {
        match self.fleet {
            None => vec![self.identity.clone()],
            Some(n) => (0..n)
                .map(|i| format!("{}-{i:04}", self.identity))
                .collect(),
        }
    }
}

/// A running responder process and its files.
pub struct Responder {
    /// The process.
    pub child: ChildGuard,
    /// What it was started with.
    pub spec: ResponderSpec,
    /// Its config file.
    pub config: PathBuf,
    dir: TempDir,
}

impl Responder {
    /// Writes the config and starts the responder against `nats`; does not wait.
    pub fn spawn(nats: &NatsServer, spec: ResponderSpec) -> Responder {
        Responder::spawn_on(&[nats.url()], spec)
    }

    /// Writes the config and starts the responder with `urls` as its servers; does not wait.
    pub fn spawn_on(urls: &[String], spec: ResponderSpec) -> Responder {
        let dir = tempfile::tempdir().expect("temp dir");
        let facts = dir.path().join("facts.json");
        std::fs::write(&facts, serde_json::to_vec_pretty(&spec.facts).unwrap()).unwrap();
        let classes = dir.path().join("classes.txt");
        std::fs::write(&classes, spec.classes.join("\n")).unwrap();
        let collectives: Vec<String> = spec.collectives.iter().map(|c| format!("{c:?}")).collect();
        let config = dir.path().join("responder.toml");
        let text = format!(
            "identity = {id:?}\ncollectives = [{cols}]\nshutdown_grace = \"5s\"\n",
            id = spec.identity,
            cols = collectives.join(", "),
        ) + &format!(
                "[nats]\nservers = [{urls}]\n{payload}{nats_toml}[facts]\nfiles = [{facts:?}]\nclasses_file = {classes:?}\nrefresh = \"1h\"\n{facts_toml}[security]\n{security}{extra}",
                urls = urls.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", "),
                nats_toml = spec.nats_toml,
                payload = spec.max_payload.map(|m| format!("max_payload = {m}\n")).unwrap_or_default(),
                facts = facts.display().to_string(),
                classes = classes.display().to_string(),
                facts_toml = spec.facts_toml,
                security = spec.security.as_deref().unwrap_or("insecure = true\n"),
                extra = spec.extra_toml,
            );
        std::fs::write(&config, text).unwrap();
        let mut cmd = match &spec.netns {
            // `ip netns exec` execs the responder: the child's pid is the responder's.
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns])
                    .arg(bin_path("mco-responder"));
                cmd
            }
            None => Command::new(bin_path("mco-responder")),
        };
        cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
        if let Some(n) = spec.fleet {
            cmd.arg("--fleet").arg(n.to_string());
        }
        let child = ChildGuard::spawn(cmd);
        Responder {
            child,
            spec,
            config,
            dir,
        }
    }

    /// Starts the responder and waits until every identity it serves answers a ping.
    pub fn start(nats: &NatsServer, spec: ResponderSpec) -> Responder {
        let r = Responder::spawn(nats, spec);
        r.wait_ready(nats);
        r
    }

    /// Polls until every identity answers `mco ping`.
    pub fn wait_ready(&self, nats: &NatsServer) {
        wait_for_nodes(nats, &self.spec.identities(), &self.spec.collectives[0]);
    }

    /// The temp dir holding its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Polls until each of `ids` answers a direct ping in `collective`.
pub fn wait_for_nodes(nats: &NatsServer, ids: &[String], collective: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("nodes.txt");
    std::fs::write(&list, ids.join("\n")).unwrap();
    eventually(
        Duration::from_secs(30),
        "responders to answer pings",
        || {
            mco([
                "ping",
                "--nats",
                &nats.url(),
                "-T",
                collective,
                "--nodes",
                list.to_str().unwrap(),
                "-t",
                "1s",
            ])
            .status
                == 0
        },
    );
}
