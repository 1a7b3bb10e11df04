//! Configuration files (ARCHITECTURE.md §8): TOML, every bad or unknown key reported
//! at once with the file and key name.
//!
//! The two configs live here rather than in their binaries because other
//! parts read and write them too (the provisioner writes a responder config,
//! and must validate it exactly as the responder will).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

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

/// Reads typed values out of a TOML document, collecting every error.
///
/// A reader made by [`parse`](Self::parse) reads a whole file; one made by
/// [`for_table`](Self::for_table) reads a table already parsed out of one
/// (a plugin's `[plugin.NAME]`), naming every key it reports under that
/// table's dotted name, so `timeout` is reported as `plugin.nrpe.timeout`.
pub struct Reader {
    file: String,
    root: String,
    errors: Vec<ConfigError>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Reader {
    /// Parses `text`; a TOML syntax error is reported like any other.
    pub fn parse(file: &Path, text: &str) -> (Reader, Table) {
        let mut r = Reader {
            file: file.display().to_string(),
            root: String::new(),
            errors: Vec::new(),
        };
        let table = match text.parse::<Table>() {
            Ok(t) => t,
            Err(e) => {
                r.errors.push(ConfigError {
                    file: r.file.clone(),
                    key: String::new(),
                    message: format!("not valid TOML: {}", e.to_string().trim()),
                });
                Table::new()
            }
        };
        (r, table)
    }

    /// Starts reading a table already parsed out of `file`, whose dotted
    /// name is `root` (e.g. `plugin.resource`): every key this reader
    /// reports, including those given to [`error`](Self::error), is named
    /// `root.key`. The keys passed to its methods are relative to the table.
    pub fn for_table(file: &Path, root: &str) -> Reader {
        Reader {
            file: file.display().to_string(),
            root: root.to_string(),
            errors: Vec::new(),
        }
    }

    /// Records an error for `key` (under this reader's table, if it reads one).
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            key: join(&self.root, key),
            message: message.into(),
        });
    }

    /// Reports every key of `t` not in `known`.
    pub fn unknown(&mut self, t: &Table, prefix: &str, known: &[&str]) {
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                self.error(
                    &join(prefix, k),
                    format!("unknown key (known here: {})", known.join(", ")),
                );
            }
        }
    }

    fn typed<T>(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        want: &str,
        f: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let v = t.get(key)?;
        let out = f(v);
        if out.is_none() {
            self.error(
                &join(prefix, key),
                format!("expected {want}, found {}", v.type_str()),
            );
        }
        out
    }

    /// A string.
    pub fn string(&mut self, t: &Table, prefix: &str, key: &str) -> Option<String> {
        self.typed(t, prefix, key, "a string", |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// A path (a string, `~/` expanded).
    pub fn path(&mut self, t: &Table, prefix: &str, key: &str) -> Option<PathBuf> {
        self.string(t, prefix, key).map(|s| expand_home(&s))
    }

    /// A boolean.
    pub fn boolean(&mut self, t: &Table, prefix: &str, key: &str) -> Option<bool> {
        self.typed(t, prefix, key, "a boolean", Value::as_bool)
    }

    /// A non-negative integer.
    pub fn unsigned(&mut self, t: &Table, prefix: &str, key: &str) -> Option<u64> {
        self.typed(t, prefix, key, "a non-negative integer", |v| {
            v.as_integer().and_then(|i| u64::try_from(i).ok())
        })
    }

    /// An array of strings.
    pub fn strings(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Vec<String>> {
        self.typed(t, prefix, key, "an array of strings", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect()
        })
    }

    /// An array of paths.
    pub fn paths(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Vec<PathBuf>> {
        self.strings(t, prefix, key)
            .map(|v| v.iter().map(|s| expand_home(s)).collect())
    }

    /// A duration string (`2s`) or a number of seconds.
    pub fn duration(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Duration> {
        match t.get(key)? {
            Value::Integer(i) if *i >= 0 => Some(Duration::from_secs(*i as u64)),
            Value::Float(f) if *f >= 0.0 && f.is_finite() => Some(Duration::from_secs_f64(*f)),
            Value::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(m) => {
                    self.error(&join(prefix, key), m);
                    None
                }
            },
            other => {
                self.error(
                    &join(prefix, key),
                    format!(
                        "expected a duration like \"2s\", found {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    /// A sub-table.
    pub fn table<'t>(&mut self, t: &'t Table, prefix: &str, key: &str) -> Option<&'t Table> {
        match t.get(key)? {
            Value::Table(inner) => Some(inner),
            other => {
                self.error(
                    &join(prefix, key),
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Ends reading: every error found, or none.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

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
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            max_payload: crate::wire::DEFAULT_MAX_PAYLOAD,
            token_file: None,
        }
    }
}

impl NatsConfig {
    fn read(r: &mut Reader, t: &Table) -> NatsConfig {
        let p = "nats";
        r.unknown(t, p, &["servers", "max_payload", "token_file"]);
        let token_file = r.path(t, p, "token_file");
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
        c.token_file = token_file;
        c
    }
}

/// The responder's configuration (`/etc/mco/responder.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponderConfig {
    /// The file it came from, for messages.
    pub file: PathBuf,
    /// Node identity; `None` means the FQDN.
    pub identity: Option<String>,
    /// Collectives served; the first is the main one.
    pub collectives: Vec<String>,
    /// Broker connection.
    pub nats: NatsConfig,
    /// Fact and class sources.
    pub facts: FactsConfig,
    /// Agents.
    pub agents: AgentsConfig,
    /// Security.
    pub security: SecurityConfig,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Default log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// `[plugin.NAME]` tables, owned by each agent.
    pub plugin: BTreeMap<String, Table>,
    /// `[provisioning]`, if present.
    pub provisioning: Option<crate::provisioning::ProvisioningConfig>,
}

/// `[facts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FactsConfig {
    /// YAML or JSON fact files, merged in order.
    pub files: Vec<PathBuf>,
    /// Commands that print a JSON object, merged after the files.
    pub commands: Vec<String>,
    /// Puppet-style classes file, one class per line.
    pub classes_file: Option<PathBuf>,
    /// How often facts are re-read.
    pub refresh: Duration,
    /// Whether built-in system facts are gathered.
    pub system: bool,
}

impl Default for FactsConfig {
    fn default() -> Self {
        FactsConfig {
            files: Vec::new(),
            commands: Vec::new(),
            classes_file: None,
            refresh: Duration::from_secs(300),
            system: true,
        }
    }
}

/// `[agents]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentsConfig {
    /// Agents to host; `None` means every built-in one.
    pub enabled: Option<Vec<String>>,
    /// Extra DDL directories.
    pub ddl_dirs: Vec<PathBuf>,
    /// Actions running at once; more get a `busy` reply.
    pub max_concurrent: usize,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            enabled: None,
            ddl_dirs: Vec::new(),
            max_concurrent: 64,
        }
    }
}

fn check_token(r: &mut Reader, key: &str, value: &str) {
    if !crate::subject::valid_token(value) {
        r.error(
            key,
            format!("{value:?} cannot be used in a subject (no spaces, '.', '*' or '>')"),
        );
    }
}

impl ResponderConfig {
    /// Loads and checks a responder config file.
    pub fn load(path: &Path) -> Result<ResponderConfig, ConfigErrors> {
        let text = read_file(path)?;
        ResponderConfig::from_toml(path, &text)
    }

    /// Parses and checks responder config text; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<ResponderConfig, ConfigErrors> {
        let (mut r, t) = Reader::parse(path, text);
        r.unknown(
            &t,
            "",
            &[
                "identity",
                "collectives",
                "nats",
                "facts",
                "agents",
                "security",
                "shutdown_grace",
                "log_level",
                "plugin",
                "provisioning",
            ],
        );
        let identity = r.string(&t, "", "identity");
        if let Some(id) = &identity {
            if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c == '*' || c == '>') {
                r.error("identity", format!("{id:?} is not a valid identity"));
            }
        }
        let collectives = r
            .strings(&t, "", "collectives")
            .unwrap_or_else(|| vec!["mcollective".into()]);
        if collectives.is_empty() {
            r.error("collectives", "needs at least one collective");
        }
        for c in &collectives {
            check_token(&mut r, "collectives", c);
        }
        let nats = r
            .table(&t, "", "nats")
            .map(|n| NatsConfig::read(&mut r, n))
            .unwrap_or_default();
        let facts = match r.table(&t, "", "facts") {
            Some(f) => {
                let p = "facts";
                r.unknown(
                    f,
                    p,
                    &["files", "commands", "classes_file", "refresh", "system"],
                );
                let d = FactsConfig::default();
                let refresh = r.duration(f, p, "refresh").unwrap_or(d.refresh);
                if refresh < Duration::from_secs(1) {
                    r.error("facts.refresh", "must be at least 1s");
                }
                FactsConfig {
                    files: r.paths(f, p, "files").unwrap_or_default(),
                    commands: r.strings(f, p, "commands").unwrap_or_default(),
                    classes_file: r.path(f, p, "classes_file"),
                    refresh,
                    system: r.boolean(f, p, "system").unwrap_or(true),
                }
            }
            None => FactsConfig::default(),
        };
        let agents = match r.table(&t, "", "agents") {
            Some(a) => {
                let p = "agents";
                r.unknown(a, p, &["enabled", "ddl_dirs", "max_concurrent"]);
                let max = r.unsigned(a, p, "max_concurrent").unwrap_or(64);
                if max == 0 {
                    r.error("agents.max_concurrent", "must be at least 1");
                }
                AgentsConfig {
                    enabled: r.strings(a, p, "enabled"),
                    ddl_dirs: r.paths(a, p, "ddl_dirs").unwrap_or_default(),
                    max_concurrent: max as usize,
                }
            }
            None => AgentsConfig::default(),
        };
        let security = r
            .table(&t, "", "security")
            .map(|s| SecurityConfig::read(&mut r, s, true))
            .unwrap_or_default();
        let shutdown_grace = r
            .duration(&t, "", "shutdown_grace")
            .unwrap_or(Duration::from_secs(10));
        let log_level = r
            .string(&t, "", "log_level")
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            r.error(
                "log_level",
                "must be one of error, warn, info, debug, trace",
            );
        }
        let mut plugin = BTreeMap::new();
        if let Some(p) = r.table(&t, "", "plugin") {
            for (name, v) in p {
                match v {
                    Value::Table(tbl) => {
                        plugin.insert(name.clone(), tbl.clone());
                    }
                    other => r.error(
                        &format!("plugin.{name}"),
                        format!("expected a table, found {}", other.type_str()),
                    ),
                }
            }
        }
        let provisioning = r
            .table(&t, "", "provisioning")
            .map(|p| crate::provisioning::ProvisioningConfig::read(&mut r, p));
        r.finish()?;
        Ok(ResponderConfig {
            file: path.to_path_buf(),
            identity,
            collectives,
            nats,
            facts,
            agents,
            security,
            shutdown_grace,
            log_level,
            plugin,
            provisioning,
        })
    }
}

