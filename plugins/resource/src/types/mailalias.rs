//! `mailalias`: entries in the mail aliases file (`/etc/aliases`).
//!
//! An entry is `NAME: RECIPIENT, RECIPIENT…`; a line that starts with a
//! space or a tab continues the entry above it. A mailalias owns its
//! entry's first line and its continuation lines; comments, blank lines and
//! other entries are kept byte for byte. An entry is written back as one
//! line, `NAME: R1, R2`.
//!
//! Recipients are addresses, local names, `|command` pipes, `/file` paths or
//! `:include:/path` lists. One that holds a space, a tab, a comma or `#` is
//! written in double quotes (`"|/usr/bin/cmd arg"`); `find` shows recipients
//! without their quotes. The `recipient` input is split on commas outside
//! double quotes, so `"|/bin/cmd a, b", root` is two recipients.
//!
//! After a change, `newaliases` is run to rebuild the aliases database —
//! only when the root is `/` (the real node) and `newaliases` is installed
//! (`/usr/bin` or `/usr/sbin`); never for another root, whose database the
//! node's mailer does not read.

use std::path::Path;

use serde_json::{json, Value};

use crate::model::{strings, Change, Failure, Kind, Property, State};
use crate::system::{lines, push_line, Cmd, System};
use crate::types::{missing, ResourceType};

/// The aliases file, as written on the node.
pub const ALIASES: &str = "/etc/aliases";

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    // An ordered list, but split by this type (commas inside double quotes
    // do not separate recipients), so it arrives as text.
    Property::new("recipient", Kind::Text),
];

/// The `mailalias` type.
pub struct Mailalias;

/// One parsed entry: where it is and what it says.
struct Entry {
    name: String,
    /// Index of its first line.
    first: usize,
    /// Number of lines it spans (first line and continuations).
    count: usize,
    recipients: Vec<String>,
}

/// Splits a recipient list on commas outside double quotes, trimming each
/// item and dropping the quotes. `None` when a quote is left open.
pub fn split_recipients(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                let t = cur.trim();
                if !t.is_empty() || was_quoted {
                    out.push(t.to_string());
                }
                cur.clear();
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    let t = cur.trim();
    if !t.is_empty() || was_quoted {
        out.push(t.to_string());
    }
    Some(out)
}

fn is_comment_or_blank(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#')
}

fn is_continuation(l: &str) -> bool {
    l.starts_with([' ', '\t']) && !is_comment_or_blank(l)
}

/// Every entry of the file's lines.
fn parse(ls: &[String]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut body = String::new();
    let mut i = 0;
    while i < ls.len() {
        let l = &ls[i];
        if is_comment_or_blank(l) || is_continuation(l) {
            i += 1;
            continue;
        }
        let Some(colon) = l.find(':') else {
            i += 1;
            continue;
        };
        let name = l[..colon].trim().to_string();
        body.clear();
        body.push_str(l[colon + 1..].trim_end());
        let mut n = 1;
        while i + n < ls.len() && is_continuation(&ls[i + n]) {
            body.push(' ');
            body.push_str(ls[i + n].trim());
            n += 1;
        }
        out.push(Entry {
            name,
            first: i,
            count: n,
            recipients: split_recipients(&body).unwrap_or_else(|| vec![body.trim().to_string()]),
        });
        i += n;
    }
    out
}

fn state(e: &Entry) -> State {
    let mut s = State::new();
    s.insert("name".into(), json!(e.name));
    s.insert("ensure".into(), json!("present"));
    s.insert("recipient".into(), json!(e.recipients));
    s
}

fn quote(r: &str) -> String {
    if r.is_empty() || r.contains([' ', '\t', ',', '#']) {
        format!("\"{r}\"")
    } else {
        r.to_string()
    }
}

fn format(name: &str, recipients: &[String]) -> String {
    let rs: Vec<String> = recipients.iter().map(|r| quote(r)).collect();
    format!("{name}: {}\n", rs.join(", "))
}

fn desired_recipients(desired: &State) -> Option<Vec<String>> {
    desired
        .get("recipient")
        .and_then(Value::as_str)
        .map(|s| split_recipients(s).unwrap_or_default())
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('#')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | ',' | '"'))
}

