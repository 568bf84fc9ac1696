//! Restoring a backup onto its instance (`RESTORE_BACKUP`): the node
//! stopped, the data swapped by the agent only once the whole backup
//! checked out, the node upgraded through the kit if the backup is older,
//! started. The undo of `stop-node` starts the node again on whatever data
//! dir it has (the old one unless the swap happened).

use super::common::{
    self as sc, BackupRef, Nothing, Plan, Quiesced, image_kit, instance_and_template, placement,
    require_agent, resume, runtime, stop_for,
};
use super::setup::setup_plan;
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub const KIND: &str = "RESTORE_BACKUP";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub restore_backup: BackupRef,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("plan", plan_restore),
            step!("stop-node", stop_node, undo restart_after_failure),
            step!("restore-backup", sc::restore_data),
            step!("install-node", sc::install_node),
            step!("start-node", sc::start_node),
            step!("finish", finish),
        ],
    )
}

/// The saga's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoredOnto {
    #[serde(rename = "instanceId")]
    pub instance_id: String,
    #[serde(rename = "backupId")]
    pub backup_id: Option<String>,
    #[serde(rename = "nodeVersion")]
    pub node_version: String,
    #[serde(rename = "publicURL")]
    pub public_url: String,
}

/// The plan of a restore onto the instance's current VM: the same shape as
/// a provisioning's, so the install and start steps are shared.
async fn plan_restore(c: StepCtx) -> Result<Plan> {
    let params: Params = c.params()?;
    let vm = require_agent(&c).await?;
    let (inst, tpl) = instance_and_template(&c).await?;
    let (image, kit_file, kit_sha256) = image_kit(&c, &inst).await?;
    let rt = runtime(&c).await?;
    sc::check_restorable(&c, &params.restore_backup, &image.node_version).await?;
    let volume_id = rt.volume_id.clone().unwrap_or_default();
    Ok(Plan {
        vm_id: vm,
        old_vm_id: None,
        // The volume stays the instance's: nothing new to undo.
        old_volume_id: Some(volume_id.clone()),
        volume_id,
        snapshot_ref: None,
        port: rt
            .port
            .map(|p| p as u16)
            .ok_or_else(|| Error::conflict(format!("instance '{}' has no port", c.target)))?,
        image_version: image.node_version.clone(),
        kit_file,
        kit_sha256,
        node_type: sc::node_type(&inst),
        allow_downgrade: false,
        setup: setup_plan(&c, &inst.instance_settings_template_id, &tpl)?,
        backup: Some(params.restore_backup),
    })
}

async fn stop_node(c: StepCtx) -> Result<Quiesced> {
    let stopped = stop_for(&c, "stop-node").await?;
    Ok(Quiesced {
        stopped,
        frozen: false,
    })
}

async fn restart_after_failure(c: StepCtx) -> Result<Nothing> {
    let q: Quiesced = c.output("stop-node")?;
    resume(&c, q, "restart-node").await?;
    Ok(Nothing {})
}

async fn finish(c: StepCtx) -> Result<RestoredOnto> {
    let p: Plan = c.output("plan")?;
    let url = c
        .svc
        .cloud
        .public_url(
            &placement(&c).await?,
            &runtime(&c).await?.vm_id.unwrap_or_default(),
            p.port,
        )
        .await?;
    Ok(RestoredOnto {
        instance_id: c.target.clone(),
        backup_id: p.backup.map(|b| b.backup_id),
        node_version: p.image_version,
        public_url: url,
    })
}
