//! Snapshots of an instance's data volume, as the public API shows them.

use crate::store::entities::snapshot;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One snapshot of an instance's data volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub id: String,
    pub instance_id: String,
    pub reason_for_snapshot: Option<String>,
    /// The node version on the volume when it was taken.
    pub node_version: Option<String>,
    pub size_bytes: Option<i64>,
    /// Milliseconds since the epoch.
    pub creation_date: i64,
    /// Taken by the automated-snapshot schedule.
    pub automated: bool,
    /// The cloud's id of the snapshot.
    pub cloud_snapshot_id: String,
}

impl Snapshot {
    pub fn from_row(s: &snapshot::Model) -> Snapshot {
        Snapshot {
            id: s.id.clone(),
            instance_id: s.instance_id.clone(),
            reason_for_snapshot: s.reason.clone(),
            node_version: s.node_version.clone(),
            size_bytes: s.size_bytes,
            creation_date: s.created_at,
            automated: s.automated,
            cloud_snapshot_id: s.cloud_ref.clone(),
        }
    }
}
