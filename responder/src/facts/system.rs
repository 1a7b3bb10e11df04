//! Built-in system facts, read from /proc and /etc.
//!
//! Every reader takes the filesystem root as an argument so that tests can lay
//! out a fake system in a temporary directory. A file that is missing or
//! unreadable leaves its facts out; it is not an error.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use mco_core::facts::FactMap;
use serde_json::{json, Value};

/// Built-in system facts only.
///
/// `hostname`, `fqdn`, `domain`, `os` (`family`, `name`, `release.full`,
/// `release.major`, `release.minor`), `kernel`, `kernelrelease`,
/// `kernelversion`, `kernelmajversion`, `architecture`, `processors.count`,
/// `processorcount`, `memory.total_bytes`, `memory.available_bytes`,
/// `memorysize_mb`, `uptime_seconds` and `mco_version`.
pub fn system_facts() -> FactMap {
    system_facts_at(Path::new("/"))
}

/// This node's fully qualified name, the default identity. Falls back to the
/// short hostname, then to `localhost` when even that cannot be read.
pub fn default_identity() -> String {
    names_at(Path::new("/")).map_or_else(|| "localhost".to_owned(), |n| n.fqdn)
}

pub(super) fn system_facts_at(root: &Path) -> FactMap {
    let mut facts = FactMap::new();
    if let Some(names) = names_at(root) {
        facts.insert("hostname".into(), names.hostname.into());
        facts.insert("domain".into(), names.domain.into());
        facts.insert("fqdn".into(), names.fqdn.into());
    }
    if let Some(os_release) =
        read(root, "etc/os-release").or_else(|| read(root, "usr/lib/os-release"))
    {
        let debian_version = read(root, "etc/debian_version");
        facts.insert(
            "os".into(),
            os_fact(&parse_os_release(&os_release), debian_version.as_deref()),
        );
    }
    let kernel = read(root, "proc/sys/kernel/ostype")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| capitalise(std::env::consts::OS));
    facts.insert("kernel".into(), kernel.into());
    if let Some(release) = read(root, "proc/sys/kernel/osrelease") {
        let release = release.trim();
        // "6.1.0-18-amd64": the version is the part before the first '-'.
        let version = release.split('-').next().unwrap_or(release);
        let major: Vec<&str> = version.split('.').take(2).collect();
        facts.insert("kernelrelease".into(), release.into());
        facts.insert("kernelversion".into(), version.into());
        facts.insert("kernelmajversion".into(), major.join(".").into());
    }
    facts.insert("architecture".into(), std::env::consts::ARCH.into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    facts.insert("processors".into(), json!({ "count": cpus }));
    facts.insert("processorcount".into(), cpus.into());
    if let Some(meminfo) = read(root, "proc/meminfo") {
        let mem = parse_meminfo(&meminfo);
        if let Some(total) = mem.total_bytes {
            let mut memory = json!({ "total_bytes": total });
            if let Some(available) = mem.available_bytes {
                memory["available_bytes"] = available.into();
            }
            facts.insert("memory".into(), memory);
            facts.insert("memorysize_mb".into(), (total / (1024 * 1024)).into());
        }
    }
    if let Some(seconds) = read(root, "proc/uptime").as_deref().and_then(parse_uptime) {
        facts.insert("uptime_seconds".into(), seconds.into());
    }
    facts.insert("mco_version".into(), mco_core::VERSION.into());
    facts
}

fn read(root: &Path, rel: &str) -> Option<String> {
    fs::read_to_string(root.join(rel)).ok()
}

#[derive(Debug, PartialEq)]
struct Names {
    hostname: String,
    fqdn: String,
    domain: String,
}

fn names_at(root: &Path) -> Option<Names> {
    let raw = read(root, "proc/sys/kernel/hostname")
        .filter(|s| !s.trim().is_empty())
        .or_else(|| read(root, "etc/hostname"))?;
    let hosts = read(root, "etc/hosts").unwrap_or_default();
    names(raw.trim(), &hosts)
}

