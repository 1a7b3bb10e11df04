//! The node's provisioning state files: the lock, the chosen master, and the
//! hosts file line that points `puppet` at it. Pure functions over text and
//! small JSON files, so they are tested without a bus.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// `state_dir/lock.json`: who is provisioning this node, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The caller holding it, `user:NAME`.
    pub owner: String,
    /// Unix seconds after which anyone may take it.
    pub expires: i64,
}

/// Why a lock operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockRefused {
    /// Another owner holds an unexpired lock.
    HeldBy(Lock),
}

impl std::fmt::Display for LockRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockRefused::HeldBy(l) => write!(
                f,
                "locked by {} until {} (Unix seconds)",
                l.owner, l.expires
            ),
        }
    }
}

impl Lock {
    /// Whether it still holds at `now`.
    pub fn live(&self, now: i64) -> bool {
        now < self.expires
    }

    /// What taking the lock for `owner` for `expiry` seconds at `now` leaves
    /// in place, given the current lock.
    pub fn take(
        current: Option<&Lock>,
        owner: &str,
        expiry: i64,
        now: i64,
    ) -> Result<Lock, LockRefused> {
        match current {
            Some(l) if l.live(now) && l.owner != owner => Err(LockRefused::HeldBy(l.clone())),
            _ => Ok(Lock {
                owner: owner.to_string(),
                expires: now.saturating_add(expiry),
            }),
        }
    }

    /// Whether `caller` may release `current` at `now`.
    pub fn may_release(current: &Lock, caller: &str, now: i64) -> Result<(), LockRefused> {
        if current.owner == caller || !current.live(now) {
            Ok(())
        } else {
            Err(LockRefused::HeldBy(current.clone()))
        }
    }
}

/// `state_dir/master.json`: the master `set_master` chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    /// Its host name.
    pub name: String,
    /// Its address.
    pub address: String,
}

/// Reads a JSON state file; a missing or unreadable one is `None` (a
/// corrupt lock must not wedge a node for ever).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The hosts-file line for a master: `ADDRESS NAME puppet`.
pub fn master_line(name: &str, address: &str) -> String {
    if name == "puppet" {
        format!("{address} puppet")
    } else {
        format!("{address} {name} puppet")
    }
}

/// `hosts` with every line that names the `puppet` alias replaced by one
/// [`master_line`], at the place of the first such line (or appended);
/// comments, blank lines and every other line are kept as they were.
pub fn update_hosts(hosts: &str, name: &str, address: &str) -> String {
    let line = master_line(name, address);
    let mut out = String::with_capacity(hosts.len() + line.len() + 1);
    let mut placed = false;
    for l in hosts.lines() {
        let content = l.split('#').next().unwrap_or_default();
        let names_puppet = content.split_whitespace().skip(1).any(|h| h == "puppet");
        if names_puppet {
            if !placed {
                out.push_str(&line);
                out.push('\n');
                placed = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !placed {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_semantics() {
        let a = Lock::take(None, "user:a", 60, 1000).unwrap();
        assert_eq!(a.expires, 1060);
        assert_eq!(
            Lock::take(Some(&a), "user:b", 60, 1001),
            Err(LockRefused::HeldBy(a.clone()))
        );
        // The owner renews; another takes it once expired.
        assert_eq!(
            Lock::take(Some(&a), "user:a", 60, 1030).unwrap().expires,
            1090
        );
        assert_eq!(
            Lock::take(Some(&a), "user:b", 60, 1060).unwrap().owner,
            "user:b"
        );
        assert!(Lock::may_release(&a, "user:b", 1001).is_err());
        assert!(Lock::may_release(&a, "user:a", 1001).is_ok());
        assert!(Lock::may_release(&a, "user:b", 1060).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn hosts_update_is_idempotent_and_keeps_other_lines(
            lines in proptest::collection::vec("[ -~\t]{0,40}", 0..8),
            name in "[a-z][a-z0-9.-]{0,20}",
            last in 0u8..255,
        ) {
            let hosts = lines.join("\n");
            let address = format!("10.0.0.{last}");
            let once = update_hosts(&hosts, &name, &address);
            let twice = update_hosts(&once, &name, &address);
            proptest::prop_assert_eq!(&once, &twice);
            let line = master_line(&name, &address);
            let ours = once.lines().filter(|l| *l == line).count();
            proptest::prop_assert_eq!(ours, 1);
            for l in hosts.lines() {
                let content = l.split('#').next().unwrap_or_default();
                if !content.split_whitespace().skip(1).any(|h| h == "puppet") {
                    proptest::prop_assert!(once.lines().any(|o| o == l));
                }
            }
        }
    }

    #[test]
    fn hosts_line_replaced_in_place_others_kept() {
        let before = "127.0.0.1 localhost\n# comment\n10.0.0.1 old.example puppet\n::1 ip6-localhost\n10.0.0.9 other puppet # twice\n";
        let after = update_hosts(before, "m1.example", "10.1.2.3");
        assert_eq!(
            after,
            "127.0.0.1 localhost\n# comment\n10.1.2.3 m1.example puppet\n::1 ip6-localhost\n"
        );
        assert_eq!(
            update_hosts("127.0.0.1 localhost", "m", "10.0.0.2"),
            "127.0.0.1 localhost\n10.0.0.2 m puppet\n"
        );
        assert_eq!(update_hosts("", "puppet", "10.0.0.2"), "10.0.0.2 puppet\n");
        // A host merely named like puppet in a comment is left alone.
        assert_eq!(
            update_hosts("1.1.1.1 a # puppet\n", "m", "2.2.2.2"),
            "1.1.1.1 a # puppet\n2.2.2.2 m puppet\n"
        );
    }
}
