//! A node's own key before it has a certificate (provisioning mode).
//!
//! A freshly booted node has nothing the CA signed, yet its replies must be
//! signed so a provisioner can tell it from an impostor later on. At first
//! boot it makes an Ed25519 key, stores it 0600 and signs every reply with
//! it; the reply envelope carries the raw public key in `key` instead of a
//! certificate. Such a signature proves only "the same key as before": the
//! client pins the first key it sees per node (trust on first use) and
//! refuses any other afterwards.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{load_err, LoadError, SecurityError};
use mco_core::wire::{Envelope, Kind, PROTOCOL_VERSION};

/// A node's provisioning-mode signing key.
pub struct NodeKey {
    key: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public_hex())
            .finish()
    }
}

impl NodeKey {
    /// A new random key (not stored).
    pub fn generate() -> NodeKey {
        NodeKey {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// Loads the key at `path` (PKCS#8 PEM), or makes one and writes it
    /// there with mode 0600 if there is none yet. Two processes racing to
    /// create it end with the same key: the loser reads the winner's file.
    pub fn load_or_create(path: &Path) -> Result<NodeKey, LoadError> {
        match std::fs::read_to_string(path) {
            Ok(text) => return NodeKey::from_pem(&text).map_err(|m| load_err(path, m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(load_err(path, e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| load_err(dir, e))?;
        }
        let key = NodeKey::generate();
        let pem = key
            .key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| load_err(path, e))?;
        match mco_pki::write_atomic(path, pem.as_bytes(), mco_pki::KEY_MODE, false) {
            Ok(()) => Ok(key),
            Err(mco_pki::PkiError::Exists { .. }) => {
                let text = std::fs::read_to_string(path).map_err(|e| load_err(path, e))?;
                NodeKey::from_pem(&text).map_err(|m| load_err(path, m))
            }
            Err(e) => Err(load_err(path, e)),
        }
    }

    fn from_pem(text: &str) -> Result<NodeKey, String> {
        SigningKey::from_pkcs8_pem(text)
            .map(|key| NodeKey { key })
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as lowercase hex, as pin files and `provision state` show it.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public_key())
    }

    /// Signs `body` into an envelope carrying the raw public key (no certificate).
    pub fn seal_with_key(&self, kind: Kind, body: Vec<u8>) -> Envelope {
        let sig = self.key.sign(&body).to_bytes().to_vec();
        Envelope {
            v: PROTOCOL_VERSION,
            kind,
            body,
            sig,
            cert: Vec::new(),
            key: self.public_key().to_vec(),
        }
    }
}

/// Checks an envelope signed by a raw key ([`NodeKey::seal_with_key`]):
/// returns that key if the signature verifies over the body. Says nothing
/// about whose key it is; the caller decides that (see the client's pins).
pub fn verify_key_signed(env: &Envelope) -> Result<[u8; 32], SecurityError> {
    if env.sig.len() != 64 || env.key.len() != 32 || !env.cert.is_empty() {
        return Err(SecurityError::Unsigned);
    }
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&env.key);
    let bad = || SecurityError::BadSignature(hex::encode(raw));
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad())?;
    let sig = Signature::from_slice(&env.sig).map_err(|_| bad())?;
    key.verify_strict(&env.body, &sig).map_err(|_| bad())?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/node.key");
        let a = NodeKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = NodeKey::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn key_signed_envelopes_verify_and_tampering_fails() {
        let k = NodeKey::generate();
        let env = k.seal_with_key(Kind::Reply, b"body".to_vec());
        assert_eq!(verify_key_signed(&env).unwrap(), k.public_key());
        let mut bad = env.clone();
        bad.body = b"other".to_vec();
        assert!(verify_key_signed(&bad).is_err());
        let mut swapped = env.clone();
        swapped.key = NodeKey::generate().public_key().to_vec();
        assert!(verify_key_signed(&swapped).is_err());
        let mut nokey = env;
        nokey.key.clear();
        assert_eq!(verify_key_signed(&nokey), Err(SecurityError::Unsigned));
    }
}
