//! Provisioning labs: a provisioning broker beside a [`SecureCollective`], node images that boot
//! into provisioning mode, a CA node hosting the `ca` agent, masters, the provisioner service run
//! as the real `mco provision run`, and a webhook receiver that records what it is sent.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::{bin_path, ChildGuard, Cmd, NatsServer, Responder, ResponderSpec, SecureCollective};

/// The bootstrap token every image ships.
pub const TOKEN: &str = "s3cret-bootstrap-token";

/// The callers the images' `provision.policy` allows to provision them (provisioning mode
/// denies by default, as every mode does): alice and bob, the labs' provisioners.
pub const PROVISIONERS: &str = "user:alice user:bob";

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

/// The provisioning broker, running the configuration `mco pki broker-config --provisioning`
/// writes: TLS with the collective's broker certificate, no client certificates, and the
/// bootstrap token as the password of user `provisioning`, confined to the provisioning subjects.
pub fn provisioning_broker(c: &SecureCollective) -> NatsServer {
    let token = c.scratch().join("broker-token");
    fs::write(&token, TOKEN).expect("the token file");
    let config = c
        .pki(&[
            "broker-config",
            "--provisioning",
            "--token-file",
            &s(&token),
        ])
        .stdout;
    NatsServer::builder().config_text(config).start()
}

/// Connects to the provisioning broker as a token holder does: TLS checked against the
/// collective's CA, and the token as user `provisioning`'s password.
///
/// # Panics
///
/// If the connection fails.
pub async fn connect(c: &SecureCollective, prov: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .add_root_certificates(c.pki_dir().join("ca.pem"))
        .require_tls(true)
        .user_and_password("provisioning".into(), TOKEN.to_string())
        .connect(format!("tls://127.0.0.1:{}", prov.port()))
        .await
        .expect("connect to the provisioning broker with the token")
}

/// Connects to the main collective's broker as `user`, with its certificate.
///
/// # Panics
///
/// If the connection fails.
pub async fn connect_main(c: &SecureCollective, user: &str) -> async_nats::Client {
    let pki = c.pki_dir();
    async_nats::ConnectOptions::new()
        .add_root_certificates(pki.join("ca.pem"))
        .add_client_certificate(
            pki.join(format!("{user}.pem")),
            pki.join(format!("{user}.key")),
        )
        .require_tls(true)
        .connect(c.url())
        .await
        .expect("connect to the main broker with a user certificate")
}

/// Runs `f` to its end on a runtime of its own.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Writes `key = value` into the registry bucket `bucket` on the main collective's broker (which
/// must exist), as an operator `user` (or whatever boots nodes with their certificate) would.
pub fn kv_put(c: &SecureCollective, user: &str, bucket: &str, key: &str, value: &str) {
    block_on(async {
        let client = connect_main(c, user).await;
        // What `nats kv put` does: a publish to the key's subject, acknowledged by JetStream.
        let ack = client
            .request(format!("$KV.{bucket}.{key}"), value.to_string().into())
            .await
            .expect("JetStream acknowledges the put");
        let ack: serde_json::Value = serde_json::from_slice(&ack.payload).expect("a JSON ack");
        assert!(ack.get("error").is_none(), "the put failed: {ack}");
    });
}

/// What a token holder gets when writing `key` into `bucket` as `nats kv put` would, on the
/// provisioning broker: the broker's refusal (or silence) as an error, or `Ok` if it was stored.
pub fn token_kv_put(
    c: &SecureCollective,
    prov: &NatsServer,
    bucket: &str,
    key: &str,
) -> Result<(), String> {
    block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(c.pki_dir().join("ca.pem"))
            .require_tls(true)
            .user_and_password("provisioning".into(), TOKEN.to_string())
            .event_callback(move |ev| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(ev.to_string());
                }
            })
            .connect(format!("tls://127.0.0.1:{}", prov.port()))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let asked = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.request(format!("$KV.{bucket}.{key}"), "by the token".into()),
        )
        .await;
        let mut events = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            events.push(ev);
        }
        match asked {
            Ok(Ok(ack)) => {
                let ack: serde_json::Value =
                    serde_json::from_slice(&ack.payload).unwrap_or_default();
                if ack.get("error").is_none() && ack.get("seq").is_some() {
                    Ok(())
                } else {
                    Err(format!("not stored: {ack} {events:?}"))
                }
            }
            Ok(Err(e)) => Err(format!("{e} {events:?}")),
            Err(_) => Err(format!("no answer {events:?}")),
        }
    })
}

