//! Data volumes and their snapshots on EBS.
//!
//! Invariants: a data volume is FM's by `fleet-manager:volume` (its logical
//! id) and a snapshot by `fleet-manager:snapshot`; each is looked up by
//! that tag before it is made, and made through `create_once`, so a retried
//! or resumed step finds what its first attempt made. A volume lives in its
//! subnet's availability zone and is attached as `DATA_DEVICE`. EC2's id of
//! a volume FM found or made is remembered per (region, logical id) until
//! FM deletes it, so the usual attach is one call; anything unexpected
//! (attached already, still held by a VM on its way out) is looked up.

use super::AwsCloud;
use super::gate::{Class, Gate};
use super::retry::already;
use super::tags::{
    TAG_INSTANCE, TAG_SNAPSHOT, TAG_VOLUME, client_token, filter, tag_filter, tag_value,
};
use crate::cloud::Placement;
use crate::error::{Error, OpFailure, Result};
use aws_sdk_ec2::types::{
    ResourceType, SnapshotState, VolumeAttachmentState, VolumeState, VolumeType,
};
use std::time::Duration;

/// The device the data volume is attached as.
const DATA_DEVICE: &str = "/dev/sdf";
/// The volume type of a data or root volume whose options name none.
pub(super) const DEFAULT_VOLUME_TYPE: &str = "gp3";
/// The size of a new, empty data volume whose options name none.
const DEFAULT_DATA_VOLUME_GB: u32 = 50;
/// How often and how many times a snapshot is polled until EC2 completes
/// it (an hour).
const SNAPSHOT_POLL: Duration = Duration::from_secs(5);
const SNAPSHOT_TRIES: u32 = 720;
/// How often and how many times a volume is polled until a VM releases it
/// (2 minutes).
const VOLUME_FREE_POLL: Duration = Duration::from_millis(500);
const VOLUME_FREE_TRIES: u32 = 240;

/// Whether a volume of this type takes provisioned IOPS.
pub(super) fn takes_iops(volume_type: &str) -> bool {
    matches!(volume_type, "io1" | "io2" | "gp3")
}

/// A data volume as EC2 describes it.
#[derive(Debug, Clone)]
pub(super) struct VolumeInfo {
    pub(super) id: String,
    state: VolumeState,
    attached_to: Option<String>,
    size_gb: u64,
}

