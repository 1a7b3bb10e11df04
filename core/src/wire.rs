//! The wire protocol, version 1 (ARCHITECTURE.md §3).
//!
//! Two layers: an [`Envelope`] whose `body` holds the exact msgpack bytes of a
//! [`RequestBody`] or [`ReplyBody`]. Signatures (added by the security layer)
//! cover those bytes as sent, so nothing ever depends on re-encoding a value.
//! Every struct is encoded with named fields (msgpack maps), so fields can be
//! added later without breaking older peers.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::binding::Target;
use crate::filter::Filter;
use crate::limits::{
    MAX_FUTURE_SKEW_MS, MAX_NAME_LEN, MAX_REQUEST_ID_LEN, MAX_SUBJECT_LEN, MAX_TARGETS,
    MAX_VALUE_DEPTH,
};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Default bound on a message's size, both directions (1 MiB, as `nats-server`'s default).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Default request time-to-live, in seconds.
pub const DEFAULT_TTL_S: u32 = 60;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A request from a caller to one or many responders.
    Request,
    /// A responder's reply to one request.
    Reply,
    /// A node's entry in the inventory registry (never sent as a message).
    Inventory,
}

/// The outer layer of every message on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version; a responder drops anything it does not speak.
    pub v: u8,
    /// Request or reply.
    pub kind: Kind,
    /// The msgpack bytes of the body, exactly as signed.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 signature over `body`; empty while unsigned.
    #[serde(with = "serde_bytes", default)]
    pub sig: Vec<u8>,
    /// The signer's X.509 certificate, DER; empty while unsigned.
    #[serde(with = "serde_bytes", default)]
    pub cert: Vec<u8>,
    /// The signer's raw Ed25519 public key (32 bytes) when it has no
    /// certificate yet: a node in provisioning mode signs its replies with
    /// the key it made at first boot. Empty otherwise, and then not encoded,
    /// so every other message is byte-for-byte what protocol v1 always was.
    #[serde(with = "serde_bytes", default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<u8>,
}

/// The inner layer of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestBody {
    /// Unique request id (a ULID).
    pub id: String,
    /// The sending client's identity (host or tool name).
    pub sender: String,
    /// The authenticated principal, `user:NAME` or `node:IDENTITY`.
    pub caller: String,
    /// The collective the request is addressed to.
    pub collective: String,
    /// Agent name.
    pub agent: String,
    /// Action name.
    pub action: String,
    /// Action inputs, already validated against the DDL by the client.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Which nodes must act; the empty filter matches every node.
    #[serde(default)]
    pub filter: Filter,
    /// Seconds for which the request is valid either side of `time_ms`.
    pub ttl_s: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Which nodes the request is for (see [`crate::binding`]); absent in a
    /// protocol v1 request, and then not encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Where replies go; absent in a protocol v1 request, and then not encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// The inner layer of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyBody {
    /// The id of the request this answers.
    pub request_id: String,
    /// The replying node's identity.
    pub sender: String,
    /// MCollective status code.
    pub status: Status,
    /// Human-readable status message (`OK` on success).
    pub message: String,
    /// Action outputs.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Reply time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// How long the node spent on the request, microseconds.
    pub elapsed_us: u64,
}

/// MCollective's reply status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// 0: the action ran and succeeded.
    Ok,
    /// 1: the action failed, was refused, timed out or the node was busy.
    Aborted,
    /// 2: the agent does not have this action (or the node lacks the agent).
    UnknownAction,
    /// 3: a required input was missing.
    MissingData,
    /// 4: an input had the wrong type or failed validation.
    InvalidData,
    /// 5: anything else, including a panic inside an agent.
    UnknownError,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Aborted => 1,
            Status::UnknownAction => 2,
            Status::MissingData => 3,
            Status::InvalidData => 4,
            Status::UnknownError => 5,
        }
    }

    /// The status for a numeric code; unknown codes map to `UnknownError`.
    pub fn from_code(code: u8) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::Aborted,
            2 => Status::UnknownAction,
            3 => Status::MissingData,
            4 => Status::InvalidData,
            _ => Status::UnknownError,
        }
    }

    /// The label MCollective prints beside a failed result.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Aborted => "Request Aborted",
            Status::UnknownAction => "Unknown Action",
            Status::MissingData => "Missing Request Data",
            Status::InvalidData => "Invalid Request Data",
            Status::UnknownError => "Unknown Request Status",
        }
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u8::deserialize(d)?;
        Ok(Status::from_code(code))
    }
}

