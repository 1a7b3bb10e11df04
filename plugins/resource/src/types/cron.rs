//! `cron`: named jobs in users' crontabs, Puppet style.
//!
//! A job is a block in `/var/spool/cron/crontabs/USER` under the root
//! (Debian's spool): a marker comment `# mco Name: NAME`, then the job's
//! environment lines (`KEY=VALUE`; secrets, so changes, `find` and
//! `search` show `environment` as `[redacted]` and a refused item is named
//! by its position), then the job line
//! `MINUTE HOUR MONTHDAY MONTH WEEKDAY COMMAND`. Puppet's marker
//! `# Puppet Name: NAME` is recognised too, so jobs Puppet wrote can be
//! adopted; an adopted job keeps its marker line as it is. A job owns only
//! its block: other jobs, comments and environment lines are kept byte for
//! byte. The name is unique on the node: `find` takes the first job of that
//! name in the crontabs in order of user name (`do` first looks in the
//! given user's crontab), and giving a job another `user` moves it. On
//! creation `user` defaults to root and the schedule fields to `*`;
//! `command` is required. A special schedule (`@reboot`…) found in a file
//! is shown as `minute` with the other fields `*`.
//!
//! No job can hide behind another of the same name: every block with the
//! name is part of the resource. In the crontab `do` edits, the first block
//! is replaced and any others are removed; `ensure: absent` without a
//! `user` removes the name from every crontab, so a decoy in a crontab that
//! sorts first cannot stand in for the real job. `find` and `do` show how
//! many other blocks carry the name as `duplicates` (only when there are
//! any), and a `do` that finds duplicates in the crontab it edits removes
//! them even when the first is already as desired (`duplicates` → 0).
//!
//! Crontabs are read and written through [`crate::beneath`] (never through
//! a link, only regular files, whole or not at all); an existing file keeps
//! its mode and owner; a new one is made mode 0600, owned by the user and
//! the group `crontab` when the root's `/etc/group` has it, set on its
//! descriptor before it is renamed into place. The spool is written directly also when the
//! root is `/` (not through `crontab(1)`): cron notices the changed
//! modification time of the spool directory and reloads.

use serde_json::{json, Value};

use crate::beneath::{Kind as FileKind, WriteOpts};
use crate::model::{bad_item, strings, Change, Failure, Kind, Property, State};
use crate::system::{lines, push_line, System};
use crate::types::user::{account_name_ok, read_groups, read_passwd};
use crate::types::{default_changes, missing, ResourceType};

/// The crontab spool, as on the node.
pub const CRONTABS: &str = "/var/spool/cron/crontabs";

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("command", Kind::Text),
    Property::new("user", Kind::Text),
    Property::new("minute", Kind::Text),
    Property::new("hour", Kind::Text),
    Property::new("monthday", Kind::Text),
    Property::new("month", Kind::Text),
    Property::new("weekday", Kind::Text),
    Property::new("environment", Kind::List).sensitive(),
];

