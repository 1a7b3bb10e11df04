//! The webhook notifier: an HTTP POST of the JSON event to an `http://` or
//! `https://` URL.
//!
//! The client is ureq (blocking HTTP/1.1, run on tokio's blocking pool so no
//! async thread waits on the network) over rustls with the ring provider.
//! An `https://` hook is trusted through the certificates of its `ca` file
//! (a hook served with the collective's own CA) or, without one, the
//! system's trusted roots (read by rustls-native-certs: the system store,
//! or `SSL_CERT_FILE` / `SSL_CERT_DIR`). The certificate and the host name
//! are always verified; there is no switch to turn that off.
//!
//! One `timeout` bounds the whole exchange (resolving, connecting, the TLS
//! handshake, sending and the answer's head), from the moment the event is
//! handed over. Any answer but 2xx is an error naming its status; a redirect
//! is never followed (it could send the event elsewhere), it is an error.
//! At most [`BODY_READ`] bytes of a 2xx answer's body are read, so that a
//! connection may be reused (at most [`IDLE_CONNECTIONS`] idle ones kept).
//! No proxy is used, whatever the environment says.
//!
//! Header values (tokens) are never shown: errors and `Debug` name the URL
//! without its userinfo or query and the headers by name only, and ureq's
//! raw wire dump (a `trace` log of `ureq_proto`, which would hold them) is
//! kept out of the provisioner's log by [`quiet_wire_dumps`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ureq::http::{HeaderName, HeaderValue, Uri};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Bytes of a 2xx answer's body read (and dropped) at most.
pub const BODY_READ: u64 = 4096;

/// Idle connections a webhook keeps for reuse at most.
pub const IDLE_CONNECTIONS: usize = 2;

/// Headers the client sets from the request itself; `headers` may not.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "trailer",
    "expect",
];

/// A config problem of a webhook: the key under its `[[notify]]` table
/// (`url`, `ca`, `headers.NAME`) and what is wrong, never a header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key, relative to the webhook's table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A webhook; cheap to clone (its client and connections are shared).
#[derive(Clone)]
pub struct Webhook(Arc<Inner>);

struct Inner {
    url: String,
    shown: String,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    ca: Option<PathBuf>,
    https: bool,
    /// The `ca` file's certificates; `None`: the system's roots.
    ca_certs: Option<Vec<Certificate<'static>>>,
    /// The client, and how many roots it trusts; made at the first event
    /// (on a blocking thread: the system's roots are read from files).
    client: OnceLock<(ureq::Agent, usize)>,
}

impl Webhook {
    /// A webhook posting to `url` (`http://` or `https://`) within
    /// `timeout`, with the extra `headers` (names and values as configured)
    /// and, for `https://`, trusting the certificates of the PEM file `ca`,
    /// or the system's roots without one. The `ca` file is read here: one
    /// that cannot be read or holds no certificate is an error now, not at
    /// the first event.
    pub fn new(
        url: &str,
        timeout: Duration,
        ca: Option<&Path>,
        headers: &[(String, String)],
    ) -> Result<Webhook, Vec<Invalid>> {
        let mut errors = Vec::new();
        let shown = shown(url);
        let https = match check_url(url) {
            Ok(https) => https,
            Err(e) => {
                errors.push(invalid("url", e));
                false
            }
        };
        if timeout.is_zero() {
            errors.push(invalid("timeout", "must be more than 0s"));
        }
        let mut hs = Vec::new();
        for (name, value) in headers {
            match header(name, value) {
                Ok(h) => hs.push(h),
                Err(e) => errors.push(invalid(format!("headers.{name}"), e)),
            }
        }
        let ca_certs = match ca {
            Some(_) if errors.is_empty() && !https => {
                errors.push(invalid(
                    "ca",
                    format!("{shown}: a ca is for https:// URLs only"),
                ));
                None
            }
            Some(path) => read_ca(path)
                .map_err(|e| errors.push(invalid("ca", e)))
                .ok(),
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Webhook(Arc::new(Inner {
            url: url.to_string(),
            shown,
            timeout,
            headers: hs,
            ca: ca.map(Path::to_path_buf),
            https,
            ca_certs,
            client: OnceLock::new(),
        })))
    }

    /// The URL as shown in errors: without userinfo or query.
    pub fn shown_url(&self) -> &str {
        &self.0.shown
    }

