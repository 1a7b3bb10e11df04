//! `host`: entries in the hosts file (`/etc/hosts`).
//!
//! A host owns the first line whose canonical name (the field after the
//! address) is its name; every other line, comments and blank lines
//! included, is kept byte for byte. Lines are written as
//! `IP<TAB>NAME[<TAB>ALIAS…][<TAB># COMMENT]`.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::model::{absent, strings, Change, Failure, Kind, Property, State};
use crate::system::{lines, push_line, System};
use crate::types::ResourceType;

/// The hosts file, as written on the node.
pub const HOSTS: &str = "/etc/hosts";

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("ip", Kind::Text),
    Property::new("host_aliases", Kind::OrderedList),
    Property::new("comment", Kind::Text),
];

/// The `host` type.
pub struct Host;

/// One parsed entry.
struct Entry {
    ip: String,
    name: String,
    aliases: Vec<String>,
    comment: Option<String>,
}

fn parse(line: &str) -> Option<Entry> {
    let (body, comment) = match line.find('#') {
        Some(i) => (&line[..i], Some(line[i + 1..].trim().to_string())),
        None => (line, None),
    };
    let mut words = body.split_whitespace();
    let ip = words.next()?.to_string();
    let name = words.next()?.to_string();
    Some(Entry {
        ip,
        name,
        aliases: words.map(str::to_string).collect(),
        comment: comment.filter(|c| !c.is_empty()),
    })
}

fn state(e: &Entry) -> State {
    let mut s = State::new();
    s.insert("name".into(), json!(e.name));
    s.insert("ensure".into(), json!("present"));
    s.insert("ip".into(), json!(e.ip));
    s.insert("host_aliases".into(), json!(e.aliases));
    s.insert(
        "comment".into(),
        json!(e.comment.clone().unwrap_or_default()),
    );
    s
}

fn format(e: &Entry) -> String {
    let mut l = format!("{}\t{}", e.ip, e.name);
    for a in &e.aliases {
        l.push('\t');
        l.push_str(a);
    }
    if let Some(c) = e.comment.as_deref().filter(|c| !c.is_empty()) {
        l.push_str("\t# ");
        l.push_str(c);
    }
    l.push('\n');
    l
}

fn hostname_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

