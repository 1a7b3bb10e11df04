//! `index.json`: every certificate a CA issued, and which of them are revoked.
//!
//! The CRL is built from it, `revoke` looks names up in it, and the broker configuration takes its
//! live identities from it. It is rewritten whole and atomically on every change.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::files::{self, PUBLIC_MODE};
use super::{Kind, PkiError, INDEX};

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The serial number, lowercase hex without separators or leading zeros.
    pub serial: String,
    /// The name without its kind.
    pub name: String,
    /// User or node.
    pub kind: Kind,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// When it was revoked, Unix seconds; `None` while it is good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// The key pin of the certificate's public key (hex SHA-256 of its DER
    /// SubjectPublicKeyInfo, see [`super::keys::key_pin`]); `None` in entries written before
    /// pins were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
}

impl IndexEntry {
    /// Whether it is unrevoked and within its validity at `now` (Unix seconds).
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.not_before <= now && now <= self.not_after
    }
}

/// The whole index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The number of the last CRL written (CRL numbers only grow).
    #[serde(default)]
    pub crl_number: u64,
    /// Issued certificates, oldest first.
    #[serde(default)]
    pub certs: Vec<IndexEntry>,
}

impl Index {
    /// Reads `DIR/index.json`; a missing file is an empty index.
    pub fn load(dir: &Path) -> Result<Index, PkiError> {
        let path = dir.join(INDEX);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(files::io_err(&path)(e)),
        };
        serde_json::from_str(&text).map_err(|e| PkiError::BadIndex {
            path,
            message: e.to_string(),
        })
    }

    /// Writes `DIR/index.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| PkiError::BadIndex {
            path: dir.join(INDEX),
            message: e.to_string(),
        })?;
        text.push('\n');
        files::write_atomic(&dir.join(INDEX), text.as_bytes(), PUBLIC_MODE, true)
    }

    /// Names of one kind with at least one live certificate at `now`, sorted, without repeats.
    pub fn live_names(&self, kind: Kind, now: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .certs
            .iter()
            .filter(|e| e.kind == kind && e.is_live(now))
            .map(|e| e.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Marks revoked, at `now`, every unrevoked certificate whose name is `target`, or else the
    /// one whose serial is `target` (hex, any case, `:` separators allowed). Returns the entries
    /// it revoked; [`PkiError::NotFound`] if there were none.
    pub fn revoke(&mut self, target: &str, now: i64) -> Result<Vec<IndexEntry>, PkiError> {
        let by_name: Vec<usize> = self
            .certs
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == target && e.revoked_at.is_none())
            .map(|(i, _)| i)
            .collect();
        let chosen = if by_name.is_empty() {
            let serial = normalize_serial(target);
            self.certs
                .iter()
                .enumerate()
                .filter(|(_, e)| serial.is_some() && Some(&e.serial) == serial.as_ref())
                .filter(|(_, e)| e.revoked_at.is_none())
                .map(|(i, _)| i)
                .collect()
        } else {
            by_name
        };
        if chosen.is_empty() {
            return Err(PkiError::NotFound(target.to_string()));
        }
        let mut revoked = Vec::with_capacity(chosen.len());
        for i in chosen {
            self.certs[i].revoked_at = Some(now);
            revoked.push(self.certs[i].clone());
        }
        Ok(revoked)
    }
}

/// Lowercase hex without separators or leading zeros; `None` if `s` is not hex.
pub fn normalize_serial(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0').to_ascii_lowercase();
    Some(if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed
    })
}

/// The serial as the index writes it, from its big-endian bytes.
pub fn serial_hex(bytes: &[u8]) -> String {
    normalize_serial(&hex::encode(bytes)).unwrap_or_else(|| "0".to_string())
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    unix_seconds(SystemTime::now())
}

/// Unix seconds as `2025-01-31 13:45:00 UTC`.
pub fn format_unix(secs: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(secs) {
        Ok(t) => {
            let dt = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            )
        }
        Err(_) => format!("{secs} (Unix time)"),
    }
}

/// A time in Unix seconds (negative before 1970).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: &str, name: &str, kind: Kind) -> IndexEntry {
        IndexEntry {
            serial: serial.to_string(),
            name: name.to_string(),
            kind,
            not_before: 0,
            not_after: 100,
            revoked_at: None,
            key_sha256: None,
        }
    }

    #[test]
    fn formats_unix_times() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("00:AB:cd").as_deref(), Some("abcd"));
        assert_eq!(normalize_serial("0000").as_deref(), Some("0"));
        assert_eq!(normalize_serial("alice"), None);
        assert_eq!(serial_hex(&[0, 0x1f, 0xa0]), "1fa0");
    }

    #[test]
    fn revoke_by_name_then_by_serial() {
        let mut idx = Index {
            crl_number: 0,
            certs: vec![
                entry("a1", "alice", Kind::User),
                entry("a2", "alice", Kind::User),
                entry("b1", "web1", Kind::Node),
            ],
        };
        let r = idx.revoke("alice", 50).unwrap();
        assert_eq!(r.len(), 2);
        assert!(matches!(
            idx.revoke("alice", 51),
            Err(PkiError::NotFound(_))
        ));
        let r = idx.revoke("B1", 52).unwrap();
        assert_eq!(r[0].name, "web1");
        assert_eq!(idx.certs[2].revoked_at, Some(52));
        assert!(matches!(idx.revoke("ffff", 53), Err(PkiError::NotFound(_))));
    }

    #[test]
    fn live_names_skip_revoked_expired_and_other_kinds() {
        let mut idx = Index::default();
        idx.certs.push(entry("1", "web2", Kind::Node));
        idx.certs.push(entry("2", "web1", Kind::Node));
        idx.certs.push(entry("3", "web1", Kind::Node));
        idx.certs.push(entry("4", "alice", Kind::User));
        let mut gone = entry("5", "web3", Kind::Node);
        gone.revoked_at = Some(1);
        idx.certs.push(gone);
        let mut old = entry("6", "web4", Kind::Node);
        old.not_after = 10;
        idx.certs.push(old);
        assert_eq!(idx.live_names(Kind::Node, 50), ["web1", "web2"]);
        assert_eq!(idx.live_names(Kind::User, 50), ["alice"]);
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Index::load(dir.path()).unwrap(), Index::default());
        let idx = Index {
            crl_number: 3,
            certs: vec![entry("ab", "alice", Kind::User)],
        };
        idx.save(dir.path()).unwrap();
        assert_eq!(Index::load(dir.path()).unwrap(), idx);
        std::fs::write(dir.path().join(INDEX), "{not json").unwrap();
        assert!(matches!(
            Index::load(dir.path()),
            Err(PkiError::BadIndex { .. })
        ));
    }
}
