//! What the fuzz targets share: a node to evaluate filters and policies
//! against, a test collective (CA, a user, a node, a provisioning-mode key)
//! made once per process with the real `mco_pki`, the shipped DDLs,
//! and a way to run each input on a stack the size of the responder's
//! worker threads.
//!
//! The targets are in `fuzz_targets/`; `scripts/fuzz` builds and runs them
//! all. Nothing here masks a failure: a panic, an abort or a stack overflow
//! anywhere below a target is a crash libFuzzer reports.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use mco_core::filter::FilterTarget;
use mco_pki::{Ca, IssueOptions, Kind as PkiKind};
use mco_security::{Credentials, NodeKey, TrustStore};
use serde_json::Value;
use tempfile::TempDir;

/// The stack of a tokio worker or blocking thread (tokio's default), where
/// the responder and the client parse what they receive. Every target runs
/// its input on a thread with this stack, so unbounded recursion fails here
/// exactly as it would in production.
pub const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a fresh thread with a [`WORKER_STACK`] stack and returns its
/// result. A panic there aborts the process (libFuzzer's panic hook), which
/// libFuzzer reports as a crash with the input; so does a stack overflow,
/// see [`SignalStack`].
pub fn on_worker_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("fuzz-worker".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(s, || {
                let _alt = SignalStack::install();
                f()
            })
            .expect("spawn a worker thread")
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// An alternate signal stack for the current thread, so that libFuzzer's
/// SIGSEGV handler still runs when the thread's own stack has overflowed:
/// without it (and without a sanitizer, which would set one up) the handler
/// faults on the exhausted stack and the process dies with no report and
/// no saved input. Installing the first one also makes libFuzzer's handler
/// run on alternate stacks (`SA_ONSTACK`).
pub struct SignalStack {
    _stack: Vec<u8>,
}

/// Size of each alternate signal stack.
const SIGNAL_STACK: usize = 256 * 1024;

impl SignalStack {
    /// Installs one for the current thread until the value is dropped.
    pub fn install() -> SignalStack {
        static ONSTACK: std::sync::Once = std::sync::Once::new();
        ONSTACK.call_once(|| {
            // SAFETY: reads and rewrites the process's SIGSEGV and SIGBUS
            // actions with one more flag; the handler stays libFuzzer's.
            unsafe {
                for sig in [libc::SIGSEGV, libc::SIGBUS] {
                    let mut act: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &mut act) == 0 {
                        act.sa_flags |= libc::SA_ONSTACK;
                        libc::sigaction(sig, &act, std::ptr::null_mut());
                    }
                }
            }
        });
        let mut stack = vec![0u8; SIGNAL_STACK];
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: stack.len(),
        };
        // SAFETY: the stack lives as long as the returned value, whose drop
        // disables it before it is freed.
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
        SignalStack { _stack: stack }
    }
}

impl Drop for SignalStack {
    fn drop(&mut self) {
        let ss = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: only turns this thread's alternate stack off.
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    }
}

/// The current time, Unix seconds, as the verifiers take it.
pub fn now_s() -> i64 {
    (mco_core::wire::now_ms() / 1000) as i64
}

/// Splits `data` at its first NUL byte: two independent inputs in one.
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// One node's view of itself, for filters and policies.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its identity.
    pub identity: String,
    /// Its facts (a JSON object).
    pub facts: serde_json::Map<String, Value>,
    /// Its classes.
    pub classes: Vec<String>,
    /// The agents it hosts.
    pub agents: Vec<String>,
}

impl Node {
    /// A web server with nested, numeric, boolean, list and dotted facts.
    pub fn web() -> Node {
        let facts = serde_json::json!({
            "role": "web", "country": "fr", "cpus": 8, "load": 0.25, "version": "1.10.2",
            "os": {"family": "Debian", "release": {"major": 12, "full": "12.5"}},
            "tags": ["a", "b"], "enabled": true, "nothing": null, "dotted.key": "yes"
        });
        Node {
            identity: "web-01.example.net".into(),
            facts: facts.as_object().cloned().unwrap_or_default(),
            classes: vec!["nginx".into(), "base::users".into(), "role::web".into()],
            agents: vec![
                "rpcutil".into(),
                "nrpe".into(),
                "resource".into(),
                "provision".into(),
            ],
        }
    }
}

impl FilterTarget for Node {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn fact(&self, path: &str) -> Option<&Value> {
        mco_core::facts::lookup(&self.facts, path)
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.agents.iter().any(|a| a == agent)
    }
    fn agents(&self) -> Vec<&str> {
        self.agents.iter().map(String::as_str).collect()
    }
}