/// Works out the short name, FQDN and domain from the kernel's hostname and
/// /etc/hosts: a dotted hostname is already the FQDN; otherwise the first name
/// in /etc/hosts that extends it with a domain is.
fn names(raw: &str, hosts: &str) -> Option<Names> {
    let raw = raw.trim_end_matches('.');
    if raw.is_empty() {
        return None;
    }
    let (hostname, fqdn) = match raw.split_once('.') {
        Some((short, _)) => (short.to_owned(), raw.to_owned()),
        None => {
            let prefix = format!("{raw}.");
            let fqdn = hosts
                .lines()
                .map(|line| line.split('#').next().unwrap_or(""))
                .flat_map(|line| line.split_whitespace().skip(1))
                .map(|name| name.trim_end_matches('.'))
                .find(|name| name.len() > prefix.len() && name.starts_with(&prefix))
                .unwrap_or(raw);
            (raw.to_owned(), fqdn.to_owned())
        }
    };
    let domain = fqdn
        .strip_prefix(&hostname)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or("")
        .to_owned();
    Some(Names {
        hostname,
        fqdn,
        domain,
    })
}

/// Parses os-release(5): `KEY=value` lines, values optionally quoted, with
/// backslash escapes inside double quotes.
fn parse_os_release(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let mut s = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        s.push(next);
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            inner.to_owned()
        } else {
            value.to_owned()
        };
        out.insert(key.trim().to_owned(), value);
    }
    out
}

/// The `os` fact from os-release fields and, for Debian, /etc/debian_version,
/// which carries the point release ("12.5") that VERSION_ID ("12") lacks.
fn os_fact(fields: &HashMap<String, String>, debian_version: Option<&str>) -> Value {
    let id = fields
        .get("ID")
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "linux".to_owned());
    let like = fields
        .get("ID_LIKE")
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let family = std::iter::once(id.as_str())
        .chain(like.split_whitespace())
        .find_map(family_of)
        .map_or_else(|| os_name(&id), str::to_owned);
    let mut os = json!({ "family": family, "name": os_name(&id) });

    let debian_full = debian_version
        .map(str::trim)
        .filter(|v| id == "debian" && v.starts_with(|c: char| c.is_ascii_digit()));
    let full = debian_full.or(fields.get("VERSION_ID").map(String::as_str));
    if let Some(full) = full.filter(|f| !f.is_empty()) {
        let mut parts = full.split('.');
        let mut release = json!({ "full": full });
        if let Some(major) = parts.next() {
            release["major"] = major.into();
        }
        if let Some(minor) = parts.next() {
            release["minor"] = minor.into();
        }
        os["release"] = release;
    }
    os
}

/// The family of a distribution ID, for IDs that name one.
fn family_of(id: &str) -> Option<&'static str> {
    Some(match id {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" | "devuan" | "kali" | "pop" => "Debian",
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" | "scientific"
        | "virtuozzo" | "cloudlinux" => "RedHat",
        "suse" | "sles" | "sled" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "Suse",
        "arch" | "archarm" | "manjaro" | "endeavouros" => "Archlinux",
        "gentoo" => "Gentoo",
        "alpine" => "Alpine",
        _ => return None,
    })
}

/// The distribution name as operators know it from Puppet: known IDs have
/// their customary spelling, others are capitalised.
fn os_name(id: &str) -> String {
    let known = match id {
        "rhel" => "RedHat",
        "centos" => "CentOS",
        "almalinux" => "AlmaLinux",
        "ol" => "OracleLinux",
        "amzn" => "Amazon",
        "sles" => "SLES",
        "sled" => "SLED",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "OpenSuSE",
        "arch" | "archarm" => "Archlinux",
        "linuxmint" => "LinuxMint",
        "virtuozzo" => "VirtuozzoLinux",
        "cloudlinux" => "CloudLinux",
        _ => return capitalise(id),
    };
    known.to_owned()
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Debug, Default, PartialEq)]
struct Memory {
    total_bytes: Option<u64>,
    available_bytes: Option<u64>,
}