    /// The bound on one exchange.
    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// The names of the extra headers (their values are never shown).
    pub fn header_names(&self) -> Vec<&str> {
        self.0.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Posts `body` (JSON); Ok once the hook answered 2xx.
    pub async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let deadline = Instant::now() + self.0.timeout;
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || me.post(&body, deadline));
        match tokio::time::timeout(self.0.timeout, task).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => Err(format!("webhook {}: {e}", self.0.shown)),
            Err(_) => Err(self.no_answer()),
        }
    }

    fn no_answer(&self) -> String {
        format!(
            "webhook {}: no answer within {:?}",
            self.0.shown, self.0.timeout
        )
    }

    /// The exchange, on a blocking thread; nothing is sent once `deadline`
    /// has passed (the task may have waited for a thread).
    fn post(&self, body: &[u8], deadline: Instant) -> Result<(), String> {
        let me = &self.0;
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.no_answer())?;
        let (agent, _) = self.client();
        let mut req = agent
            .post(me.url.as_str())
            .config()
            .timeout_global(Some(left))
            .build();
        if !me
            .headers
            .iter()
            .any(|(n, _)| n == ureq::http::header::CONTENT_TYPE)
        {
            req = req.header(ureq::http::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &me.headers {
            req = req.header(name, value);
        }
        let mut answer = req.send(body).map_err(|e| self.describe(e))?;
        let status = answer.status();
        if status.is_success() {
            // Delivered; the body only matters for reusing the connection.
            let _ = answer
                .body_mut()
                .with_config()
                .limit(BODY_READ)
                .read_to_vec();
            Ok(())
        } else if status.is_redirection() {
            Err(format!(
                "webhook {}: answered {status}; redirects are not followed",
                me.shown
            ))
        } else {
            Err(format!("webhook {}: answered {status}", me.shown))
        }
    }

    /// The client, made at the first call: trusting the `ca` file's
    /// certificates, or the system's roots (none for `http://`).
    fn client(&self) -> &(ureq::Agent, usize) {
        self.0.client.get_or_init(|| {
            let roots = match &self.0.ca_certs {
                Some(certs) => certs.clone(),
                None if self.0.https => system_roots(),
                None => Vec::new(),
            };
            let n = roots.len();
            (agent(roots), n)
        })
    }

    /// An error of the exchange, in words that hold no header value.
    fn describe(&self, e: ureq::Error) -> String {
        let me = &self.0;
        let roots = self.client().1;
        let what = match e {
            ureq::Error::Timeout(_) => return self.no_answer(),
            // The URL was checked when loaded; its text may hold userinfo.
            ureq::Error::BadUri(_) => "not a usable URL".to_string(),
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::Rustls(tls) => format!("TLS: {tls}"),
            other => other.to_string(),
        };
        let hint = if roots == 0 && me.https && what.contains("certificate") {
            " (no trusted roots were found on this system: give the webhook a ca)"
        } else {
            ""
        };
        format!("webhook {}: {what}{hint}", me.shown)
    }
}

impl PartialEq for Webhook {
    fn eq(&self, other: &Webhook) -> bool {
        let (a, b) = (&self.0, &other.0);
        a.url == b.url && a.timeout == b.timeout && a.headers == b.headers && a.ca == b.ca
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.0.shown)
            .field("timeout", &self.0.timeout)
            .field("headers", &self.header_names())
            .field("ca", &self.0.ca)
            .finish()
    }
}

/// `url` without its userinfo, query or fragment (a `?…` marks a query),
/// for errors and logs.
pub fn shown(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (path, query) = match tail.find(['?', '#']) {
        Some(i) => (&tail[..i], tail[i..].starts_with('?')),
        None => (tail, false),
    };
    format!("{scheme}{host}{path}{}", if query { "?…" } else { "" })
}

/// Checks a webhook URL: `http://` or `https://` with a host. Ok(true) for
/// `https://`. The error names the URL as [`shown`].
pub fn check_url(url: &str) -> Result<bool, String> {
    let shown = shown(url);
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{shown}: not a URL ({e})"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{shown}: webhooks are http:// or https:// URLs")),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{shown}: no host"));
    }
    Ok(https)
}

/// One extra header, checked: a valid name that the client does not set
/// itself and a valid value. The error never holds the value.
pub fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    if RESERVED.contains(&n.as_str()) {
        return Err(format!("{name} is set by the client itself"));
    }
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        "not a valid header value (visible ASCII and spaces only, no line breaks)".to_string()
    })?;
    v.set_sensitive(true);
    Ok((n, v))
}

/// The largest `ca` file read.
pub const CA_FILE_MAX: u64 = 1 << 20;

/// Reads the PEM file `path` (a regular file of at most [`CA_FILE_MAX`]
/// bytes): every certificate in it, each checked as a trust anchor; at
/// least one.
pub fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    use std::io::Read;
    let fail = |e: &dyn fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
    let meta = file.metadata().map_err(|e| fail(&e))?;
    if !meta.is_file() {
        return Err(fail(&"not a regular file"));
    }
    let mut pem = Vec::new();
    file.take(CA_FILE_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(|e| fail(&e))?;
    if pem.len() as u64 > CA_FILE_MAX {
        return Err(fail(&format!("larger than {CA_FILE_MAX} bytes")));
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => {
                let der = rustls::pki_types::CertificateDer::from(c.der().to_vec());
                rustls::RootCertStore::empty()
                    .add(der)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
                certs.push(c);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{}: not PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The system's trusted roots, those that parse; none if there are none.
fn system_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    found
        .certs
        .into_iter()
        .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect()
}

fn agent(roots: Vec<Certificate<'static>>) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("mco-provisioner")
        .max_response_header_size(16 * 1024)
        .max_idle_connections(IDLE_CONNECTIONS)
        .max_idle_connections_per_host(IDLE_CONNECTIONS)
        .build()
        .new_agent()
}

/// `filter` with ureq's raw wire dump turned off: `ureq_proto` logs every
/// byte sent (headers, so tokens, included) at `trace`. The provisioner's
/// binary applies it to whatever `MCO_LOG` asks for.
pub fn quiet_wire_dumps(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    ["ureq_proto=off", "ureq_proto::util=off"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d))
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
