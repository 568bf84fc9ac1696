//! Verifying a backup (`VERIFY_BACKUP`): the instance's agent restores it
//! into a scratch dir and compares every file with the manifest; FM
//! records the outcome on the backup. Only reads: nothing to undo.

use super::common::{
    agent_reads, backup_key_hex, failed, proto_location, require_agent, run_command,
};
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::{Error, OpFailure, Result};
use crate::model::backup::Backup;
use crate::model::now_ms;
use crate::store::lifecycle as lq;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "VERIFY_BACKUP";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// A backup of the instance the operation targets.
    #[serde(rename = "backupId")]
    pub backup_id: String,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(KIND, vec![step!("verify-backup", verify_backup)])
}

async fn verify_backup(c: StepCtx) -> Result<Backup> {
    let p: Params = c.params()?;
    require_agent(&c).await?;
    let b = lq::backup_get(c.store.conn(), &c.target, &p.backup_id)
        .await?
        .ok_or_else(|| Error::not_found("backup", &p.backup_id))?;
    let loc = agent_reads(&c, &b).await?;
    let r = run_command(
        &c,
        "verify-backup",
        command::Kind::VerifyBackup(fm_proto::agent::VerifyBackup {
            location: Some(proto_location(&loc)),
            source_instance_id: b.instance_id.clone(),
            backup_id: b.id.clone(),
            manifest_sha256: b.manifest_sha256.clone(),
            key_hex: backup_key_hex(&c, b.encrypted, &b.id),
        }),
    )
    .await;
    let message = match r {
        Ok(_) => None,
        Err(Error::OperationFailed { message, .. }) => Some(message),
        // FM's or the agent's trouble, not the backup's: nothing recorded.
        Err(e) => return Err(e),
    };
    let row = lq::backup_set_verified(c.store.conn(), &b.id, now_ms(), message.clone()).await?;
    match message {
        None => Ok(Backup::from_row(&row)),
        Some(m) => Err(failed(OpFailure::BackupVerificationFailed, m)),
    }
}
