//! Deleting one backup of an instance (`DELETE_BACKUP`): in storage, then
//! in the catalogue; a backup already gone is deleted.

use super::common::{Counted, Deleted, backup_location, failed};
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::{OpFailure, Result};
use crate::store::entities::backup;
use crate::store::lifecycle as lq;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "DELETE_BACKUP";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    #[serde(rename = "backupId")]
    pub backup_id: String,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(KIND, vec![step!("delete-backup", delete_backup)])
}

async fn delete_backup(c: StepCtx) -> Result<Deleted> {
    let p: Params = c.params()?;
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &p.backup_id).await? {
        remove(&c, &b).await?;
    }
    Ok(Deleted::of(&p.backup_id))
}

/// Removes backup `b` from storage, then from the catalogue.
pub async fn remove(c: &StepCtx, b: &backup::Model) -> Result<()> {
    let store = backup_location(&c.svc.lc, Some(&b.location_url))?
        .open()
        .map_err(|e| failed(OpFailure::BackupStorageError, e.0))?;
    store
        .delete_backup(&b.instance_id, &b.id)
        .await
        .map_err(|e| failed(OpFailure::BackupStorageError, e.0))?;
    lq::backup_delete(c.store.conn(), &b.id).await?;
    c.log(format!("backup {} deleted", b.id)).await;
    Ok(())
}

/// Deletes every backup of the instance (it is being deleted).
pub async fn delete_all_backups(c: StepCtx) -> Result<Counted> {
    let all = lq::backup_list(c.store.conn(), &c.target).await?;
    for b in &all {
        remove(&c, b).await?;
    }
    Ok(Counted { count: all.len() })
}