impl AwsCloud {
    /// The availability zone of `at`'s subnet (where its volumes go).
    async fn zone_of(&self, g: &Gate, at: &Placement) -> Result<String> {
        let subnet = at.subnet_id.clone().ok_or_else(|| {
            Error::invalid(format!(
                "the virtual network of instance '{}' names no subnet",
                at.instance_id
            ))
        })?;
        let cached = || {
            self.zones
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&subnet)
                .cloned()
        };
        if let Some(z) = cached() {
            return Ok(z);
        }
        let _one = self.shared_lookup.lock().await;
        if let Some(z) = cached() {
            return Ok(z);
        }
        let out = self
            .send(g, Class::Describe, "DescribeSubnets", || {
                g.client.describe_subnets().subnet_ids(&subnet).send()
            })
            .await?;
        let zone = out
            .subnets()
            .first()
            .and_then(|s| s.availability_zone())
            .ok_or_else(|| Error::invalid(format!("subnet '{subnet}' does not exist")))?
            .to_string();
        self.zones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subnet, zone.clone());
        Ok(zone)
    }

    /// The live volume FM named `volume_id`.
    pub(super) async fn find_volume(
        &self,
        g: &Gate,
        volume_id: &str,
    ) -> Result<Option<VolumeInfo>> {
        let out = self
            .send(g, Class::Describe, "DescribeVolumes", || {
                g.client
                    .describe_volumes()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_VOLUME, volume_id))
                    .send()
            })
            .await?;
        Ok(out
            .volumes()
            .iter()
            .find(|v| {
                !matches!(
                    v.state(),
                    Some(VolumeState::Deleting | VolumeState::Deleted | VolumeState::Error)
                )
            })
            .map(|v| VolumeInfo {
                id: v.volume_id().unwrap_or_default().to_string(),
                state: v.state().cloned().unwrap_or(VolumeState::Available),
                attached_to: v
                    .attachments()
                    .iter()
                    .find(|a| !matches!(a.state(), Some(VolumeAttachmentState::Detached)))
                    .and_then(|a| a.instance_id())
                    .map(str::to_string),
                size_gb: v.size().unwrap_or(0).max(0) as u64,
            }))
    }

    fn volume_request(
        &self,
        g: &Gate,
        at: &Placement,
        zone: &str,
        volume_id: &str,
        snapshot: Option<&str>,
    ) -> aws_sdk_ec2::operation::create_volume::builders::CreateVolumeFluentBuilder {
        let d = &at.data_volume;
        let vt = d
            .volume_type
            .clone()
            .unwrap_or_else(|| DEFAULT_VOLUME_TYPE.into());
        let mut r = g
            .client
            .create_volume()
            .availability_zone(zone)
            .volume_type(VolumeType::from(vt.as_str()))
            .client_token(client_token("volume", volume_id))
            .tag_specifications(self.tag_spec(at, ResourceType::Volume, (TAG_VOLUME, volume_id)));
        r = match snapshot {
            Some(s) => r.snapshot_id(s).set_size(d.size_gb.map(|s| s as i32)),
            None => r.size(d.size_gb.unwrap_or(DEFAULT_DATA_VOLUME_GB) as i32),
        };
        if takes_iops(&vt) {
            r = r.set_iops(d.iops.map(|v| v as i32));
        }
        if vt == "gp3" {
            r = r.set_throughput(d.throughput.map(|v| v as i32));
        }
        if at.encrypted {
            r = r.encrypted(true).set_kms_key_id(at.kms_key_id.clone());
        }
        r
    }

    /// Makes FM's volume `volume_id` (empty, or from `snapshot`) unless it
    /// exists.
    pub(super) async fn create_volume(
        &self,
        at: &Placement,
        volume_id: &str,
        snapshot: Option<&str>,
    ) -> Result<()> {
        let g = self.gate(at).await?;
        if let Some(v) = self.find_volume(&g, volume_id).await? {
            self.remember_volume(at, volume_id, Some(v.id));
            return Ok(());
        }
        let zone = self.zone_of(&g, at).await?;
        let req = self.volume_request(&g, at, &zone, volume_id, snapshot);
        let id = self
            .create_once(
                &g,
                Class::Mutating,
                "CreateVolume",
                || {
                    let r = req.clone();
                    async move {
                        r.send()
                            .await
                            .map(|o| o.volume_id().unwrap_or_default().to_string())
                    }
                },
                || async { Ok(self.find_volume(&g, volume_id).await?.map(|v| v.id)) },
            )
            .await?;
        self.remember_volume(at, volume_id, Some(id));
        Ok(())
    }

    /// Makes the volume from a snapshot (once EC2 has completed it) unless
    /// it exists.
    pub(super) async fn restore_volume(
        &self,
        at: &Placement,
        snapshot_ref: &str,
        volume_id: &str,
    ) -> Result<()> {
        let g = self.gate(at).await?;
        if self.find_volume(&g, volume_id).await?.is_none() {
            self.wait_snapshot_completed(&g, snapshot_ref).await?;
        }
        self.create_volume(at, volume_id, Some(snapshot_ref)).await
    }

    /// Deletes the volume once no VM holds it; a missing one is fine.
    pub(super) async fn remove_volume(&self, at: &Placement, volume_id: &str) -> Result<()> {
        let g = self.gate(at).await?;
        self.remember_volume(at, volume_id, None);
        let Some(id) = self.wait_volume_free(&g, volume_id).await? else {
            return Ok(());
        };
        let r = self
            .send(&g, Class::Mutating, "DeleteVolume", || {
                g.client.delete_volume().volume_id(&id).send()
            })
            .await;
        already(r, "InvalidVolume.NotFound")
    }

    /// Notes (or, with `None`, forgets) EC2's id of one of FM's volumes.
    fn remember_volume(&self, at: &Placement, volume_id: &str, cloud_id: Option<String>) {
        let mut m = self.volume_ids.lock().unwrap_or_else(|p| p.into_inner());
        let key = (at.region.clone(), volume_id.to_string());
        match cloud_id {
            Some(id) => m.insert(key, id),
            None => m.remove(&key),
        };
    }

    pub(super) fn known_volume(&self, at: &Placement, volume_id: &str) -> Option<String> {
        self.volume_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(at.region.clone(), volume_id.to_string()))
            .cloned()
    }

    /// A snapshot is usable once EC2 has finished it (it is taken at the
    /// call; the copy completes later).
    async fn wait_snapshot_completed(&self, g: &Gate, snapshot: &str) -> Result<()> {
        for _ in 0..SNAPSHOT_TRIES {
            let out = self
                .send(g, Class::Describe, "DescribeSnapshots", || {
                    g.client.describe_snapshots().snapshot_ids(snapshot).send()
                })
                .await?;
            match out.snapshots().first().and_then(|s| s.state()) {
                Some(SnapshotState::Completed) => return Ok(()),
                Some(SnapshotState::Error) => {
                    return Err(Error::op_failed(
                        OpFailure::SnapshotFailed,
                        format!("EC2 snapshot {snapshot} is in state error"),
                    ));
                }
                None => {
                    return Err(Error::invalid(format!(
                        "snapshot '{snapshot}' does not exist in EC2"
                    )));
                }
                Some(_) => tokio::time::sleep(SNAPSHOT_POLL).await,
            }
        }
        Err(Error::op_failed(
            OpFailure::SnapshotPending,
            format!("EC2 snapshot {snapshot} did not complete in an hour"),
        ))
    }

    /// Waits until the volume is free to attach or delete (a VM's
    /// termination releases it after a while on EC2).
    async fn wait_volume_free(&self, g: &Gate, volume_id: &str) -> Result<Option<String>> {
        for _ in 0..VOLUME_FREE_TRIES {
            match self.find_volume(g, volume_id).await? {
                None => return Ok(None),
                Some(v) if v.state == VolumeState::Available => return Ok(Some(v.id)),
                // Attached to a VM that is gone or going: EC2 releases it
                // after a while.
                Some(_) => tokio::time::sleep(VOLUME_FREE_POLL).await,
            }
        }
        Err(Error::op_failed(
            OpFailure::VolumeBusy,
            format!("data volume {volume_id} is still in use after 2 minutes"),
        ))
    }

    /// Attaches FM's volume `volume` to EC2 instance `instance`, unless it
    /// is attached there already.
    pub(super) async fn attach_volume(
        &self,
        g: &Gate,
        at: &Placement,
        instance: &str,
        volume: &str,
    ) -> Result<()> {
        // The usual case, one call: a volume this FM just made or found, free.
        if let Some(id) = self.known_volume(at, volume) {
            let r = self
                .send(g, Class::Mutating, "AttachVolume", || {
                    g.client
                        .attach_volume()
                        .device(DATA_DEVICE)
                        .instance_id(instance)
                        .volume_id(&id)
                        .send()
                })
                .await;
            if r.is_ok() {
                return Ok(());
            }
        }
        // Otherwise look: attached already (a lost answer), still held by
        // a VM on its way out, or gone.
        let volume_cloud = match self.find_volume(g, volume).await? {
            Some(v) if v.attached_to.as_deref() == Some(instance) => return Ok(()),
            Some(v) if v.state == VolumeState::Available => v.id,
            Some(_) => self
                .wait_volume_free(g, volume)
                .await?
                .ok_or_else(|| Error::internal(format!("data volume {volume} disappeared")))?,
            None => {
                return Err(Error::internal(format!(
                    "data volume {volume} does not exist"
                )));
            }
        };
        let r = self
            .while_starting(|| {
                self.send(g, Class::Mutating, "AttachVolume", || {
                    g.client
                        .attach_volume()
                        .device(DATA_DEVICE)
                        .instance_id(instance)
                        .volume_id(&volume_cloud)
                        .send()
                })
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // A lost answer: the first attempt attached it.
            Err(e) => match self.find_volume(g, volume).await? {
                Some(v) if v.attached_to.as_deref() == Some(instance) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Snapshots FM's volume `volume_id` as `snapshot_id` unless that
    /// snapshot exists: (EC2's snapshot id, the volume's size in bytes).
    pub(super) async fn take_snapshot(
        &self,
        at: &Placement,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(String, u64)> {
        let g = self.gate(at).await?;
        let find = || async {
            let out = self
                .send(&g, Class::Describe, "DescribeSnapshots", || {
                    g.client
                        .describe_snapshots()
                        .owner_ids("self")
                        .filters(self.owner_filter())
                        .filters(tag_filter(TAG_SNAPSHOT, snapshot_id))
                        .send()
                })
                .await?;
            Ok::<_, Error>(
                out.snapshots()
                    .first()
                    .map(|s| s.snapshot_id().unwrap_or_default().to_string()),
            )
        };
        let existing = find().await?;
        let volume = match (self.find_volume(&g, volume_id).await?, existing) {
            (Some(v), None) => v,
            (v, Some(found)) => return Ok((found, v.map(|v| v.size_gb << 30).unwrap_or(0))),
            (None, None) => {
                return Err(Error::invalid(format!(
                    "data volume {volume_id} does not exist"
                )));
            }
        };
        let size = volume.size_gb << 30;
        let spec = self.tag_spec(at, ResourceType::Snapshot, (TAG_SNAPSHOT, snapshot_id));
        let id = self
            .create_once(
                &g,
                Class::Mutating,
                "CreateSnapshot",
                || {
                    let r = g
                        .client
                        .create_snapshot()
                        .volume_id(&volume.id)
                        .description(format!("Fleet Manager snapshot {snapshot_id}"))
                        .tag_specifications(spec.clone());
                    async move {
                        r.send()
                            .await
                            .map(|o| o.snapshot_id().unwrap_or_default().to_string())
                    }
                },
                find,
            )
            .await?;
        Ok((id, size))
    }

    /// Deletes EC2's snapshot `snapshot_ref`; a missing one is fine.
    pub(super) async fn remove_snapshot(&self, at: &Placement, snapshot_ref: &str) -> Result<()> {
        let g = self.gate(at).await?;
        let r = self
            .send(&g, Class::Mutating, "DeleteSnapshot", || {
                g.client.delete_snapshot().snapshot_id(snapshot_ref).send()
            })
            .await;
        already(r, "InvalidSnapshot.NotFound")
    }

    /// FM's ids of the data volumes EC2 holds for `at`'s instance.
    pub(super) async fn data_volumes_of(&self, at: &Placement) -> Result<Vec<String>> {
        let g = self.gate(at).await?;
        let out = self
            .send(&g, Class::Describe, "DescribeVolumes", || {
                g.client
                    .describe_volumes()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_INSTANCE, &at.instance_id))
                    .filters(filter("tag-key", TAG_VOLUME))
                    .send()
            })
            .await?;
        Ok(out
            .volumes()
            .iter()
            .filter_map(|v| tag_value(v.tags(), TAG_VOLUME))
            .collect())
    }
}
