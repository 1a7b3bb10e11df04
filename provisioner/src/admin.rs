//! The operator's verbs on a provisioner: `status`, `retry`, `forget` (on
//! its journal, with the service stopped) and `classify` (a Puppet master's
//! external node classifier).

use std::collections::HashMap;
use std::io::Write;

use mco_client::error::ClientError;
use mco_client::pins::KeyPins;

use crate::config::ProvisionerConfig;
use crate::expected::Registries;
use crate::registry::ExpectedNodes;
use crate::state::{self, Record, Status};

/// A verb's exit code.
pub type Exit = u8;

fn io(e: std::io::Error) -> ClientError {
    ClientError::file("writing the output", e)
}

/// Counts of a journal's records by status.
pub fn counts(records: &std::collections::BTreeMap<String, Record>) -> HashMap<Status, usize> {
    let mut out = HashMap::new();
    for r in records.values() {
        *out.entry(r.status).or_insert(0) += 1;
    }
    out
}

/// `classify NODE`: the ENC YAML of an expected node (exit 0), or exit 1
/// with a message for one that is not expected. Address ranges are not
/// consulted: a master asking knows only the name.
pub async fn classify(
    cfg: &ProvisionerConfig,
    node: &str,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    mco_pki::check_name(node).map_err(|e| ClientError::Usage(e.to_string()))?;
    let bucket = match &cfg.expected.kv_bucket {
        Some(b) => {
            let main = mco_client::config::load(Some(&cfg.main_config), &[])?;
            let session =
                mco_client::session::Session::connect(&main, mco_client::session::Warnings::Stderr)
                    .await?;
            let kv = ExpectedNodes::open(session.bus().client.clone(), b, cfg.request_timeout)
                .await
                .map_err(|e| {
                    ClientError::bus("opening expected.kv_bucket", std::io::Error::other(e))
                })?;
            Some(kv)
        }
        None => None,
    };
    let registries = Registries {
        cfg: &cfg.expected,
        bucket: bucket.as_ref(),
    };
    match registries
        .lookup(node, None)
        .await
        .map_err(ClientError::Io)?
    {
        Some(known) => {
            let c = known.classification.unwrap_or_default();
            out.write_all(crate::classify::enc_yaml(&c).as_bytes())
                .map_err(io)?;
            Ok(0)
        }
        None => {
            eprintln!("{node} is not an expected node");
            Ok(1)
        }
    }
}

/// Opens the journal for a change, which only a stopped provisioner allows
/// (a running one holds its lock and keeps its own copy of it and the pins).
fn open_journal(cfg: &ProvisionerConfig) -> Result<state::Journal, ClientError> {
    state::Journal::open(&cfg.state_file).map_err(|e| match e {
        state::StateError::Locked(path) => ClientError::Io(format!(
            "{path}: a provisioner is running on this journal; stop it first"
        )),
        other => ClientError::Io(other.to_string()),
    })
}

