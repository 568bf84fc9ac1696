//! `config/users.json` of a stand-in data dir: users with a salted SHA-256
//! of their password (never the clear password), plus random secret
//! generation for the installer.
//!
//! The stored hash is `hex(sha256(salt_hex + ":" + password))` with a
//! per-user random 16-byte salt.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::datadir::write_atomic;
use crate::error::{Context, Fail, Outcome};

/// The whole `users.json` file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsersFile {
    /// Users by login.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

/// One user of the stand-in node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Random salt, hex.
    pub salt: String,
    /// `hex(sha256(salt + ":" + password))`.
    #[serde(rename = "passwordSha256")]
    pub password_sha256: String,
    /// Groups of the user (the initial admin is in `administrators`).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl User {
    /// A user with a fresh random salt and the given password.
    pub fn with_password(password: &str, groups: Vec<String>) -> Self {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let salt = hex::encode(salt);
        let password_sha256 = hash_password(&salt, password);
        Self {
            salt,
            password_sha256,
            groups,
        }
    }

    /// Replaces the password (with a new salt), keeping the groups.
    pub fn set_password(&mut self, password: &str) {
        let groups = std::mem::take(&mut self.groups);
        *self = Self::with_password(password, groups);
    }

    /// True if `password` is this user's password.
    pub fn verify(&self, password: &str) -> bool {
        constant_time_eq(
            hash_password(&self.salt, password).as_bytes(),
            self.password_sha256.to_ascii_lowercase().as_bytes(),
        )
    }
}

/// `hex(sha256(salt + ":" + password))`.
pub fn hash_password(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random string of `len` ASCII letters and digits from the OS RNG.
pub fn random_alphanumeric(len: usize) -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// True for a login the stand-in accepts: 1..=128 characters, no control
/// characters, no surrounding whitespace.
pub fn is_valid_login(login: &str) -> bool {
    !login.is_empty()
        && login.chars().count() <= 128
        && login.trim() == login
        && !login.chars().any(char::is_control)
}

impl UsersFile {
    /// Reads `path`; a missing file is an empty user list.
    pub fn load(path: &Path) -> Outcome<Self> {
        match fs::read_to_string(path) {
            Ok(text) => {
                serde_json::from_str(&text).context(|| format!("cannot parse {}", path.display()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Fail::new(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Outcome<()> {
        let mut text =
            serde_json::to_string_pretty(self).context(|| "cannot serialize users".to_string())?;
        text.push('\n');
        write_atomic(path, text.as_bytes(), 0o600)
            .context(|| format!("cannot write {}", path.display()))
    }

    /// True if `login` exists and `password` matches.
    pub fn check(&self, login: &str, password: &str) -> bool {
        self.users.get(login).is_some_and(|u| u.verify(password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trips_through_the_salted_hash() {
        let u = User::with_password("s3cret", vec![]);
        assert!(u.verify("s3cret"));
        assert!(!u.verify("s3cret "));
        assert!(!u.verify(""));
    }

    #[test]
    fn same_password_gets_different_salts_and_hashes() {
        let a = User::with_password("pw", vec![]);
        let b = User::with_password("pw", vec![]);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.password_sha256, b.password_sha256);
    }

    #[test]
    fn stored_file_never_contains_the_clear_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        let mut f = UsersFile::default();
        f.users.insert(
            "admin".into(),
            User::with_password("VeryVisiblePassword", vec!["administrators".into()]),
        );
        f.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("VeryVisiblePassword"));
        let back = UsersFile::load(&path).unwrap();
        assert!(back.check("admin", "VeryVisiblePassword"));
        assert!(!back.check("nobody", "VeryVisiblePassword"));
    }

    #[test]
    fn set_password_keeps_groups() {
        let mut u = User::with_password("a", vec!["g".into()]);
        u.set_password("b");
        assert!(u.verify("b"));
        assert!(!u.verify("a"));
        assert_eq!(u.groups, vec!["g".to_string()]);
    }

    #[test]
    fn random_secrets_have_the_requested_length_and_alphabet() {
        let s = random_alphanumeric(32);
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(s, random_alphanumeric(32));
    }

    #[test]
    fn logins_must_be_printable_and_trimmed() {
        assert!(is_valid_login("admin"));
        assert!(is_valid_login("jane.doe@example.com"));
        assert!(!is_valid_login(""));
        assert!(!is_valid_login(" admin"));
        assert!(!is_valid_login("a\nb"));
    }
}