/// Reads MemTotal and MemAvailable from /proc/meminfo. Kernels before 3.14
/// lack MemAvailable; free + buffers + cached stands in for it there.
fn parse_meminfo(text: &str) -> Memory {
    let mut kib = HashMap::new();
    for line in text.lines() {
        if let Some((key, rest)) = line.split_once(':') {
            let number = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = number {
                kib.insert(key.trim(), n);
            }
        }
    }
    let available = kib.get("MemAvailable").copied().or_else(|| {
        Some(
            kib.get("MemFree")?
                + kib.get("Buffers").unwrap_or(&0)
                + kib.get("Cached").unwrap_or(&0),
        )
    });
    Memory {
        total_bytes: kib.get("MemTotal").map(|k| k * 1024),
        available_bytes: available.map(|k| k * 1024),
    }
}

/// The whole seconds in /proc/uptime's first field ("1308.25 1773.96").
fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let whole = first.split('.').next()?;
    whole.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mco_core::facts::lookup;

    fn fields(text: &str) -> HashMap<String, String> {
        parse_os_release(text)
    }

    #[test]
    fn fqdn_from_dotted_hostname() {
        let n = names("web-01.example.net", "").unwrap();
        assert_eq!(n.hostname, "web-01");
        assert_eq!(n.fqdn, "web-01.example.net");
        assert_eq!(n.domain, "example.net");
    }

    #[test]
    fn fqdn_from_hosts_file() {
        let hosts = "127.0.0.1 localhost.localdomain localhost web-01\n\
                     # 10.0.0.9 web-01.wrong.example\n\
                     10.0.0.1\tweb-010.example.net\n\
                     10.0.0.2 web-01 web-01.example.net. # comment\n\
                     10.0.0.3 web-01.later.example\n";
        let n = names("web-01", hosts).unwrap();
        assert_eq!(n.fqdn, "web-01.example.net");
        assert_eq!(n.domain, "example.net");
    }

    #[test]
    fn fqdn_falls_back_to_hostname() {
        let n = names("vm", "127.0.0.1 localhost\n127.0.0.1 vm\n").unwrap();
        assert_eq!(
            (n.hostname.as_str(), n.fqdn.as_str(), n.domain.as_str()),
            ("vm", "vm", "")
        );
        assert_eq!(names("", ""), None);
    }

    #[test]
    fn os_release_quoting() {
        let f = fields("# c\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\nX=\"a \\\"q\\\" b\"\nbad line\n");
        assert_eq!(f["NAME"], "Debian GNU/Linux");
        assert_eq!(f["ID"], "debian");
        assert_eq!(f["VERSION_ID"], "12");
        assert_eq!(f["X"], "a \"q\" b");
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn os_debian_uses_debian_version() {
        let os = os_fact(&fields("ID=debian\nVERSION_ID=\"12\"\n"), Some("12.5\n"));
        assert_eq!(
            os,
            json!({"family": "Debian", "name": "Debian", "release": {"full": "12.5", "major": "12", "minor": "5"}})
        );
        // Testing and unstable write a codename there, not a number.
        let os = os_fact(&fields("ID=debian\n"), Some("trixie/sid\n"));
        assert_eq!(os, json!({"family": "Debian", "name": "Debian"}));
    }

    #[test]
    fn os_ubuntu_ignores_debian_version() {
        let os = os_fact(
            &fields("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n"),
            Some("bookworm/sid"),
        );
        assert_eq!(
            os,
            json!({"family": "Debian", "name": "Ubuntu", "release": {"full": "22.04", "major": "22", "minor": "04"}})
        );
    }

    #[test]
    fn os_families_from_id_like() {
        let family = |text: &str| os_fact(&fields(text), None)["family"].clone();
        let name = |text: &str| os_fact(&fields(text), None)["name"].clone();
        assert_eq!(family("ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n"), "RedHat");
        assert_eq!(name("ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n"), "CentOS");
        assert_eq!(
            family("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            "RedHat"
        );
        assert_eq!(
            family("ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n"),
            "Suse"
        );
        assert_eq!(name("ID=\"opensuse-leap\"\n"), "OpenSuSE");
        assert_eq!(family("ID=arch\n"), "Archlinux");
        assert_eq!(
            family("ID=somethingnew\nID_LIKE=\"ubuntu debian\"\n"),
            "Debian"
        );
        assert_eq!(family("ID=nixos\n"), "Nixos");
    }

    #[test]
    fn meminfo_and_uptime() {
        let m =
            parse_meminfo("MemTotal:       2048 kB\nMemFree:  100 kB\nMemAvailable:   1024 kB\n");
        assert_eq!(m.total_bytes, Some(2048 * 1024));
        assert_eq!(m.available_bytes, Some(1024 * 1024));
        let old =
            parse_meminfo("MemTotal: 4096 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n");
        assert_eq!(old.available_bytes, Some(420 * 1024));
        assert_eq!(parse_uptime("1308.25 1773.96\n"), Some(1308));
        assert_eq!(parse_uptime("garbage"), None);
    }

    #[test]
    fn fake_root_gives_structured_facts() {
        let root = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str| {
            let path = root.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        put("proc/sys/kernel/hostname", "db-3\n");
        put("proc/sys/kernel/ostype", "Linux\n");
        put("proc/sys/kernel/osrelease", "5.14.0-362.el9.x86_64\n");
        put(
            "proc/meminfo",
            "MemTotal: 8388608 kB\nMemAvailable: 4194304 kB\n",
        );
        put("proc/uptime", "86400.99 1.00\n");
        put("etc/hosts", "10.1.2.3 db-3.dc1.example.org db-3\n");
        put(
            "etc/os-release",
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
        );
        let f = system_facts_at(root.path());
        let get = |path: &str| lookup(&f, path).cloned();
        assert_eq!(get("hostname"), Some(json!("db-3")));
        assert_eq!(get("fqdn"), Some(json!("db-3.dc1.example.org")));
        assert_eq!(get("domain"), Some(json!("dc1.example.org")));
        assert_eq!(get("os.family"), Some(json!("RedHat")));
        assert_eq!(get("os.name"), Some(json!("Rocky")));
        assert_eq!(get("os.release.major"), Some(json!("9")));
        assert_eq!(get("kernel"), Some(json!("Linux")));
        assert_eq!(get("kernelrelease"), Some(json!("5.14.0-362.el9.x86_64")));
        assert_eq!(get("kernelversion"), Some(json!("5.14.0")));
        assert_eq!(get("kernelmajversion"), Some(json!("5.14")));
        assert_eq!(get("memory.total_bytes"), Some(json!(8u64 << 30)));
        assert_eq!(get("memory.available_bytes"), Some(json!(4u64 << 30)));
        assert_eq!(get("memorysize_mb"), Some(json!(8192)));
        assert_eq!(get("uptime_seconds"), Some(json!(86400)));
    }

    #[test]
    fn empty_root_leaves_facts_out() {
        let root = tempfile::tempdir().unwrap();
        let f = system_facts_at(root.path());
        for absent in [
            "hostname",
            "fqdn",
            "os",
            "kernelrelease",
            "memory",
            "uptime_seconds",
        ] {
            assert!(!f.contains_key(absent), "{absent} should be absent: {f:?}");
        }
        assert_eq!(f["kernel"], json!(capitalise(std::env::consts::OS)));
        assert_eq!(f["mco_version"], json!(mco_core::VERSION));
        assert!(f["processorcount"].as_u64().unwrap() >= 1);
    }
}
