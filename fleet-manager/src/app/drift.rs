//! Drift between the store and the cloud. For every account and region FM's
//! networks use, it lists what carries FM's ownership tags and compares it
//! with the store:
//! - instances whose VM is not running while FM thinks it runs (stopped or
//!   terminated behind FM's back);
//! - orphans: resources tagged as FM's that no instance owns any more (an
//!   old VM, a volume, a snapshot or an address of a deleted instance, the
//!   security group of a deleted network).
//!
//! Orphans are reported; they are deleted only when asked (`clean`).
//! Instances or networks with an operation in flight are left out: what
//! they own is changing.

use super::{App, from_doc};
use crate::cloud::{OwnedResource, Placement, VmState};
use crate::error::Result;
use crate::model::network::VirtualNetwork;
use crate::ops::placement;
use crate::store::lifecycle as lq;
use crate::store::operations::op_active_for_target;
use crate::store::resources as q;
use serde::Serialize;
use std::collections::BTreeMap;

/// An instance whose VM is not in the state FM recorded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DriftedInstance {
    pub instance_id: String,
    pub vm_id: String,
    /// What FM recorded (`running`).
    pub expected: String,
    /// What the cloud says: `stopped` or `missing`.
    pub cloud_state: String,
}

/// A resource tagged as FM's that nothing in the store owns.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub kind: String,
    pub cloud_id: String,
    pub owner_id: String,
    pub region: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub drifted: Vec<DriftedInstance>,
    pub orphans: Vec<Orphan>,
}

impl App {
    /// Compares the store with the cloud; with `clean`, deletes orphans.
    pub async fn cloud_drift(&self, clean: bool) -> Result<DriftReport> {
        let svc = self.engine.services().clone();
        let conn = self.store.conn();
        let mut report = DriftReport::default();

        // One listing per account and region.
        let mut places: BTreeMap<(String, String), (String, Placement)> = BTreeMap::new();
        for t in q::tenant_list(conn).await? {
            for row in q::network_list(conn, &t.id, &crate::store::page::Page::ALL)
                .await?
                .items
            {
                let mut net: VirtualNetwork = from_doc(&row.doc)?;
                net.id = Some(row.id.clone());
                let at = placement::for_network(&svc, &t.id, &net).await?;
                places
                    .entry((at.account_id.clone(), at.region.clone()))
                    .or_insert((t.id.clone(), at));
            }
        }

        for (tenant, at) in places.values() {
            for r in svc.cloud.owned_resources(at).await? {
                if !r.live {
                    continue;
                }
                // Read now, after the listing: an operation that finished
                // in between has recorded what it made.
                if !self.owned_by_nothing(&r).await? {
                    continue;
                }
                let deleted = clean && self.delete_orphan(tenant, at, &r).await?;
                report.orphans.push(Orphan {
                    kind: r.kind.into(),
                    cloud_id: r.cloud_id,
                    owner_id: r.owner_id,
                    region: at.region.clone(),
                    deleted,
                });
            }
        }

        for rt in lq::runtime_list_running(conn).await? {
            let Some(vm) = rt.vm_id.as_deref() else {
                continue;
            };
            if op_active_for_target(conn, &rt.instance_id).await?.is_some() {
                continue;
            }
            let at = placement::for_instance(&svc, &rt.tenant_id, &rt.instance_id).await?;
            let state = svc.cloud.vm_state(&at, vm).await?;
            if state != VmState::Running {
                report.drifted.push(DriftedInstance {
                    instance_id: rt.instance_id.clone(),
                    vm_id: vm.into(),
                    expected: rt.state.clone(),
                    cloud_state: state.as_str().into(),
                });
            }
        }
        Ok(report)
    }

    /// Whether nothing in the store owns the resource (read fresh).
    async fn owned_by_nothing(&self, r: &OwnedResource) -> Result<bool> {
        let conn = self.store.conn();
        if op_active_for_target(conn, &r.owner_id).await?.is_some() {
            return Ok(false);
        }
        let rt = lq::runtime_get(conn, &r.owner_id).await?;
        Ok(match r.kind {
            "instance" => rt.and_then(|rt| rt.vm_id) != r.logical_id,
            // A volume the instance no longer uses (a restore's leftover).
            "volume" => rt.is_none_or(|rt| rt.volume_id != r.logical_id),
            "address" => rt.is_none(),
            "snapshot" => lq::snapshot_find_by_cloud_ref(conn, &r.cloud_id)
                .await?
                .is_none(),
            "security-group" => !q::network_exists(conn, &r.owner_id).await?,
            _ => false,
        })
    }

    async fn delete_orphan(&self, tenant: &str, at: &Placement, r: &OwnedResource) -> Result<bool> {
        let cloud = &self.engine.services().cloud;
        let at = Placement {
            tenant_id: tenant.into(),
            instance_id: r.owner_id.clone(),
            network_id: r.owner_id.clone(),
            ..at.clone()
        };
        match (r.kind, r.logical_id.as_deref()) {
            ("instance", Some(vm)) => cloud.terminate_vm(&at, vm).await?,
            ("volume", Some(vol)) => cloud.delete_volume(&at, vol).await?,
            ("snapshot", _) => cloud.delete_snapshot(&at, &r.cloud_id).await?,
            ("address", _) => cloud.release_instance(&at).await?,
            ("security-group", _) => cloud.delete_network(&at).await?,
            _ => return Ok(false),
        }
        tracing::info!(kind = r.kind, id = %r.cloud_id, "deleted an orphaned cloud resource");
        Ok(true)
    }
}