/// The schedule fields, their ranges and the names they accept.
const FIELDS: &[(&str, u32, u32, &[&str])] = &[
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("monthday", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (
        "weekday",
        0,
        7,
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ),
];

/// The `cron` type.
pub struct Cron;

/// One named job: where its block is and what it says.
#[derive(Debug, Clone)]
struct Job {
    /// First line (the marker) and one past the last (the job line).
    start: usize,
    end: usize,
    name: String,
    env: Vec<String>,
    schedule: [String; 5],
    command: String,
}

fn marker_name(line: &str) -> Option<String> {
    let t = line.trim();
    let rest = t.strip_prefix('#')?.trim_start();
    let rest = rest
        .strip_prefix("mco Name:")
        .or_else(|| rest.strip_prefix("Puppet Name:"))?;
    let n = rest.trim();
    (!n.is_empty()).then(|| n.to_string())
}

fn is_env(line: &str) -> bool {
    let t = line.trim_start();
    let Some((k, _)) = t.split_once('=') else {
        return false;
    };
    let k = k.trim_end();
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits a job line into its schedule and command.
fn parse_job_line(line: &str) -> Option<([String; 5], String)> {
    let t = line.trim_end_matches(['\n', '\r']).trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let mut rest = t;
    let mut f: Vec<String> = Vec::new();
    let want = if t.starts_with('@') { 1 } else { 5 };
    for _ in 0..want {
        let r = rest.trim_start();
        let end = r.find(char::is_whitespace)?;
        f.push(r[..end].to_string());
        rest = &r[end..];
    }
    let command = rest.trim_start().to_string();
    if command.is_empty() {
        return None;
    }
    while f.len() < 5 {
        f.push("*".to_string());
    }
    let schedule: [String; 5] = f.try_into().ok()?;
    Some((schedule, command))
}

fn jobs(lines: &[String]) -> Vec<Job> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = marker_name(&lines[i]) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        let mut env = Vec::new();
        while j < lines.len() && is_env(&lines[j]) && marker_name(&lines[j]).is_none() {
            env.push(lines[j].trim().to_string());
            j += 1;
        }
        match lines.get(j).and_then(|l| parse_job_line(l)) {
            Some((schedule, command)) => {
                out.push(Job {
                    start: i,
                    end: j + 1,
                    name,
                    env,
                    schedule,
                    command,
                });
                i = j + 1;
            }
            None => i += 1,
        }
    }
    out
}

fn state(user: &str, j: &Job) -> State {
    let mut s = State::new();
    s.insert("name".into(), json!(j.name));
    s.insert("ensure".into(), json!("present"));
    s.insert("command".into(), json!(j.command));
    s.insert("user".into(), json!(user));
    for (k, (f, ..)) in FIELDS.iter().enumerate() {
        s.insert((*f).into(), json!(j.schedule[k]));
    }
    s.insert("environment".into(), json!(j.env));
    s
}

fn crontab(user: &str) -> String {
    format!("{CRONTABS}/{user}")
}

/// Every crontab's user, in order (regular files only).
fn users(sys: &System) -> Result<Vec<String>, Failure> {
    let Some(entries) = sys.fs().list(CRONTABS)? else {
        return Ok(Vec::new());
    };
    Ok(entries
        .into_iter()
        .filter(|(_, k)| *k == FileKind::File)
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && account_name_ok(n))
        .collect())
}

/// Every named job, as (user, job).
fn all_jobs(sys: &System) -> Result<Vec<(String, Job)>, Failure> {
    let mut out = Vec::new();
    for u in users(sys)? {
        let text = sys.read(&crontab(&u))?.unwrap_or_default();
        for j in jobs(&lines(&text)) {
            out.push((u.clone(), j));
        }
    }
    Ok(out)
}

/// Whether one schedule field is valid: `*`, numbers or names, ranges,
/// steps, lists.
fn field_ok(value: &str, lo: u32, hi: u32, names: &[&str]) -> bool {
    let num = |s: &str| -> bool {
        s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
            || names.contains(&s.to_ascii_lowercase().as_str())
    };
    !value.is_empty()
        && value.split(',').all(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let step_ok = step.is_none_or(|s| s.parse::<u32>().is_ok_and(|n| n > 0));
            let range_ok = range == "*"
                || match range.split_once('-') {
                    Some((a, b)) => num(a) && num(b),
                    None => num(range),
                };
            step_ok && range_ok
        })
}

fn format_block(
    marker: &str,
    env: &[String],
    schedule: &[String; 5],
    command: &str,
) -> Vec<String> {
    let mut out = vec![marker.to_string()];
    for e in env {
        out.push(format!("{e}\n"));
    }
    if schedule[0].starts_with('@') {
        out.push(format!("{} {command}\n", schedule[0]));
    } else {
        out.push(format!("{} {command}\n", schedule.join(" ")));
    }
    out
}

