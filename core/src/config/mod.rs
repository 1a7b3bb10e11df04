//! Configuration files (ARCHITECTURE.md §8): TOML, every bad or unknown key reported
//! at once with the file and key name.
//!
//! The two configs live here rather than in their binaries because other
//! parts read and write them too (the provisioner writes a responder config,
//! and must validate it exactly as the responder will).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Table;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// Dotted key, e.g. `nats.servers`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.key.is_empty() {
                write!(f, "{}: {}", e.file, e.message)?;
            } else {
                write!(f, "{}: {}: {}", e.file, e.key, e.message)?;
            }
        }
        Ok(())
    }
}

/// Parses a duration: `300ms`, `2s`, `1.5s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 300ms, 2s, 5m, 1h)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?} (ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

mod client;
mod reader;
mod responder;
#[cfg(test)]
mod tests;

pub use client::*;
pub use reader::Reader;
pub use responder::*;

/// A path with `{identity}` replaced by a (virtual) node's identity: how
/// one config serves every node of a `--fleet` process, each with its own
/// certificate, key and state.
pub fn for_identity(p: &Path, identity: &str) -> PathBuf {
    PathBuf::from(p.to_string_lossy().replace("{identity}", identity))
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_home(s: &str) -> PathBuf {
    match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(s),
    }
}

fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })
}

/// `[security]`, shared by both configs.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// The collective's CA certificate.
    pub ca: Option<PathBuf>,
    /// This party's certificate.
    pub cert: Option<PathBuf>,
    /// This party's private key.
    pub key: Option<PathBuf>,
    /// The CA's revocation list.
    pub crl: Option<PathBuf>,
    /// Unsigned messages, no TLS: throw-away demos only.
    pub insecure: bool,
    /// Sign and verify messages (default). `false` keeps TLS to the broker
    /// with this party's certificate but neither signs nor verifies: for
    /// measuring what signing costs, never for a real fleet.
    pub sign: bool,
    /// Directory of `<agent>.policy` files (responder).
    pub policy_dir: Option<PathBuf>,
    /// Policy for agents without a policy file (responder): `allow` or `deny`.
    pub default_policy: String,
    /// Audit log path (responder).
    pub audit_log: Option<PathBuf>,
    /// Sign replies with nonces prepared ahead of time at idle priority
    /// (responder; opt-in, default `false`). Off, each reply is signed the
    /// RFC 8032 deterministic way. On, a responder whose memory is ever
    /// duplicated (a VM restored from a memory snapshot, or cloned live)
    /// can reuse a nonce and so reveal its private key.
    pub presign: bool,
    /// The longest TTL a request may carry (responder): longer ones are
    /// refused and counted, which bounds how long a request must be
    /// remembered against replay. Default 10 minutes.
    pub max_ttl: Duration,
    /// How many request ids a node remembers against replay (responder).
    /// When it is full of live ids, new requests are refused and counted
    /// rather than an id forgotten. Default 200,000.
    pub replay_cache: usize,
}

/// Default `[security] max_ttl`.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(600);

/// Default `[security] replay_cache`.
pub const DEFAULT_REPLAY_CACHE: usize = 200_000;

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            ca: None,
            cert: None,
            key: None,
            crl: None,
            insecure: false,
            sign: false,
            policy_dir: None,
            default_policy: "deny".into(),
            audit_log: None,
            presign: false,
            max_ttl: DEFAULT_MAX_TTL,
            replay_cache: DEFAULT_REPLAY_CACHE,
        }
    }
}

