//! The client's connection to the bus and the request it builds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use std::sync::Arc;

use mco_core::config::{expand_home, ClientConfig};
use mco_core::limits::TARGETS_PER_BODY;
use mco_core::wire::{new_request_id, now_ms, Envelope, Kind, RequestBody};
use mco_core::{subject, Filter, Target};
use mco_security::{Credentials, TrustStore};
use serde_json::{Map, Value};

use crate::error::ClientError;
use crate::verify::Opener;

/// A connected client with its caller identity.
pub struct Bus {
    /// The NATS connection.
    pub client: Client,
    /// `user:NAME`.
    pub caller: String,
    /// The sending client's identity.
    pub sender: String,
    /// Message size bound.
    pub max_payload: usize,
    /// Request TTL.
    pub ttl: Duration,
    /// Our key and certificate; `None` in insecure mode.
    pub creds: Option<Credentials>,
    /// How replies are opened and checked.
    pub opener: Opener,
    /// The call's known keys are being prepared since connecting.
    warming: bool,
    /// How often the connection to the broker was lost since connecting.
    lost: Arc<AtomicU32>,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub enum To<'a> {
    /// To every node hosting its agent that its filter selects.
    Broadcast,
    /// To these nodes, each on its own subject.
    Nodes(&'a [String]),
}

/// The PKI directory `mco pki` writes by default.
pub const DEFAULT_PKI_DIR: &str = "~/.config/mco/pki";

fn pki_default(given: &Option<std::path::PathBuf>, file: &str) -> std::path::PathBuf {
    given
        .clone()
        .unwrap_or_else(|| expand_home(&format!("{DEFAULT_PKI_DIR}/{file}")))
}

/// Where this caller keeps the node certificates it has checked:
/// `$XDG_CACHE_HOME/mco/IDENTITY.known` (default `~/.cache/mco/`).
pub fn known_path(identity: &str) -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| expand_home("~/.cache"));
    base.join("mco").join(format!("{identity}.known"))
}

const KNOWN_PURPOSE: &str = "known certificates";

/// Prepares the known keys of `nodes` on a spare thread: turning a key into
/// a curve point costs microseconds each, a fleet's worth milliseconds.
/// Keys not ready when their reply is checked are prepared then, so this
/// changes only when the work is done. Returns whether a thread was started
/// (not for a few nodes).
fn warm_keys(trust: &Arc<TrustStore>, nodes: &[String]) -> bool {
    const WORTH_A_THREAD: usize = 32;
    if nodes.len() < WORTH_A_THREAD {
        return false;
    }
    let trust = trust.clone();
    let names: std::collections::HashSet<String> =
        nodes.iter().map(|n| format!("node:{n}")).collect();
    std::thread::spawn(move || trust.warm_known_matching(|name| names.contains(name)));
    true
}

/// Loads the known-certificates file; a missing, stale or altered one is
/// ignored (the certificates are then checked against the CA again).
fn load_known(trust: &TrustStore, creds: &Credentials, identity: &str) {
    let path = known_path(identity);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Err(why) = trust.import_known(&bytes, &creds.derive_secret(KNOWN_PURPOSE)) {
            tracing::debug!("{}: ignored: {why}", path.display());
        }
    }
}

/// Writes the known-certificates file (0600, atomically, in a 0700
/// directory) if this run checked new certificates.
fn save_known(trust: &TrustStore, creds: &Credentials, identity: &str) {
    if !trust.learned_any() {
        return;
    }
    let path = known_path(identity);
    let bytes = trust.export_known(
        &creds.derive_secret(KNOWN_PURPOSE),
        mco_core::wire::now_ms() as i64 / 1000,
    );
    if let Err(e) = mco_pki::write_private(&path, &bytes) {
        tracing::debug!("{}: not saved: {e}", path.display());
    }
}

impl Bus {
    /// The server this client is on, as it announced itself: `NAME (HOST:PORT, cluster C)`,
    /// with the number of reconnections when there were any.
    pub fn server(&self) -> String {
        let info = self.client.server_info();
        let name = if info.server_name.is_empty() {
            info.server_id.clone()
        } else {
            info.server_name.clone()
        };
        let mut text = format!("{name} ({}:{}", info.host, info.port);
        if let Some(cluster) = info.cluster.as_deref().filter(|c| !c.is_empty()) {
            text.push_str(&format!(", cluster {cluster}"));
        }
        text.push(')');
        let lost = self.lost.load(Ordering::Relaxed);
        if lost > 0 {
            text.push_str(&format!(", connection lost {lost} time(s)"));
        }
        text
    }

