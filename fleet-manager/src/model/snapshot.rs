//! Snapshots of an instance's data volume, as the public API shows them.

use crate::store::entities::snapshot;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A snapshot of an instance's data volume. Fields are declared in the
/// order of their JSON names, the order FM has always written them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// True when the snapshot schedule took it, false when asked for.
    pub automated: bool,
    /// The cloud's id of the snapshot.
    pub cloud_snapshot_id: String,
    /// Milliseconds since the epoch.
    pub creation_date: i64,
    pub id: String,
    pub instance_id: String,
    /// The node version on the volume when it was taken, if known.
    #[schema(required)]
    pub node_version: Option<String>,
    #[schema(required)]
    pub reason_for_snapshot: Option<String>,
    /// The volume's size, if the cloud reports it.
    #[schema(required)]
    pub size_bytes: Option<i64>,
}

impl Snapshot {
    pub fn from_row(s: &snapshot::Model) -> Self {
        Snapshot {
            automated: s.automated,
            cloud_snapshot_id: s.cloud_ref.clone(),
            creation_date: s.created_at,
            id: s.id.clone(),
            instance_id: s.instance_id.clone(),
            node_version: s.node_version.clone(),
            reason_for_snapshot: s.reason.clone(),
            size_bytes: s.size_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reason: Option<&str>) -> snapshot::Model {
        snapshot::Model {
            id: "snap-1".into(),
            tenant_id: "main".into(),
            instance_id: "inst-1".into(),
            cloud_ref: "snap-cloud".into(),
            reason: reason.map(Into::into),
            node_version: Some("14.2.0".into()),
            size_bytes: None,
            created_at: 1_700_000_000_000,
            automated: false,
        }
    }

    #[test]
    fn serializes_byte_for_byte_as_the_previous_untyped_view() {
        for (r, reason) in [
            (row(None), None),
            (row(Some("before upgrade")), Some("before upgrade")),
        ] {
            let typed = serde_json::to_string(&Snapshot::from_row(&r)).unwrap();
            // What the untyped view wrote (serde_json maps sort their keys).
            let view = serde_json::json!({
                "id": "snap-1", "instanceId": "inst-1", "reasonForSnapshot": reason,
                "nodeVersion": "14.2.0", "sizeBytes": null, "creationDate": 1_700_000_000_000i64,
                "automated": false, "cloudSnapshotId": "snap-cloud",
            })
            .to_string();
            assert_eq!(typed, view);
            let back: Snapshot = serde_json::from_str(&view).unwrap();
            assert_eq!(back, Snapshot::from_row(&r));
        }
    }
}
