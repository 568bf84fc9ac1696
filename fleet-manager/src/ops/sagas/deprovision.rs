//! Deprovisioning an instance (`DEPROVISION_INSTANCE`): the node stopped
//! if its agent answers, the VM terminated; the data volume, snapshots and
//! backups stay for the next provisioning. No undo: terminating is where a
//! failure would have to go anyway, and reprovisioning is the way back.

use super::common::{Nothing, placement, runtime};
use super::power::stop_node_best_effort;
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::Result;
use crate::store::lifecycle as lq;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "DEPROVISION_INSTANCE";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("stop-node", stop_node_best_effort),
            step!("terminate-vm", terminate_vm),
        ],
    )
}

/// Terminates the instance's VM (if it has one); the data volume is kept.
pub async fn terminate_vm(c: StepCtx) -> Result<Nothing> {
    let rt = runtime(&c).await?;
    if let Some(vm) = &rt.vm_id {
        c.svc.cloud.terminate_vm(&placement(&c).await?, vm).await?;
        c.log(format!("VM {vm} terminated; the data volume is kept"))
            .await;
    }
    lq::runtime_mark_deprovisioned(c.store.conn(), &c.target).await?;
    Ok(Nothing {})
}