impl ResourceType for Mailalias {
    fn name(&self) -> &'static str {
        "mailalias"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if !name_ok(name) {
            return Err(Failure::invalid(
                "name",
                format!("{name:?} is not an alias name (no spaces, ':', ',', '\"' or leading '#')"),
            ));
        }
        if let Some(r) = desired.get("recipient").and_then(Value::as_str) {
            if r.chars().any(char::is_control) {
                return Err(Failure::invalid(
                    "recipient",
                    "must not hold newlines or control characters",
                ));
            }
            let list = split_recipients(r)
                .ok_or_else(|| Failure::invalid("recipient", "has an unclosed double quote"))?;
            if list.is_empty() {
                return Err(Failure::invalid("recipient", "names no recipient"));
            }
            if let Some(bad) = list.iter().find(|x| x.is_empty()) {
                return Err(Failure::invalid(
                    "recipient",
                    format!("holds an empty recipient {bad:?}"),
                ));
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let text = sys.read(ALIASES)?.unwrap_or_default();
        Ok(parse(&lines(&text))
            .iter()
            .find(|e| e.name == name)
            .map(state)
            .unwrap_or_else(|| missing(name)))
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        let text = sys.read(ALIASES)?.unwrap_or_default();
        Ok(parse(&lines(&text)).iter().map(state).collect())
    }

    fn changes(&self, _name: &str, desired: &State, current: &State) -> Vec<Change> {
        let mut d = desired.clone();
        if let Some(rs) = desired_recipients(desired) {
            d.insert("recipient".into(), json!(rs));
        }
        const TYPED: &[Property] = &[
            Property::new("ensure", Kind::OneOf(&["present", "absent"])),
            Property::new("recipient", Kind::OrderedList),
        ];
        crate::types::default_changes(TYPED, &d, current)
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        _changes: &[Change],
    ) -> Result<(), Failure> {
        let text = sys.read(ALIASES)?.unwrap_or_default();
        let mut out = lines(&text);
        let owned = parse(&out).into_iter().find(|e| e.name == name);
        if desired.get("ensure").and_then(Value::as_str) == Some("absent") {
            if let Some(e) = owned {
                out.drain(e.first..e.first + e.count);
            }
        } else {
            let rs = desired_recipients(desired)
                .or_else(|| current.get("recipient").map(strings))
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    Failure::missing("recipient", "is required to create a mail alias")
                })?;
            let line = format(name, &rs);
            match owned {
                Some(e) => {
                    out.splice(e.first..e.first + e.count, [line]);
                }
                None => push_line(&mut out, line),
            }
        }
        sys.write(ALIASES, out.concat().as_bytes(), 0o644)?;
        if sys.is_real_root() {
            let tool = ["/usr/bin/newaliases", "/usr/sbin/newaliases"]
                .into_iter()
                .find(|p| Path::new(p).exists());
            if let Some(tool) = tool {
                let o = sys.run(&Cmd::new(tool))?;
                if !o.success() {
                    return Err(Failure::failed(format!(
                        "{ALIASES} was written but {tool} failed (exit {}): {}",
                        o.code,
                        o.why()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::Fixture;

    const BEFORE: &str = "# /etc/aliases\nmailer-daemon: postmaster\npostmaster:  root\n\n# team list\nteam: alice,\n  bob,\n\t\"|/usr/bin/filter -x, y\"\nabuse:root,postmaster   \n";

    fn names(f: &Fixture) -> Vec<String> {
        f.search()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn splits_quoted_recipients() {
        assert_eq!(
            split_recipients("a, \"|/bin/x a, b\" ,:include:/etc/l").unwrap(),
            ["a", "|/bin/x a, b", ":include:/etc/l"]
        );
        assert!(split_recipients("\"open").is_none());
        assert_eq!(quote("|/bin/x a"), "\"|/bin/x a\"");
        assert_eq!(quote(":include:/etc/l"), ":include:/etc/l");
    }

    #[test]
    fn create_modify_rerun_noop_remove_find_search() {
        let f = Fixture::new("mailalias").file(ALIASES, BEFORE);

        // find parses continuation lines and quoted recipients
        let found = f.find("team");
        assert_eq!(
            found["resource"]["recipient"],
            json!(["alice", "bob", "|/usr/bin/filter -x, y"])
        );
        assert_eq!(found["resource"]["ensure"], json!("present"), "{found:?}");
        assert_eq!(
            f.find("abuse")["resource"]["recipient"],
            json!(["root", "postmaster"])
        );
        assert_eq!(f.find("nope")["ensure"], json!("absent"));
        assert_eq!(names(&f), ["mailer-daemon", "postmaster", "team", "abuse"]);

        // noop
        let r = f.ensure("ops", &[("recipient", "root"), ("noop", "true")]);
        assert_eq!(r["changed"], json!(false));
        assert_eq!(r["changes"][0]["property"], json!("ensure"));
        assert_eq!(f.read(ALIASES), BEFORE);

        // create
        let r = f.ensure(
            "ops",
            &[(
                "recipient",
                "root, \"|/usr/bin/page --all, now\", :include:/etc/ops.list",
            )],
        );
        assert_eq!(r["changed"], json!(true));
        assert_eq!(
            f.read(ALIASES),
            format!("{BEFORE}ops: root, \"|/usr/bin/page --all, now\", :include:/etc/ops.list\n")
        );
        assert_eq!(
            r["resource"]["recipient"],
            json!([
                "root",
                "|/usr/bin/page --all, now",
                ":include:/etc/ops.list"
            ])
        );

        // idempotent
        let r = f.ensure(
            "ops",
            &[(
                "recipient",
                "root,\"|/usr/bin/page --all, now\",:include:/etc/ops.list",
            )],
        );
        assert_eq!(r["changes"], json!([]));
        assert_eq!(r["changed"], json!(false));

        // modify the multi-line entry: it becomes one line in place
        let r = f.ensure("team", &[("recipient", "alice, carol")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "recipient",
                    "old": ["alice", "bob", "|/usr/bin/filter -x, y"],
                    "new": ["alice", "carol"]}])
        );
        let after_modify = "# /etc/aliases\nmailer-daemon: postmaster\npostmaster:  root\n\n# team list\nteam: alice, carol\nabuse:root,postmaster   \nops: root, \"|/usr/bin/page --all, now\", :include:/etc/ops.list\n";
        assert_eq!(f.read(ALIASES), after_modify);
        // order matters
        let r = f.ensure("team", &[("recipient", "carol, alice"), ("noop", "true")]);
        assert_eq!(r["changes"][0]["property"], json!("recipient"));

        // remove
        let r = f.ensure("ops", &[("ensure", "absent")]);
        assert_eq!(r["changed"], json!(true));
        let r = f.ensure("team", &[("ensure", "absent")]);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(
            f.read(ALIASES),
            "# /etc/aliases\nmailer-daemon: postmaster\npostmaster:  root\n\n# team list\nabuse:root,postmaster   \n"
        );
        assert_eq!(
            f.ensure("team", &[("ensure", "absent")])["changed"],
            json!(false)
        );
        assert_eq!(names(&f), ["mailer-daemon", "postmaster", "abuse"]);
    }

    #[test]
    fn a_missing_file_is_created() {
        let f = Fixture::new("mailalias");
        std::fs::create_dir_all(f.root().join("etc")).unwrap();
        assert_eq!(f.search()["count"], json!(0));
        f.ensure("root", &[("recipient", "admin@example.com")]);
        assert_eq!(f.read(ALIASES), "root: admin@example.com\n");
    }

    #[test]
    fn bad_input_names_the_property() {
        let f = Fixture::new("mailalias").file(ALIASES, BEFORE);
        let e = f.ensure_err("bad name", &[("recipient", "root")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("name:"), "{}", e.message);
        let e = f.ensure_err("x:y", &[("recipient", "root")]);
        assert!(e.message.starts_with("name:"), "{}", e.message);
        let e = f.ensure_err("ops", &[("recipient", "root\nevil: x")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("recipient:"), "{}", e.message);
        let e = f.ensure_err("ops", &[("recipient", "\"|/bin/open")]);
        assert!(e.message.starts_with("recipient:"), "{}", e.message);
        let e = f.ensure_err("ops", &[("recipient", "a,,\"\"")]);
        assert!(e.message.starts_with("recipient:"), "{}", e.message);
        let e = f.ensure_err("ops", &[("ensure", "present")]);
        assert_eq!(e.status, mco_core::Status::MissingData);
        assert!(e.message.starts_with("recipient:"), "{}", e.message);
        assert_eq!(f.read(ALIASES), BEFORE);
    }
}
