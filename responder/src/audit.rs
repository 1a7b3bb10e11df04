//! The audit log: one JSON line per request handled.
//!
//! ```json
//! {"time":"2024-02-29T12:00:00.123Z","request_id":"01H…","caller":"user:alice",
//!  "sender":"laptop","agent":"service","action":"restart","input":{"name":"nginx"},
//!  "status":0,"statusmsg":"OK","elapsed_us":5120,"node":"web1"}
//! ```
//!
//! The request path must never wait on the disk, so [`AuditLog::log`] only puts
//! the record on a bounded queue and a dedicated thread formats and writes it.
//! When the queue is full the line is dropped, counted ([`AuditLog::dropped`])
//! and a warning logged at most once a second: losing an audit line is visible,
//! stalling every request behind a slow disk is not an option.
//!
//! The file is opened with `O_APPEND | O_CREAT` and mode 0640 and never
//! truncated. After a log rotator renames it, [`AuditLog::reopen`] (on SIGHUP)
//! makes the writer open the path again, so new lines go to the new file.
//!
//! Inputs the DDL marks `sensitive` are written as `"[REDACTED]"`, and so are
//! inputs the DDL does not declare, or every input when the action has no DDL:
//! nothing tells those apart from a secret sent under the wrong name. Inputs
//! the DDL marks `"audit": "digest"` (a file's content), and any value over
//! [`MAX_CLEAR_VALUE`] bytes, are written as their SHA-256 and length.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use mco_core::ddl::{Action, AuditAs};
use mco_core::limits::MAX_NAME_LEN;
use mco_core::wire::{ReplyBody, RequestBody};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Records the queue holds before new ones are dropped.
pub const DEFAULT_CAPACITY: usize = 4096;

/// What replaces a redacted input value.
pub const REDACTED: &str = "[REDACTED]";

/// One handled request.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// When it was handled, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The request id.
    pub request_id: String,
    /// The authenticated caller (`user:alice`).
    pub caller: String,
    /// The client that sent it.
    pub sender: String,
    /// Agent name.
    pub agent: String,
    /// Action name.
    pub action: String,
    /// Inputs, already redacted.
    pub input: Map<String, Value>,
    /// Reply status code.
    pub status: u8,
    /// Reply status message.
    pub statusmsg: String,
    /// Time spent on the request, microseconds.
    pub elapsed_us: u64,
    /// This node's identity.
    pub node: String,
}

impl AuditRecord {
    /// The record of `req` answered by `reply`, with inputs redacted according
    /// to `action`, the DDL of the requested action if the node knows it.
    pub fn new(req: &RequestBody, reply: &ReplyBody, action: Option<&Action>) -> AuditRecord {
        AuditRecord {
            time_ms: reply.time_ms,
            request_id: req.id.clone(),
            caller: req.caller.clone(),
            sender: req.sender.clone(),
            agent: req.agent.clone(),
            action: req.action.clone(),
            input: redact(&req.data, action),
            status: reply.status.code(),
            statusmsg: if reply.message.len() <= MAX_CLEAR_VALUE {
                reply.message.clone()
            } else {
                digest(&Value::String(reply.message.clone()))
            },
            elapsed_us: reply.elapsed_us,
            node: reply.sender.clone(),
        }
    }

