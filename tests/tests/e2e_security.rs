//! Message security against a real secure collective (ARCHITECTURE.md §7): a CA made with `mco pki`, a TLS
//! nats-server running `mco pki broker-config`, a signing responder, and hostile messages sent by
//! a legitimate user's connection. Every refused message must take no action (no reply, no
//! success counted, no audit line) and count exactly one drop under its own reason.
//!
//! Also the broker's side (who may connect, who may listen where) and the client's side (a reply
//! that does not verify counts as no reply).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use mco_client::verify::{Opener, Rejected};
use mco_core::subject;
use mco_core::wire::{new_request_id, now_ms, DEFAULT_MAX_PAYLOAD};
use mco_core::{Envelope, Filter, Kind, ReplyBody, RequestBody, Status, Target};
use mco_pki::{Ca, CaOptions, IssueOptions, Kind as CertKind};
use mco_security::{Credentials, TrustStore};
use mco_tests::replies::replies;
use mco_tests::secure::COLLECTIVE as C;
use mco_tests::{eventually, tls_connect, ResponderSpec, SecureCollective};
use serde_json::{Map, Value};
use tokio::task::block_in_place;
use tokio::time::timeout;

/// The responder every hostile message is sent to.
const TARGET: &str = "web-01";

/// A node with the default `presign = false`.
const INLINE: &str = "web-02";

/// A node certificate the broker admits with no responder behind it: the test plays that node.
const GHOST: &str = "ghost";

/// How long a refused message is given to produce a reply anyway; the counters decide the rest.
const QUIET: Duration = Duration::from_millis(300);

/// Bound on every wait that is expected to succeed.
const STEP: Duration = Duration::from_secs(10);

/// The request TTL the forged requests carry.
const TTL_S: u32 = 60;

const DAY: Duration = Duration::from_secs(86_400);

/// The responder's counters that tell whether it acted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counters {
    total: u64,
    ok: u64,
    failed: u64,
    dropped: BTreeMap<String, u64>,
}

impl Counters {
    fn of(data: &Map<String, Value>) -> Counters {
        let n = |k: &str| {
            data.get(k)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("no counter {k} in {data:?}"))
        };
        let dropped = data
            .get("dropped")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no dropped counters in {data:?}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
            .collect();
        Counters {
            total: n("total"),
            ok: n("ok"),
            failed: n("failed"),
            dropped,
        }
    }
}

/// A ping to rpcutil from `caller`, valid now, with a fresh id.
fn ping(caller: &str) -> RequestBody {
    let mut body = RequestBody {
        id: new_request_id(),
        sender: "tamper-me".into(),
        caller: caller.into(),
        collective: C.into(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        data: Map::new(),
        filter: Filter::default(),
        ttl_s: TTL_S,
        time_ms: now_ms(),
        target: None,
        reply_to: None,
    };
    body.bind(Target::Nodes(vec![TARGET.into()]));
    // The probe sends everything on alice's connection: replies come back where she can read.
    body.reply_to = Some(subject::reply(C, "user:alice", &body.id));
    body
}

fn sealed(creds: &Credentials, body: &RequestBody) -> Vec<u8> {
    creds.seal(Kind::Request, body.encode()).encode()
}

/// Sends messages to [`TARGET`] on alice's connection and checks what the node did about them.
struct Probe<'a> {
    col: &'a SecureCollective,
    alice: async_nats::Client,
    trust: TrustStore,
    before: Counters,
    /// Ids of requests that were refused: none may reach the audit log.
    refused_ids: Vec<String>,
}

