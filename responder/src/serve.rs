//! One node's life on the bus: connect, subscribe, take requests, reply.
//!
//! The subscription loop only decodes and filters — cheap, synchronous work —
//! and hands each selected request to a task holding a concurrency slot.
//! When no slot is free the node answers `busy` at once instead of queueing.
//!
//! Which check happens where, in order (a refusal before dispatch gets no
//! reply, only a `dropped.REASON` counter in `rpcutil daemon_stats` and, for
//! a security check, a log line):
//!
//! | step | where | refuses |
//! |---|---|---|
//! | size, version, kind | `decode` (`Envelope::decode`) | `oversized`, `bad_version`, `wrong_kind` |
//! | body, depth, lengths | `decode` (`Envelope::request`) | `undecodable` |
//! | certificate, signature, caller | `decode` (`TrustStore::verify`) | `bad_certificate`, `untrusted_certificate`, `bad_signature`, `name_mismatch`, … |
//! | TTL, collective, `max_ttl` | `decode` | `expired`, `wrong_collective`, `ttl_too_long` |
//! | binding: target, subject, reply subject | `bound_reply` | `unbound`, `wrong_target`, `reply_mismatch`, `no_reply_to` |
//! | filter (compile, then match) | `handle` | `bad_filter`; no match is silence |
//! | replay | `remember` (after the filter) | `replay`, `replay_cache_full` |
//! | concurrency slot | `handle` | a `busy` reply |
//! | agent hosted, policy, action known, DDL inputs | `crate::dispatch` | a reply with status 2, 1, 2, or 3/4 |
//! | the action, under its DDL timeout | `crate::dispatch` | a reply with its status |
//! | audit line, reply signed and published | `crate::dispatch`, `publish` | — |

use std::sync::Arc;

use async_nats::{Client, ConnectOptions, Message};
use futures::stream::{SelectAll, StreamExt};
use mco_core::backoff::Backoff;
use mco_core::binding::Delivery;
use mco_core::subject;
use mco_core::wire::{now_ms, Envelope, Kind, ReplyBody, RequestBody, Status, WireError};
use mco_security::{SecurityError, Seen};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::dispatch::dispatch;
use crate::node::{NodeState, View};
use crate::stats::DropReason;

/// Connection settings shared by every node of a process.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Broker URLs.
    pub servers: Vec<String>,
    /// Message size bound.
    pub max_payload: usize,
    /// How often the connection is pinged (a silent broker is left after two missed pings).
    pub ping_interval: std::time::Duration,
    /// Try the servers in the order given rather than at random.
    pub servers_in_order: bool,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// Messages buffered per subscription before the broker marks us slow.
    pub subscription_capacity: usize,
    /// TLS with a client certificate: CA, certificate and key files.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    /// Initial size of each connection's read buffer; it grows for larger messages.
    pub read_buffer: u16,
    /// A CA to check the broker's TLS certificate with, without a client
    /// certificate (provisioning mode, before the node has one).
    pub server_ca: Option<std::path::PathBuf>,
    /// A NATS token to authenticate with.
    pub token: Option<String>,
    /// With `token`: the NATS user it is the password of (the provisioning
    /// broker's [`mco_core::provisioning::BROKER_USER`]); without, a plain token.
    pub user: Option<String>,
}