/// The spool directory, made as Debian's cron package makes it when
/// missing (mode 1730, group crontab).
fn spool(sys: &System, crontab_gid: Option<u32>) -> Result<(), Failure> {
    let fs = sys.fs();
    match fs.lstat(CRONTABS)?.map(|m| m.kind) {
        Some(FileKind::Dir) => return Ok(()),
        Some(_) => {
            return Err(Failure::failed(format!(
                "{} is not a directory",
                sys.path(CRONTABS).display()
            )))
        }
        None => {}
    }
    fs.mkdir_all("/var/spool/cron", 0o755)?;
    fs.mkdir(CRONTABS, 0o1730, (Some(0), crontab_gid))
}

/// Rewrites `user`'s crontab with `edit` applied to its lines.
fn edit_crontab(
    sys: &System,
    user: &str,
    edit: impl FnOnce(&mut Vec<String>),
) -> Result<(), Failure> {
    let u = read_passwd(sys)?
        .into_iter()
        .find(|p| p.name == user)
        .ok_or_else(|| Failure::invalid("user", format!("{user:?} is not a user of this node")))?;
    let file = crontab(user);
    let old = sys.read(&file)?;
    let mut out = lines(old.as_deref().unwrap_or_default());
    edit(&mut out);
    let text = out.concat();
    if old.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let crontab_gid = read_groups(sys)?
        .iter()
        .find(|g| g.name == "crontab")
        .map(|g| g.gid);
    spool(sys, crontab_gid)?;
    let opts = WriteOpts {
        new_uid: Some(u.uid),
        new_gid: crontab_gid,
        ..WriteOpts::keep(0o600)
    };
    sys.fs().write(&file, text.as_bytes(), &opts)
}

/// Drops every block named `name`.
fn remove_all(out: &mut Vec<String>, name: &str) {
    for j in jobs(out).into_iter().rev().filter(|j| j.name == name) {
        out.drain(j.start..j.end);
    }
}

/// How many jobs of `all` carry `name`, in `user`'s crontab or anywhere.
fn count(all: &[(String, Job)], name: &str, user: Option<&str>) -> usize {
    all.iter()
        .filter(|(u, j)| j.name == name && user.is_none_or(|w| w == u))
        .count()
}

/// `state` with `duplicates` added when `n` jobs carry the name.
fn with_duplicates(mut s: State, n: usize) -> State {
    if n > 1 {
        s.insert("duplicates".into(), json!(n - 1));
    }
    s
}

