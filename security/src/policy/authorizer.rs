//! Loading policy files from a directory and applying the node's rules for
//! agents without one.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{allow_word, Decision, Groups, Policy, PolicyError};
use mco_core::filter::FilterTarget;

/// rpcutil actions that only read, open to every authenticated caller while no
/// `rpcutil.policy` exists, so that discovery works on a fresh install.
pub const RPCUTIL_READ_ONLY: [&str; 7] = [
    "ping",
    "inventory",
    "get_fact",
    "get_facts",
    "agent_inventory",
    "collective_info",
    "daemon_stats",
];

/// Decides requests with the policy files of one directory.
///
/// For agent `A` it reads `<policy_dir>/A.policy` and `<policy_dir>/groups`,
/// and keeps what it parsed until a file's modification time, size or inode
/// changes, so an edited policy applies to the next request without a restart.
/// Each call stats those files (and reads them when they changed) on the
/// calling thread; they are small, but the cost is disk access, not memory.
///
/// - No policy directory, or no file for the agent: the configured default,
///   except that [`RPCUTIL_READ_ONLY`] actions of `rpcutil` are allowed.
/// - A policy file that does not parse or cannot be read denies every action
///   of its agent, and so does a broken `groups` file for every agent that has
///   a policy file; the [`Decision`] carries the error for the log.
/// - A missing `groups` file means no groups.
///
/// The caller must already have authenticated `caller`.
#[derive(Debug)]
pub struct Authorizer {
    dir: Option<PathBuf>,
    default_allow: bool,
    policies: Mutex<HashMap<PathBuf, Cached<Policy>>>,
    groups: Mutex<HashMap<PathBuf, Cached<Groups>>>,
}

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
}

#[derive(Debug)]
struct Cached<T> {
    stamp: Stamp,
    value: Result<Arc<T>, PolicyError>,
}

/// `None` when the file does not exist.
type Loaded<T> = Option<Result<Arc<T>, PolicyError>>;

impl Authorizer {
    /// An authorizer reading `policy_dir` (none: every agent gets the default),
    /// with `default_allow` for agents that have no policy file.
    pub fn new(policy_dir: Option<PathBuf>, default_allow: bool) -> Authorizer {
        Authorizer {
            dir: policy_dir,
            default_allow,
            policies: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `caller` may run `action` of `agent` on `node`. Reads the disk
    /// when a policy file is new or has changed.
    pub fn authorize(
        &self,
        agent: &str,
        action: &str,
        caller: &str,
        node: &dyn FilterTarget,
    ) -> Decision {
        if agent.is_empty()
            || !agent
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Decision::new(false, None, format!("invalid agent name {agent:?}"));
        }
        let Some(dir) = &self.dir else {
            return self.without_policy(agent, action);
        };
        let policy = match load(
            &self.policies,
            &dir.join(format!("{agent}.policy")),
            Policy::parse,
        ) {
            None => return self.without_policy(agent, action),
            Some(Ok(p)) => p,
            Some(Err(e)) => return unusable(e),
        };
        let groups = match load(&self.groups, &dir.join("groups"), Groups::parse) {
            None => Arc::new(Groups::default()),
            Some(Ok(g)) => g,
            Some(Err(e)) => return unusable(e),
        };
        policy.decide(caller, action, node, &groups)
    }

    fn without_policy(&self, agent: &str, action: &str) -> Decision {
        if agent == "rpcutil" && RPCUTIL_READ_ONLY.contains(&action) {
            return Decision::new(
                true,
                None,
                format!(
                    "rpcutil {action} only reads, and is open to every authenticated caller \
                     while there is no rpcutil.policy"
                ),
            );
        }
        Decision::new(
            self.default_allow,
            None,
            format!(
                "no policy file for agent {agent}; default_policy {}",
                allow_word(self.default_allow)
            ),
        )
    }
}

fn unusable(e: PolicyError) -> Decision {
    Decision {
        allowed: false,
        rule: None,
        reason: format!("denied because a policy file is unusable: {e}"),
        error: Some(e),
    }
}

/// The parsed file at `path`, from the cache while its stamp is unchanged.
fn load<T>(
    cache: &Mutex<HashMap<PathBuf, Cached<T>>>,
    path: &Path,
    parse: fn(&str, &str) -> Result<T, PolicyError>,
) -> Loaded<T> {
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            cache.remove(path);
            return None;
        }
        Err(e) => {
            cache.remove(path);
            return Some(Err(read_error(path, &e)));
        }
    };
    let stamp = Stamp::of(&meta);
    if let Some(c) = cache.get(path) {
        if c.stamp == stamp {
            return Some(c.value.clone());
        }
    }
    let value = match fs::read_to_string(path) {
        Ok(text) => parse(&path.display().to_string(), &text).map(Arc::new),
        Err(e) => Err(read_error(path, &e)),
    };
    cache.insert(
        path.to_path_buf(),
        Cached {
            stamp,
            value: value.clone(),
        },
    );
    Some(value)
}

