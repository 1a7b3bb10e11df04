//! A network namespace joined to the test's own by one veth link, to cut and restore: a
//! partition between hosts, not a crashed process. Needs `ip` (iproute2) and root, as the
//! project's CI has; deleted when dropped.
//!
//! The host end of the link is `10.A.B.1/30`, the namespace end `10.A.B.2/30`, with `A.B` from
//! the test process id and a counter, so tests running at once get distinct links.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace and its link to the test's namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

/// Runs `ip ARGS`, panicking with its error output if it fails.
#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e} (install iproute2)"));
    assert!(
        out.status.success(),
        "ip {args:?} failed (network namespaces need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates a namespace with its loopback up and a veth link to this one, up.
    ///
    /// # Panics
    ///
    /// If `ip` is missing or refuses (not root).
    #[track_caller]
    pub fn new() -> Netns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        let name = format!("mco-t{tag}");
        let host_if = format!("mh{tag}");
        let ns_if = format!("mn{tag}");
        // 10.64.0.0/10, one /30 per link.
        let slot = (pid.wrapping_mul(31).wrapping_add(n)) % (1 << 20);
        let base = (10u32 << 24) | (64 << 16) | (slot << 2);
        let host_ip = Ipv4Addr::from(base + 1);
        let ns_ip = Ipv4Addr::from(base + 2);
        // A namespace left by a killed run of the same pid would block this one.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_if,
            host_ip,
            ns_ip,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        ns.exec(&["ip", "link", "set", &ns_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of the link's end in the test's namespace.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The address of the link's end in the namespace.
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// Cuts the link: nothing passes between the namespaces until [`restore`](Self::restore).
    #[track_caller]
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    /// Restores the link.
    #[track_caller]
    pub fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }

    #[track_caller]
    fn exec(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the link, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
