//! Node backups in object storage.
//!
//! A backup is two objects under `<prefix>/<instance>/<backup>/`:
//! - `archive`: the data dir as a tar stream compressed with zstd (level 1,
//!   with its frame checksum), optionally encrypted ([`crypt`]). It is
//!   produced and uploaded as a stream: neither the whole archive nor any
//!   copy of it is ever held in memory or written to the instance's disk.
//! - `manifest`: JSON (encrypted like the archive) listing every entry with
//!   its mode, size and the SHA-256 of its content, and the archive's own
//!   size and SHA-256. It is written last: a backup without a manifest is
//!   incomplete and is never restored.
//!
//! Restoring extracts into a staging dir, checking every file against the
//! manifest as it is written; only a complete, matching extraction replaces
//! the data dir ([`restore`]). Verifying is the same extraction into a
//! scratch dir, read back and compared with the manifest, then removed.
//!
//! An archive is not trusted: whoever took the backup wrote it and its
//! manifest. Restore, clone (a restore into another instance) and verify
//! all extract through one path that works on directory handles and never
//! follows a symlink, refuses anything that could reach outside the
//! destination (absolute or `..` paths, paths through symlinks, links out,
//! hard links, devices, fifos, duplicates), drops setuid, setgid and sticky
//! bits, and as root gives every entry the data dir's owner rather than the
//! archive's; the rules are listed in `restore/safe.rs`.

pub mod crypt;
pub mod location;
pub mod manifest;
mod pipe;
pub mod restore;
pub mod take;

pub use location::{Location, Store};
pub use manifest::{Entry, EntryKind, Manifest};
pub use restore::{RestoreStats, extract, restore_into, verify};
pub use take::{TakeOptions, TakeStats, take};

/// The exclusions the node's backup guide lists: paths relative to the data
/// dir whose content is not archived (the directory itself is, empty).
pub const DEFAULT_EXCLUSIONS: &[&str] = &["tmp", "caches", "run", "diagnosis"];

/// What went wrong, for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error(format!("object storage: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

/// The names of a backup's two objects.
pub const ARCHIVE: &str = "archive";
pub const MANIFEST: &str = "manifest";
