//! Public-key checks and key pins.
//!
//! Every key the CA certifies is an Ed25519 point of large order: a small-order ("weak") key makes
//! signatures that verify for many messages, so the CA refuses it in a CSR, and `show` flags it in
//! a certificate. A key pin is what nats-server's `pinned_certs` lists: the lowercase hex SHA-256
//! of the certificate's DER SubjectPublicKeyInfo (it pins the key, not the certificate).

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::PkiError;

/// Checks raw Ed25519 public key bytes: 32 bytes, a valid curve point, not of small order.
pub fn check_ed25519_key(raw: &[u8]) -> Result<VerifyingKey, PkiError> {
    let bytes: [u8; 32] = raw.try_into().map_err(|_| {
        PkiError::WeakKey(format!(
            "an Ed25519 public key has 32 bytes, not {}",
            raw.len()
        ))
    })?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| PkiError::WeakKey("the Ed25519 public key is not a curve point".into()))?;
    if key.is_weak() {
        return Err(PkiError::WeakKey(
            "the Ed25519 public key is weak (of small order): a signature made with it can verify for many messages"
                .into(),
        ));
    }
    Ok(key)
}

/// The key pin of a DER SubjectPublicKeyInfo: lowercase hex SHA-256, as nats-server's
/// `pinned_certs` wants it.
pub fn key_pin(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// Whether `s` looks like a key pin (64 lowercase hex digits).
pub fn is_key_pin(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_and_invalid_keys_are_refused() {
        // The identity point and a point of order 8, in their canonical encodings.
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        let order_8 =
            hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
                .unwrap();
        for weak in [&identity[..], &order_8[..], &[0u8; 32][..]] {
            assert!(
                matches!(check_ed25519_key(weak), Err(PkiError::WeakKey(_))),
                "{}",
                hex::encode(weak)
            );
        }
        assert!(matches!(
            check_ed25519_key(&[1u8; 31]),
            Err(PkiError::WeakKey(_))
        ));
        let good = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        assert_eq!(check_ed25519_key(good.as_bytes()).unwrap(), good);
    }

    #[test]
    fn pins_are_hex_sha256() {
        let pin = key_pin(b"spki");
        assert!(is_key_pin(&pin));
        assert_eq!(pin, hex::encode(Sha256::digest(b"spki")));
        assert!(!is_key_pin("ABC"));
        assert!(!is_key_pin(&pin.to_uppercase()));
    }
}