/// The client's configuration (`~/.config/mco/client.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// Caller name; the caller is `user:<identity>`.
    pub identity: String,
    /// Default collective.
    pub collective: String,
    /// Broker connection.
    pub nats: NatsConfig,
    /// Security.
    pub security: SecurityConfig,
    /// Extra DDL directories.
    pub ddl_dirs: Vec<PathBuf>,
    /// Discovery timeout.
    pub discovery_timeout: Duration,
    /// Quiet window that ends discovery early.
    pub discovery_window: Duration,
    /// Request TTL.
    pub ttl: Duration,
}

impl ClientConfig {
    /// The configuration used when no file exists.
    pub fn defaults() -> ClientConfig {
        ClientConfig {
            file: None,
            identity: default_user(),
            collective: "mcollective".into(),
            nats: NatsConfig::default(),
            security: SecurityConfig {
                default_policy: "deny".into(),
                ..Default::default()
            },
            ddl_dirs: Vec::new(),
            discovery_timeout: Duration::from_secs(2),
            discovery_window: Duration::from_millis(300),
            ttl: Duration::from_secs(u64::from(crate::wire::DEFAULT_TTL_S)),
        }
    }

    /// Loads and checks a client config file.
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigErrors> {
        let text = read_file(path)?;
        ClientConfig::from_toml(path, &text)
    }

