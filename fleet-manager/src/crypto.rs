//! Secrets at rest: API key secrets are hashed, cloud secrets are encrypted.
//!
//! API key secrets are 256-bit random values, so a single SHA-256 is as good
//! as a slow password hash against guessing and costs microseconds per
//! request. Cloud secrets (AWS secret keys, license tokens) must be read back
//! to be used, so they are sealed with ChaCha20-Poly1305 under a key FM keeps
//! outside the database (`FM_SECRETS_KEY` or `DATA_DIR/secrets.key`), each
//! bound to the [`Place`] it is kept in.

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
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

/// A new console session token (256 random bits); only its hash is kept.
pub fn new_session_token() -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The stored form of a session token: the key of its row.
pub fn hash_session_token(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fleet-manager session v1\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// The CSRF token of a session: derived from its token, so it needs no
/// storage, and useless without the cookie it is bound to.
pub fn session_csrf(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fleet-manager csrf v1\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Whether two tokens are equal, in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The stored form of a person's password: argon2id (the crate's default
/// parameters: 19 MiB, 2 passes) with a random salt, in PHC form.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches a stored [`hash_password`] (constant time).
pub fn verify_password(password: &str, stored: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(stored)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A password FM chooses (first start, reset): 24 characters, 143 bits.
pub fn new_password() -> String {
    let mut raw = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
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

/// Values sealed by earlier versions, with no associated data: opened only
/// by the one-time re-sealing at start ([`SecretBox::reseal_legacy`]).
const LEGACY_PREFIX: &str = "v1:";
/// Values sealed with their [`Place`] as associated data.
const SEALED_PREFIX: &str = "v2:";

/// Where a sealed value is kept: its table, its column (or the field within
/// a column's document) and its row. It is the seal's associated data, so a
/// value copied to another place (another row, another column) does not open
/// there: whoever can write the database but lacks the key can't move the
/// CA's key into a field the API hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    table: &'static str,
    column: String,
    row: String,
}

impl Place {
    pub fn new(table: &'static str, column: impl Into<String>, row: impl Into<String>) -> Self {
        Place {
            table,
            column: column.into(),
            row: row.into(),
        }
    }

    /// The agent CA's private key, in the settings row `agent-ca`.
    pub fn ca_key() -> Self {
        Place::new("settings", "agent-ca.key", "agent-ca")
    }

    /// A tenant's sealed cloud credentials.
    pub fn tenant_credentials(tenant: &str) -> Self {
        Place::new("tenants", "cloud_credentials", tenant)
    }

    /// A cloud account's secret access key.
    pub fn account_secret(account: &str) -> Self {
        Place::new("cloud_accounts", "secret", account)
    }

    /// A template's inline AWS secret access key.
    pub fn template_secret(template: &str) -> Self {
        Place::new("instance_templates", "secret", template)
    }

    /// A secret parameter `key` of a template's setup action.
    pub fn template_param(template: &str, key: &str) -> Self {
        Place::new(
            "instance_templates",
            format!("setupActions.{key}"),
            template,
        )
    }

    /// A secret the node gave at install (`admin_api_key`,
    /// `initial_password`), in the instance's runtime row.
    pub fn runtime(instance: &str, column: &'static str) -> Self {
        Place::new("instance_runtime", column, instance)
    }

    /// A secret an operation on `target` carries in its parameters or its
    /// steps' outputs, under the field `key`.
    pub fn operation(target: &str, key: &str) -> Self {
        Place::new("operations", key, target)
    }

    fn associated_data(&self) -> Vec<u8> {
        let mut aad = b"fleet-manager sealed v2".to_vec();
        for part in [self.table, self.column.as_str(), self.row.as_str()] {
            aad.push(0);
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} of '{}'", self.table, self.column, self.row)
    }
}

/// Whether `s` is a value sealed by an earlier version (see
/// [`SecretBox::reseal_legacy`]).
pub fn is_legacy_sealed(s: &str) -> bool {
    s.starts_with(LEGACY_PREFIX)
}

/// Whether `s` is a value sealed with its place.
pub fn is_sealed(s: &str) -> bool {
    s.starts_with(SEALED_PREFIX)
}

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

    /// Seals `plaintext` for `at`: it opens only there.
    pub fn seal(&self, at: &Place, plaintext: &str) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &at.associated_data(),
                },
            )
            .map_err(|_| Error::internal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens a value sealed for `at`. A value sealed for another place, or
    /// under another key, does not open.
    pub fn open(&self, at: &Place, sealed: &str) -> Result<String> {
        let Some(body) = sealed.strip_prefix(SEALED_PREFIX) else {
            return Err(if is_legacy_sealed(sealed) {
                Error::internal(format!(
                    "the secret in {at} was sealed by an earlier version and was not re-sealed at start"
                ))
            } else {
                Error::internal(format!("the secret in {at} is not a sealed value"))
            });
        };
        self.decrypt(body, &at.associated_data()).ok_or_else(|| {
            Error::internal(format!(
                "the secret in {at} can't be opened: sealed for another place, or under another secrets key"
            ))
        })
    }

    /// A value an earlier version sealed (no associated data) sealed again
    /// for `at`; `None` when `sealed` is not such a value. Used once, when a
    /// database written by an earlier version is first opened.
    pub fn reseal_legacy(&self, at: &Place, sealed: &str) -> Result<Option<String>> {
        let Some(body) = sealed.strip_prefix(LEGACY_PREFIX) else {
            return Ok(None);
        };
        let plain = self.decrypt(body, b"").ok_or_else(|| {
            Error::internal(format!(
                "the secret in {at} can't be decrypted: wrong secrets key?"
            ))
        })?;
        self.seal(at, &plain).map(Some)
    }

    fn decrypt(&self, body: &str, aad: &[u8]) -> Option<String> {
        let raw = STANDARD.decode(body).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()?;
        String::from_utf8(pt).ok()
    }

    /// A value sealed the way earlier versions did (tests of the upgrade).
    #[doc(hidden)]
    pub fn seal_legacy(&self, plaintext: &str) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| Error::internal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{LEGACY_PREFIX}{}", STANDARD.encode(out)))
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
        let at = Place::account_secret("acc-1");
        let sealed = b.seal(&at, "wJalrXUtnFEMI/K7MDENG").unwrap();
        assert!(!sealed.contains("wJalr"));
        assert_eq!(b.open(&at, &sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG");
        let other = SecretBox::from_key(&[8u8; 32]);
        assert!(other.open(&at, &sealed).is_err());
    }

    #[test]
    fn a_sealed_value_opens_only_in_the_place_it_was_sealed_for() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let sealed = b
            .seal(&Place::ca_key(), "-----BEGIN PRIVATE KEY-----")
            .unwrap();
        for elsewhere in [
            Place::runtime("ins-1", "admin_api_key"),
            Place::account_secret("agent-ca"),
            Place::new("settings", "agent-ca.key", "other"),
            Place::new("settings", "other", "agent-ca"),
        ] {
            let err = b.open(&elsewhere, &sealed).unwrap_err().to_string();
            assert!(err.contains("another place"), "{err}");
        }
        // Separators keep (table, column, row) apart: moving a boundary is
        // another place.
        let p = b.seal(&Place::new("t", "ab", "c"), "x").unwrap();
        assert!(b.open(&Place::new("t", "a", "bc"), &p).is_err());
    }

    #[test]
    fn legacy_values_open_only_through_resealing_for_their_place() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let old = b.seal_legacy("s3cret").unwrap();
        let at = Place::template_param("ist-1", "password");
        let err = b.open(&at, &old).unwrap_err().to_string();
        assert!(err.contains("earlier version"), "{err}");
        let resealed = b.reseal_legacy(&at, &old).unwrap().unwrap();
        assert_eq!(b.open(&at, &resealed).unwrap(), "s3cret");
        assert_eq!(b.reseal_legacy(&at, &resealed).unwrap(), None);
        let other = SecretBox::from_key(&[8u8; 32]);
        assert!(other.reseal_legacy(&at, &old).is_err());
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load(None, dir.path()).unwrap();
        let sealed = a.seal(&Place::ca_key(), "x").unwrap();
        let b = SecretBox::load(None, dir.path()).unwrap();
        assert_eq!(b.open(&Place::ca_key(), &sealed).unwrap(), "x");
    }
}
