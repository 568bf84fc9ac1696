//! Taking a backup of an instance's data dir (`BACKUP_INSTANCE`): the node
//! stopped first when its policy says `STOP_NODE` and it runs, then started
//! again whatever happens (`resume-node`, or the undo of `quiesce-node`).
//! The agent streams the archive to object storage; FM records the backup
//! once its manifest is written. `take-backup`'s undo removes the backup
//! (storage and catalogue). The result is the backup.

use super::common::{
    Nothing, Quiesced, backup_key_hex, backup_location, instance_and_template, proto_location,
    require_agent, resume, run_command, stop_for,
};
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::{Error, Result};
use crate::model::backup::Backup;
use crate::model::instance::BackupConsistency;
use crate::model::now_ms;
use crate::store::entities::backup;
use crate::store::lifecycle as lq;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "BACKUP_INSTANCE";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The id the backup gets (chosen when the operation is submitted).
    #[serde(rename = "backupId")]
    pub backup_id: String,
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
            step!("quiesce-node", quiesce, undo resume_after_failure),
            step!("take-backup", take_backup, undo remove_taken_backup),
            step!("resume-node", resume_node),
        ],
    )
    .result_of("take-backup")
}

/// What the agent reports of a backup it took.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Taken {
    node_version: String,
    created_at_ms: Option<i64>,
    archive_size: i64,
    data_bytes: i64,
    files: i64,
    manifest_sha256: String,
    #[serde(default)]
    encrypted: bool,
}

/// Stops the node while it is archived (policy `STOP_NODE`), if it runs.
async fn quiesce(c: StepCtx) -> Result<Quiesced> {
    require_agent(&c).await?;
    backup_location(&c.svc.lc, None)?;
    let (inst, _) = instance_and_template(&c).await?;
    if inst.backup_policy.consistency == BackupConsistency::None {
        return Ok(Quiesced::default());
    }
    // Whether it ran comes from the agent's (journaled) answer: a run of
    // this step after the node was stopped by an earlier run still knows
    // to start it again.
    let stopped = stop_for(&c, "quiesce-node").await?;
    if stopped {
        c.log("node stopped for a consistent backup").await;
    }
    Ok(Quiesced {
        stopped,
        frozen: false,
    })
}

async fn resume_after_failure(c: StepCtx) -> Result<Nothing> {
    let q: Quiesced = c.output("quiesce-node")?;
    resume(&c, q, "resume-node").await?;
    Ok(Nothing {})
}

async fn resume_node(c: StepCtx) -> Result<Nothing> {
    let q: Quiesced = c.output("quiesce-node")?;
    resume(&c, q, "resume-node").await?;
    Ok(Nothing {})
}

async fn take_backup(c: StepCtx) -> Result<Backup> {
    let p: Params = c.params()?;
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &p.backup_id).await? {
        return Ok(Backup::from_row(&b));
    }
    let (inst, _) = instance_and_template(&c).await?;
    let policy = &inst.backup_policy;
    let loc = backup_location(&c.svc.lc, None)?;
    let out = match run_command(
        &c,
        "take-backup",
        command::Kind::TakeBackup(fm_proto::agent::TakeBackup {
            location: Some(proto_location(&loc)),
            backup_id: p.backup_id.clone(),
            exclusions: policy.exclusions.clone(),
            key_hex: backup_key_hex(&c, policy.encrypt, &p.backup_id),
        }),
    )
    .await
    {
        Ok(out) => out,
        Err(e) => {
            // What an interrupted upload left is not a backup: remove it.
            if let Ok(store) = loc.open()
                && store.delete_backup(&c.target, &p.backup_id).await.is_ok()
            {
                c.log("removed what the failed backup had uploaded").await;
            }
            return Err(e);
        }
    };
    let t: Taken = serde_json::from_value(out)
        .map_err(|e| Error::internal(format!("the agent's backup report can't be read: {e}")))?;
    let row = backup::Model {
        id: p.backup_id,
        tenant_id: c.tenant.clone(),
        instance_id: c.target.clone(),
        location_url: loc.url.clone(),
        node_version: t.node_version,
        created_at: t.created_at_ms.unwrap_or_else(now_ms),
        archive_bytes: t.archive_size,
        data_bytes: t.data_bytes,
        files: t.files,
        manifest_sha256: t.manifest_sha256,
        encrypted: t.encrypted,
        automated: p.automated,
        reason: p.reason,
        verified_at: None,
        verify_ok: None,
        verify_message: None,
    };
    lq::backup_insert(c.store.conn(), row.clone()).await?;
    Ok(Backup::from_row(&row))
}

/// Undo of `take-backup`: the backup goes, in storage and in the catalogue.
async fn remove_taken_backup(c: StepCtx) -> Result<Nothing> {
    let p: Params = c.params()?;
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &p.backup_id).await? {
        super::backup_delete::remove(&c, &b).await?;
    }
    Ok(Nothing {})
}