/// A number that spreads nodes by identity (FNV-1a): the seed of a node's reconnection jitter
/// and of when it rewrites its registry entry, so that nodes started together do not act in
/// step.
pub(crate) fn identity_seed(identity: &str) -> u64 {
    identity.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Connects one node, retrying for ever with jittered backoff.
pub async fn connect(
    opts: &BusOptions,
    identity: &str,
) -> Result<Client, async_nats::ConnectError> {
    let backoff = opts.backoff;
    let seed = identity_seed(identity);
    let who = identity.to_string();
    // Set once the connection is up: see the end of this function.
    let up = std::sync::Arc::new(tokio::sync::Notify::new());
    let up_event = up.clone();
    let mut options = ConnectOptions::new();
    if let Some((ca, cert, key)) = &opts.tls {
        options = options
            .add_root_certificates(ca.clone())
            .add_client_certificate(
                crate::security::for_identity(cert, identity),
                crate::security::for_identity(key, identity),
            )
            .require_tls(true);
    } else if let Some(ca) = &opts.server_ca {
        // The provisioning broker: its token must never travel in clear,
        // not even to a server learnt from the cluster or on a reconnect.
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    // JetStream's answers (the registry's acknowledgements) come under the node's own inbox
    // prefix, the only one the broker lets it subscribe to.
    options = options.custom_inbox_prefix(subject::inbox_prefix(&format!("node:{identity}")));
    if opts.servers_in_order {
        options = options.retain_servers_order();
    }
    match (&opts.user, &opts.token) {
        (Some(user), Some(token)) => {
            options = options.user_and_password(user.clone(), token.clone());
        }
        (None, Some(token)) => options = options.token(token.clone()),
        _ => {}
    }
    let client = options
        .name(format!("mco-responder {identity}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(opts.ping_interval)
        .subscription_capacity(opts.subscription_capacity)
        .read_buffer_capacity(opts.read_buffer)
        .reconnect_delay_callback(move |attempt| backoff.reconnect_delay(attempt, seed, true))
        .event_callback(move |event| {
            let who = who.clone();
            let up = up_event.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        up.notify_one();
                        info!(node = %who, "connected to the broker")
                    }
                    async_nats::Event::Disconnected => {
                        warn!(node = %who, "lost the broker; reconnecting")
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        warn!(node = %who, sid, "slow consumer: the broker dropped messages for us")
                    }
                    other => debug!(node = %who, "bus event: {other}"),
                }
            }
        })
        .connect(opts.servers.as_slice())
        .await?;
    // The client returns at once and connects in the background; waiting here (within a bound)
    // for the connection, TLS handshake included, is what makes "so many connections set up at
    // once" true when a fleet starts, instead of every node's handshake queueing at the broker
    // together.
    let _ = tokio::time::timeout(CONNECTED_WAIT, up.notified()).await;
    Ok(client)
}

/// The longest [`connect`] waits for the connection to come up before handing the client back
/// (it keeps trying in the background): a broker down at start costs a node this much once.
const CONNECTED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The subjects one node listens on.
pub fn subjects(node: &NodeState) -> Vec<String> {
    let mut out = Vec::new();
    for c in &node.collectives {
        out.push(subject::node(c, &node.identity));
        for agent in node.registry.names() {
            out.push(subject::broadcast(c, agent));
        }
    }
    out
}

/// Serves `node` on `client` until `shutdown` turns true, then waits for
/// in-flight actions up to `grace`.
pub async fn serve(
    client: Client,
    node: Arc<NodeState>,
    max_payload: usize,
    mut shutdown: watch::Receiver<bool>,
    grace: std::time::Duration,
) -> Result<(), async_nats::SubscribeError> {
    node.attach_bus(&client);
    let mut subs = SelectAll::new();
    for s in subjects(&node) {
        subs.push(client.subscribe(s).await?);
    }
    announce(&client, &node, max_payload).await;
    // A node in provisioning mode has no certificate to sign an entry with, nor a broker
    // that keeps the registry.
    let provisioning = node
        .security
        .as_ref()
        .is_some_and(|s| !matches!(s.signer, crate::security::Signer::Cert(_)));
    // One watcher of the published CRL per process: the trust store is the process's.
    if let (Some(cfg), Some(sec)) = (node.inventory.as_ref(), node.security.as_ref()) {
        if cfg.watch_crl && !provisioning && node.fleet_index().unwrap_or(0) == 0 {
            tokio::spawn(crate::crl_watch::watch(
                client.clone(),
                sec.trust.clone(),
                cfg.crl_bucket.clone(),
                shutdown.clone(),
            ));
        }
    }
    if let Some(cfg) = node.inventory.clone().filter(|_| !provisioning) {
        tokio::spawn(crate::inventory::keep(
            client.clone(),
            node.clone(),
            cfg,
            shutdown.clone(),
        ));
    }
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            msg = subs.next() => match msg {
                Some(msg) => handle(&client, &node, max_payload, msg),
                None => break,
            },
        }
    }
    // Stop taking requests, then let in-flight ones finish. Every step is
    // bounded: with the broker gone, an unsubscribe or flush would wait for a
    // reconnection that may never come.
    let bound = std::time::Duration::from_secs(2);
    drop(
        tokio::time::timeout(bound, async {
            for mut s in subs.into_iter() {
                let _ = s.unsubscribe().await;
            }
        })
        .await,
    );
    let max = node.max_concurrent as u32;
    if tokio::time::timeout(grace, node.slots.acquire_many(max))
        .await
        .is_err()
    {
        warn!(node = %node.identity, "shutdown grace period over with actions still running");
    }
    drop(tokio::time::timeout(bound, client.flush()).await);
    Ok(())
}