impl SecurityConfig {
    fn read(r: &mut Reader, t: &Table, responder: bool) -> SecurityConfig {
        let p = "security";
        let mut known = vec!["ca", "cert", "key", "crl", "insecure", "sign"];
        if responder {
            known.extend([
                "policy_dir",
                "default_policy",
                "audit_log",
                "presign",
                "max_ttl",
                "replay_cache",
            ]);
        } else {
            known.push("ddl_dirs");
        }
        r.unknown(t, p, &known);
        let default_policy = r
            .string(t, p, "default_policy")
            .unwrap_or_else(|| "deny".into());
        if default_policy != "allow" && default_policy != "deny" {
            r.error("security.default_policy", "must be \"allow\" or \"deny\"");
        }
        SecurityConfig {
            ca: r.path(t, p, "ca"),
            cert: r.path(t, p, "cert"),
            key: r.path(t, p, "key"),
            crl: r.path(t, p, "crl"),
            insecure: r.boolean(t, p, "insecure").unwrap_or(false),
            sign: r.boolean(t, p, "sign").unwrap_or(true),
            policy_dir: r.path(t, p, "policy_dir"),
            default_policy,
            audit_log: r.path(t, p, "audit_log"),
            presign: responder && r.boolean(t, p, "presign").unwrap_or(false),
            max_ttl: match r.duration(t, p, "max_ttl") {
                Some(d) if d < Duration::from_secs(1) || d.as_secs() > u64::from(u32::MAX) => {
                    r.error("security.max_ttl", "must be between 1s and 136 years");
                    DEFAULT_MAX_TTL
                }
                Some(d) => d,
                None => DEFAULT_MAX_TTL,
            },
            replay_cache: match r.unsigned(t, p, "replay_cache") {
                Some(0) => {
                    r.error("security.replay_cache", "must be at least 1");
                    DEFAULT_REPLAY_CACHE
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => DEFAULT_REPLAY_CACHE,
            },
        }
    }
}

/// `[nats]`, shared by both configs.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// Broker URLs, tried in turn.
    pub servers: Vec<String>,
    /// Largest message sent or accepted, bytes.
    pub max_payload: usize,
    /// A file holding a NATS token to authenticate with (e.g. the
    /// provisioning broker's bootstrap token), read at connect time.
    pub token_file: Option<PathBuf>,
    /// With `token_file`: the NATS user whose password the token is (the
    /// provisioning broker's user is `provisioning`).
    pub user: Option<String>,
    /// How often the connection is pinged: a broker that stops answering (a dead host, a
    /// partition, where no TCP reset comes) is left after two missed pings, and the next
    /// server of `servers` tried.
    pub ping_interval: std::time::Duration,
    /// Try `servers` in the order given (a site's own server first) instead of in a random
    /// order, which spreads a fleet over a cluster.
    pub servers_in_order: bool,
}

/// [`NatsConfig::ping_interval`]'s default: a lost broker is noticed within about 30 s.
pub const DEFAULT_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            max_payload: crate::wire::DEFAULT_MAX_PAYLOAD,
            token_file: None,
            user: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            servers_in_order: false,
        }
    }
}

impl NatsConfig {
    fn read(r: &mut Reader, t: &Table) -> NatsConfig {
        let p = "nats";
        r.unknown(
            t,
            p,
            &[
                "servers",
                "max_payload",
                "token_file",
                "user",
                "ping_interval",
                "servers_in_order",
            ],
        );
        let token_file = r.path(t, p, "token_file");
        let user = r.string(t, p, "user");
        if user.is_some() && token_file.is_none() {
            r.error("nats.user", "needs nats.token_file (the user's password)");
        }
        let mut c = NatsConfig::default();
        if let Some(s) = r.strings(t, p, "servers") {
            if s.is_empty() {
                r.error("nats.servers", "needs at least one server URL");
            }
            c.servers = s;
        }
        if let Some(m) = r.unsigned(t, p, "max_payload") {
            if m < 1024 {
                r.error("nats.max_payload", "must be at least 1024 bytes");
            }
            c.max_payload = m as usize;
        }
        if let Some(d) = r.duration(t, p, "ping_interval") {
            if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(600)
            {
                r.error("nats.ping_interval", "must be between 100ms and 10m");
            } else {
                c.ping_interval = d;
            }
        }
        if let Some(b) = r.boolean(t, p, "servers_in_order") {
            c.servers_in_order = b;
        }
        c.token_file = token_file;
        c.user = user;
        c
    }
}