    /// The JSON line, without its newline.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            time: String,
            request_id: &'a str,
            caller: &'a str,
            sender: &'a str,
            agent: &'a str,
            action: &'a str,
            input: &'a Map<String, Value>,
            status: u8,
            statusmsg: &'a str,
            elapsed_us: u64,
            node: &'a str,
        }
        let line = Line {
            time: rfc3339_ms(self.time_ms),
            request_id: &self.request_id,
            caller: &self.caller,
            sender: &self.sender,
            agent: &self.agent,
            action: &self.action,
            input: &self.input,
            status: self.status,
            statusmsg: &self.statusmsg,
            elapsed_us: self.elapsed_us,
            node: &self.node,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// Most inputs one record lists; a request carrying more (they can only be
/// undeclared ones, refused by validation) is logged with the first of them
/// and a count of the rest under [`MORE_INPUTS`].
pub const MAX_AUDIT_INPUTS: usize = 64;

/// The key under which a record counts the inputs it does not list.
pub const MORE_INPUTS: &str = "...";

/// `input` with sensitive, undeclared or undescribed values replaced by
/// [`REDACTED`], long values by their digest, and at most
/// [`MAX_AUDIT_INPUTS`] entries, with long undeclared names digested too, so a
/// record's size does not follow what a request carries. Declared inputs
/// come first, so undeclared ones can never push them out of the record.
pub fn redact(input: &Map<String, Value>, action: Option<&Action>) -> Map<String, Value> {
    let is_declared = |name: &String| action.is_some_and(|a| a.input.contains_key(name));
    let mut out: Map<String, Value> = input
        .iter()
        .filter(|(n, _)| is_declared(n))
        .chain(input.iter().filter(|(n, _)| !is_declared(n)))
        .take(MAX_AUDIT_INPUTS)
        .map(|(name, value)| {
            let declared = action.and_then(|a| a.input.get(name));
            let value = match declared {
                Some(i) if !i.sensitive && i.audit == AuditAs::Clear && short(value) => {
                    value.clone()
                }
                Some(i) if !i.sensitive => Value::String(digest(value)),
                _ => Value::String(REDACTED.into()),
            };
            let name = if declared.is_none() && name.len() > MAX_NAME_LEN {
                digest(&Value::String(name.clone()))
            } else {
                name.clone()
            };
            (name, value)
        })
        .collect();
    if input.len() > MAX_AUDIT_INPUTS {
        out.insert(
            MORE_INPUTS.into(),
            Value::from(input.len() - MAX_AUDIT_INPUTS),
        );
    }
    out
}

/// Longest value written as sent, in bytes of its text; a longer one is
/// written as its digest, so each queued record stays small whatever a
/// request carries.
pub const MAX_CLEAR_VALUE: usize = 1024;

fn short(value: &Value) -> bool {
    match value {
        Value::String(s) => s.len() <= MAX_CLEAR_VALUE,
        Value::Array(_) | Value::Object(_) => value.to_string().len() <= MAX_CLEAR_VALUE,
        _ => true,
    }
}

/// `sha256:HEX (N bytes)` of a value: of the string itself for a string, of
/// its JSON text otherwise.
fn digest(value: &Value) -> String {
    use sha2::{Digest, Sha256};
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!(
        "sha256:{} ({} bytes)",
        hex::encode(Sha256::digest(text.as_bytes())),
        text.len()
    )
}

/// `ms` since the Unix epoch as RFC 3339 in UTC with milliseconds:
/// `2024-02-29T23:59:59.999Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

enum Msg {
    Record(Box<AuditRecord>),
    /// Look at the reopen flag.
    Wake,
    /// Write out everything queued before this, then answer.
    Flush(oneshot::Sender<io::Result<()>>),
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    reopen: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` of the last warning, plus one (0: never).
    last_warning: AtomicU64,
}

impl Shared {
    /// Whether a rate-limited warning may be logged now.
    fn may_warn(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_warning.load(Relaxed);
        (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .last_warning
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

/// A handle on the audit log; cheap to clone, shared by every request task.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(_) => "Record",
            Msg::Wake => "Wake",
            Msg::Flush(_) => "Flush",
        })
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl AuditLog {
    /// Opens (or creates) the log at `path` with a queue of [`DEFAULT_CAPACITY`]
    /// records, and starts its writer thread.
    pub fn open(path: impl AsRef<Path>) -> io::Result<AuditLog> {
        AuditLog::open_with_capacity(path, DEFAULT_CAPACITY)
    }

    /// Like [`AuditLog::open`] with a queue of `capacity` records (at least 1).
    pub fn open_with_capacity(path: impl AsRef<Path>, capacity: usize) -> io::Result<AuditLog> {
        let (log, rx, file) = AuditLog::unstarted(path.as_ref(), capacity)?;
        let shared = log.shared.clone();
        std::thread::Builder::new()
            .name("mco-audit".into())
            .spawn(move || write_loop(rx, file, &shared))?;
        Ok(log)
    }

    fn unstarted(
        path: &Path,
        capacity: usize,
    ) -> io::Result<(AuditLog, mpsc::Receiver<Msg>, File)> {
        let file = open_file(path)?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            started: Instant::now(),
            last_warning: AtomicU64::new(0),
        });
        Ok((AuditLog { tx, shared }, rx, file))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Queues one record; never waits. A record that does not fit is dropped
    /// and counted.
    pub fn log(&self, record: AuditRecord) {
        if self.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            let n = self.shared.dropped.fetch_add(1, Relaxed) + 1;
            if self.shared.may_warn() {
                warn!(
                    dropped = n,
                    path = %self.shared.path.display(),
                    "audit log queue full or writer stopped; audit lines dropped"
                );
            }
        }
    }

    /// Makes the writer open the path again before its next line, after a log
    /// rotator moved the file away. Never waits.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
        // A full queue needs no wake-up: the writer is busy and checks the flag
        // before every record.
        let _ = self.tx.try_send(Msg::Wake);
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    /// Lines that could not be written (disk full, file gone).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Relaxed)
    }

    /// Waits until every record queued before this call is written and synced
    /// to disk; for graceful shutdown.
    pub async fn flush(&self) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        let stopped = || io::Error::other("the audit writer has stopped");
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// The writer thread: drains the queue, flushing whenever it is empty.
fn write_loop(mut rx: mpsc::Receiver<Msg>, file: File, shared: &Shared) {
    let mut out = BufWriter::new(file);
    while let Some(msg) = rx.blocking_recv() {
        handle(msg, &mut out, shared);
        while let Ok(msg) = rx.try_recv() {
            handle(msg, &mut out, shared);
        }
        if let Err(e) = out.flush() {
            write_failed(shared, &e);
        }
    }
    if let Err(e) = out.flush() {
        write_failed(shared, &e);
    }
}

fn handle(msg: Msg, out: &mut BufWriter<File>, shared: &Shared) {
    if shared.reopen.swap(false, Relaxed) {
        if let Err(e) = out.flush() {
            write_failed(shared, &e);
        }
        match open_file(&shared.path) {
            Ok(file) => *out = BufWriter::new(file),
            Err(e) => warn!(
                path = %shared.path.display(),
                "cannot reopen the audit log, still writing to the old file: {e}"
            ),
        }
    }
    match msg {
        Msg::Record(record) => {
            let mut line = record.to_json();
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                write_failed(shared, &e);
            }
        }
        Msg::Wake => {}
        Msg::Flush(done) => {
            let result = out.flush().and_then(|()| out.get_ref().sync_data());
            let _ = done.send(result);
        }
    }
}

fn write_failed(shared: &Shared, e: &io::Error) {
    let n = shared.write_errors.fetch_add(1, Relaxed) + 1;
    if shared.may_warn() {
        warn!(errors = n, path = %shared.path.display(), "cannot write the audit log: {e}");
    }
}

#[cfg(test)]
mod tests;