    /// Parses and checks client config text.
    pub fn from_toml(path: &Path, text: &str) -> Result<ClientConfig, ConfigErrors> {
        let (mut r, t) = Reader::parse(path, text);
        r.unknown(
            &t,
            "",
            &[
                "identity",
                "collective",
                "nats",
                "security",
                "ddl_dirs",
                "discovery",
                "ttl",
            ],
        );
        let mut c = ClientConfig::defaults();
        c.file = Some(path.to_path_buf());
        if let Some(id) = r.string(&t, "", "identity") {
            if id.is_empty() || id.contains(char::is_whitespace) {
                r.error("identity", format!("{id:?} is not a valid caller name"));
            }
            c.identity = id;
        }
        if let Some(col) = r.string(&t, "", "collective") {
            check_token(&mut r, "collective", &col);
            c.collective = col;
        }
        if let Some(n) = r.table(&t, "", "nats") {
            c.nats = NatsConfig::read(&mut r, n);
        }
        c.ddl_dirs = r.paths(&t, "", "ddl_dirs").unwrap_or_default();
        if let Some(s) = r.table(&t, "", "security") {
            c.security = SecurityConfig::read(&mut r, s, false);
            c.ddl_dirs
                .extend(r.paths(s, "security", "ddl_dirs").unwrap_or_default());
        }
        if let Some(d) = r.table(&t, "", "discovery") {
            r.unknown(d, "discovery", &["timeout", "window"]);
            if let Some(v) = r.duration(d, "discovery", "timeout") {
                c.discovery_timeout = v;
            }
            if let Some(v) = r.duration(d, "discovery", "window") {
                c.discovery_window = v;
            }
        }
        if let Some(v) = r.duration(&t, "", "ttl") {
            if v < Duration::from_secs(1) {
                r.error("ttl", "must be at least 1s");
            }
            c.ttl = v;
        }
        r.finish()?;
        Ok(c)
    }
}

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn responder_design_example_loads() {
        let text = r#"
identity = "web-01.example.net"
collectives = ["mcollective", "eu"]
[nats]
servers = ["nats://127.0.0.1:4222"]
[facts]
files = ["/etc/mco/facts.yaml", "/etc/mco/facts.d/extra.json"]
commands = []
classes_file = "/var/lib/puppet/state/classes.txt"
refresh = "5m"
[agents]
enabled = ["rpcutil", "resource", "nrpe"]
ddl_dirs = []
[security]
ca = "/etc/mco/ssl/ca.pem"
cert = "/etc/mco/ssl/node.pem"
key = "/etc/mco/ssl/node.key"
crl = "/etc/mco/ssl/ca.crl"
insecure = false
policy_dir = "/etc/mco/policies"
default_policy = "deny"
audit_log = "/var/log/mco/audit.jsonl"
[plugin.nrpe]
conf_dir = "/etc/nagios/nrpe.d"
"#;
        let c = ResponderConfig::from_toml(Path::new("r.toml"), text).unwrap();
        assert!(
            !c.security.presign,
            "RFC 8032 deterministic signing is the default"
        );
        assert_eq!(c.security.max_ttl, DEFAULT_MAX_TTL);
        assert_eq!(c.security.replay_cache, DEFAULT_REPLAY_CACHE);
        let on = text.replace(
            "insecure = false",
            "presign = true\nmax_ttl = \"90s\"\nreplay_cache = 7",
        );
        let on = ResponderConfig::from_toml(Path::new("r.toml"), &on).unwrap();
        assert!(on.security.presign);
        assert_eq!(on.security.max_ttl, Duration::from_secs(90));
        assert_eq!(on.security.replay_cache, 7);
        for bad in ["max_ttl = \"0s\"", "replay_cache = 0"] {
            let t = text.replace("insecure = false", bad);
            let e = ResponderConfig::from_toml(Path::new("r.toml"), &t).unwrap_err();
            assert!(e.to_string().contains("security."), "{bad}: {e}");
        }
        assert_eq!(c.collectives, vec!["mcollective", "eu"]);
        assert_eq!(c.facts.refresh, Duration::from_secs(300));
        assert!(c.plugin["nrpe"].contains_key("conf_dir"));
    }

    #[test]
    fn every_bad_key_reported_at_once() {
        let text = r#"
identiti = "x"
collectives = "eu"
[nats]
servers = [1]
[facts]
refresh = "5 fortnights"
colour = "red"
"#;
        let e = ResponderConfig::from_toml(Path::new("/etc/r.toml"), text).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "identiti",
                "collectives",
                "nats.servers",
                "facts.colour",
                "facts.refresh"
            ],
            "{e}"
        );
        assert!(e.to_string().contains("/etc/r.toml: identiti: unknown key"));
    }

    #[test]
    fn client_design_example_loads() {
        let text = r#"
identity = "alice"
collective = "mcollective"
[nats]
servers = ["nats://127.0.0.1:4222"]
[security]
ca = "~/.config/mco/ssl/ca.pem"
cert = "~/.config/mco/ssl/alice.pem"
key = "~/.config/mco/ssl/alice.key"
insecure = false
ddl_dirs = ["/opt/ddl"]
[discovery]
timeout = "2s"
window = "300ms"
"#;
        let c = ClientConfig::from_toml(Path::new("c.toml"), text).unwrap();
        assert_eq!(c.identity, "alice");
        assert_eq!(c.ddl_dirs, vec![PathBuf::from("/opt/ddl")]);
        assert_eq!(c.discovery_window, Duration::from_millis(300));
        let e =
            ClientConfig::from_toml(Path::new("c.toml"), "[discovery]\nwindw = 1\n").unwrap_err();
        assert_eq!(e.0[0].key, "discovery.windw");
    }

    #[test]
    fn a_table_reader_names_keys_under_its_table() {
        let t: Table = "timeout = true\ncolour = 1\n[sub]\nx = 2\n"
            .parse()
            .unwrap();
        let mut r = Reader::for_table(Path::new("/etc/mco/r.toml"), "plugin.p");
        r.unknown(&t, "", &["timeout", "sub"]);
        assert_eq!(r.duration(&t, "", "timeout"), None);
        let sub = r.table(&t, "", "sub").unwrap();
        r.unknown(sub, "sub", &["y"]);
        r.error("sub.y", "is required");
        let e = r.finish().unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plugin.p.colour",
                "plugin.p.timeout",
                "plugin.p.sub.x",
                "plugin.p.sub.y"
            ]
        );
        assert!(e.0.iter().all(|e| e.file == "/etc/mco/r.toml"));
        assert!(e
            .to_string()
            .starts_with("/etc/mco/r.toml: plugin.p.colour: unknown key"));
        assert!(Reader::for_table(Path::new("x"), "plugin.p")
            .finish()
            .is_ok());
    }
}