/// The registry bucket's value for `key` on the main broker, read as `user`; `None` if absent.
pub fn kv_get(c: &SecureCollective, user: &str, bucket: &str, key: &str) -> Option<String> {
    block_on(async {
        let client = connect_main(c, user).await;
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value(bucket).await.expect("the registry bucket");
        kv.get(key)
            .await
            .expect("a registry read")
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    })
}

/// What a node's image ships: the CA certificate, the token, a hosts file, a `provision.policy`
/// allowing [`PROVISIONERS`] (in the collective's policy directory, unless one is there already),
/// and a config whose certificate paths do not exist yet, with a `[provisioning]` table.
#[derive(Debug, Clone)]
pub struct Image {
    /// The node's directory (state, ssl, hosts).
    pub dir: PathBuf,
    /// The responder to spawn.
    pub spec: ResponderSpec,
}

impl Image {
    /// An image for `identity` with `facts`, booting against the provisioning broker `prov`;
    /// `bootstrap` and `final_cmd` are TOML arrays (argv) or `[]`.
    pub fn new(
        c: &SecureCollective,
        prov: &NatsServer,
        identity: &str,
        facts: serde_json::Value,
        bootstrap: &str,
        final_cmd: &str,
    ) -> Image {
        Self::build(c, prov, identity, facts, bootstrap, final_cmd, None)
    }

    /// The image of a `--fleet n` responder named `base`: one shared config whose `{identity}`
    /// paths give each virtual node its own provisioning state, hosts file and certificate
    /// files (the CA and CRL are shared); no bootstrap command.
    pub fn fleet(
        c: &SecureCollective,
        prov: &NatsServer,
        base: &str,
        facts: serde_json::Value,
        n: usize,
    ) -> Image {
        Self::build(c, prov, base, facts, "[]", "[]", Some(n))
    }

    fn build(
        c: &SecureCollective,
        prov: &NatsServer,
        identity: &str,
        facts: serde_json::Value,
        bootstrap: &str,
        final_cmd: &str,
        fleet: Option<usize>,
    ) -> Image {
        // One node's own paths, or each virtual node's.
        let own = |single: &'static str, virtual_node: &'static str| {
            if fleet.is_some() {
                virtual_node
            } else {
                single
            }
        };
        let dir = c.scratch().join(identity);
        fs::create_dir_all(dir.join("ssl")).expect("the image's directory");
        fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("the token");
        fs::copy(c.pki_dir().join("ca.pem"), dir.join("shipped-ca.pem")).expect("the CA");
        fs::write(
            dir.join("hosts"),
            "127.0.0.1 localhost\n10.0.0.1 old-master puppet\n::1 ip6-localhost\n",
        )
        .expect("the hosts file");
        let policy = c.policy_dir().join("provision.policy");
        if !policy.exists() {
            fs::write(
                &policy,
                format!("policy default deny\nallow\t{PROVISIONERS}\t*\t*\t*\n"),
            )
            .expect("provision.policy");
        }
        let security = format!(
            "ca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\npolicy_dir = {pol:?}\ndefault_policy = \"deny\"\naudit_log = {audit:?}\n",
            audit = s(&dir.join("audit.jsonl")),
            ca = s(&dir.join("ssl/ca.pem")),
            cert = s(&dir.join(own("ssl/node.pem", "ssl/{identity}.pem"))),
            key = s(&dir.join(own("ssl/node.key", "ssl/{identity}.key"))),
            crl = s(&dir.join("ssl/ca.crl")),
            pol = s(c.policy_dir()),
        );
        let provisioning = format!(
            "[provisioning]\nservers = [\"tls://127.0.0.1:{port}\"]\ntoken_file = {token:?}\nca = {ca:?}\nstate_dir = {state:?}\nhosts_file = {hosts:?}\nbootstrap_command = {bootstrap}\nfinal_command = {final_cmd}\nbootstrap_timeout = \"20s\"\nsplay = \"0s\"\n",
            port = prov.port(),
            token = s(&dir.join("token")),
            ca = s(&dir.join("shipped-ca.pem")),
            state = s(&dir.join(own("state", "state/{identity}"))),
            hosts = s(&dir.join(own("hosts", "hosts-{identity}"))),
        );
        let mut spec = ResponderSpec::new(identity)
            .facts(facts)
            .secure(&security)
            .extra(&provisioning);
        if let Some(n) = fleet {
            spec = spec.fleet(n);
        }
        Image { dir, spec }
    }