/// Why a message was refused. Each kind has its own counter on the responder.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Larger than the configured bound.
    #[error("message of {size} bytes is over the {limit} byte bound")]
    Oversized {
        /// The message size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// The bytes are not a valid envelope or body.
    #[error("message does not decode: {0}")]
    Decode(String),
    /// The envelope's version is not one this build speaks.
    #[error("unknown protocol version {0}")]
    Version(u8),
    /// A reply where a request was expected, or the reverse.
    #[error("expected a {expected:?}, got a {got:?}")]
    WrongKind {
        /// What the receiver wanted.
        expected: Kind,
        /// What arrived.
        got: Kind,
    },
    /// `time_ms` is further than `ttl_s` from the receiver's clock, either way.
    #[error("request is outside its TTL of {ttl_s}s (skew {skew_ms} ms)")]
    Expired {
        /// The request's TTL.
        ttl_s: u32,
        /// Receiver clock minus request time, in ms (negative: from the future).
        skew_ms: i64,
    },
}

impl WireError {
    /// A short stable name, used as the counter key in `daemon_stats`.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Oversized { .. } => "oversized",
            WireError::Decode(_) => "undecodable",
            WireError::Version(_) => "bad_version",
            WireError::WrongKind { .. } => "wrong_kind",
            WireError::Expired { .. } => "expired",
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new unique request id.
pub fn new_request_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

impl Envelope {
    /// Wraps an encoded body, unsigned.
    pub fn unsigned(kind: Kind, body: Vec<u8>) -> Envelope {
        Envelope {
            v: PROTOCOL_VERSION,
            kind,
            body,
            sig: Vec::new(),
            cert: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Encodes the envelope as msgpack with named fields.
    pub fn encode(&self) -> Vec<u8> {
        encode_named(self)
    }

    /// Decodes an envelope, checking size, version and kind.
    pub fn decode(bytes: &[u8], limit: usize, expected: Kind) -> Result<Envelope, WireError> {
        if bytes.len() > limit {
            return Err(WireError::Oversized {
                size: bytes.len(),
                limit,
            });
        }
        let env: Envelope = decode_bounded(bytes)?;
        if env.v != PROTOCOL_VERSION {
            return Err(WireError::Version(env.v));
        }
        if env.kind != expected {
            return Err(WireError::WrongKind {
                expected,
                got: env.kind,
            });
        }
        Ok(env)
    }

    /// Decodes the body as a request, refusing values nested deeper than
    /// [`MAX_VALUE_DEPTH`], ids longer than [`MAX_REQUEST_ID_LEN`], names
    /// (sender, caller, collective, agent, action, target identities) longer
    /// than [`MAX_NAME_LEN`], more than [`MAX_TARGETS`] target identities and
    /// a reply subject longer than [`MAX_SUBJECT_LEN`].
    pub fn request(&self) -> Result<RequestBody, WireError> {
        let req: RequestBody = decode_bounded(&self.body)?;
        bounded("request id", &req.id, MAX_REQUEST_ID_LEN)?;
        bounded("sender", &req.sender, MAX_NAME_LEN)?;
        bounded("caller", &req.caller, MAX_NAME_LEN)?;
        bounded("collective", &req.collective, MAX_NAME_LEN)?;
        bounded("agent", &req.agent, MAX_NAME_LEN)?;
        bounded("action", &req.action, MAX_NAME_LEN)?;
        if let Some(reply_to) = &req.reply_to {
            bounded("reply subject", reply_to, MAX_SUBJECT_LEN)?;
        }
        if let Some(Target::Nodes(nodes)) = &req.target {
            if nodes.len() > MAX_TARGETS {
                return Err(WireError::Decode(format!(
                    "target of {} nodes is over the bound of {MAX_TARGETS}",
                    nodes.len()
                )));
            }
            for n in nodes {
                bounded("target identity", n, MAX_NAME_LEN)?;
            }
        }
        Ok(req)
    }

    /// Decodes the body as a reply, refusing values nested deeper than
    /// [`MAX_VALUE_DEPTH`], a request id longer than [`MAX_REQUEST_ID_LEN`]
    /// and a sender longer than [`MAX_NAME_LEN`].
    pub fn reply(&self) -> Result<ReplyBody, WireError> {
        let reply: ReplyBody = decode_bounded(&self.body)?;
        bounded("request id", &reply.request_id, MAX_REQUEST_ID_LEN)?;
        bounded("sender", &reply.sender, MAX_NAME_LEN)?;
        Ok(reply)
    }
}

/// An error naming `what` if `value` is longer than `max` bytes.
fn bounded(what: &str, value: &str, max: usize) -> Result<(), WireError> {
    if value.len() > max {
        return Err(WireError::Decode(format!(
            "{what} of {} bytes is over the {max} byte bound",
            value.len()
        )));
    }
    Ok(())
}

impl RequestBody {
    /// Encodes the body (the bytes a signature covers).
    pub fn encode(&self) -> Vec<u8> {
        encode_named(self)
    }

    /// Checks `time_ms` against `now_ms`: at most `ttl_s` in the past, and
    /// at most `ttl_s` or [`MAX_FUTURE_SKEW_MS`], whichever is less, in the
    /// future. The arithmetic is exact for every `time_ms` (a signer's
    /// `u64::MAX` is far in the future, not a wrapped negative).
    pub fn check_ttl(&self, now_ms: u64) -> Result<(), WireError> {
        let skew = i128::from(now_ms) - i128::from(self.time_ms);
        let ttl_ms = u128::from(self.ttl_s) * 1000;
        let allowed = if skew < 0 {
            ttl_ms.min(u128::from(MAX_FUTURE_SKEW_MS))
        } else {
            ttl_ms
        };
        if skew.unsigned_abs() > allowed {
            return Err(WireError::Expired {
                ttl_s: self.ttl_s,
                skew_ms: skew.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            });
        }
        Ok(())
    }

    /// Until when (ms since the epoch) the request must be remembered against
    /// replay: `time_ms` plus its TTL, saturating.
    pub fn expires_ms(&self) -> u64 {
        self.time_ms
            .saturating_add(u64::from(self.ttl_s).saturating_mul(1000))
    }
}

impl ReplyBody {
    /// Encodes the body (the bytes a signature covers).
    pub fn encode(&self) -> Vec<u8> {
        encode_named(self)
    }
}

/// Decodes msgpack from outside with nesting bounded by [`MAX_VALUE_DEPTH`]
/// (plus the two levels of our own structs around a value), so no message can
/// make a decoder, or anything that walks its values, recurse without bound.
pub fn decode_bounded<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_VALUE_DEPTH + 4);
    T::deserialize(&mut de).map_err(|e| WireError::Decode(e.to_string()))
}

fn encode_named<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain structs, strings, maps and JSON values into a Vec cannot
    // fail; a failure here would be a bug in our own types.
    rmp_serde::to_vec_named(value).expect("wire types always encode")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ping from alice to collective `mcollective`, unbound, valid now.
    pub(crate) fn request() -> RequestBody {
        RequestBody {
            id: new_request_id(),
            sender: "client".into(),
            caller: "user:alice".into(),
            collective: "mcollective".into(),
            agent: "rpcutil".into(),
            action: "ping".into(),
            data: serde_json::Map::new(),
            filter: Filter::default(),
            ttl_s: 60,
            time_ms: now_ms(),
            target: None,
            reply_to: None,
        }
    }

