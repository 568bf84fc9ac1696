//! The `aws` cloud: instances, volumes, snapshots, security groups and
//! addresses on EC2, through the AWS SDK.
//!
//! Every resource FM makes carries FM's ownership tags (`fleet-manager:owner`
//! naming this FM, `fleet-manager:instance`, and the logical id FM chose:
//! `fleet-manager:vm`, `fleet-manager:volume`, `fleet-manager:snapshot`,
//! `fleet-manager:network`). Before creating anything, FM looks it up by
//! those tags, so a step retried after a lost answer or resumed after a
//! crash finds what its first attempt made; mutating calls that accept one
//! also carry a `ClientToken` derived from the logical id, which the plan
//! step persisted before any call.
//!
//! Calls go through one gate per account and region: a client-side token
//! bucket sized by EC2's published request buckets, and retries with
//! jittered exponential backoff on throttling and server errors. Errors no
//! retry can fix come back with AWS's code and message.
//!
//! This file holds the provider (its settings, its caches) and the
//! `CloudProvider` impl, which only delegates; one concern a file beside it:
//!
//! - `gate`: the per-account-and-region client and its token buckets;
//! - `retry`: what an SDK error means, and sending a call until it holds;
//! - `tags`: ownership tags, tag filters and `ClientToken`s;
//! - `volumes`: data volumes and snapshots;
//! - `vms`: EC2 instances (`RunInstances` and the VM's life after it);
//! - `network`: VPC and subnet checks, security groups, Elastic IPs;
//! - `drift`: listing everything FM's tags mark;
//! - `boot`: the boot script (user-data) and FM's own IMDS look-up.

mod boot;
mod drift;
mod gate;
pub mod identity;
mod network;
mod retry;
mod tags;
mod vms;
mod volumes;

pub use boot::{agent_toml_of, own_network_from_imds, render_boot_script};
pub use tags::{
    TAG_INSTANCE, TAG_NETWORK, TAG_OWNER, TAG_SNAPSHOT, TAG_TENANT, TAG_VM, TAG_VOLUME,
};

use super::{CloudAuth, CloudProvider, OwnedResource, Placement, VmLayout, VmSpec, VmState};
use crate::error::Result;
use gate::Gate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the `aws` provider.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// An endpoint for every AWS service (an emulator); `AWS_ENDPOINT_URL`
    /// is honoured too.
    pub endpoint_url: Option<String>,
    /// The agent's base image per region; `*` for any region.
    pub amis: std::collections::BTreeMap<String, String>,
    /// The value of the `fleet-manager:owner` tag: which FM owns what.
    pub owner: String,
    /// Emulators only: every node runs on this host (one machine plays
    /// every VM), so nodes' URLs point at it and ports must not collide.
    pub node_host: Option<String>,
    /// The TCP ports nodes listen on, opened in auto-created groups.
    pub node_ports: (u16, u16),
    /// How many attempts a throttled or failing call gets.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling; doubles each attempt up to 20 s.
    pub base_backoff: Duration,
    /// The certificates instance identity documents are checked against.
    pub identity_certs: identity::IdentityCerts,
    /// Whether an agent must present its VM's signed identity document to
    /// enroll (off only when explicitly configured so).
    pub attestation: bool,
}

#[derive(Debug)]
pub struct AwsCloud {
    settings: AwsSettings,
    gates: tokio::sync::Mutex<HashMap<(CloudAuth, String), Arc<Gate>>>,
    /// Subnet → availability zone (never changes).
    zones: Mutex<HashMap<String, String>>,
    /// (region, network) → the security group FM made for it.
    groups: Mutex<HashMap<(String, String), String>>,
    /// Serializes the first look-up of what many instances share (a
    /// subnet's zone, a network's group), so a fleet provisioned at once
    /// asks EC2 once.
    shared_lookup: tokio::sync::Mutex<()>,
    /// (region, FM's volume id) → EC2's volume id, for volumes FM found or
    /// made; forgotten when deleted.
    volume_ids: Mutex<HashMap<(String, String), String>>,
    /// AMI → its root device name.
    root_devices: Mutex<HashMap<String, String>>,
}