    /// Boots the image: a responder that starts in provisioning mode.
    pub fn boot(&self, c: &SecureCollective) -> Responder {
        Responder::spawn(c.nats(), self.spec.clone())
    }

    /// The hosts file as the node has it now.
    pub fn hosts(&self) -> String {
        fs::read_to_string(self.dir.join("hosts")).expect("the hosts file")
    }

    /// The certificate `configure` wrote, if any.
    pub fn certificate(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("ssl/node.pem")).ok()
    }
}

/// Starts the CA node `ca-node` (which must be a spare node of `c`): rpcutil and `ca`, signing
/// with the collective's CA for names matching `allow_names`; `user` may call it.
pub fn ca_node(c: &SecureCollective, allow_names: &[&str], user: &str) -> Responder {
    ca_node_with(c, allow_names, user, "")
}

/// [`ca_node`], with `more` appended to its config (an `[inventory]` table, so that it
/// publishes the CRL after a revocation).
pub fn ca_node_with(
    c: &SecureCollective,
    allow_names: &[&str],
    user: &str,
    more: &str,
) -> Responder {
    let pki = c.pki_dir();
    fs::write(
        c.policy_dir().join("ca.policy"),
        format!("policy default deny\nallow\tuser:{user}\t*\t*\t*\n"),
    )
    .expect("ca.policy");
    let security = format!(
        "ca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\npolicy_dir = {pol:?}\ndefault_policy = \"deny\"\n",
        ca = s(&pki.join("ca.pem")),
        cert = s(&pki.join("ca-node.pem")),
        key = s(&pki.join("ca-node.key")),
        crl = s(&pki.join("ca.crl")),
        pol = s(c.policy_dir()),
    );
    let names: Vec<String> = allow_names.iter().map(|n| format!("{n:?}")).collect();
    let extra = format!(
        "[agents]\nenabled = [\"rpcutil\", \"ca\"]\n[plugin.ca]\ndir = {dir:?}\nallow_names = [{names}]\n{more}",
        dir = s(pki),
        names = names.join(", "),
    );
    let r = Responder::spawn(
        c.nats(),
        ResponderSpec::new("ca-node")
            .secure(&security)
            .extra(&extra),
    );
    c.wait_ready(&["ca-node".to_string()]);
    r
}

/// A client config for `user` on the provisioning broker; returns its path.
pub fn provisioning_client_config(c: &SecureCollective, prov: &NatsServer, user: &str) -> PathBuf {
    let pki = c.pki_dir();
    let dir = c.scratch().join(format!("prov-{user}"));
    fs::create_dir_all(&dir).expect("the provisioner's directory");
    fs::write(dir.join("token"), TOKEN).expect("the token");
    let cfg = dir.join("provisioning.toml");
    fs::write(
        &cfg,
        format!(
            "identity = {user:?}\ncollective = \"provisioning\"\n[discovery]\ntimeout = \"2s\"\nwindow = \"200ms\"\n[nats]\nservers = [{url:?}]\ntoken_file = {token:?}\nuser = \"provisioning\"\n[security]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
            url = format!("tls://127.0.0.1:{}", prov.port()),
            token = s(&dir.join("token")),
            ca = s(&pki.join("ca.pem")),
            cert = s(&pki.join(format!("{user}.pem"))),
            key = s(&pki.join(format!("{user}.key"))),
        ),
    )
    .expect("the provisioning client config");
    cfg
}

/// The provisioner service, `mco provision run`, as a child process.
pub struct Provisioner {
    /// The process.
    pub child: ChildGuard,
    /// Its config file.
    pub config: PathBuf,
}