impl<'a> Probe<'a> {
    async fn new(col: &'a SecureCollective) -> Probe<'a> {
        let alice = col
            .connect(Some("alice"))
            .await
            .unwrap_or_else(|e| panic!("alice cannot connect: {e}"))
            .client;
        let pki = col.pki_dir();
        let trust = TrustStore::load(&pki.join("ca.pem"), Some(&pki.join("ca.crl"))).unwrap();
        let before = stats(col);
        Probe {
            col,
            alice,
            trust,
            before,
            refused_ids: Vec::new(),
        }
    }

    /// Publishes `payload` to the node's own subject with a reply subject of alice's, and returns
    /// the first reply that comes within `wait`.
    async fn send(&self, payload: Vec<u8>, wait: Duration) -> Option<async_nats::Message> {
        let reply_to = mco_tests::replies::signed_reply_to(&payload)
            .unwrap_or_else(|| subject::reply(C, "user:alice", &new_request_id()));
        let mut sub = self.alice.subscribe(reply_to.clone()).await.unwrap();
        self.alice
            .publish_with_reply(subject::node(C, TARGET), reply_to, Bytes::from(payload))
            .await
            .unwrap();
        timeout(STEP, self.alice.flush()).await.unwrap().unwrap();
        let first = async {
            while let Some(msg) = sub.next().await {
                if msg.status.is_none() {
                    return Some(msg);
                }
            }
            None
        };
        let got = timeout(wait, first).await.ok().flatten();
        let _ = sub.unsubscribe().await;
        got
    }

    /// Sends a request the node must answer, and checks the reply: signed by the node, for this
    /// request, status 0. Then checks the node counted it as a success.
    async fn answered(&mut self, case: &str, id: &str, payload: Vec<u8>) {
        let msg = self
            .send(payload, STEP)
            .await
            .unwrap_or_else(|| panic!("{case}: no reply within {STEP:?}"));
        let env = Envelope::decode(&msg.payload, DEFAULT_MAX_PAYLOAD, Kind::Reply)
            .unwrap_or_else(|e| panic!("{case}: the reply does not decode: {e}"));
        let signer = self
            .trust
            .verify(&env, (now_ms() / 1000) as i64)
            .unwrap_or_else(|e| panic!("{case}: the reply does not verify: {e}"));
        assert_eq!(signer.name, format!("node:{TARGET}"), "{case}");
        let reply = env.reply().unwrap();
        assert_eq!(reply.request_id, id, "{case}");
        assert_eq!(reply.sender, TARGET, "{case}");
        assert_eq!(reply.status, Status::Ok, "{case}: {}", reply.message);
        self.check(case, 1, 1, None);
    }

    /// Sends a message the node must drop for `reason`: no reply, nothing run, the reason's
    /// counter up by one and a log line naming it.
    async fn refused(&mut self, case: &str, id: Option<&str>, payload: Vec<u8>, reason: &str) {
        let logged_before = refusals_logged(self.col, reason);
        let reply = self.send(payload, QUIET).await;
        if let Some(msg) = reply {
            let opened = Envelope::decode(&msg.payload, DEFAULT_MAX_PAYLOAD, Kind::Reply)
                .and_then(|e| e.reply());
            panic!("{case}: the node replied: {opened:?}");
        }
        self.check(case, 0, 1, Some(reason));
        if let Some(id) = id {
            self.refused_ids.push(id.to_string());
        }
        if !matches!(reason, "undecodable" | "wrong_kind") {
            eventually(STEP, &format!("{case}: a log line naming {reason}"), || {
                refusals_logged(self.col, reason) > logged_before
            });
        }
    }

    /// Checks the counters against the previous snapshot: `answered` requests succeeded,
    /// `messages` arrived, one drop counted under `reason` (none without one). The previous
    /// snapshot's own request adds one success and this snapshot's request one arrival.
    #[track_caller]
    fn check(&mut self, case: &str, answered: u64, messages: u64, reason: Option<&str>) {
        let now = stats(self.col);
        let was = &self.before;
        assert_eq!(now.ok - was.ok, 1 + answered, "{case}: successes\n{now:?}");
        assert_eq!(
            now.total - was.total,
            1 + messages,
            "{case}: arrivals\n{now:?}"
        );
        assert_eq!(now.failed, was.failed, "{case}: failures\n{now:?}");
        if let Some(reason) = reason {
            assert!(
                now.dropped.contains_key(reason),
                "{case}: daemon_stats has no counter dropped.{reason}: {now:?}"
            );
        }
        for (name, count) in &now.dropped {
            let want = u64::from(Some(name.as_str()) == reason);
            let had = was.dropped.get(name).copied().unwrap_or(0);
            assert_eq!(
                count - had,
                want,
                "{case}: dropped.{name} went from {had} to {count}"
            );
        }
        self.before = now;
    }
}

fn stats(col: &SecureCollective) -> Counters {
    block_in_place(|| Counters::of(&col.daemon_stats("alice", &[TARGET])[TARGET]))
}

/// How many "refused a request" lines of the target's log name `reason`.
fn refusals_logged(col: &SecureCollective, reason: &str) -> usize {
    let quoted = format!("\"{reason}\"");
    col.responder(TARGET)
        .child
        .stderr_text()
        .lines()
        .filter(|l| l.contains("refused a request") && l.contains(&quoted))
        .count()
}

/// A user certificate from the collective's CA with the given validity.
fn user_with_validity(
    col: &SecureCollective,
    name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Credentials {
    let opts = IssueOptions {
        not_before: Some(not_before),
        not_after: Some(not_after),
        ..IssueOptions::default()
    };
    col.ca().issue(name, CertKind::User, &opts).unwrap();
    col.credentials(name)
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_collective_acts_only_on_authentic_fresh_requests() {
    let col = block_in_place(|| {
        SecureCollective::builder()
            .user("bob")
            .node_with_security_lines(ResponderSpec::new(TARGET), "presign = true")
            .node(ResponderSpec::new(INLINE))
            .spare_node(GHOST)
            .start()
    });
    responder_refuses_what_does_not_verify(&col).await;
    broker_admits_only_the_collective_and_confines_each_identity(&col).await;
    client_treats_a_reply_that_does_not_verify_as_no_reply(&col).await;
    block_in_place(|| client_keeps_the_certificates_it_checked(&col));
    block_in_place(|| replies_are_signed_with_prepared_nonces(&col));
}

/// A node's `signing` counters: (prepared, inline, ready).
fn signing_of(col: &SecureCollective, node: &str) -> (u64, u64, u64) {
    let stats = &col.daemon_stats("alice", &[node])[node];
    let s = stats
        .get("signing")
        .unwrap_or_else(|| panic!("no signing counters in {stats:?}"));
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s:?}"));
    (n("prepared"), n("inline"), n("ready"))
}

/// A secure node with `presign = true` signs its replies with nonces its
/// presigning thread made ahead of time, and the client verifies those
/// replies like any other; by default a node signs the RFC 8032 way.
fn replies_are_signed_with_prepared_nonces(col: &SecureCollective) {
    let (mut before, mut inline_before) = (0, 0);
    eventually(Duration::from_secs(60), "nonces ready on the node", || {
        let (prepared, inline, ready) = signing_of(col, TARGET);
        (before, inline_before) = (prepared, inline);
        ready >= 3
    });
    let ping = |node: &str| {
        let out = col
            .mco("alice")
            .args(["rpc", "rpcutil", "ping", "-I", node, "-j", "-t", "5s"])
            .run()
            .assert_success()
            .stdout_json();
        assert_eq!(out[0]["sender"], node, "{out}");
        assert_eq!(out[0]["statuscode"], 0, "{out}");
    };
    ping(TARGET);
    let (after, inline_after, _) = signing_of(col, TARGET);
    // The last stats reply and the ping's were both signed since `before`.
    assert!(
        after >= before + 2,
        "prepared signatures went from {before} to {after}"
    );
    assert_eq!(inline_after, inline_before, "a signature was made inline");

    // The default, `presign = false`: every reply signed the RFC 8032 way, and verified all the same.
    let (_, inline_before, _) = signing_of(col, INLINE);
    ping(INLINE);
    assert_eq!(
        signing_of(col, INLINE),
        (0, inline_before + 2, 0),
        "by default, no nonce is prepared or used"
    );
}

/// A run of `mco` remembers the node certificates it checked in `~/.cache/mco/USER.known`
/// (0600); the next run uses them, and an altered file is ignored, never trusted.
fn client_keeps_the_certificates_it_checked(col: &SecureCollective) {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let ping = || {
        col.mco("alice")
            .home(home.path())
            .env_remove("XDG_CACHE_HOME")
            .args(["rpc", "rpcutil", "ping", "-I", TARGET, "-j", "-t", "5s"])
            .run()
    };
    let known = home.path().join(".cache/mco/alice.known");
    assert_eq!(ping().assert_success().stdout_json()[0]["sender"], TARGET);
    let first = std::fs::read(&known).expect("the known-certificates file was written");
    let mode = std::fs::metadata(&known).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        first.windows(TARGET.len()).any(|w| w == TARGET.as_bytes()),
        "the node's certificate is listed"
    );
    assert_eq!(ping().assert_success().stdout_json()[0]["sender"], TARGET);
    let mut altered = first.clone();
    altered[50] ^= 0x01;
    std::fs::write(&known, &altered).unwrap();
    assert_eq!(ping().assert_success().stdout_json()[0]["sender"], TARGET);
    assert_eq!(
        std::fs::read(&known).unwrap(),
        first,
        "the altered file was replaced by a freshly checked one"
    );
}

async fn responder_refuses_what_does_not_verify(col: &SecureCollective) {
    let alice = col.credentials("alice");
    let mut probe = Probe::new(col).await;

    let good = ping("user:alice");
    probe
        .answered("a valid request", &good.id, sealed(&alice, &good))
        .await;

    probe
        .refused(
            "garbage bytes",
            None,
            b"\xc1 this is not an envelope".to_vec(),
            "undecodable",
        )
        .await;

    let body = ping("user:alice");
    let reply_kind = alice.seal(Kind::Reply, body.encode()).encode();
    probe
        .refused(
            "a reply sent as a request",
            Some(&body.id),
            reply_kind,
            "wrong_kind",
        )
        .await;

    let body = ping("user:alice");
    let unsigned = Envelope::unsigned(Kind::Request, body.encode()).encode();
    probe
        .refused("an unsigned envelope", Some(&body.id), unsigned, "unsigned")
        .await;

    let body = ping("user:alice");
    let mut env = alice.seal(Kind::Request, body.encode());
    let at = env
        .body
        .windows(9)
        .position(|w| w == b"tamper-me")
        .expect("the sender is in the body");
    env.body[at + 7..at + 9].copy_from_slice(b"ME");
    assert_eq!(
        env.request().unwrap().sender,
        "tamper-ME",
        "still a valid body"
    );
    probe
        .refused(
            "a body changed after sealing",
            Some(&body.id),
            env.encode(),
            "bad_signature",
        )
        .await;

    let body = ping("user:alice");
    let mut env = alice.seal(Kind::Request, body.encode());
    env.sig[10] ^= 0x01;
    probe
        .refused(
            "a changed signature",
            Some(&body.id),
            env.encode(),
            "bad_signature",
        )
        .await;

    let body = ping("user:alice");
    let mut env = alice.seal(Kind::Request, body.encode());
    env.cert = b"not a certificate".to_vec();
    probe
        .refused(
            "a certificate that does not parse",
            Some(&body.id),
            env.encode(),
            "bad_certificate",
        )
        .await;

    let other = tempfile::tempdir().unwrap();
    let foreign = Ca::init(other.path(), &CaOptions::default()).unwrap();
    foreign
        .issue("alice", CertKind::User, &IssueOptions::default())
        .unwrap();
    let forged = Credentials::load(
        &other.path().join("alice.pem"),
        &other.path().join("alice.key"),
    )
    .unwrap();
    assert_eq!(forged.name(), "user:alice");
    let body = ping("user:alice");
    probe
        .refused(
            "alice's name from another CA of the same name",
            Some(&body.id),
            sealed(&forged, &body),
            "untrusted_certificate",
        )
        .await;

    let now = SystemTime::now();
    let lapsed = user_with_validity(col, "lapsed", now - 10 * DAY, now - DAY);
    let body = ping("user:lapsed");
    probe
        .refused(
            "an expired certificate",
            Some(&body.id),
            sealed(&lapsed, &body),
            "certificate_expired",
        )
        .await;

    let early = user_with_validity(col, "early", now + DAY, now + 30 * DAY);
    let body = ping("user:early");
    probe
        .refused(
            "a certificate not valid yet",
            Some(&body.id),
            sealed(&early, &body),
            "certificate_not_yet_valid",
        )
        .await;

    let node = col.credentials(TARGET);
    let body = ping(&format!("node:{TARGET}"));
    probe
        .refused(
            "a node certificate used as a caller",
            Some(&body.id),
            sealed(&node, &body),
            "wrong_principal",
        )
        .await;

    let body = ping("user:bob");
    probe
        .refused(
            "alice signing a request in bob's name",
            Some(&body.id),
            sealed(&alice, &body),
            "name_mismatch",
        )
        .await;

    let window_ms = u64::from(TTL_S) * 1000;
    let mut body = ping("user:alice");
    body.time_ms = now_ms() - window_ms - 60_000;
    probe
        .refused(
            "a request older than its TTL",
            Some(&body.id),
            sealed(&alice, &body),
            "expired",
        )
        .await;

    let mut body = ping("user:alice");
    body.time_ms = now_ms() + window_ms + 60_000;
    probe
        .refused(
            "a request from further in the future than its TTL",
            Some(&body.id),
            sealed(&alice, &body),
            "expired",
        )
        .await;

    let mut body = ping("user:alice");
    body.collective = "elsewhere".into();
    probe
        .refused(
            "a request for another collective on this collective's subject",
            Some(&body.id),
            sealed(&alice, &body),
            "wrong_collective",
        )
        .await;

    let body = ping("user:alice");
    let bytes = sealed(&alice, &body);
    probe
        .answered("a request sent once", &body.id, bytes.clone())
        .await;
    probe
        .refused("the same request sent again", None, bytes, "replay")
        .await;

    // Revocation: mallory's requests are answered until the CRL that lists her is in force.
    block_in_place(|| col.pki(&["issue", "mallory", "--kind", "user"]));
    let mallory = col.credentials("mallory");
    let body = ping("user:mallory");
    probe
        .answered(
            "mallory before revocation",
            &body.id,
            sealed(&mallory, &body),
        )
        .await;
    let reloads = |col: &SecureCollective| {
        col.responder(TARGET)
            .child
            .stderr_text()
            .matches("re-read the CRL")
            .count()
    };
    let before = reloads(col);
    block_in_place(|| {
        col.pki(&["revoke", "mallory"]);
        col.pki(&["crl"]);
        eventually(
            Duration::from_secs(30),
            "the responder to re-read the CRL",
            || reloads(col) > before,
        );
    });
    let body = ping("user:mallory");
    probe
        .refused(
            "a revoked certificate",
            Some(&body.id),
            sealed(&mallory, &body),
            "certificate_revoked",
        )
        .await;

    // Nothing refused reached the audit log; the last answered request shows it is written.
    let last = ping("user:alice");
    probe
        .answered(
            "a valid request at the end",
            &last.id,
            sealed(&alice, &last),
        )
        .await;
    let log = col.audit_log(TARGET);
    block_in_place(|| {
        eventually(STEP, "the last request's audit line", || {
            audit_lines(&log)
                .iter()
                .any(|l| l["request_id"] == last.id.as_str())
        })
    });
    let lines = audit_lines(&log);
    for id in &probe.refused_ids {
        assert!(
            !lines.iter().any(|l| l["request_id"] == id.as_str()),
            "refused request {id} is in the audit log"
        );
    }
    for id in [&good.id, &last.id] {
        let line = lines
            .iter()
            .find(|l| l["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no audit line for {id}"));
        assert_eq!(line["caller"], "user:alice");
        assert_eq!(line["status"], 0);
    }
}

async fn broker_admits_only_the_collective_and_confines_each_identity(col: &SecureCollective) {
    let none = col.connect(None).await;
    assert!(none.is_err(), "a client without a certificate connected");

    let other = tempfile::tempdir().unwrap();
    let foreign = Ca::init(other.path(), &CaOptions::default()).unwrap();
    foreign
        .issue("alice", CertKind::User, &IssueOptions::default())
        .unwrap();
    let forged = tls_connect(
        col.nats(),
        &col.pki_dir().join("ca.pem"),
        Some((
            other.path().join("alice.pem"),
            other.path().join("alice.key"),
        )),
    )
    .await;
    assert!(forged.is_err(), "a certificate from another CA connected");

    let violation = |what: &str, error: Option<String>| {
        let error = error.unwrap_or_else(|| panic!("{what}: no error from the server"));
        assert!(
            error.to_lowercase().contains("permissions violation"),
            "{what}: {error}"
        );
    };

    let mut alice = col.connect(Some("alice")).await.unwrap();
    let own = subject::reply_wildcard(C, "user:alice");
    let _own = alice.client.subscribe(own.clone()).await.unwrap();
    let bobs = subject::reply_wildcard(C, "user:bob");
    let _bobs = alice.client.subscribe(bobs.clone()).await.unwrap();
    violation(
        "alice subscribing to bob's replies",
        alice.error_about(&bobs, STEP).await,
    );
    let requests = subject::node(C, TARGET);
    let _requests = alice.client.subscribe(requests.clone()).await.unwrap();
    violation(
        "alice subscribing to a node's requests",
        alice.error_about(&requests, STEP).await,
    );
    assert!(
        alice.error_about(&own, QUIET).await.is_none(),
        "alice was refused her own replies"
    );

    let mut ghost = col.connect(Some(GHOST)).await.unwrap();
    let _mine = ghost
        .client
        .subscribe(subject::node(C, GHOST))
        .await
        .unwrap();
    let _theirs = ghost.client.subscribe(requests.clone()).await.unwrap();
    violation(
        "a node subscribing to another node's requests",
        ghost.error_about(&requests, STEP).await,
    );
    ghost
        .client
        .publish(requests.clone(), Bytes::from_static(b"x"))
        .await
        .unwrap();
    violation(
        "a node sending a request",
        ghost.error_about(&requests, STEP).await,
    );
    assert!(
        ghost
            .error_about(&subject::node(C, GHOST), QUIET)
            .await
            .is_none(),
        "the node was refused its own requests"
    );
}

/// Plays node `ghost`: the real `mco` client asks it for a ping, and it answers with replies that
/// must not count (signed by another node, a broken signature, unsigned), then, asked again, with
/// an honest one.
async fn client_treats_a_reply_that_does_not_verify_as_no_reply(col: &SecureCollective) {
    let ghost = col.connect(Some(GHOST)).await.unwrap();
    let mut requests = ghost
        .client
        .subscribe(subject::node(C, GHOST))
        .await
        .unwrap();
    timeout(STEP, ghost.client.flush()).await.unwrap().unwrap();
    let own = col.credentials(GHOST);
    let impostor = col.credentials(TARGET);

    let call = || {
        tokio::spawn(
            col.mco("alice")
                .args(["rpc", "rpcutil", "ping", "-I", GHOST, "-j", "-t", "2s"])
                .run_async(),
        )
    };
    let reply_to = |req: &RequestBody| ReplyBody {
        request_id: req.id.clone(),
        sender: GHOST.into(),
        status: Status::Ok,
        message: "OK".into(),
        data: Map::from_iter([("pong".to_string(), Value::from(now_ms()))]),
        time_ms: now_ms(),
        elapsed_us: 1,
    };

    let running = call();
    let (req, back) = next_request(&mut requests).await;
    assert_eq!(req.caller, "user:alice");
    let body = reply_to(&req).encode();
    let by_impostor = impostor.seal(Kind::Reply, body.clone());
    let mut broken = own.seal(Kind::Reply, body.clone());
    broken.sig[3] ^= 0x80;
    let unsigned = Envelope::unsigned(Kind::Reply, body);
    for env in [by_impostor, broken, unsigned] {
        ghost
            .client
            .publish(back.clone(), Bytes::from(env.encode()))
            .await
            .unwrap();
    }
    timeout(STEP, ghost.client.flush()).await.unwrap().unwrap();
    let out = running.await.unwrap();
    assert!(replies(&out).is_empty(), "a forged reply counted\n{out:?}");
    assert_ne!(out.status, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("ignored 3 replies that failed verification"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "claiming to be from \"{GHOST}\" is signed by \"node:{TARGET}\""
        )),
        "{out:?}"
    );