impl AwsCloud {
    pub fn new(settings: AwsSettings) -> AwsCloud {
        AwsCloud {
            settings,
            gates: tokio::sync::Mutex::new(HashMap::new()),
            zones: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            shared_lookup: tokio::sync::Mutex::new(()),
            volume_ids: Mutex::new(HashMap::new()),
            root_devices: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl CloudProvider for AwsCloud {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// The agent keeps its state on the root disk; the node's data dir is
    /// on the data volume, mounted at `/data`.
    fn layout(&self, _vm_id: &str, _volume_id: &str) -> VmLayout {
        VmLayout {
            state_dir: "/var/lib/fm-agent".into(),
            data_dir: "/data/dss_data".into(),
            home_dir: "/data".into(),
            // Made by the boot script (`templates/aws-user-data.sh`).
            node_user: Some(boot::NODE_USER.into()),
            imds_url: self.settings.attestation.then(|| boot::IMDS_URL.to_owned()),
        }
    }

    fn shares_host(&self) -> bool {
        self.settings.node_host.is_some()
    }

    async fn public_url(&self, at: &Placement, vm_id: &str, port: u16) -> Result<String> {
        self.vm_url(at, vm_id, port).await
    }

    async fn check_network(&self, at: &Placement) -> Result<()> {
        self.verify_network(at).await
    }

    async fn delete_network(&self, at: &Placement) -> Result<()> {
        self.delete_security_groups(at).await
    }

    async fn ensure_volume(&self, at: &Placement, volume_id: &str) -> Result<()> {
        self.create_volume(at, volume_id, None).await
    }

    async fn volume_from_snapshot(
        &self,
        at: &Placement,
        snapshot_ref: &str,
        volume_id: &str,
    ) -> Result<()> {
        self.restore_volume(at, snapshot_ref, volume_id).await
    }

    async fn delete_volume(&self, at: &Placement, volume_id: &str) -> Result<()> {
        self.remove_volume(at, volume_id).await
    }

    async fn ensure_vm(&self, at: &Placement, spec: &VmSpec) -> Result<()> {
        self.ensure_instance(at, spec).await
    }

    async fn vm_state(&self, at: &Placement, vm_id: &str) -> Result<VmState> {
        self.instance_state(at, vm_id).await
    }

    async fn start_vm(&self, at: &Placement, vm_id: &str) -> Result<()> {
        self.start_instance(at, vm_id).await
    }

    async fn stop_vm(&self, at: &Placement, vm_id: &str) -> Result<()> {
        self.stop_instance(at, vm_id).await
    }

    async fn terminate_vm(&self, at: &Placement, vm_id: &str) -> Result<()> {
        self.terminate_instance(at, vm_id).await
    }

    fn attests(&self) -> bool {
        self.settings.attestation
    }

    async fn attest(
        &self,
        at: &Placement,
        vm_id: &str,
        evidence: &crate::cloud::Evidence,
    ) -> Result<()> {
        self.attest_instance(at, vm_id, evidence).await
    }

    async fn snapshot_volume(
        &self,
        at: &Placement,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(String, u64)> {
        self.take_snapshot(at, volume_id, snapshot_id).await
    }

    async fn delete_snapshot(&self, at: &Placement, snapshot_ref: &str) -> Result<()> {
        self.remove_snapshot(at, snapshot_ref).await
    }

    async fn release_instance(&self, at: &Placement) -> Result<()> {
        self.release_addresses(at).await
    }

    async fn volumes_of_instance(&self, at: &Placement) -> Result<Vec<String>> {
        self.data_volumes_of(at).await
    }

    async fn owned_resources(&self, at: &Placement) -> Result<Vec<OwnedResource>> {
        self.list_owned(at).await
    }
}
