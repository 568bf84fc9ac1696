//! The manifest: what a backup holds, entry by entry.

use serde::{Deserialize, Serialize};

/// The manifest format this code writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

/// One archived entry; `path` is relative to the data dir, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Hex SHA-256 of a file's content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    pub instance_id: String,
    /// The node version in the data dir when the backup was taken.
    pub node_version: String,
    pub created_at_ms: i64,
    pub encrypted: bool,
    pub exclusions: Vec<String>,
    /// Size and hex SHA-256 of the archive object as stored.
    pub archive_size: u64,
    pub archive_sha256: String,
    /// Sum of the files' sizes.
    pub data_bytes: u64,
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count()
    }
}
