//! Secrets at rest: API key secrets are hashed, cloud secrets are encrypted.
//!
//! API key secrets are 256-bit random values, so a single SHA-256 is as good
//! as a slow password hash against guessing and costs microseconds per
//! request. Cloud secrets (AWS secret keys, license tokens) must be read back
//! to be used, so they are sealed with ChaCha20-Poly1305 under a key FM keeps
//! outside the database (`FM_SECRETS_KEY` or `DATA_DIR/secrets.key`).

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// A new API key: `(id, secret)`. The id is public; the secret is shown once.
pub fn new_api_key() -> (String, String) {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    (crate::model::new_id("key"), URL_SAFE_NO_PAD.encode(secret))
}

/// The stored form of an API key secret.
pub fn hash_api_secret(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fleet-manager api key v1\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Compares a presented secret with a stored hash in constant time.
pub fn verify_api_secret(secret: &str, stored_hash: &str) -> bool {
    let computed = hash_api_secret(secret);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Seals and opens secrets stored in the database.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
    /// A second key, derived from the first, for [`SecretBox::derive`].
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

const SEALED_PREFIX: &str = "v1:";

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"fleet-manager derive v1");
        h.update(key);
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            mac_key: h.finalize().into(),
        }
    }

    /// The key from `FM_SECRETS_KEY` (base64 of 32 bytes) if given, else from
    /// `data_dir/secrets.key`, created (mode 0600) on first use.
    pub fn load(explicit: Option<&str>, data_dir: &Path) -> Result<Self> {
        if let Some(b64) = explicit {
            return Self::from_base64(b64.trim());
        }
        let path = data_dir.join("secrets.key");
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::from_base64(s.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_private(&path, STANDARD.encode(key).as_bytes())?;
                Ok(Self::from_key(&key))
            }
            Err(e) => Err(Error::internal(format!(
                "can't read {}: {e}",
                path.display()
            ))),
        }
    }

    /// A secret derived from FM's key and `label` (HMAC-SHA-256, hex): the
    /// same every time for the same label, unguessable without the key. A
    /// step that must hand out the same secret when it runs again (an
    /// enrollment token inside user-data EC2 compares by ClientToken)
    /// derives it instead of drawing a new one.
    pub fn derive(&self, label: &str) -> String {
        hex::encode(hmac_sha256(&self.mac_key, label.as_bytes()))
    }

    fn from_base64(b64: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| Error::invalid("the secrets key must be base64 of 32 bytes"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::invalid("the secrets key must be base64 of 32 bytes"))?;
        Ok(Self::from_key(&key))
    }

    pub fn seal(&self, plaintext: &str) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| Error::internal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str) -> Result<String> {
        let bad = || Error::internal("a stored secret can't be decrypted: wrong secrets key?");
        let raw = STANDARD
            .decode(sealed.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?)
            .map_err(|_| bad())?;
        if raw.len() < 12 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| bad())?;
        String::from_utf8(pt).map_err(|_| bad())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::internal(format!("can't create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| Error::internal(format!("can't write {}: {e}", path.display())))
}

/// HMAC-SHA-256 (RFC 2104) with a key of at most one block.
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner = sha2::Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    sha2::Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_and_derived_secrets_are_stable_per_label() {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let b = SecretBox::from_key(&[7u8; 32]);
        assert_eq!(b.derive("enroll:vm-1"), b.derive("enroll:vm-1"));
        assert_ne!(b.derive("enroll:vm-1"), b.derive("enroll:vm-2"));
        assert_ne!(
            b.derive("enroll:vm-1"),
            SecretBox::from_key(&[8u8; 32]).derive("enroll:vm-1")
        );
    }

    #[test]
    fn api_secrets_verify_only_against_their_own_hash() {
        let (_, secret) = new_api_key();
        let h = hash_api_secret(&secret);
        assert!(verify_api_secret(&secret, &h));
        assert!(!verify_api_secret("wrong", &h));
        assert!(!h.contains(&secret));
    }

    #[test]
    fn sealed_secrets_round_trip_and_hide_the_plaintext() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let sealed = b.seal("wJalrXUtnFEMI/K7MDENG").unwrap();
        assert!(!sealed.contains("wJalr"));
        assert_eq!(b.open(&sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG");
        let other = SecretBox::from_key(&[8u8; 32]);
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load(None, dir.path()).unwrap();
        let sealed = a.seal("x").unwrap();
        let b = SecretBox::load(None, dir.path()).unwrap();
        assert_eq!(b.open(&sealed).unwrap(), "x");
    }
}