/// In provisioning mode, tells a provisioner at once that this node is
/// waiting: a key-signed envelope on `provisioning.registration.IDENTITY`
/// whose body is a reply body (`request_id` `"registration"`, `message`
/// `"provisioning"`, `data` `{identity, public_key, facts}`), so a
/// provisioner opens it with the same pinned-key checks as any reply.
async fn announce(client: &Client, node: &NodeState, max_payload: usize) {
    use mco_core::agent::NodeInfo;
    let Some(sec) = &node.security else { return };
    let crate::security::Signer::Key(key) = &sec.signer else {
        return;
    };
    let mut data = serde_json::Map::new();
    data.insert("identity".into(), node.identity.clone().into());
    data.insert("public_key".into(), key.public_hex().into());
    data.insert(
        "facts".into(),
        serde_json::Value::Object((*node.facts()).clone()),
    );
    let body = ReplyBody {
        request_id: "registration".into(),
        sender: node.identity.clone(),
        status: Status::Ok,
        message: "provisioning".into(),
        data,
        time_ms: now_ms(),
        elapsed_us: 0,
    };
    let bytes = sec.signer.seal(Kind::Reply, body.encode()).encode();
    if bytes.len() > max_payload {
        warn!(node = %node.identity, "the provisioning announcement is over the payload bound; not sent");
        return;
    }
    for c in &node.collectives {
        let subject = subject::registration(c, &node.identity);
        if let Err(e) = client.publish(subject, bytes.clone().into()).await {
            warn!(node = %node.identity, "could not announce: {e}");
        }
    }
}

fn refuse(node: &NodeState, why: DropReason, detail: &dyn std::fmt::Display) {
    node.stats.dropped(why);
    if node.security.is_some() && why.is_security_check() {
        warn!(node = %node.identity, reason = why.name(), "refused a request: {detail}");
    } else {
        debug!(node = %node.identity, reason = why.name(), "dropped a message: {detail}");
    }
}

/// Decodes, checks and filters one message; spawns the action if selected.
fn handle(client: &Client, node: &Arc<NodeState>, max_payload: usize, msg: Message) {
    node.stats.seen();
    let mut req = match decode(&msg, max_payload, node) {
        Ok(r) => r,
        Err((why, detail)) => return refuse(node, why, &detail),
    };
    let reply_to = match bound_reply(&msg, node, &req) {
        Ok(r) => r,
        Err((why, detail)) => return refuse(node, why, &detail),
    };
    // The binding held: the target's list of names (up to 64 per body) is not needed again, and
    // a fleet holds thousands of requests in flight at once.
    req.target = None;
    drop(msg);
    let filter = match req.filter.compile() {
        Ok(f) => f,
        Err(e) => return refuse(node, DropReason::BadFilter, &e),
    };
    if !filter.matches(&View::of(node)) {
        node.stats.filtered();
        return;
    }
    if let Err((why, detail)) = remember(node, &req) {
        return refuse(node, why, &detail);
    }
    let client = client.clone();
    let node = node.clone();
    match node.slots.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let reply = dispatch(node.clone(), req).await;
                drop(permit);
                publish(&client, &node, max_payload, reply_to, reply).await;
            });
        }
        Err(_) => {
            node.stats.busy();
            warn!(node = %node.identity, "busy: all {} action slots in use", node.max_concurrent);
            let reply = ReplyBody {
                request_id: req.id,
                sender: node.identity.clone(),
                status: Status::Aborted,
                message: format!("busy: all {} action slots are in use", node.max_concurrent),
                data: Default::default(),
                time_ms: now_ms(),
                elapsed_us: 0,
            };
            node.stats.failed();
            tokio::spawn(
                async move { publish(&client, &node, max_payload, reply_to, reply).await },
            );
        }
    }
}

