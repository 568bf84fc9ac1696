//! Agent backups of an instance's data dir, as the API shows them.

use crate::store::entities::backup;
use serde::Serialize;
use utoipa::ToSchema;

/// A backup in object storage. Fields are declared in the order of their
/// JSON names, the order FM has always written them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// The size of the archive in object storage, in bytes.
    pub archive_size_bytes: i64,
    /// True when the backup schedule took it, false when asked for.
    pub automated: bool,
    /// Milliseconds since the epoch.
    pub creation_date: i64,
    /// The size of the data dir it holds, in bytes.
    pub data_size_bytes: i64,
    /// True when the archive is encrypted.
    pub encrypted: bool,
    /// The number of files in the data dir.
    pub files: i64,
    pub id: String,
    pub instance_id: String,
    /// The last verification's outcome; null if never verified.
    #[schema(required)]
    pub last_verification: Option<BackupVerification>,
    /// Where the backup's objects are (`file://…` or `s3://…`).
    pub location: String,
    /// The SHA-256 of the backup's manifest, in hex.
    pub manifest_sha256: String,
    /// The node version the data dir belongs to.
    pub node_version: String,
    /// Why the backup was taken, if given.
    #[schema(required)]
    pub reason: Option<String>,
}

/// The outcome of verifying a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BackupVerification {
    /// Milliseconds since the epoch.
    pub date: i64,
    #[schema(required)]
    pub message: Option<String>,
    #[schema(required)]
    pub ok: Option<bool>,
}

impl Backup {
    pub fn from_row(b: &backup::Model) -> Self {
        Backup {
            archive_size_bytes: b.archive_bytes,
            automated: b.automated,
            creation_date: b.created_at,
            data_size_bytes: b.data_bytes,
            encrypted: b.encrypted,
            files: b.files,
            id: b.id.clone(),
            instance_id: b.instance_id.clone(),
            last_verification: b.verified_at.map(|date| BackupVerification {
                date,
                message: b.verify_message.clone(),
                ok: b.verify_ok,
            }),
            location: b.location_url.clone(),
            manifest_sha256: b.manifest_sha256.clone(),
            node_version: b.node_version.clone(),
            reason: b.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(verified: bool) -> backup::Model {
        backup::Model {
            id: "bk-1".into(),
            tenant_id: "main".into(),
            instance_id: "inst-1".into(),
            location_url: "file:///tmp/b".into(),
            node_version: "14.2.0".into(),
            created_at: 1_700_000_000_000,
            archive_bytes: 10,
            data_bytes: 20,
            files: 3,
            manifest_sha256: "ab".repeat(32),
            encrypted: true,
            automated: false,
            reason: None,
            verified_at: verified.then_some(1_700_000_001_000),
            verify_ok: verified.then_some(true),
            verify_message: None,
        }
    }

    #[test]
    fn serializes_byte_for_byte_as_the_previous_untyped_view() {
        for r in [row(false), row(true)] {
            let typed = serde_json::to_string(&Backup::from_row(&r)).unwrap();
            // What the untyped view wrote (serde_json maps sort their keys).
            let view = serde_json::json!({
                "id": "bk-1", "instanceId": "inst-1", "location": "file:///tmp/b",
                "nodeVersion": "14.2.0", "creationDate": 1_700_000_000_000i64,
                "archiveSizeBytes": 10, "dataSizeBytes": 20, "files": 3,
                "manifestSha256": "ab".repeat(32), "encrypted": true, "automated": false,
                "reason": null,
                "lastVerification": r.verified_at.map(|at| serde_json::json!({
                    "date": at, "ok": r.verify_ok, "message": r.verify_message,
                })),
            })
            .to_string();
            assert_eq!(typed, view);
        }
    }
}
