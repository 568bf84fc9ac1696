//! Deleting an instance (`DELETE_INSTANCE`): its VM, snapshots, backups,
//! data volumes (every one the cloud holds for it) and addresses, then its
//! records. No undo: each step only removes, and a re-run after a failure
//! finishes the job.

use super::common::{Counted, Deleted, Nothing, placement, runtime};
use super::deprovision::terminate_vm;
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::Result;
use crate::store::lifecycle as lq;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "DELETE_INSTANCE";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("terminate-vm", terminate_vm),
            step!("delete-snapshots", delete_all_snapshots),
            step!("delete-backups", super::backup_delete::delete_all_backups),
            step!("delete-volume", delete_volume),
            step!("release-addresses", release_addresses),
            step!("delete-records", delete_records),
        ],
    )
}

async fn delete_all_snapshots(c: StepCtx) -> Result<Counted> {
    let snaps = lq::snapshot_list(c.store.conn(), &c.target).await?;
    let at = placement(&c).await?;
    for s in &snaps {
        c.svc.cloud.delete_snapshot(&at, &s.cloud_ref).await?;
        lq::snapshot_delete(c.store.conn(), &s.id).await?;
    }
    Ok(Counted { count: snaps.len() })
}

async fn delete_volume(c: StepCtx) -> Result<Nothing> {
    let at = placement(&c).await?;
    // The first volume's name too: a provisioning cut off before it
    // recorded its volume must not leave one behind.
    let mut volumes: Vec<String> = runtime(&c).await?.volume_id.into_iter().collect();
    let first = format!("vol-{}", c.target);
    // And any other the cloud holds for it (a restore cut off before its
    // undo could run).
    for v in std::iter::once(first).chain(c.svc.cloud.volumes_of_instance(&at).await?) {
        if !volumes.contains(&v) {
            volumes.push(v);
        }
    }
    for v in volumes {
        c.svc.cloud.delete_volume(&at, &v).await?;
        c.log(format!("data volume {v} deleted")).await;
    }
    Ok(Nothing {})
}

/// Releases what the instance held beyond VMs and volumes (an Elastic IP
/// FM allocated for it).
async fn release_addresses(c: StepCtx) -> Result<Nothing> {
    c.svc.cloud.release_instance(&placement(&c).await?).await?;
    Ok(Nothing {})
}

async fn delete_records(c: StepCtx) -> Result<Deleted> {
    c.store
        .instance_records_delete(&c.tenant, &c.target)
        .await?;
    Ok(Deleted::of(&c.target))
}
