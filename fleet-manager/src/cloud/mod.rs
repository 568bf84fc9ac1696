//! The cloud port: what FM needs from a cloud to host instances. Every call
//! is idempotent by the ids FM chooses (a VM id per provisioning, a volume
//! id per instance, a snapshot id), so a saga step that runs twice finds
//! what its first run made instead of making a second one.

pub mod local;

use crate::error::Result;

/// Where an agent keeps its files and finds the node's, on a VM of this
/// cloud; rendered into the agent's user-data.
#[derive(Debug, Clone)]
pub struct VmLayout {
    pub state_dir: String,
    pub data_dir: String,
    pub home_dir: String,
}

/// A VM to create.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub vm_id: String,
    pub instance_id: String,
    pub volume_id: String,
    pub user_data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Running,
    Stopped,
    Missing,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Stopped => "stopped",
            VmState::Missing => "missing",
        }
    }
}

#[async_trait::async_trait]
pub trait CloudProvider: Send + Sync + std::fmt::Debug + 'static {
    fn name(&self) -> &'static str;
    /// Paths on a VM of this cloud.
    fn layout(&self, vm_id: &str, volume_id: &str) -> VmLayout;
    /// The URL where the node on this VM answers, given its port.
    fn public_url(&self, vm_id: &str, port: u16) -> String;
    /// Creates the data volume unless it exists.
    async fn ensure_volume(&self, volume_id: &str, size_gb: u32) -> Result<()>;
    /// Creates the volume from a snapshot unless it exists.
    async fn volume_from_snapshot(&self, snapshot_ref: &str, volume_id: &str) -> Result<()>;
    async fn delete_volume(&self, volume_id: &str) -> Result<()>;
    /// Creates and boots the VM unless it exists (and boots it again if it
    /// exists but is down without having been stopped).
    async fn ensure_vm(&self, spec: &VmSpec) -> Result<()>;
    async fn vm_state(&self, vm_id: &str) -> Result<VmState>;
    async fn start_vm(&self, vm_id: &str) -> Result<()>;
    async fn stop_vm(&self, vm_id: &str) -> Result<()>;
    /// Terminates the VM; the data volume stays. Missing VMs are fine.
    async fn terminate_vm(&self, vm_id: &str) -> Result<()>;
    /// Snapshots the volume; returns (reference, size in bytes).
    async fn snapshot_volume(&self, volume_id: &str, snapshot_id: &str) -> Result<(String, u64)>;
    async fn delete_snapshot(&self, snapshot_ref: &str) -> Result<()>;
    /// Periodic housekeeping the cloud needs from FM (the local cloud
    /// restarts crashed agents, as an init system would on a VM).
    async fn tick(&self) -> Result<()> {
        Ok(())
    }
}
