//! A file of certificates this party already checked against the CA, so a
//! short-lived process (each `mco` run) does not re-check a whole fleet's
//! certificates every time — the way SSH keeps known hosts.
//!
//! The file names the CA it was checked against and is authenticated with
//! an HMAC-SHA256 keyed by a secret derived from the owner's private key: a
//! file written under another CA, or altered by anyone without that key, is
//! ignored. Only the CA signature check is skipped for a known certificate;
//! validity and the CRL are still checked on every message.
//!
//! Layout: `MCOKC1\n`, the CA's 32-byte key, a u32 count, then per entry the
//! SHA-256 of the certificate's DER, its 32-byte public key, not-before and
//! not-after (i64 seconds), the serial (u8 length + bytes) and the name (u16
//! length + bytes); all integers little-endian; the HMAC last.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8] = b"MCOKC1\n";

/// One known certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub digest: [u8; 32],
    pub key: [u8; 32],
    pub not_before: i64,
    pub not_after: i64,
    pub serial: Vec<u8>,
    pub name: String,
}

type HmacSha256 = Hmac<Sha256>;

/// A MAC keyed by `key`.
fn mac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte one is never refused.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts a 32-byte key")
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
pub(super) fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut m = mac(key);
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Writes the file's bytes.
pub(super) fn encode(ca: &[u8; 32], entries: &[Entry], secret: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 140);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(ca);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        let serial = &e.serial[..e.serial.len().min(255)];
        let name = &e.name.as_bytes()[..e.name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&e.digest);
        out.extend_from_slice(&e.key);
        out.extend_from_slice(&e.not_before.to_le_bytes());
        out.extend_from_slice(&e.not_after.to_le_bytes());
        out.push(serial.len() as u8);
        out.extend_from_slice(serial);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
    }
    let mac = hmac(secret, &out);
    out.extend_from_slice(&mac);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Reads the file's bytes: the entries, if the file is intact, was written
/// with `secret` and is for the CA `ca`.
pub(super) fn decode(
    bytes: &[u8],
    ca: &[u8; 32],
    secret: &[u8; 32],
) -> Result<Vec<Entry>, &'static str> {
    if bytes.len() < MAGIC.len() + 32 + 4 + 32 || !bytes.starts_with(MAGIC) {
        return Err("not a known-certificates file");
    }
    let (data, mac) = bytes.split_at(bytes.len() - 32);
    let mut m = self::mac(secret);
    m.update(data);
    m.verify_slice(mac)
        .map_err(|_| "written with another key, or altered")?;
    let mut r = Reader(&data[MAGIC.len()..]);
    if r.array::<32>().as_ref() != Some(ca) {
        return Err("written for another CA");
    }
    let count = u32::from_le_bytes(r.array().ok_or("truncated")?) as usize;
    let mut out = Vec::with_capacity(count.min(100_000));
    for _ in 0..count {
        let digest = r.array().ok_or("truncated")?;
        let key = r.array().ok_or("truncated")?;
        let not_before = i64::from_le_bytes(r.array().ok_or("truncated")?);
        let not_after = i64::from_le_bytes(r.array().ok_or("truncated")?);
        let sl = r.array::<1>().ok_or("truncated")?[0] as usize;
        let serial = r.take(sl).ok_or("truncated")?.to_vec();
        let nl = u16::from_le_bytes(r.array().ok_or("truncated")?) as usize;
        let name = String::from_utf8(r.take(nl).ok_or("truncated")?.to_vec())
            .map_err(|_| "a name is not UTF-8")?;
        out.push(Entry {
            digest,
            key,
            not_before,
            not_after,
            serial,
            name,
        });
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> Entry {
        Entry {
            digest: [i; 32],
            key: [i + 1; 32],
            not_before: -5,
            not_after: 1 << 40,
            serial: vec![i, 2, 3],
            name: format!("node:n{i}"),
        }
    }

    #[test]
    fn round_trips_and_refuses_tampering_other_keys_and_other_cas() {
        let ca = [7u8; 32];
        let secret = [9u8; 32];
        let entries = vec![entry(1), entry(2)];
        let bytes = encode(&ca, &entries, &secret);
        assert_eq!(decode(&bytes, &ca, &secret).unwrap(), entries);
        assert!(decode(&bytes, &[8u8; 32], &secret).is_err());
        assert!(decode(&bytes, &ca, &[1u8; 32]).is_err());
        for i in [0, 10, 50, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad, &ca, &secret).is_err(), "byte {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 40], &ca, &secret).is_err());
        assert!(decode(b"", &ca, &secret).is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, zero
        // padded to the block exactly as HMAC pads short keys.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