/// `retry`: a node given up on, failed, waiting or refused starts again from
/// its first attempt at the provisioner's next look. Exit 1 if any node
/// could not be retried.
pub fn retry(
    cfg: &ProvisionerConfig,
    nodes: &[String],
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let mut journal = open_journal(cfg)?;
    let mut code = 0;
    for node in nodes {
        let Some(rec) = journal.get(node).cloned() else {
            writeln!(out, "{node}: the journal has no record of it").map_err(io)?;
            code = 1;
            continue;
        };
        match rec.status {
            Status::GaveUp | Status::Failed | Status::Waiting | Status::Refused => {
                let was = rec.status.word();
                let mut rec = rec;
                rec.status = Status::Failed;
                rec.attempts = 0;
                rec.retry_at_ms = 0;
                rec.updated_ms = mco_core::wire::now_ms();
                journal
                    .put(node, rec, true)
                    .map_err(|e| ClientError::Io(e.to_string()))?;
                writeln!(
                    out,
                    "{node}: {was}; tried again when the provisioner next runs"
                )
                .map_err(io)?;
            }
            Status::InProgress => {
                writeln!(
                    out,
                    "{node}: in progress; the provisioner resumes it when it starts"
                )
                .map_err(io)?;
            }
            Status::Provisioned => {
                writeln!(
                    out,
                    "{node}: provisioned; `mco provision forget {node}` to provision it again"
                )
                .map_err(io)?;
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `forget`: drops each node's pinned key and journal record. Exit 1 if a
/// node had neither.
pub fn forget(
    cfg: &ProvisionerConfig,
    nodes: &[String],
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let mut journal = open_journal(cfg)?;
    let pins =
        KeyPins::load(&cfg.pins_file).map_err(|e| ClientError::Verification(e.to_string()))?;
    let mut code = 0;
    for node in nodes {
        let pinned = pins.forget(node);
        // The pin first: a journal without the record but a pin left
        // behind would refuse the node's new key.
        pins.save().map_err(|e| ClientError::Io(e.to_string()))?;
        let recorded = journal
            .forget(node)
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let what = match (pinned, recorded) {
            (true, true) => "forgot its pinned key and its journal record",
            (true, false) => "forgot its pinned key",
            (false, true) => "forgot its journal record",
            (false, false) => {
                code = 1;
                "nothing to forget: no pinned key, no journal record"
            }
        };
        writeln!(out, "{node}: {what}").map_err(io)?;
    }
    Ok(code)
}

/// `status`: every node the journal knows, as a table or JSON.
pub fn status(
    cfg: &ProvisionerConfig,
    json: bool,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let records = state::read(&cfg.state_file).map_err(|e| ClientError::Io(e.to_string()))?;
    if json {
        let v: serde_json::Map<String, serde_json::Value> = records
            .iter()
            .map(|(n, r)| {
                let mut r = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = r.as_object_mut() {
                    // The certificate is in the journal; status says only whether.
                    if let Some(c) = o.remove("certificate") {
                        o.insert("signed".into(), serde_json::Value::Bool(!c.is_null()));
                    }
                }
                (n.clone(), r)
            })
            .collect();
        let text = serde_json::to_string_pretty(&v).map_err(|e| ClientError::Io(e.to_string()))?;
        writeln!(out, "{text}").map_err(io)?;
        return Ok(0);
    }
    let width = records.keys().map(String::len).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<width$}  {:<11}  {:<10}  {:>8}  {:<20}  ERROR",
        "NODE", "STATUS", "STEP", "ATTEMPTS", "MASTER"
    )
    .map_err(io)?;
    for (node, r) in &records {
        let line = format!(
            "{:<width$}  {:<11}  {:<10}  {:>8}  {:<20}  {}",
            node,
            r.status.word(),
            r.step.map_or("-", |s| s.name()),
            r.attempts,
            r.master.as_deref().unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
        writeln!(out, "{}", line.trim_end()).map_err(io)?;
    }
    let c = counts(&records);
    let n = |s: Status| c.get(&s).copied().unwrap_or(0);
    writeln!(
        out,
        "\nprovisioned: {}, in progress: {}, failed: {}, gave up: {}, refused: {}, waiting: {}",
        n(Status::Provisioned),
        n(Status::InProgress),
        n(Status::Failed),
        n(Status::GaveUp),
        n(Status::Refused),
        n(Status::Waiting)
    )
    .map_err(io)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Journal;
    use std::path::Path;

    fn config(dir: &Path) -> ProvisionerConfig {
        let text = "main_config = \"main.toml\"\nprovisioning_config = \"prov.toml\"\n\
                    [expected]\nidentities = [\"*\"]\n[ca]\nidentity = \"ca\"\n[masters]\nidentities = [\"m-*\"]\nclasses = [\"puppet::master\"]\n";
        ProvisionerConfig::from_toml(&dir.join("provisioner.toml"), text).unwrap()
    }

    fn record(status: Status, attempts: u32) -> Record {
        Record {
            status,
            attempts,
            retry_at_ms: u64::MAX,
            error: Some("boom".into()),
            ..Record::new(1)
        }
    }

    /// Runs a command on a journal this test has just closed. Other tests
    /// in this binary spawn commands, and a child holds a copy of every open
    /// file description between its fork and its exec, the journal lock's
    /// included: for that instant the journal still looks held. Polled,
    /// with a deadline.
    fn text(mut f: impl FnMut(&mut Vec<u8>) -> Result<Exit, ClientError>) -> (Exit, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut out = Vec::new();
            match f(&mut out) {
                Ok(code) => return (code, String::from_utf8(out).unwrap()),
                Err(e)
                    if e.to_string().contains("stop it first")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::yield_now()
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn retry_starts_given_up_nodes_afresh_and_leaves_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        {
            let mut j = Journal::open(&cfg.state_file).unwrap();
            j.put("gone", record(Status::GaveUp, 5), false).unwrap();
            j.put("done", record(Status::Provisioned, 1), false)
                .unwrap();
            // A running provisioner holds the journal: nothing is changed.
            let held = retry(&cfg, &["gone".into()], &mut Vec::new()).unwrap_err();
            assert!(held.to_string().contains("stop it first"), "{held}");
        }
        let (code, said) =
            text(|o| retry(&cfg, &["gone".into(), "done".into(), "nobody".into()], o));
        assert_eq!(code, 1, "{said}");
        assert!(said.contains("gone: gave_up; tried again"), "{said}");
        assert!(
            said.contains("done: provisioned; `mco provision forget done`"),
            "{said}"
        );
        assert!(said.contains("nobody: the journal has no record"), "{said}");
        let all = state::read(&cfg.state_file).unwrap();
        let gone = &all["gone"];
        assert_eq!(
            (gone.status, gone.attempts, gone.retry_at_ms),
            (Status::Failed, 0, 0)
        );
        assert_eq!(
            gone.error.as_deref(),
            Some("boom"),
            "what went wrong last, kept"
        );
        assert_eq!(all["done"].status, Status::Provisioned);
    }

    #[test]
    fn forget_drops_the_pin_and_the_record() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        {
            let mut j = Journal::open(&cfg.state_file).unwrap();
            j.put("old", record(Status::Provisioned, 1), false).unwrap();
            j.put("keep", record(Status::Provisioned, 1), false)
                .unwrap();
        }
        let pins = KeyPins::load(&cfg.pins_file).unwrap();
        pins.check("old", &[1; 32]).unwrap();
        pins.check("keep", &[2; 32]).unwrap();
        pins.save().unwrap();

        let (code, said) = text(|o| forget(&cfg, &["old".into(), "ghost".into()], o));
        assert_eq!(code, 1, "{said}");
        assert!(
            said.contains("old: forgot its pinned key and its journal record"),
            "{said}"
        );
        assert!(said.contains("ghost: nothing to forget"), "{said}");
        let pins = KeyPins::load(&cfg.pins_file).unwrap();
        assert_eq!(pins.get("old"), None);
        assert_eq!(pins.get("keep"), Some([2; 32]));
        // A new key for the forgotten node is pinned, not refused.
        pins.check("old", &[3; 32]).unwrap();
        let all = state::read(&cfg.state_file).unwrap();
        assert!(!all.contains_key("old"));
        assert!(all.contains_key("keep"));
    }
}