    let running = call();
    let (req, back) = next_request(&mut requests).await;
    let honest = own.seal(Kind::Reply, reply_to(&req).encode());
    ghost
        .client
        .publish(back, Bytes::from(honest.encode()))
        .await
        .unwrap();
    timeout(STEP, ghost.client.flush()).await.unwrap().unwrap();
    let out = running.await.unwrap();
    out.assert_success();
    let got = replies(&out);
    assert_eq!(got.len(), 1, "{out:?}");
    assert_eq!(got[0]["sender"], GHOST);
    assert_eq!(got[0]["statuscode"], 0);
    assert!(!out.stderr.contains("failed verification"), "{out:?}");
}

/// The next request on `requests`, with its reply subject.
async fn next_request(requests: &mut async_nats::Subscriber) -> (RequestBody, async_nats::Subject) {
    let msg = timeout(STEP, requests.next())
        .await
        .expect("the client's request reaches the node")
        .expect("the subscription is open");
    let env = Envelope::decode(&msg.payload, DEFAULT_MAX_PAYLOAD, Kind::Request).unwrap();
    (env.request().unwrap(), msg.reply.expect("a reply subject"))
}

/// The client's reply check on its own, with real certificates: only a reply signed by the node
/// it names, with a certificate from the collective's CA, opens.
#[test]
fn the_client_opens_only_replies_signed_by_the_node_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), &CaOptions::default()).unwrap();
    for node in ["web1", "web2"] {
        ca.issue(node, CertKind::Node, &IssueOptions::default())
            .unwrap();
    }
    ca.issue("alice", CertKind::User, &IssueOptions::default())
        .unwrap();
    let creds = |name: &str| {
        Credentials::load(
            &dir.path().join(format!("{name}.pem")),
            &dir.path().join(format!("{name}.key")),
        )
        .unwrap()
    };
    let other = tempfile::tempdir().unwrap();
    Ca::init(other.path(), &CaOptions::default())
        .unwrap()
        .issue("web1", CertKind::Node, &IssueOptions::default())
        .unwrap();
    let foreign = Credentials::load(
        &other.path().join("web1.pem"),
        &other.path().join("web1.key"),
    )
    .unwrap();

    let trust = TrustStore::load(&dir.path().join("ca.pem"), None).unwrap();
    let opener = Opener {
        trust: Some(std::sync::Arc::new(trust)),
        max_payload: DEFAULT_MAX_PAYLOAD,
        pins: None,
    };
    let body = ReplyBody {
        request_id: new_request_id(),
        sender: "web1".into(),
        status: Status::Ok,
        message: "OK".into(),
        data: Map::new(),
        time_ms: now_ms(),
        elapsed_us: 7,
    }
    .encode();

    let genuine = creds("web1").seal(Kind::Reply, body.clone()).encode();
    assert_eq!(opener.open(&genuine).unwrap().sender, "web1");

    let untrusted = |what: &str, bytes: Vec<u8>| match opener.open(&bytes) {
        Err(Rejected::Untrusted(why)) => why,
        other => panic!("{what}: {other:?}"),
    };
    let why = untrusted(
        "signed by another node",
        creds("web2").seal(Kind::Reply, body.clone()).encode(),
    );
    assert!(why.contains("signed by \"node:web2\""), "{why}");
    let why = untrusted(
        "signed by a user",
        creds("alice").seal(Kind::Reply, body.clone()).encode(),
    );
    assert!(why.contains("signed by \"user:alice\""), "{why}");
    untrusted(
        "the right name from another CA",
        foreign.seal(Kind::Reply, body.clone()).encode(),
    );
    let mut tampered = creds("web1").seal(Kind::Reply, body.clone());
    let last = tampered.body.len() - 1;
    tampered.body[last] ^= 0x01;
    untrusted("a body changed after sealing", tampered.encode());
    untrusted(
        "unsigned",
        Envelope::unsigned(Kind::Reply, body.clone()).encode(),
    );

    match opener.open(&creds("web1").seal(Kind::Request, body.clone()).encode()) {
        Err(Rejected::Undecodable(_)) => {}
        other => panic!("a request where a reply belongs: {other:?}"),
    }
    match opener.open(b"\xc1") {
        Err(Rejected::Undecodable(_)) => {}
        other => panic!("garbage: {other:?}"),
    }

    let insecure = Opener {
        trust: None,
        max_payload: DEFAULT_MAX_PAYLOAD,
        pins: None,
    };
    assert!(
        insecure
            .open(&Envelope::unsigned(Kind::Reply, body).encode())
            .is_ok(),
        "insecure mode opens unsigned replies"
    );
}
