//! Deleting one snapshot of an instance (`DELETE_SNAPSHOT`): in the cloud,
//! then in the catalogue; a snapshot already gone is deleted.

use super::common::{Deleted, placement};
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::Result;
use crate::store::lifecycle as lq;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "DELETE_SNAPSHOT";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    #[serde(rename = "snapshotId")]
    pub snapshot_id: String,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(KIND, vec![step!("delete-snapshot", delete_snapshot)])
}

/// Deletes the instance's snapshot `id` if it still exists.
pub async fn delete_one(c: &StepCtx, id: &str) -> Result<()> {
    if let Some(s) = lq::snapshot_get(c.store.conn(), &c.target, id).await? {
        c.svc
            .cloud
            .delete_snapshot(&placement(c).await?, &s.cloud_ref)
            .await?;
        lq::snapshot_delete(c.store.conn(), &s.id).await?;
    }
    Ok(())
}

async fn delete_snapshot(c: StepCtx) -> Result<Deleted> {
    let p: Params = c.params()?;
    delete_one(&c, &p.snapshot_id).await?;
    Ok(Deleted::of(&p.snapshot_id))
}