    /// Connects, failing fast with a clear error if no broker answers.
    pub async fn connect(cfg: &ClientConfig) -> Result<Bus, ClientError> {
        Bus::connect_for(cfg, &[]).await
    }

    /// Connects as [`connect`](Self::connect) for a call to `nodes`, known
    /// before connecting (a nodes file, `-I` identities): their known keys
    /// are prepared on a spare thread while the connection is made, when a
    /// core is otherwise idle, instead of while the replies come in.
    pub async fn connect_for(cfg: &ClientConfig, nodes: &[String]) -> Result<Bus, ClientError> {
        let servers = cfg.nats.servers.join(", ");
        let sec = &cfg.security;
        let mut options = ConnectOptions::new();
        let mut warming = false;
        let (creds, trust) = if sec.insecure {
            eprintln!("mco: INSECURE MODE: requests are not signed and replies are not verified; use this only for throw-away demos");
            (None, None)
        } else {
            let ca = pki_default(&sec.ca, "ca.pem");
            let cert = pki_default(&sec.cert, &format!("{}.pem", cfg.identity));
            let key = pki_default(&sec.key, &format!("{}.key", cfg.identity));
            let crl = sec.crl.clone().or_else(|| {
                let p = expand_home(&format!("{DEFAULT_PKI_DIR}/ca.crl"));
                p.exists().then_some(p)
            });
            let creds = Credentials::load(&cert, &key).map_err(|e| {
                ClientError::Verification(format!(
                    "{e}\n(issue a certificate with `mco pki issue {} --kind user`, set [security] cert/key, or `insecure = true` for a demo)",
                    cfg.identity
                ))
            })?;
            if creds.name() != format!("user:{}", cfg.identity) {
                return Err(ClientError::Verification(format!(
                    "{}: the certificate is for {:?}, but this client is user:{}",
                    cert.display(),
                    creds.name(),
                    cfg.identity
                )));
            }
            let trust = TrustStore::load(&ca, crl.as_deref())
                .map_err(|e| ClientError::Verification(e.to_string()))?;
            load_known(&trust, &creds, &cfg.identity);
            let trust = Arc::new(trust);
            warming = sec.sign && warm_keys(&trust, nodes);
            options = options
                .add_root_certificates(ca)
                .add_client_certificate(cert, key)
                .require_tls(true);
            if sec.sign {
                (Some(creds), Some(trust))
            } else {
                eprintln!("mco: UNSIGNED MODE (security.sign = false): TLS to the broker is on, but requests are not signed and replies are not verified; use this only to measure what signing costs");
                (None, None)
            }
        };
        // JetStream's answers (reading the inventory registry) come under this caller's own
        // inbox prefix, the only one the broker lets it subscribe to.
        options = options.custom_inbox_prefix(mco_core::subject::inbox_prefix(&format!(
            "user:{}",
            cfg.identity
        )));
        if cfg.nats.servers_in_order {
            options = options.retain_servers_order();
        }
        if let Some(path) = &cfg.nats.token_file {
            let token = std::fs::read_to_string(path).map_err(|e| {
                ClientError::Verification(format!("nats.token_file {}: {e}", path.display()))
            })?;
            let token = token.trim().to_string();
            options = match &cfg.nats.user {
                Some(user) => options.user_and_password(user.clone(), token),
                None => options.token(token),
            };
        }
        let lost = Arc::new(AtomicU32::new(0));
        let seen = lost.clone();
        // Spreads the reconnections of many clients losing the same server.
        let seed = u64::from(std::process::id()) ^ now_ms();
        let client = options
            .name(format!("mco {}", cfg.identity))
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Disconnected) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                async {}
            })
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(cfg.nats.ping_interval)
            .reconnect_delay_callback(move |attempt| {
                mco_core::backoff::Backoff::default().reconnect_delay(attempt, seed, false)
            })
            .subscription_capacity(65_536)
            .connect(cfg.nats.servers.as_slice())
            .await
            .map_err(|e| ClientError::Connect {
                servers,
                source: Box::new(e),
            })?;
        Ok(Bus {
            client,
            caller: format!("user:{}", cfg.identity),
            sender: cfg.identity.clone(),
            max_payload: cfg.nats.max_payload,
            ttl: cfg.ttl,
            creds,
            warming,
            lost,
            opener: Opener {
                trust,
                max_payload: cfg.nats.max_payload,
                pins: None,
            },
        })
    }

    /// Writes what this connection learnt for the next run: the node
    /// certificates it checked (the known-certificates file) and the key
    /// pins it made. Called explicitly when a session ends
    /// ([`crate::session::Session::close`]), never from `Drop`, so that a
    /// failure to save is said once, where it can be acted on.
    pub fn save_caches(&self) {
        if let (Some(trust), Some(creds)) = (&self.opener.trust, &self.creds) {
            save_known(trust, creds, &self.sender);
        }
        if let Some(pins) = &self.opener.pins {
            if let Err(e) = pins.save() {
                tracing::warn!("key pins not saved: {e}");
            }
        }
    }

    /// Accepts replies signed by bare node keys, checked against `pins`:
    /// what talking to the `provisioning` collective needs.
    pub fn with_pins(mut self, pins: Arc<crate::pins::KeyPins>) -> Bus {
        self.opener.pins = Some(pins);
        self
    }

    /// How often the connection to the broker has been lost since
    /// connecting: a call compares it before and after, since replies
    /// published while the client was away are gone (the client reconnects
    /// on its own and keeps waiting for the rest).
    pub fn times_lost(&self) -> u32 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Prepares the known keys of `nodes` on a spare thread, while the
    /// request goes out and the first replies come back, unless that was
    /// started when connecting ([`connect_for`](Self::connect_for)).
    pub fn warm_keys(&self, nodes: &[String]) {
        if let (Some(trust), false) = (&self.opener.trust, self.warming) {
            warm_keys(trust, nodes);
        }
    }

    /// Signs `req` for where it goes and publishes it, then flushes, all by
    /// `deadline` (a broker that went away would otherwise keep the flush
    /// waiting for a reconnection well past the call's timeout).
    ///
    /// This is the one way a request leaves the client. The body is bound
    /// to its target ([`mco_core::binding`]): a broadcast is signed for the
    /// agent's broadcast subject; a request to named nodes is signed for
    /// them, [`TARGETS_PER_BODY`] identities per signature, and published on
    /// each one's own subject. Either way replies are signed to go to
    /// [`reply_subject`](Self::reply_subject).
    pub async fn send(
        &self,
        req: &RequestBody,
        to: To<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClientError> {
        let reply_to = self.reply_subject(req);
        let mut batches: Vec<(Vec<String>, bytes::Bytes)> = Vec::new();
        match to {
            To::Broadcast => {
                let mut body = req.clone();
                body.bind(Target::Broadcast);
                let subject = subject::broadcast(&req.collective, &req.agent);
                batches.push((vec![subject], self.encode(&body)?));
            }
            To::Nodes(nodes) => {
                for group in nodes.chunks(TARGETS_PER_BODY) {
                    let mut body = req.clone();
                    body.bind(Target::Nodes(group.to_vec()));
                    let subjects = group
                        .iter()
                        .map(|n| subject::node(&req.collective, n))
                        .collect();
                    batches.push((subjects, self.encode(&body)?));
                }
            }
        }
        let started = tokio::time::Instant::now();
        let publish = async {
            for (subjects, payload) in &batches {
                for subject in subjects {
                    self.client
                        .publish_with_reply(subject.clone(), reply_to.clone(), payload.clone())
                        .await
                        .map_err(|e| ClientError::bus("publishing the request", e))?;
                }
            }
            self.client
                .flush()
                .await
                .map_err(|e| ClientError::bus("flushing the request", e))
        };
        tokio::time::timeout_at(deadline, publish)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout(format!(
                    "the broker did not take the request within {:.1}s: the connection to it is lost or it stopped answering",
                    deadline.saturating_duration_since(started).as_secs_f64()
                )))
            })
    }

    /// A new request body, not yet bound to a target ([`send`](Self::send)
    /// binds it).
    pub fn request(
        &self,
        collective: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        filter: Filter,
    ) -> RequestBody {
        RequestBody {
            id: new_request_id(),
            sender: self.sender.clone(),
            caller: self.caller.clone(),
            collective: collective.to_string(),
            agent: agent.to_string(),
            action: action.to_string(),
            data,
            filter,
            ttl_s: self.ttl.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
            time_ms: now_ms(),
            target: None,
            reply_to: None,
        }
    }

    /// The envelope bytes of a request, checked against the size bound.
    pub fn encode(&self, req: &RequestBody) -> Result<bytes::Bytes, ClientError> {
        let body = req.encode();
        let bytes = match &self.creds {
            Some(c) => c.seal(Kind::Request, body).encode(),
            None => Envelope::unsigned(Kind::Request, body).encode(),
        };
        if bytes.len() > self.max_payload {
            return Err(ClientError::Usage(format!(
                "the request is {} bytes, over the {} byte bound (nats.max_payload)",
                bytes.len(),
                self.max_payload
            )));
        }
        Ok(bytes.into())
    }

    /// Where replies to `req` come back.
    pub fn reply_subject(&self, req: &RequestBody) -> String {
        subject::reply(&req.collective, &self.caller, &req.id)
    }
}
