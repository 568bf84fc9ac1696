//! Powering an instance: start (`START_INSTANCE`: the VM, its agent, the
//! node), stop (`STOP_INSTANCE`: the node, then the VM; the data volume
//! stays) and restart the node (`RESTART_NODE`). No step has an undo: each
//! moves toward the state asked for, and the opposite action is the way
//! back.

use super::common::{
    self as sc, Nothing, VmRef, placement, require_agent, require_vm, run_command, runtime,
    stop_node_on,
};
use super::{Saga, SagaParams, StepCtx, step};
use crate::cloud::VmState;
use crate::error::Result;
use crate::model::state::RuntimeState;
use crate::store::lifecycle as lq;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};

pub const START: &str = "START_INSTANCE";
pub const STOP: &str = "STOP_INSTANCE";
pub const RESTART_NODE: &str = "RESTART_NODE";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Start {}

impl SagaParams for Start {
    const KIND: &'static str = START;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stop {}

impl SagaParams for Stop {
    const KIND: &'static str = STOP;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartNode {}

impl SagaParams for RestartNode {
    const KIND: &'static str = RESTART_NODE;
}

pub fn start_saga() -> Saga {
    Saga::new(
        START,
        vec![
            step!("start-vm", start_vm),
            step!("agent-connected", agent_connected),
            step!("start-node", sc::start_node),
            step!("finish", finish_start),
        ],
    )
}

pub fn stop_saga() -> Saga {
    Saga::new(
        STOP,
        vec![
            step!("stop-node", stop_node_best_effort),
            step!("stop-vm", stop_vm),
        ],
    )
}

pub fn restart_saga() -> Saga {
    Saga::new(RESTART_NODE, vec![step!("restart-node", restart_node)])
}

async fn start_vm(c: StepCtx) -> Result<VmRef> {
    let vm = require_vm(&c).await?;
    let at = placement(&c).await?;
    if c.svc.cloud.vm_state(&at, &vm).await? != VmState::Running {
        c.svc.cloud.start_vm(&at, &vm).await?;
    }
    Ok(VmRef { vm_id: vm })
}

async fn agent_connected(c: StepCtx) -> Result<Nothing> {
    sc::agent_connected(&c, "start-vm").await
}

async fn finish_start(c: StepCtx) -> Result<Nothing> {
    lq::runtime_set_state(c.store.conn(), &c.target, RuntimeState::Running).await?;
    Ok(Nothing {})
}

/// Stops the node before its VM goes, if its agent is there.
pub async fn stop_node_best_effort(c: StepCtx) -> Result<Nothing> {
    if let Some(vm) = runtime(&c).await?.vm_id {
        stop_node_on(&c, &vm, "stop-node").await;
    }
    Ok(Nothing {})
}

async fn stop_vm(c: StepCtx) -> Result<Nothing> {
    let vm = require_vm(&c).await?;
    c.svc.cloud.stop_vm(&placement(&c).await?, &vm).await?;
    lq::runtime_set_state(c.store.conn(), &c.target, RuntimeState::Stopped).await?;
    Ok(Nothing {})
}

async fn restart_node(c: StepCtx) -> Result<Nothing> {
    require_agent(&c).await?;
    run_command(
        &c,
        "restart-node",
        command::Kind::Restart(fm_proto::agent::RestartNode {
            health_timeout_secs: c.svc.lc.health_timeout_secs,
        }),
    )
    .await?;
    Ok(Nothing {})
}