    #[test]
    fn envelope_round_trips_with_bytes_as_binary() {
        let body = request().encode();
        let env = Envelope::unsigned(Kind::Request, body.clone());
        let bytes = env.encode();
        // `body` must be a msgpack bin, not an array of integers.
        assert!(bytes.len() < body.len() + 40, "body was not encoded as bin");
        let back = Envelope::decode(&bytes, DEFAULT_MAX_PAYLOAD, Kind::Request).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.request().unwrap().agent, "rpcutil");
    }

    #[test]
    fn refuses_oversized_unknown_version_and_wrong_kind() {
        let env = Envelope::unsigned(Kind::Request, request().encode());
        let bytes = env.encode();
        assert!(matches!(
            Envelope::decode(&bytes, 10, Kind::Request),
            Err(WireError::Oversized { .. })
        ));
        let mut v2 = env.clone();
        v2.v = 2;
        assert_eq!(
            Envelope::decode(&v2.encode(), DEFAULT_MAX_PAYLOAD, Kind::Request),
            Err(WireError::Version(2))
        );
        assert!(matches!(
            Envelope::decode(&bytes, DEFAULT_MAX_PAYLOAD, Kind::Reply),
            Err(WireError::WrongKind { .. })
        ));
        assert!(matches!(
            Envelope::decode(b"\xc1garbage", DEFAULT_MAX_PAYLOAD, Kind::Request),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn key_field_is_optional_both_ways() {
        // An envelope without `key` encodes exactly as before the field existed.
        #[derive(Serialize)]
        struct Old<'a> {
            v: u8,
            kind: Kind,
            #[serde(with = "serde_bytes")]
            body: &'a [u8],
            #[serde(with = "serde_bytes")]
            sig: &'a [u8],
            #[serde(with = "serde_bytes")]
            cert: &'a [u8],
        }
        let env = Envelope::unsigned(Kind::Reply, vec![1, 2, 3]);
        let old = rmp_serde::to_vec_named(&Old {
            v: 1,
            kind: Kind::Reply,
            body: &[1, 2, 3],
            sig: &[],
            cert: &[],
        })
        .unwrap();
        assert_eq!(env.encode(), old);
        // Old bytes decode with an empty key; a key round-trips.
        let back = Envelope::decode(&old, DEFAULT_MAX_PAYLOAD, Kind::Reply).unwrap();
        assert!(back.key.is_empty());
        let mut keyed = env.clone();
        keyed.key = vec![7; 32];
        let back = Envelope::decode(&keyed.encode(), DEFAULT_MAX_PAYLOAD, Kind::Reply).unwrap();
        assert_eq!(back.key, vec![7; 32]);
    }

    #[test]
    fn ttl_is_checked_both_ways() {
        let mut r = request();
        r.ttl_s = 10;
        let now = r.time_ms;
        assert!(r.check_ttl(now + 9_000).is_ok());
        assert!(r.check_ttl(now + 11_000).is_err());
        assert!(r.check_ttl(now - 9_000).is_ok());
        assert!(r.check_ttl(now - 11_000).is_err());
        // A long TTL does not let a request be dated further ahead than the skew.
        r.ttl_s = 600;
        assert!(r.check_ttl(now - MAX_FUTURE_SKEW_MS).is_ok());
        assert!(r.check_ttl(now - MAX_FUTURE_SKEW_MS - 1).is_err());
        assert!(r.check_ttl(now + 599_000).is_ok());
    }

    /// A request whose `data` nests `depth` arrays, encoded by hand (the
    /// way an attacker would, with no serializer recursing).
    fn nested_request(depth: usize) -> Vec<u8> {
        let mut body = request().encode();
        // Replace the empty `data` map (0x80 after the key) with the nest.
        let key = b"\xa4data\x80";
        let at = body.windows(key.len()).position(|w| w == key).unwrap() + 5;
        let mut nest = vec![0x81, 0xa1, b'x'];
        nest.extend(std::iter::repeat_n(0x91u8, depth));
        nest.push(0xc0);
        body.splice(at..at + 1, nest);
        body
    }

    #[test]
    fn deeply_nested_values_are_refused_on_a_small_stack() {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let env = Envelope::unsigned(Kind::Request, nested_request(1_000_000));
                let bytes = env.encode();
                assert!(bytes.len() < DEFAULT_MAX_PAYLOAD + 64);
                let back = Envelope::decode(&bytes, usize::MAX, Kind::Request).unwrap();
                let err = back.request().unwrap_err();
                assert!(err.to_string().contains("depth"), "{err}");
                // Within the bound, it decodes.
                let ok = Envelope::unsigned(Kind::Request, nested_request(MAX_VALUE_DEPTH));
                let req = ok.request().unwrap();
                assert!(req.data["x"].is_array());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn long_request_ids_are_refused() {
        let mut r = request();
        r.id = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        let env = Envelope::unsigned(Kind::Request, r.encode());
        assert!(matches!(env.request(), Err(WireError::Decode(m)) if m.contains("request id")));
        r.id = "x".repeat(MAX_REQUEST_ID_LEN);
        assert!(Envelope::unsigned(Kind::Request, r.encode())
            .request()
            .is_ok());
    }

    #[test]
    fn long_or_many_targets_and_long_reply_subjects_are_refused() {
        let mut r = request();
        r.target = Some(Target::Nodes(vec!["n".into(); MAX_TARGETS + 1]));
        let env = Envelope::unsigned(Kind::Request, r.encode());
        assert!(matches!(env.request(), Err(WireError::Decode(m)) if m.starts_with("target of")));
        r.target = Some(Target::Nodes(vec!["n".repeat(MAX_NAME_LEN + 1)]));
        let env = Envelope::unsigned(Kind::Request, r.encode());
        assert!(
            matches!(env.request(), Err(WireError::Decode(m)) if m.starts_with("target identity"))
        );
        r.target = Some(Target::Nodes(vec!["n".into(); MAX_TARGETS]));
        r.reply_to = Some("r".repeat(MAX_SUBJECT_LEN + 1));
        let env = Envelope::unsigned(Kind::Request, r.encode());
        assert!(
            matches!(env.request(), Err(WireError::Decode(m)) if m.starts_with("reply subject"))
        );
        r.reply_to = Some("r".repeat(MAX_SUBJECT_LEN));
        assert!(Envelope::unsigned(Kind::Request, r.encode())
            .request()
            .is_ok());
    }

    #[test]
    fn long_names_are_refused() {
        for field in ["sender", "caller", "collective", "agent", "action"] {
            let mut r = request();
            let long = "n".repeat(MAX_NAME_LEN + 1);
            match field {
                "sender" => r.sender = long,
                "caller" => r.caller = long,
                "collective" => r.collective = long,
                "agent" => r.agent = long,
                _ => r.action = long,
            }
            let env = Envelope::unsigned(Kind::Request, r.encode());
            assert!(
                matches!(env.request(), Err(WireError::Decode(m)) if m.starts_with(field)),
                "{field}"
            );
        }
        let reply = ReplyBody {
            request_id: "r".into(),
            sender: "n".repeat(MAX_NAME_LEN + 1),
            status: Status::Ok,
            message: "OK".into(),
            data: Default::default(),
            time_ms: 0,
            elapsed_us: 0,
        };
        let env = Envelope::unsigned(Kind::Reply, encode_named(&reply));
        assert!(matches!(env.reply(), Err(WireError::Decode(m)) if m.starts_with("sender")));
    }

    #[test]
    fn far_future_and_far_past_times_do_not_wrap() {
        let mut r = request();
        let now = r.time_ms;
        for t in [u64::MAX, 1 << 63, (1 << 63) + now, 0] {
            r.time_ms = t;
            r.ttl_s = u32::MAX;
            assert!(
                r.check_ttl(now).is_err() || t.abs_diff(now) <= u64::from(u32::MAX) * 1000,
                "time_ms {t} accepted"
            );
            assert!(r.expires_ms() >= t.min(u64::MAX - 1));
        }
        r.time_ms = u64::MAX;
        r.ttl_s = 60;
        assert!(matches!(
            r.check_ttl(now),
            Err(WireError::Expired { skew_ms, .. }) if skew_ms < 0
        ));
        assert_eq!(r.expires_ms(), u64::MAX);
    }

    #[test]
    fn status_codes_round_trip() {
        for code in 0..=5u8 {
            assert_eq!(Status::from_code(code).code(), code);
        }
        assert_eq!(Status::from_code(99), Status::UnknownError);
    }
}
