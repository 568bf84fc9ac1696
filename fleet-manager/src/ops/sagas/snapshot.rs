//! Snapshotting an instance's data volume (`SNAPSHOT_INSTANCE`), made
//! consistent as the instance asks: the node stopped (`STOP_NODE`) or its
//! filesystem frozen (`FREEZE_FS`) while the cloud snapshots, and always
//! resumed: by `resume-node` when the snapshot is taken, by the undo of
//! `quiesce-node` when it is not (a freeze also thaws by itself on the
//! agent after a while). `snapshot-volume`'s undo deletes the snapshot it
//! made. The result is the snapshot, `snapshot-volume`'s output.

use super::common::{
    Nothing, Quiesced, placement, resume_quiesced, run_command, runtime, stop_for,
};
use super::{Saga, SagaParams, StepCtx, step};
use crate::cloud::VmState;
use crate::error::{Error, Result};
use crate::model::instance::SnapshotConsistency;
use crate::model::now_ms;
use crate::model::snapshot::Snapshot;
use crate::store::entities::snapshot;
use crate::store::lifecycle as lq;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "SNAPSHOT_INSTANCE";

/// How long a frozen filesystem stays frozen if FM never thaws it.
const THAW_AFTER_SECS: u32 = 300;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The id the snapshot gets (chosen when the operation is submitted).
    #[serde(rename = "snapshotId")]
    pub snapshot_id: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub automated: bool,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("quiesce-node", quiesce_node, undo resume_quiesced),
            step!("snapshot-volume", snapshot_volume, undo delete_taken_snapshot),
            step!("resume-node", resume_quiesced),
        ],
    )
    .result_of("snapshot-volume")
}

/// Makes the node consistent for a snapshot when it runs.
async fn quiesce_node(c: StepCtx) -> Result<Quiesced> {
    let (inst, _) = super::common::instance_and_template(&c).await?;
    let Some(vm) = runtime(&c).await?.vm_id else {
        return Ok(Quiesced::default());
    };
    if inst.snapshot_consistency == SnapshotConsistency::None
        || c.svc.cloud.vm_state(&placement(&c).await?, &vm).await? != VmState::Running
        || c.svc.hub.connected_vm(&c.target).as_deref() != Some(vm.as_str())
    {
        return Ok(Quiesced::default());
    }
    if inst.snapshot_consistency == SnapshotConsistency::FreezeFs {
        run_command(
            &c,
            "quiesce-node",
            command::Kind::FreezeFs(fm_proto::agent::FreezeFs {
                thaw_after_secs: THAW_AFTER_SECS,
            }),
        )
        .await?;
        c.log("data dir filesystem frozen for a consistent snapshot")
            .await;
        return Ok(Quiesced {
            stopped: false,
            frozen: true,
        });
    }
    let stopped = stop_for(&c, "quiesce-node").await?;
    if stopped {
        c.log("node stopped for a consistent snapshot").await;
    }
    Ok(Quiesced {
        stopped,
        frozen: false,
    })
}

async fn snapshot_volume(c: StepCtx) -> Result<Snapshot> {
    let p: Params = c.params()?;
    let rt = runtime(&c).await?;
    let volume = rt.volume_id.clone().ok_or_else(|| {
        Error::conflict(format!("instance '{}' has no data volume yet", c.target))
    })?;
    if let Some(s) = lq::snapshot_get(c.store.conn(), &c.target, &p.snapshot_id).await? {
        return Ok(Snapshot::from_row(&s));
    }
    let (cloud_ref, size) = c
        .svc
        .cloud
        .snapshot_volume(&placement(&c).await?, &volume, &p.snapshot_id)
        .await?;
    let row = snapshot::Model {
        id: p.snapshot_id,
        tenant_id: c.tenant.clone(),
        instance_id: c.target.clone(),
        cloud_ref,
        reason: p.reason,
        node_version: rt.node_version.clone(),
        size_bytes: Some(size as i64),
        created_at: now_ms(),
        automated: p.automated,
    };
    lq::snapshot_insert(c.store.conn(), row.clone()).await?;
    Ok(Snapshot::from_row(&row))
}

/// Undo of `snapshot-volume`: the snapshot goes, in the cloud and in the
/// catalogue.
async fn delete_taken_snapshot(c: StepCtx) -> Result<Nothing> {
    let p: Params = c.params()?;
    super::snapshot_delete::delete_one(&c, &p.snapshot_id).await?;
    Ok(Nothing {})
}
