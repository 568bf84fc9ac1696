//! The cloud port: what FM needs from a cloud to host instances. Every call
//! is idempotent by the ids FM chooses (a VM id per provisioning, a volume
//! id per instance, a snapshot id), so a saga step that runs twice finds
//! what its first run made instead of making a second one. Three providers:
//! `local` (the embedded default), `aws` (EC2) and `sim` (in memory, with
//! in-process agents: the saga tests' cloud).

pub mod aws;
pub mod local;
pub mod sim;

use crate::error::Result;

/// Where an agent keeps its files and finds the node's, on a VM of this
/// cloud; rendered into the agent's user-data.
#[derive(Debug, Clone)]
pub struct VmLayout {
    pub state_dir: String,
    pub data_dir: String,
    pub home_dir: String,
    /// The user the node runs as (a name or `UID:GID`), for the agent to
    /// drop to; `None`: the data dir's owner.
    pub node_user: Option<String>,
    /// Where the agent reads the VM's signed identity document for its
    /// enrollment (EC2's instance metadata service); `None`: no attestation.
    pub imds_url: Option<String>,
}

/// What an agent presents at enrollment to prove the VM it runs on.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// EC2: the instance identity document (JSON).
    pub document: String,
    /// EC2: its base64-encoded RSA SHA-256 signature.
    pub signature: String,
}

/// A VM to create.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub vm_id: String,
    pub instance_id: String,
    pub volume_id: String,
    pub user_data: String,
}

/// A secret that never shows in logs or debug output.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

/// The identity FM acts as in a cloud account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum CloudAuth {
    /// The SDK's default chain (FM's own instance role on EC2).
    #[default]
    Default,
    Keypair {
        access_key_id: String,
        secret_access_key: Redacted,
    },
    /// A role assumed through STS.
    Role { arn: String },
}

/// Options of a block volume.
#[derive(Debug, Clone, Default)]
pub struct VolumeOptions {
    pub size_gb: Option<u32>,
    pub volume_type: Option<String>,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
}

/// How an instance gets a public address of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ElasticIp {
    #[default]
    None,
    /// FM allocates one for the instance (and releases it with it).
    Allocate,
    /// An address the admin allocated; associated, never released.
    Existing(String),
}

/// Where and how an instance's resources live: the account and region to
/// act in, the network to place them in and the instance's settings. Built
/// by the lifecycle from the instance, its template, network and account;
/// the `local` cloud ignores most of it.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub tenant_id: String,
    pub instance_id: String,
    pub label: String,
    /// The cloud account's id (throttling is per account and region).
    pub account_id: String,
    pub auth: CloudAuth,
    pub region: String,
    pub network_id: String,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub security_groups: Vec<String>,
    /// Create (and later delete) a security group for the network.
    pub auto_security_group: bool,
    pub assign_public_ip: bool,
    pub instance_type: Option<String>,
    pub key_pair: Option<String>,
    pub instance_profile_arn: Option<String>,
    pub root_volume: VolumeOptions,
    pub data_volume: VolumeOptions,
    /// Encrypt volumes; with a KMS key when `kms_key_id` is set.
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub elastic_ip: ElasticIp,
    /// The user's cloud tags (tenant's and instance's, merged).
    pub tags: std::collections::BTreeMap<String, String>,
}

/// A resource FM's ownership tags mark, as the cloud lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedResource {
    /// `instance`, `volume`, `snapshot`, `security-group` or `address`.
    pub kind: &'static str,
    pub cloud_id: String,
    /// The FM instance (or network, for security groups) it belongs to.
    pub owner_id: String,
    /// FM's logical id for it (`vm-…`, `vol-…`, a snapshot id), if any.
    pub logical_id: Option<String>,
    /// Still usable (a terminated VM or a deleting volume is not).
    pub live: bool,
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
    /// The provider as `Any`, for tests that look inside a simulated one.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Paths on a VM of this cloud.
    fn layout(&self, vm_id: &str, volume_id: &str) -> VmLayout;
    /// Whether all nodes share this host (then each needs a port block
    /// nothing else on the host holds).
    fn shares_host(&self) -> bool {
        false
    }
    /// The URL where the node on this VM answers, given its port.
    async fn public_url(&self, at: &Placement, vm_id: &str, port: u16) -> Result<String>;
    /// Checks that the network the placement names exists.
    async fn check_network(&self, _at: &Placement) -> Result<()> {
        Ok(())
    }
    /// Deletes what FM created for a network (its security group).
    async fn delete_network(&self, _at: &Placement) -> Result<()> {
        Ok(())
    }
    /// Creates the data volume unless it exists.
    async fn ensure_volume(&self, at: &Placement, volume_id: &str) -> Result<()>;
    /// Creates the volume from a snapshot unless it exists.
    async fn volume_from_snapshot(
        &self,
        at: &Placement,
        snapshot_ref: &str,
        volume_id: &str,
    ) -> Result<()>;
    async fn delete_volume(&self, at: &Placement, volume_id: &str) -> Result<()>;
    /// Creates and boots the VM unless it exists (and boots it again if it
    /// exists but is down without having been stopped), with the data
    /// volume attached.
    async fn ensure_vm(&self, at: &Placement, spec: &VmSpec) -> Result<()>;
    /// Whether an enrolling agent must prove the VM it runs on (checked by
    /// [`CloudProvider::attest`] before FM certifies it). Clouds whose VMs
    /// can't be impersonated by one who read the token (the local cloud's
    /// user-data is readable by FM's user only) don't ask.
    fn attests(&self) -> bool {
        false
    }

    /// The check itself (only called when [`CloudProvider::attests`]).
    async fn attest(&self, _at: &Placement, _vm_id: &str, _evidence: &Evidence) -> Result<()> {
        Ok(())
    }
    async fn vm_state(&self, at: &Placement, vm_id: &str) -> Result<VmState>;
    async fn start_vm(&self, at: &Placement, vm_id: &str) -> Result<()>;
    async fn stop_vm(&self, at: &Placement, vm_id: &str) -> Result<()>;
    /// Terminates the VM; the data volume stays. Missing VMs are fine.
    async fn terminate_vm(&self, at: &Placement, vm_id: &str) -> Result<()>;
    /// Snapshots the volume; returns (reference, size in bytes).
    async fn snapshot_volume(
        &self,
        at: &Placement,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(String, u64)>;
    async fn delete_snapshot(&self, at: &Placement, snapshot_ref: &str) -> Result<()>;
    /// Releases what the instance held beyond its VM and volumes (an
    /// address FM allocated), when the instance is deleted.
    async fn release_instance(&self, _at: &Placement) -> Result<()> {
        Ok(())
    }
    /// FM's ids of every data volume the cloud holds for the instance
    /// (where the cloud can list them by owner).
    async fn volumes_of_instance(&self, _at: &Placement) -> Result<Vec<String>> {
        Ok(vec![])
    }
    /// Every resource carrying FM's ownership tags in the placement's
    /// account and region (drift and leak reports).
    async fn owned_resources(&self, _at: &Placement) -> Result<Vec<OwnedResource>> {
        Ok(vec![])
    }
    /// Periodic housekeeping the cloud needs from FM (the local cloud
    /// restarts crashed agents, as an init system would on a VM).
    async fn tick(&self) -> Result<()> {
        Ok(())
    }
}