impl ResourceType for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if !hostname_ok(name) {
            return Err(Failure::invalid(
                "name",
                format!("{name:?} is not a host name"),
            ));
        }
        if let Some(ip) = desired.get("ip").and_then(Value::as_str) {
            if ip.parse::<IpAddr>().is_err() {
                return Err(Failure::invalid(
                    "ip",
                    format!("{ip:?} is not an IP address"),
                ));
            }
        }
        if let Some(a) = desired.get("host_aliases") {
            for alias in strings(a) {
                if !hostname_ok(&alias) {
                    return Err(Failure::invalid(
                        "host_aliases",
                        format!("{alias:?} is not a host name"),
                    ));
                }
            }
        }
        if let Some(c) = desired.get("comment").and_then(Value::as_str) {
            if c.contains(['\n', '\r']) {
                return Err(Failure::invalid("comment", "must be one line"));
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let text = sys.read(HOSTS)?.unwrap_or_default();
        for l in text.lines() {
            if let Some(e) = parse(l).filter(|e| e.name == name) {
                return Ok(state(&e));
            }
        }
        let mut s = absent();
        s.insert("name".into(), json!(name));
        Ok(s)
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        let text = sys.read(HOSTS)?.unwrap_or_default();
        Ok(text.lines().filter_map(parse).map(|e| state(&e)).collect())
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        _changes: &[Change],
    ) -> Result<(), Failure> {
        let text = sys.read(HOSTS)?.unwrap_or_default();
        let mut out = lines(&text);
        let owned = out
            .iter()
            .position(|l| parse(l).is_some_and(|e| e.name == name));
        if desired.get("ensure").and_then(Value::as_str) == Some("absent") {
            out.retain(|l| parse(l).is_none_or(|e| e.name != name));
        } else {
            let get = |k: &str| desired.get(k).or_else(|| current.get(k));
            let ip = get("ip")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::missing("ip", "is required to create a host entry"))?;
            let entry = Entry {
                ip: ip.to_string(),
                name: name.to_string(),
                aliases: get("host_aliases").map(strings).unwrap_or_default(),
                comment: get("comment").and_then(Value::as_str).map(str::to_string),
            };
            match owned {
                Some(i) => out[i] = format(&entry),
                None => push_line(&mut out, format(&entry)),
            }
        }
        sys.write(HOSTS, out.concat().as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::Fixture;

    const BEFORE: &str = "# static table\n127.0.0.1\tlocalhost\n\n10.0.0.5   db1  db  # primary\n::1 ip6-localhost ip6-loopback\n";

    #[test]
    fn create_modify_rerun_noop_remove_find_search() {
        let f = Fixture::new("host").file(HOSTS, BEFORE);

        // noop: reports, touches nothing
        let r = f.ensure(
            "web1",
            &[
                ("ip", "10.0.0.9"),
                ("host_aliases", "web"),
                ("noop", "true"),
            ],
        );
        assert_eq!(r["changed"], json!(false));
        assert_eq!(r["changes"][0]["property"], json!("ensure"));
        assert_eq!(f.read(HOSTS), BEFORE);

        // create: appended, everything else untouched
        let r = f.ensure(
            "web1",
            &[
                ("ip", "10.0.0.9"),
                ("host_aliases", "web,www"),
                ("comment", "front"),
            ],
        );
        assert_eq!(r["changed"], json!(true));
        assert_eq!(
            f.read(HOSTS),
            format!("{BEFORE}10.0.0.9\tweb1\tweb\twww\t# front\n")
        );

        // idempotent
        let r = f.ensure(
            "web1",
            &[
                ("ip", "10.0.0.9"),
                ("host_aliases", "web,www"),
                ("comment", "front"),
            ],
        );
        assert_eq!(r["changed"], json!(false));
        assert_eq!(r["changes"], json!([]));

        // modify in place: only that line changes
        let r = f.ensure("db1", &[("ip", "10.0.0.6")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "ip", "old": "10.0.0.5", "new": "10.0.0.6"}])
        );
        assert_eq!(
            f.read(HOSTS),
            "# static table\n127.0.0.1\tlocalhost\n\n10.0.0.6\tdb1\tdb\t# primary\n::1 ip6-localhost ip6-loopback\n10.0.0.9\tweb1\tweb\twww\t# front\n"
        );

        // find and search
        let found = f.find("db1");
        assert_eq!(found["resource"]["ip"], json!("10.0.0.6"));
        assert_eq!(found["resource"]["host_aliases"], json!(["db"]));
        assert_eq!(f.find("nope")["ensure"], json!("absent"));
        let names: Vec<String> = f.search()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["localhost", "db1", "ip6-localhost", "web1"]);

        // remove
        let r = f.ensure("web1", &[("ensure", "absent")]);
        assert_eq!(r["changed"], json!(true));
        let r = f.ensure("db1", &[("ensure", "absent")]);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(
            f.read(HOSTS),
            "# static table\n127.0.0.1\tlocalhost\n\n::1 ip6-localhost ip6-loopback\n"
        );
        assert_eq!(
            f.ensure("db1", &[("ensure", "absent")])["changed"],
            json!(false)
        );
    }

    #[test]
    fn bad_input_names_the_property() {
        let f = Fixture::new("host").file(HOSTS, BEFORE);
        let e = f.ensure_err("web1", &[("ip", "10.0.0.300")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("ip:"), "{}", e.message);
        let e = f.ensure_err("web1", &[("host_aliases", "a b")]);
        assert!(e.message.starts_with("host_aliases:"), "{}", e.message);
        let e = f.ensure_err("web1", &[("uid", "3")]);
        assert!(
            e.message.starts_with("uid: not a property of type host"),
            "{}",
            e.message
        );
        let e = f.ensure_err("web1", &[("comment", "x")]);
        assert_eq!(e.status, mco_core::Status::MissingData);
        assert!(e.message.starts_with("ip:"), "{}", e.message);
        assert_eq!(f.read(HOSTS), BEFORE);
    }
}