impl ResourceType for Cron {
    fn name(&self) -> &'static str {
        "cron"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if name.trim() != name || name.contains(['\n', '\r']) {
            return Err(Failure::invalid(
                "name",
                "must be one line without surrounding spaces",
            ));
        }
        let text = |k: &str| desired.get(k).and_then(Value::as_str);
        if let Some(c) = text("command") {
            if c.trim().is_empty() || c.contains(['\n', '\r']) {
                return Err(Failure::invalid("command", "must be one non-empty line"));
            }
        }
        if let Some(u) = text("user") {
            if !account_name_ok(u) {
                return Err(Failure::invalid(
                    "user",
                    format!("{u:?} is not a valid user name"),
                ));
            }
        }
        for (f, lo, hi, names) in FIELDS {
            if let Some(v) = text(f) {
                if !field_ok(v, *lo, *hi, names) {
                    return Err(Failure::invalid(
                        f,
                        format!(
                            "{v:?} is not a cron {f} field ({lo}-{hi}, *, ranges, steps, lists)"
                        ),
                    ));
                }
            }
        }
        if let Some(env) = desired.get("environment") {
            for (i, e) in strings(env).iter().enumerate() {
                if !is_env(e) || e.contains(['\n', '\r']) || e.starts_with(char::is_whitespace) {
                    return Err(Failure::invalid(
                        "environment",
                        bad_item(i, "is not KEY=VALUE"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let all = all_jobs(sys)?;
        Ok(match all.iter().find(|(_, j)| j.name == name) {
            Some((u, j)) => with_duplicates(state(u, j), count(&all, name, None)),
            None => missing(name),
        })
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        Ok(all_jobs(sys)?.iter().map(|(u, j)| state(u, j)).collect())
    }

    /// The job of that name in the desired user's crontab if it has one,
    /// otherwise [`ResourceType::find`]'s (which `do` then moves); a user
    /// the root does not have is refused. `duplicates` counts the other
    /// jobs of that name `do` will remove: in that crontab, or anywhere
    /// when no user is given.
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        let Some(u) = desired.get("user").and_then(Value::as_str) else {
            return self.find(sys, name);
        };
        if !read_passwd(sys)?.iter().any(|p| p.name == u) {
            return Err(Failure::invalid(
                "user",
                format!("{u:?} is not a user of this node"),
            ));
        }
        let all = all_jobs(sys)?;
        let found = all
            .iter()
            .find(|(o, j)| o == u && j.name == name)
            .or_else(|| all.iter().find(|(_, j)| j.name == name));
        Ok(match found {
            Some((o, j)) => with_duplicates(state(o, j), count(&all, name, Some(o))),
            None => missing(name),
        })
    }

    fn changes(&self, _name: &str, desired: &State, current: &State) -> Vec<Change> {
        let mut out = default_changes(PROPS, desired, current);
        let absent = desired.get("ensure").and_then(Value::as_str) == Some("absent");
        if let Some(d) = current.get("duplicates") {
            if !absent && !out.iter().any(|c| c.property == "ensure") {
                out.push(Change::new("duplicates", d.clone(), json!(0)));
            }
        }
        out
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        _changes: &[Change],
    ) -> Result<(), Failure> {
        let text = |s: &'_ State, k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        let was = if text(current, "ensure").as_deref() == Some("present") {
            text(current, "user")
        } else {
            None
        };
        let remove = |out: &mut Vec<String>| remove_all(out, name);
        if text(desired, "ensure").as_deref() == Some("absent") {
            let mut holders: Vec<String> = match (text(desired, "user"), &was) {
                // No user given: the name goes from every crontab that has it.
                (None, _) => all_jobs(sys)?
                    .into_iter()
                    .filter(|(_, j)| j.name == name)
                    .map(|(u, _)| u)
                    .collect(),
                (Some(_), Some(u)) => vec![u.clone()],
                (Some(_), None) => Vec::new(),
            };
            holders.dedup();
            for u in holders {
                edit_crontab(sys, &u, remove)?;
            }
            return Ok(());
        }
        let target = text(desired, "user")
            .or_else(|| was.clone())
            .unwrap_or_else(|| "root".to_string());
        let get =
            |k: &str| text(desired, k).or_else(|| was.as_ref().and_then(|_| text(current, k)));
        let command = get("command")
            .ok_or_else(|| Failure::missing("command", "is required to create a cron job"))?;
        let mut schedule: [String; 5] = Default::default();
        for (k, (f, ..)) in FIELDS.iter().enumerate() {
            schedule[k] = get(f).unwrap_or_else(|| "*".to_string());
        }
        let env = match desired.get("environment") {
            Some(e) => strings(e),
            None => current.get("environment").map(strings).unwrap_or_default(),
        };
        let same_user = was.as_deref() == Some(target.as_str());
        if !read_passwd(sys)?.iter().any(|p| p.name == target) {
            return Err(Failure::invalid(
                "user",
                format!("{target:?} is not a user of this node"),
            ));
        }
        if let (Some(old), false) = (&was, same_user) {
            edit_crontab(sys, old, remove)?;
        }
        let ours = format!("# mco Name: {name}\n");
        edit_crontab(sys, &target, |out| {
            match jobs(out).into_iter().find(|j| j.name == name) {
                Some(j) => {
                    let marker = out[j.start].clone();
                    let block = format_block(&marker, &env, &schedule, &command);
                    // Later blocks of the name go first, so `j` stays put.
                    let mut rest = out.split_off(j.end);
                    remove_all(&mut rest, name);
                    out.splice(j.start..j.end, block);
                    out.extend(rest);
                }
                None => {
                    for l in format_block(&ours, &env, &schedule, &command) {
                        push_line(out, l);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
