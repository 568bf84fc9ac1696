//! Agent backups of an instance's data dir, as the REST extension shows
//! them.

use crate::store::entities::backup;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The last verification of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// Milliseconds since the epoch.
    pub date: i64,
    pub ok: Option<bool>,
    pub message: Option<String>,
}

/// One backup of an instance's data dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub id: String,
    pub instance_id: String,
    /// Where it is stored (`file:///...` or `s3://...`).
    pub location: String,
    pub node_version: String,
    /// Milliseconds since the epoch.
    pub creation_date: i64,
    pub archive_size_bytes: i64,
    pub data_size_bytes: i64,
    pub files: i64,
    pub manifest_sha256: String,
    pub encrypted: bool,
    pub automated: bool,
    pub reason: Option<String>,
    pub last_verification: Option<Verification>,
}

impl Backup {
    pub fn from_row(b: &backup::Model) -> Backup {
        Backup {
            id: b.id.clone(),
            instance_id: b.instance_id.clone(),
            location: b.location_url.clone(),
            node_version: b.node_version.clone(),
            creation_date: b.created_at,
            archive_size_bytes: b.archive_bytes,
            data_size_bytes: b.data_bytes,
            files: b.files,
            manifest_sha256: b.manifest_sha256.clone(),
            encrypted: b.encrypted,
            automated: b.automated,
            reason: b.reason.clone(),
            last_verification: b.verified_at.map(|date| Verification {
                date,
                ok: b.verify_ok,
                message: b.verify_message.clone(),
            }),
        }
    }
}
