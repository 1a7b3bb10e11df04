//! Key pins for nodes in provisioning mode: trust on first use, then only that key.
//!
//! A node being provisioned has no certificate; it signs replies with a key
//! it made at first boot and sends the raw public key along. The first key
//! seen for an identity is pinned; a later reply from that identity signed
//! with any other key is refused as untrusted, and so is a CSR the
//! provisioner did not get under the pinned key.
//!
//! File format (`~/.cache/mco/provisioning.pins` for `mco`, any path for a
//! provisioner): UTF-8 text, one pin per line, `IDENTITY HEX-PUBLIC-KEY`
//! (64 lowercase hex digits) separated by one space, sorted by identity;
//! blank lines and lines starting with `#` are ignored. It is written whole,
//! atomically, mode 0600. Every identity, whether it comes from a reply or
//! from the file, must be a host name (`mco_pki::check_name`: letters,
//! digits, `.`, `_`, `-`), so no identity can carry a line or a field into
//! the file: what a node calls itself cannot write a pin for another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mco_core::config::expand_home;

/// Why a pin check or a pins file failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The node's reply was signed by another key than the pinned one.
    #[error("{identity:?} is pinned to key {pinned}, but this reply is signed by {got}")]
    Mismatch {
        /// The node.
        identity: String,
        /// The key pinned for it, hex.
        pinned: String,
        /// The key that signed, hex.
        got: String,
    },
    /// A line of the pins file does not parse.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A reply or a pins file names an identity no node can have (a newline,
    /// a space, a character outside host names): nothing is pinned for it.
    #[error("{identity:?} is not a node identity: {reason}")]
    BadIdentity {
        /// The identity as given.
        identity: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Identity → pinned Ed25519 public key, shared by the tasks opening replies.
#[derive(Debug)]
pub struct KeyPins {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pins: BTreeMap<String, [u8; 32]>,
    dirty: bool,
}

/// Where `mco` keeps its pins: `$XDG_CACHE_HOME/mco/provisioning.pins`
/// (default `~/.cache/mco/`).
pub fn default_pins_path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| expand_home("~/.cache"));
    base.join("mco").join("provisioning.pins")
}

/// Parses pins text; `path` names it in errors.
pub fn parse_pins(path: &str, text: &str) -> Result<BTreeMap<String, [u8; 32]>, PinError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: &str| PinError::BadLine {
            path: path.to_string(),
            line: i + 1,
            message: message.to_string(),
        };
        let (id, key) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `IDENTITY HEX-KEY`"))?;
        let bytes = hex::decode(key.trim()).map_err(|_| bad("the key is not hex"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        if let Err(e) = valid_identity(id) {
            return Err(bad(&e.to_string()));
        }
        out.insert(id.to_string(), key);
    }
    Ok(out)
}