/// Where to answer `req`: the reply subject it was signed with, once the
/// binding holds for this delivery (this node, this subject, this reply
/// subject). A secure node refuses an unbound request; an insecure one
/// answers it on the message's reply subject, as protocol v1 did.
fn bound_reply(
    msg: &Message,
    node: &NodeState,
    req: &RequestBody,
) -> Result<async_nats::Subject, (DropReason, String)> {
    if req.is_unbound() && node.security.is_none() {
        return msg.reply.clone().ok_or((
            DropReason::NoReplyTo,
            "request without a reply subject".to_string(),
        ));
    }
    let delivery = Delivery {
        subject: msg.subject.as_str(),
        reply: msg.reply.as_ref().map(|r| r.as_str()),
        identity: &node.identity,
    };
    match req.check_binding(&delivery) {
        Ok(reply) => Ok(async_nats::Subject::from(reply)),
        Err(e) => Err((DropReason::from(&e), e.to_string())),
    }
}

fn decode(
    msg: &Message,
    max_payload: usize,
    node: &NodeState,
) -> Result<RequestBody, (DropReason, String)> {
    let wire = |e: WireError| {
        let why = match e {
            WireError::Oversized { .. } => DropReason::Oversized,
            WireError::Decode(_) => DropReason::Undecodable,
            WireError::Version(_) => DropReason::BadVersion,
            WireError::WrongKind { .. } => DropReason::WrongKind,
            WireError::Expired { .. } => DropReason::Expired,
        };
        (why, e.to_string())
    };
    let env = Envelope::decode(&msg.payload, max_payload, Kind::Request).map_err(wire)?;
    let req = env.request().map_err(wire)?;
    let now = now_ms();
    if let Some(sec) = &node.security {
        let refuse = |e: SecurityError| (DropReason::from(&e), e.to_string());
        let signer = sec
            .trust
            .get()
            .verify(&env, (now / 1000) as i64)
            .map_err(refuse)?;
        if !signer.is_user() {
            return Err(refuse(SecurityError::WrongPrincipal(signer.name.clone())));
        }
        if signer.name != req.caller {
            return Err(refuse(SecurityError::NameMismatch {
                claimed: req.caller.clone(),
                signer: signer.name.clone(),
            }));
        }
    }
    req.check_ttl(now).map_err(wire)?;
    let on_subject = msg.subject.split('.').next().unwrap_or_default();
    if req.collective != on_subject || !node.collectives.contains(&req.collective) {
        return Err((
            DropReason::WrongCollective,
            format!("collective {:?} on subject {}", req.collective, msg.subject),
        ));
    }
    if let Some(sec) = &node.security {
        if req.ttl_s > sec.max_ttl_s {
            return Err((
                DropReason::TtlTooLong,
                format!(
                    "a TTL of {}s is over this node's max_ttl of {}s",
                    req.ttl_s, sec.max_ttl_s
                ),
            ));
        }
    }
    Ok(req)
}

/// Remembers a request this node is about to act on, refusing a replay; a
/// full cache (or the caller's full share of it) refuses rather than forgets.
/// Called only once the request is known to select this node, so requests
/// that act nowhere cost no node a place in its cache.
fn remember(node: &NodeState, req: &RequestBody) -> Result<(), (DropReason, String)> {
    let Some(sec) = &node.security else {
        return Ok(());
    };
    match sec
        .replay
        .check_and_insert(&req.caller, &req.id, req.expires_ms(), now_ms())
    {
        Seen::New => Ok(()),
        Seen::Replay => {
            let e = SecurityError::Replay(req.id.clone());
            Err((DropReason::from(&e), e.to_string()))
        }
        Seen::Full => Err((
            DropReason::ReplayCacheFull,
            format!(
                "the replay cache holds as many live request ids as it may for {} (at most {} each, {} in all); refusing new ones until some expire",
                req.caller,
                sec.replay.share(),
                sec.replay.len()
            ),
        )),
    }
}

async fn publish(
    client: &Client,
    node: &NodeState,
    max_payload: usize,
    to: async_nats::Subject,
    mut reply: ReplyBody,
) {
    let seal = |body: Vec<u8>| match &node.security {
        Some(sec) => sec.signer.seal(Kind::Reply, body).encode(),
        None => Envelope::unsigned(Kind::Reply, body).encode(),
    };
    let mut bytes = seal(reply.encode());
    if bytes.len() > max_payload {
        let size = bytes.len();
        reply.status = Status::UnknownError;
        reply.message = format!("reply of {size} bytes is over the {max_payload} byte bound");
        reply.data = Default::default();
        warn!(node = %node.identity, "{}", reply.message);
        bytes = seal(reply.encode());
    }
    match client.publish(to, bytes.into()).await {
        Ok(()) => node.stats.replied(),
        Err(e) => warn!(node = %node.identity, "could not publish a reply: {e}"),
    }
}