impl Provisioner {
    /// Writes `provisioner.toml` for `user` (main and provisioning client configs made here)
    /// with `body` appended, and returns its path.
    pub fn configure(c: &SecureCollective, prov: &NatsServer, user: &str, body: &str) -> PathBuf {
        let dir = c.scratch().join(format!("prov-{user}"));
        let prov_cfg = provisioning_client_config(c, prov, user);
        let main_cfg = c.client_config_with(
            user,
            "main-for-provisioner.toml",
            "[discovery]\ntimeout = \"2s\"\nwindow = \"200ms\"",
        );
        let path = dir.join("provisioner.toml");
        fs::write(
            &path,
            format!(
                "main_config = {main:?}\nprovisioning_config = {pc:?}\nstate_file = {state:?}\n{body}",
                main = s(&main_cfg),
                pc = s(&prov_cfg),
                state = s(&dir.join("state.jsonl")),
            ),
        )
        .expect("provisioner.toml");
        path
    }

    /// Starts `mco provision run --config CONFIG`.
    pub fn start(config: &Path) -> Provisioner {
        let mut cmd = Command::new(bin_path("mco"));
        cmd.arg("provision")
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("MCO_LOG", "info")
            .env(
                "XDG_CACHE_HOME",
                config.parent().expect("a parent").join("cache"),
            );
        Provisioner {
            child: ChildGuard::spawn(cmd),
            config: config.to_path_buf(),
        }
    }

    /// `mco provision status --json`: node → record.
    pub fn status(config: &Path) -> serde_json::Map<String, serde_json::Value> {
        let out = Cmd::mco()
            .args(["provision", "status", "--json", "--config"])
            .arg(config)
            .run();
        assert_eq!(out.status, 0, "{out:?}");
        match out.stdout_json() {
            serde_json::Value::Object(m) => m,
            other => panic!("status is not an object: {other:?}"),
        }
    }

    /// How many records have `status`.
    pub fn count(config: &Path, status: &str) -> usize {
        Self::status(config)
            .values()
            .filter(|r| r["status"] == status)
            .count()
    }
}

/// An HTTP server on a free loopback port that answers 204 to every POST and keeps the bodies
/// (parsed as JSON); it stops with the process.
#[derive(Clone)]
pub struct Webhook {
    /// `http://127.0.0.1:PORT/events`.
    pub url: String,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    /// Starts the server thread.
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!(
            "http://{}/events",
            listener.local_addr().expect("an address")
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &sink);
                });
            }
        });
        Webhook { url, events }
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().expect("the event list").clone()
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    sink: &Mutex<Vec<serde_json::Value>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    if let Ok(v) = serde_json::from_slice(&body) {
        sink.lock().expect("the event list").push(v);
    }
    let mut w = stream;
    w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Ok(())
}

/// A master: a normal signed member of the main collective with class `puppet::master`.
pub fn master(c: &SecureCollective, name: &str, region: &str, ip: &str, load: u32) -> Responder {
    master_with(c, name, region, ip, load, "")
}

/// A master with `extra` TOML in its config.
pub fn master_with(
    c: &SecureCollective,
    name: &str,
    region: &str,
    ip: &str,
    load: u32,
    extra: &str,
) -> Responder {
    let pki = c.pki_dir();
    let security = format!(
        "ca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\npolicy_dir = {pol:?}\ndefault_policy = \"deny\"\n",
        ca = s(&pki.join("ca.pem")),
        cert = s(&pki.join(format!("{name}.pem"))),
        key = s(&pki.join(format!("{name}.key"))),
        crl = s(&pki.join("ca.crl")),
        pol = s(c.policy_dir()),
    );
    let r = Responder::spawn(
        c.nats(),
        ResponderSpec::new(name)
            .facts(json!({"region": region, "ipaddress": ip, "load": load}))
            .classes(&["puppet::master"])
            .secure(&security)
            .extra(extra),
    );
    c.wait_ready(&[name.to_string()]);
    r
}

/// Entries of the CA's index for `name`: (serial, revoked).
pub fn issued(c: &SecureCollective, name: &str) -> Vec<(String, bool)> {
    let index: Value =
        serde_json::from_str(&fs::read_to_string(c.pki_dir().join("index.json")).unwrap()).unwrap();
    index["certs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| {
            (
                e["serial"].as_str().unwrap().to_string(),
                !e["revoked_at"].is_null(),
            )
        })
        .collect()
}