/// Checks that `identity` can be a node's: a host name.
fn valid_identity(identity: &str) -> Result<(), PinError> {
    mco_pki::check_name(identity).map_err(|e| PinError::BadIdentity {
        identity: identity.to_string(),
        reason: match e {
            mco_pki::PkiError::InvalidName { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// Renders pins as the file's text.
pub fn render_pins(pins: &BTreeMap<String, [u8; 32]>) -> String {
    let mut s = String::from("# mco provisioning key pins: IDENTITY HEX-PUBLIC-KEY\n");
    for (id, key) in pins {
        s.push_str(id);
        s.push(' ');
        s.push_str(&hex::encode(key));
        s.push('\n');
    }
    s
}

impl KeyPins {
    /// Pins kept in memory only.
    pub fn in_memory() -> KeyPins {
        KeyPins {
            path: None,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Loads the pins file at `path` (a missing file is no pins yet);
    /// [`save`](Self::save) writes back there.
    pub fn load(path: &Path) -> Result<KeyPins, PinError> {
        let pins = match std::fs::read_to_string(path) {
            Ok(text) => parse_pins(&path.display().to_string(), &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(PinError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        Ok(KeyPins {
            path: Some(path.to_path_buf()),
            inner: Mutex::new(Inner { pins, dirty: false }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts `key` for `identity` if it is the pinned key, or pins it if
    /// the identity has none yet; refuses any other key.
    /// An identity no node can have is refused before anything is pinned.
    pub fn check(&self, identity: &str, key: &[u8; 32]) -> Result<(), PinError> {
        valid_identity(identity)?;
        let mut inner = self.lock();
        match inner.pins.get(identity) {
            Some(pinned) if pinned == key => Ok(()),
            Some(pinned) => Err(PinError::Mismatch {
                identity: identity.to_string(),
                pinned: hex::encode(pinned),
                got: hex::encode(key),
            }),
            None => {
                inner.pins.insert(identity.to_string(), *key);
                inner.dirty = true;
                Ok(())
            }
        }
    }

    /// The key pinned for `identity`.
    pub fn get(&self, identity: &str) -> Option<[u8; 32]> {
        self.lock().pins.get(identity).copied()
    }

    /// Forgets `identity`'s pin (a node re-imaged on purpose); returns whether it had one.
    pub fn forget(&self, identity: &str) -> bool {
        let mut inner = self.lock();
        let had = inner.pins.remove(identity).is_some();
        inner.dirty |= had;
        had
    }

    /// Writes the pins file if anything changed since it was loaded (a
    /// temporary 0600 file in a 0700 directory, renamed into place).
    pub fn save(&self) -> Result<(), PinError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut inner = self.lock();
        if !inner.dirty {
            return Ok(());
        }
        let text = render_pins(&inner.pins);
        mco_pki::write_private(path, text.as_bytes()).map_err(|e| PinError::Io {
            path: path.display().to_string(),
            message: match e {
                mco_pki::PkiError::Io { source, .. } => source.to_string(),
                other => other.to_string(),
            },
        })?;
        inner.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_pinned_other_keys_refused_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/p.pins");
        let pins = KeyPins::load(&path).unwrap();
        pins.check("n1", &[1; 32]).unwrap();
        pins.check("n1", &[1; 32]).unwrap();
        assert!(matches!(
            pins.check("n1", &[2; 32]),
            Err(PinError::Mismatch { .. })
        ));
        pins.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with(&format!("n1 {}\n", "01".repeat(32))),
            "{text}"
        );
        let again = KeyPins::load(&path).unwrap();
        assert_eq!(again.get("n1"), Some([1; 32]));
        assert!(again.check("n1", &[3; 32]).is_err());
        assert!(again.forget("n1"));
        again.check("n1", &[3; 32]).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "[ -~\n]{0,200}") {
            let _ = parse_pins("f", &text);
        }

        #[test]
        fn render_then_parse_round_trips(
            pins in proptest::collection::btree_map("[a-z0-9][a-z0-9.-]{0,19}", proptest::array::uniform32(0u8..), 0..6)
        ) {
            let back = parse_pins("f", &render_pins(&pins)).unwrap();
            proptest::prop_assert_eq!(back, pins);
        }
    }

    #[test]
    fn an_identity_cannot_write_a_pin_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pins");
        let pins = KeyPins::load(&path).unwrap();
        let forged = format!("evil\nweb-02 {}", "07".repeat(32));
        for bad in [
            forged.as_str(),
            "a b",
            "",
            "-lead",
            "tab\there",
            "x\r",
            "ünï",
        ] {
            assert!(
                matches!(pins.check(bad, &[1; 32]), Err(PinError::BadIdentity { .. })),
                "{bad:?} was pinned"
            );
        }
        pins.check("web-01.example.net", &[1; 32]).unwrap();
        pins.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            1,
            "{text}"
        );
        let again = KeyPins::load(&path).unwrap();
        assert_eq!(again.get("web-02"), None);
        assert_eq!(again.get("web-01.example.net"), Some([1; 32]));
        // A file with such a line does not load as a pin either.
        let err = parse_pins("f", &format!("a;b {}\n", "01".repeat(32))).unwrap_err();
        assert!(matches!(err, PinError::BadLine { line: 1, .. }), "{err}");
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = parse_pins("f", "# c\n\nn1 zz\n").unwrap_err();
        assert_eq!(
            err,
            PinError::BadLine {
                path: "f".into(),
                line: 3,
                message: "the key is not hex".into()
            }
        );
        assert!(parse_pins("f", "n1 0102\n").is_err());
        assert!(parse_pins("f", "justone\n").is_err());
    }
}
