//! What the provisioner knows of each node, kept in a journal file so that a
//! provisioner killed mid-run resumes where it stopped and never signs a
//! certificate twice: every change appends one JSON line (the one recording
//! a signed certificate is fsynced before the certificate is used), the
//! last line for a node wins, and the journal is compacted — rewritten
//! atomically — when opened. An exclusive lock on the file keeps a second
//! provisioner off it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::step::Step;

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being worked on.
    InProgress,
    /// Done: it answers in the main collective with its certificate.
    Provisioned,
    /// The last attempt failed; it will be retried.
    Failed,
    /// Failed more often than retries allow; left alone.
    GaveUp,
    /// Not expected: left locked, never signed.
    Refused,
    /// No master to give it.
    Waiting,
}

impl Status {
    /// The word shown to operators.
    pub fn word(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Provisioned => "provisioned",
            Status::Failed => "failed",
            Status::GaveUp => "gave_up",
            Status::Refused => "refused",
            Status::Waiting => "waiting",
        }
    }
}

/// Why a node is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// In none of the expected lists; looked at again each interval.
    NotExpected,
    /// Never to be signed as it stands (its CSR, or a reserved name).
    Never,
}

/// One node's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Where it stands.
    pub status: Status,
    /// The last step completed in the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// Why it is refused, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The master it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The certificate signed for it (PEM): reused, never signed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The public key the node signed its CSR with (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_key: Option<String>,
    /// What went wrong last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Not before this time (ms since the epoch) will it be tried again.
    #[serde(default)]
    pub retry_at_ms: u64,
    /// When it was last changed (ms since the epoch).
    pub updated_ms: u64,
}

impl Record {
    /// A record for a node just taken up.
    pub fn new(now_ms: u64) -> Record {
        Record {
            status: Status::InProgress,
            step: None,
            refusal: None,
            attempts: 0,
            master: None,
            certificate: None,
            csr_key: None,
            error: None,
            retry_at_ms: 0,
            updated_ms: now_ms,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    node: String,
    #[serde(flatten)]
    record: Record,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// Another provisioner holds the lock.
    #[error("{0}: another provisioner is using this state file")]
    Locked(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The journal, open for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    _lock: File,
    records: BTreeMap<String, Record>,
}

/// Reads a journal without locking it (for `mco provision status`): the
/// last record of every node. A line that does not parse (a torn last line
/// after a crash) is skipped.
pub fn read(path: &Path) -> Result<BTreeMap<String, Record>, StateError> {
    let mut out = BTreeMap::new();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(path, e)),
    };
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| io(path, e))?;
        if let Ok(l) = serde_json::from_str::<Line>(&line) {
            out.insert(l.node, l.record);
        }
    }
    Ok(out)
}

impl Journal {
    /// Opens (creating) the journal, takes its lock and compacts it.
    pub fn open(path: &Path) -> Result<Journal, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        if !try_lock(&lock) {
            return Err(StateError::Locked(path.display().to_string()));
        }
        let records = read(path)?;
        write_compacted(path, &records)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            _lock: lock,
            records,
        })
    }

    /// The record of `node`, if any.
    pub fn get(&self, node: &str) -> Option<&Record> {
        self.records.get(node)
    }

    /// Every record.
    pub fn all(&self) -> &BTreeMap<String, Record> {
        &self.records
    }

    /// Drops `node`'s record (the journal is rewritten without it, durably);
    /// returns whether it had one. The provisioner then treats the node as
    /// one it has never seen.
    pub fn forget(&mut self, node: &str) -> Result<bool, StateError> {
        if self.records.remove(node).is_none() {
            return Ok(false);
        }
        write_compacted(&self.path, &self.records)?;
        // The old file was replaced: append to the new one.
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, e))?;
        Ok(true)
    }

    /// Records a change; `durable` fsyncs it before returning.
    pub fn put(&mut self, node: &str, record: Record, durable: bool) -> Result<(), StateError> {
        let line = serde_json::to_string(&Line {
            node: node.to_string(),
            record: record.clone(),
        })
        .map_err(|e| io(&self.path, e))?;
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| io(&self.path, e))?;
        if durable {
            self.file.sync_data().map_err(|e| io(&self.path, e))?;
        }
        self.records.insert(node.to_string(), record);
        Ok(())
    }
}

/// Writes `records`, one line each, with [`mco_core::atomic::write_atomic`]
/// (0600, a temporary file fsynced, renamed over `path`, the directory
/// fsynced): the journal is whole before and after, never half-written.
fn write_compacted(path: &Path, records: &BTreeMap<String, Record>) -> Result<(), StateError> {
    let mut text = Vec::new();
    for (node, record) in records {
        let line = serde_json::to_string(&Line {
            node: node.clone(),
            record: record.clone(),
        })
        .map_err(|e| io(path, e))?;
        writeln!(text, "{line}").map_err(|e| io(path, e))?;
    }
    mco_core::atomic::write_atomic(path, &text, &mco_core::atomic::WriteOptions::new(0o600))
        .map_err(|e| io(path, e))
}

fn try_lock(f: &File) -> bool {
    f.try_lock().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens a journal just closed by this process. Other tests in this
    /// binary spawn commands, and a child holds a copy of every open file
    /// description between its fork and its exec, the lock's included: for
    /// that instant the lock still looks taken. Polled, with a deadline.
    fn open_once_free(p: &Path) -> Journal {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Journal::open(p) {
                Ok(j) => return j,
                Err(StateError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_last_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.jsonl");
        {
            let mut j = Journal::open(&p).unwrap();
            let mut r = Record::new(1);
            j.put("n1", r.clone(), false).unwrap();
            r.step = Some(Step::Sign);
            r.certificate = Some("PEM".into());
            j.put("n1", r, true).unwrap();
            j.put("n2", Record::new(2), false).unwrap();
            // A second provisioner is kept off.
            assert!(matches!(Journal::open(&p), Err(StateError::Locked(_))));
        }
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"node\":\"n1\",\"sta").unwrap();
        drop(f);
        let j = open_once_free(&p);
        assert_eq!(j.get("n1").unwrap().certificate.as_deref(), Some("PEM"));
        assert_eq!(j.get("n1").unwrap().step, Some(Step::Sign));
        assert_eq!(j.all().len(), 2);
        // Compacted: one line per node.
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
        assert_eq!(read(&p).unwrap().len(), 2);
    }

    #[test]
    fn a_forgotten_node_is_gone_and_later_records_still_land() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.put("n1", Record::new(1), false).unwrap();
        j.put("n2", Record::new(2), false).unwrap();
        assert!(j.forget("n1").unwrap());
        assert!(!j.forget("n1").unwrap(), "already gone");
        j.put("n3", Record::new(3), false).unwrap();
        drop(j);
        let all = read(&p).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["n2", "n3"]);
    }
}