/// A collective made once per process: a CA with a user and a node
/// certificate, and a provisioning-mode node key.
pub struct TestPki {
    /// Holds the CA directory and every file in it.
    pub dir: TempDir,
    /// The CA, able to sign CSRs and CRLs.
    pub ca: Ca,
    /// `ca.pem`.
    pub ca_path: PathBuf,
    /// The CA and no CRL.
    pub trust: TrustStore,
    /// `user:alice`.
    pub user: Credentials,
    /// `node:web-01.example.net`.
    pub node: Credentials,
    /// The DER of alice's certificate.
    pub user_cert_der: Vec<u8>,
    /// A node key as a node in provisioning mode signs with.
    pub node_key: NodeKey,
}

/// The node whose certificate [`TestPki::node`] holds.
pub const NODE_NAME: &str = "web-01.example.net";

/// The committed CA every target trusts (`fixtures/ca`): fixed, so the
/// committed seeds (CRLs it signed, known-certificates files naming it)
/// reach past the CA checks. It is a test CA for fuzzing only.
pub fn fixture_ca_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ca")
}

impl TestPki {
    fn make() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("mco-fuzz-pki")
            .tempdir()
            .expect("a temporary directory");
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir(&ca_dir).expect("the CA directory");
        for f in ["ca.pem", "ca.key", "index.json"] {
            std::fs::copy(fixture_ca_dir().join(f), ca_dir.join(f)).expect("the fixture CA");
        }
        let ca = Ca::load(&ca_dir).expect("the fixture CA loads");
        remove_at_exit(dir.path());
        Self::with_ca(dir, ca)
    }

    /// A user and a node issued by `ca`, whose directory is under `dir`.
    pub fn with_ca(dir: TempDir, ca: Ca) -> TestPki {
        let user = ca
            .issue("alice", PkiKind::User, &IssueOptions::default())
            .expect("a user certificate");
        let node = ca
            .issue(NODE_NAME, PkiKind::Node, &IssueOptions::default())
            .expect("a node certificate");
        let load = |issued: &mco_pki::Issued| {
            let key = issued.key_path.as_ref().expect("the CA made the key");
            Credentials::load(&issued.cert_path, key).expect("credentials load")
        };
        let ca_path = ca.dir().join("ca.pem");
        let trust = TrustStore::load(&ca_path, None).expect("the trust store loads");
        TestPki {
            user: load(&user),
            node: load(&node),
            user_cert_der: pem_der(&user.cert_pem),
            trust,
            ca_path,
            ca,
            node_key: NodeKey::generate(),
            dir,
        }
    }

    /// The CA directory.
    pub fn ca_dir(&self) -> &Path {
        self.ca.dir()
    }
}

/// Removes `dir` when the process exits (libFuzzer ends with `exit`): the
/// process-wide [`TestPki`] is never dropped, and each run, and each job of
/// a `-fork` run, makes one.
fn remove_at_exit(dir: &Path) {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    extern "C" fn remove() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    if DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function that only removes a directory.
        unsafe { libc::atexit(remove) };
    }
}

/// The process's [`TestPki`], made on first use.
pub fn pki() -> &'static TestPki {
    static PKI: LazyLock<TestPki> = LazyLock::new(TestPki::make);
    &PKI
}

/// The DER inside the first PEM block of `pem`.
pub fn pem_der(pem: &str) -> Vec<u8> {
    ::pem::parse(pem)
        .expect("PEM from our own CA")
        .into_contents()
}

/// `der` armoured as PEM with `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(label, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// HMAC-SHA256 (RFC 2104) with a 32-byte key: what authenticates a
/// known-certificates file, so a target can write one the store accepts.
pub fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The DDLs the project ships (`ddl/*.json` but the JSON Schema), as the
/// responder and client load them.
pub fn shipped_ddls() -> &'static [mco_core::Ddl] {
    static DDLS: LazyLock<Vec<mco_core::Ddl>> = LazyLock::new(|| {
        ddl_files()
            .iter()
            .map(|p| mco_core::Ddl::from_file(p).expect("a shipped DDL loads"))
            .collect()
    });
    &DDLS
}

/// The shipped DDL files, sorted: `ddl/*.json` but `schema.json`.
pub fn ddl_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ddl");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the ddl directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "schema.json"))
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        for n in 0..10 {
            let der: Vec<u8> = (0..n).map(|i: u32| (i * 37) as u8).collect();
            assert_eq!(pem_der(&pem("X", &der)), der);
        }
    }
}
