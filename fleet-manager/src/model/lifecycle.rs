//! What the instance lifecycle endpoints answer besides futures: the
//! instance's status and the node's secrets. Fields are declared in the
//! order of their JSON names, the order FM has always written them in.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The VM, node and agent of an instance as FM sees them. Before the
/// instance was ever provisioned (FM holds no runtime record of it) only
/// `agentState`, `hasPhysicalInstance`, `publicURL` and `state` are there;
/// afterwards every field is there, `null` when unknown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// `connected` (a heartbeat within the agent timeout), `unreachable`
    /// or `none` (never heard from).
    pub agent_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub agent_version: Option<Option<String>>,
    /// The VM's state at the cloud: `running`, `stopped` or `missing`;
    /// null without a VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cloud_state: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub data_volume_id: Option<Option<String>>,
    pub has_physical_instance: bool,
    /// The agent's last heartbeat; null if none was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<NodeHeartbeat>)]
    pub heartbeat: Option<Option<NodeHeartbeat>>,
    /// When the last heartbeat arrived, milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub last_heartbeat_at: Option<Option<i64>>,
    /// The node's state as the agent last reported it (`not_installed`,
    /// `stopped`, `starting`, `running`, `unhealthy`), `unknown` while
    /// the agent is not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub node_state: Option<Option<String>>,
    /// The node version installed in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub node_version: Option<Option<String>>,
    #[serde(rename = "publicURL")]
    #[schema(required)]
    pub public_url: Option<String>,
    /// FM's provisioning state: `none`, `provisioning`,
    /// `provisioning-failed`, `running`, `stopped` or `deprovisioned`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub vm_id: Option<Option<String>>,
}

impl InstanceStatus {
    /// The status of an instance that was never provisioned.
    pub fn never_provisioned() -> Self {
        InstanceStatus {
            agent_state: "none".into(),
            agent_version: None,
            cloud_state: None,
            data_volume_id: None,
            has_physical_instance: false,
            heartbeat: None,
            last_heartbeat_at: None,
            node_state: None,
            node_version: None,
            public_url: None,
            state: "none".into(),
            vm_id: None,
        }
    }
}

/// What the agent reported in its last heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeHeartbeat {
    /// The 1-minute load average.
    pub cpu_load: Option<f64>,
    pub data_disk_total_bytes: u64,
    pub data_disk_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    /// The node version installed in the data dir (empty if none).
    pub node_version: String,
    pub os_disk_total_bytes: u64,
    pub os_disk_used_bytes: u64,
}

impl NodeHeartbeat {
    /// How full the data disk is, in percent; none if its size is unknown.
    pub fn data_disk_percent(&self) -> Option<u64> {
        self.data_disk_used_bytes
            .saturating_mul(100)
            .checked_div(self.data_disk_total_bytes)
    }
}

/// The node's initial admin credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InitialPassword {
    pub password: String,
    /// Always `admin`.
    pub user: String,
}

/// The node's admin API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AdminApiKey {
    #[serde(rename = "adminAPIKey")]
    pub admin_api_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_never_provisioned_status_has_only_four_fields() {
        assert_eq!(
            serde_json::to_string(&InstanceStatus::never_provisioned()).unwrap(),
            json!({"hasPhysicalInstance": false, "state": "none", "publicURL": null, "agentState": "none"})
                .to_string()
        );
    }

    #[test]
    fn a_provisioned_status_has_every_field_null_when_unknown() {
        let s = InstanceStatus {
            agent_state: "connected".into(),
            agent_version: Some(Some("0.1.0".into())),
            cloud_state: Some(None),
            data_volume_id: Some(Some("vol-1".into())),
            has_physical_instance: true,
            heartbeat: Some(None),
            last_heartbeat_at: Some(Some(5)),
            node_state: Some(Some("running".into())),
            node_version: Some(None),
            public_url: Some("http://x".into()),
            state: "running".into(),
            vm_id: Some(None),
        };
        let want = json!({
            "hasPhysicalInstance": true, "state": "running", "publicURL": "http://x",
            "cloudState": null, "vmId": null, "dataVolumeId": "vol-1", "nodeVersion": null,
            "nodeState": "running", "agentState": "connected", "agentVersion": "0.1.0",
            "lastHeartbeatAt": 5, "heartbeat": null,
        });
        assert_eq!(serde_json::to_string(&s).unwrap(), want.to_string());
    }

    #[test]
    fn a_stored_heartbeat_reads_back_as_written() {
        let stored = json!({
            "nodeVersion": "14.2.0", "dataDiskUsedBytes": 1, "dataDiskTotalBytes": 2,
            "osDiskUsedBytes": 3, "osDiskTotalBytes": 4, "memoryUsedBytes": 5,
            "memoryTotalBytes": 6, "cpuLoad": 0.25,
        })
        .to_string();
        let hb: NodeHeartbeat = serde_json::from_str(&stored).unwrap();
        assert_eq!(serde_json::to_string(&hb).unwrap(), stored);
    }

    #[test]
    fn secrets_keep_their_field_names() {
        let p = InitialPassword {
            password: "p".into(),
            user: "admin".into(),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            json!({"user": "admin", "password": "p"}).to_string()
        );
        let k = AdminApiKey {
            admin_api_key: "k".into(),
        };
        assert_eq!(serde_json::to_string(&k).unwrap(), r#"{"adminAPIKey":"k"}"#);
    }
}