fn read_error(path: &Path, e: &io::Error) -> PolicyError {
    PolicyError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mco_core::filter::testnode::Node;
    use std::time::Duration;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn check(a: &Authorizer, agent: &str, action: &str, caller: &str) -> Decision {
        a.authorize(agent, action, caller, &Node::web())
    }

    #[test]
    fn no_policy_dir_uses_the_default() {
        let deny = Authorizer::new(None, false);
        let d = check(&deny, "service", "restart", "user:alice");
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            "no policy file for agent service; default_policy deny"
        );
        let allow = Authorizer::new(None, true);
        assert!(check(&allow, "service", "restart", "user:alice").allowed);
    }

    #[test]
    fn missing_file_uses_the_default() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "other.policy", "policy default allow\n");
        let deny = Authorizer::new(Some(tmp.path().into()), false);
        assert!(!check(&deny, "service", "restart", "user:alice").allowed);
        assert!(check(&deny, "other", "restart", "user:alice").allowed);
        let allow = Authorizer::new(Some(tmp.path().into()), true);
        assert!(check(&allow, "service", "restart", "user:alice").allowed);
        write(tmp.path(), "service.policy", "");
        assert!(!check(&allow, "service", "restart", "user:alice").allowed);
    }

    #[test]
    fn rpcutil_read_only_actions_are_open_without_a_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Authorizer::new(Some(tmp.path().into()), false);
        for action in RPCUTIL_READ_ONLY {
            let d = check(&a, "rpcutil", action, "user:anyone");
            assert!(d.allowed, "{action}");
            assert!(d.reason.contains("no rpcutil.policy"), "{}", d.reason);
        }
        assert!(!check(&a, "rpcutil", "reload_agents", "user:anyone").allowed);
        assert!(!check(&a, "other", "ping", "user:anyone").allowed);
        assert!(check(&Authorizer::new(None, false), "rpcutil", "ping", "user:x").allowed);
        // Once rpcutil.policy exists it alone decides.
        write(tmp.path(), "rpcutil.policy", "allow\tuser:ops\tping\t*\n");
        assert!(!check(&a, "rpcutil", "ping", "user:anyone").allowed);
        assert!(!check(&a, "rpcutil", "inventory", "user:ops").allowed);
        assert!(check(&a, "rpcutil", "ping", "user:ops").allowed);
    }

    #[test]
    fn malformed_policy_denies_with_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "service.policy",
            "policy default allow\nallow\t*\t*\trole=\n",
        );
        let a = Authorizer::new(Some(tmp.path().into()), true);
        let d = check(&a, "service", "status", "user:alice");
        assert!(!d.allowed);
        let e = d.error.unwrap();
        assert_eq!((e.line, e.column), (2, 16));
        assert!(e.file.ends_with("service.policy"), "{}", e.file);
        assert!(d.reason.contains("service.policy:2:16"), "{}", d.reason);
        // Other agents are unaffected.
        assert!(check(&a, "other", "status", "user:alice").allowed);
    }

    #[test]
    fn groups_file_is_used_and_a_broken_one_denies() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "service.policy", "allow\tops\t*\t*\n");
        let a = Authorizer::new(Some(tmp.path().into()), false);
        assert!(!check(&a, "service", "stop", "user:bob").allowed);
        write(tmp.path(), "groups", "ops user:alice user:bob\n");
        assert!(check(&a, "service", "stop", "user:bob").allowed);
        write(tmp.path(), "groups", "ops user:alice\nops user:bob\n");
        let d = check(&a, "service", "stop", "user:alice");
        assert!(!d.allowed);
        assert_eq!(d.error.map(|e| (e.line, e.column)), Some((2, 1)));
        // Agents without a policy file do not depend on the groups file.
        assert!(check(&a, "rpcutil", "ping", "user:alice").allowed);
    }

    #[test]
    fn invalid_agent_names_are_denied() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("policies")).unwrap();
        write(tmp.path(), "x.policy", "policy default allow\n");
        let a = Authorizer::new(Some(tmp.path().join("policies")), false);
        let d = check(&a, "../x", "y", "user:a");
        assert!(!d.allowed);
        assert_eq!(d.reason, "invalid agent name \"../x\"");
        assert!(!check(&a, "", "y", "user:a").allowed);
        assert!(!check(&a, "x", "y", "user:a").allowed);
    }

    #[test]
    fn reloads_when_the_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("service.policy");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        write(tmp.path(), "service.policy", "allow\t*\t*\t*\n");
        set_mtime(&path, t0);
        let a = Authorizer::new(Some(tmp.path().into()), false);
        assert!(check(&a, "service", "stop", "user:a").allowed);

        // Same size, inode and modification time: the parsed copy is kept.
        fs::write(&path, "deny \t*\t*\t*\n").unwrap();
        set_mtime(&path, t0);
        assert!(check(&a, "service", "stop", "user:a").allowed);

        // A new modification time: read again.
        set_mtime(&path, t0 + Duration::from_secs(1));
        assert!(!check(&a, "service", "stop", "user:a").allowed);

        // Broken, then fixed.
        fs::write(&path, "allow\t*\n").unwrap();
        set_mtime(&path, t0 + Duration::from_secs(2));
        assert!(check(&a, "service", "stop", "user:a").error.is_some());
        fs::write(&path, "allow\t*\t*\t*\n").unwrap();
        set_mtime(&path, t0 + Duration::from_secs(3));
        assert!(check(&a, "service", "stop", "user:a").allowed);

        // Removed: back to the default.
        fs::remove_file(&path).unwrap();
        let d = check(&a, "service", "stop", "user:a");
        assert!(!d.allowed && d.error.is_none());
    }

    #[test]
    fn unreadable_policy_denies() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("service.policy")).unwrap();
        let a = Authorizer::new(Some(tmp.path().into()), true);
        let d = check(&a, "service", "stop", "user:a");
        assert!(!d.allowed);
        assert_eq!(d.error.map(|e| e.line), Some(0));
    }
}
