//! Provisioning an instance (`PROVISION_INSTANCE`): the first provisioning,
//! a reprovision (a new VM on the same data volume, possibly upgrading the
//! node), a reprovision from a snapshot (a new volume from it; the previous
//! volume comes back if the node does not reach health), and a clone (a
//! backup restored into the new data dir before the node is installed).
//!
//! Ids are chosen in `plan` and read back by every later step, so a resumed
//! operation keeps them: the VM is `vm-<op>`, the first volume
//! `vol-<instance>`, a volume from a snapshot `vol-<instance>-<op>`.
//! Undo, step by step: `boot-vm` terminates the VM it booted, `data-volume`
//! deletes a volume it made and gives the instance its previous one back,
//! `replace-vm` marks the provisioning failed (the previous VM, terminated
//! to make room, can't come back), `plan` gives back the port block it
//! reserved for an instance that had none.

use super::common::{
    self as sc, BackupRef, Nothing, Plan, VmRef, failed, image_kit, instance_and_template,
    placement, runtime, stop_node_on,
};
use super::setup::{setup_after_install, setup_after_startup, setup_before_install, setup_plan};
use super::{Saga, SagaParams, StepCtx, step};
use crate::cloud::{VmSpec, VmState};
use crate::error::{Error, OpFailure, Result};
use crate::model::image::version_cmp;
use crate::model::state::RuntimeState;
use crate::store::lifecycle as lq;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "PROVISION_INSTANCE";

/// How far the port search goes (blocks of `port_step` from `port_base`).
const PORT_BLOCKS: u32 = 1000;
/// The highest port a block may start at.
const PORT_MAX: u32 = 65_000;
/// Tries to reserve a block before giving up (another provisioning took it).
const PORT_TRIES: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Reprovision from this snapshot of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Restore this backup into the new data dir (a clone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_backup: Option<BackupRef>,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("plan", plan, undo release_port),
            step!("data-volume", data_volume, undo remove_new_volume),
            step!("replace-vm", replace_vm, undo mark_provision_failed),
            step!("boot-vm", boot_vm, undo terminate_booted_vm),
            step!("agent-connected", agent_connected),
            step!("setup-before-install", setup_before_install),
            step!("restore-backup", sc::restore_data),
            step!("install-node", sc::install_node),
            step!("setup-after-install", setup_after_install),
            step!("start-node", sc::start_node),
            step!("setup-after-startup", setup_after_startup),
            step!("finish", finish),
        ],
    )
}

/// The saga's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provisioned {
    #[serde(rename = "instanceId")]
    pub instance_id: String,
    #[serde(rename = "publicURL")]
    pub public_url: String,
    #[serde(rename = "nodeVersion")]
    pub node_version: String,
}

/// Picks the lowest free port block for an instance that has none; returns
/// it and whether this call reserved it.
async fn allocate_port(c: &StepCtx) -> Result<(u16, bool)> {
    let lc = &c.svc.lc;
    for _ in 0..PORT_TRIES {
        let rt = runtime(c).await?;
        if let Some(p) = rt.port {
            return Ok((p as u16, false));
        }
        let used = lq::runtime_ports(c.store.conn()).await?;
        let shared = c.svc.cloud.shares_host();
        let port = (0..PORT_BLOCKS)
            .map(|k| lc.port_base as u32 + k * lc.port_step as u32)
            .filter(|p| *p <= PORT_MAX && !used.contains(&(*p as i32)))
            // Where all nodes share this host (the local cloud, an emulator): skip ports
            // something else already holds.
            .find(|p| !shared || std::net::TcpListener::bind(("127.0.0.1", *p as u16)).is_ok())
            .ok_or_else(|| {
                failed(
                    OpFailure::NoFreePort,
                    "no free port block left for a new node",
                )
            })?;
        match lq::runtime_set_port(c.store.conn(), &c.target, Some(port as u16)).await {
            Ok(()) => return Ok((port as u16, true)),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(failed(
        OpFailure::NoFreePort,
        "could not reserve a port block; try again",
    ))
}

/// The plan and whether it reserved the instance's port block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Planned {
    #[serde(flatten)]
    pub plan: Plan,
    /// The port block was reserved by this plan (its undo gives it back).
    #[serde(default)]
    pub port_reserved: bool,
}

async fn plan(c: StepCtx) -> Result<Planned> {
    let params: Params = c.params()?;
    let (inst, tpl) = instance_and_template(&c).await?;
    let (image, kit_file, kit_sha256) = image_kit(&c, &inst).await?;
    let rt = runtime(&c).await?;
    if let Some(installed) = &rt.node_version
        && version_cmp(&image.node_version, installed).is_lt()
        && !params.allow_downgrade
    {
        return Err(Error::conflict(format!(
            "image {} would downgrade the node from {installed} to {}; reprovision with allowDowngrade=true to force it",
            image.id, image.node_version
        )));
    }
    if let Some(b) = &params.restore_backup {
        sc::check_restorable(&c, b, &image.node_version).await?;
    }
    let (port, port_reserved) = allocate_port(&c).await?;
    let short = c.op_id.trim_start_matches("op-");
    let current_volume = rt
        .volume_id
        .clone()
        .unwrap_or_else(|| format!("vol-{}", c.target));
    let (volume_id, snapshot_ref) = match &params.snapshot_id {
        Some(sid) => {
            let snap = lq::snapshot_get(c.store.conn(), &c.target, sid)
                .await?
                .ok_or_else(|| Error::not_found("snapshot", sid))?;
            (format!("vol-{}-{short}", c.target), Some(snap.cloud_ref))
        }
        // Disaster recovery: a new instance's first volume comes from
        // the cloud snapshot it names.
        None if rt.volume_id.is_none() => (current_volume, inst.aws_snapshot_id.clone()),
        None => (current_volume, None),
    };
    let p = Plan {
        vm_id: format!("vm-{short}"),
        old_vm_id: rt.vm_id.clone(),
        volume_id,
        old_volume_id: rt.volume_id.clone(),
        snapshot_ref,
        port,
        image_version: image.node_version.clone(),
        kit_file,
        kit_sha256,
        node_type: sc::node_type(&inst),
        allow_downgrade: params.allow_downgrade,
        setup: setup_plan(&c, &inst.instance_settings_template_id, &tpl)?,
        backup: params.restore_backup,
    };
    c.log(format!(
        "plan: VM {}, volume {}, port {}, node {} {}",
        p.vm_id, p.volume_id, p.port, p.node_type, p.image_version
    ))
    .await;
    Ok(Planned {
        plan: p,
        port_reserved,
    })
}

/// Undo of `plan`: a port block it reserved goes back, unless a node
/// was installed on it (a later step's undo could not take that back).
async fn release_port(c: StepCtx) -> Result<Nothing> {
    let Some(p) = c.output_if::<Planned>("plan")? else {
        return Ok(Nothing {});
    };
    let rt = runtime(&c).await?;
    if p.port_reserved && rt.vm_id.is_none() && rt.node_version.is_none() {
        lq::runtime_set_port(c.store.conn(), &c.target, None).await?;
    }
    Ok(Nothing {})
}

/// The data volume the node will use: the instance's own, a new one from a
/// snapshot, or the first one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub volume_id: String,
}

async fn data_volume(c: StepCtx) -> Result<Volume> {
    let p: Plan = c.output("plan")?;
    let at = placement(&c).await?;
    match &p.snapshot_ref {
        Some(snap) => {
            c.svc
                .cloud
                .volume_from_snapshot(&at, snap, &p.volume_id)
                .await?
        }
        None => c.svc.cloud.ensure_volume(&at, &p.volume_id).await?,
    }
    Ok(Volume {
        volume_id: p.volume_id,
    })
}

/// Undo of `data-volume`: a volume this provisioning made (the first one,
/// or one from a snapshot) is deleted, and the instance keeps the volume it
/// had before (the data it had, for a restore from a snapshot that did not
/// reach a healthy node).
async fn remove_new_volume(c: StepCtx) -> Result<Nothing> {
    let p: Plan = c.output("plan")?;
    if !p.new_volume() {
        return Ok(Nothing {});
    }
    let at = placement(&c).await?;
    lq::runtime_set_volume(c.store.conn(), &c.target, p.old_volume_id.as_deref()).await?;
    c.svc.cloud.delete_volume(&at, &p.volume_id).await?;
    match &p.old_volume_id {
        Some(old) => {
            c.log(format!(
                "the instance keeps its previous data volume {old}; {} deleted",
                p.volume_id
            ))
            .await
        }
        None => c.log(format!("data volume {} deleted", p.volume_id)).await,
    }
    Ok(Nothing {})
}

/// Terminates the previous VM (a reprovision) and marks the instance as
/// provisioning.
async fn replace_vm(c: StepCtx) -> Result<Nothing> {
    let p: Plan = c.output("plan")?;
    if let Some(old) = p.old_vm_id.as_deref().filter(|old| *old != p.vm_id) {
        stop_node_on(&c, old, "stop-old-node").await;
        c.svc.cloud.terminate_vm(&placement(&c).await?, old).await?;
        c.log(format!("terminated the previous VM {old}")).await;
    }
    lq::runtime_mark_provisioning(c.store.conn(), &c.target).await?;
    Ok(Nothing {})
}

/// Undo of `replace-vm`: the instance shows the provisioning failed (the
/// operation's error says why); a reprovision starts over.
async fn mark_provision_failed(c: StepCtx) -> Result<Nothing> {
    lq::runtime_set_state(c.store.conn(), &c.target, RuntimeState::ProvisioningFailed).await?;
    Ok(Nothing {})
}

fn toml_str(s: &str) -> String {
    // JSON string escapes are valid TOML basic-string escapes.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The agent's user-data for a VM, from `templates/agent-user-data.toml`.
pub fn render_user_data(
    instance_id: &str,
    fm_url: &str,
    token: &str,
    layout: &crate::cloud::VmLayout,
    heartbeat_secs: u32,
    ca_pem: &str,
) -> String {
    include_str!("../../../../templates/agent-user-data.toml")
        .replace("{{instance_id}}", &toml_str(instance_id))
        .replace("{{fm_url}}", &toml_str(fm_url))
        .replace("{{enrollment_token}}", &toml_str(token))
        .replace("{{state_dir}}", &toml_str(&layout.state_dir))
        .replace("{{data_dir}}", &toml_str(&layout.data_dir))
        .replace("{{home_dir}}", &toml_str(&layout.home_dir))
        .replace(
            "{{node_user}}",
            &layout.node_user.as_deref().map_or_else(
                || "# node_user: the data dir's owner".to_owned(),
                |u| format!("node_user = {}", toml_str(u)),
            ),
        )
        .replace(
            "{{imds_url}}",
            &layout.imds_url.as_deref().map_or_else(
                || "# imds_url: no attestation".to_owned(),
                |u| format!("imds_url = {}", toml_str(u)),
            ),
        )
        .replace("{{heartbeat_secs}}", &heartbeat_secs.to_string())
        .replace("{{ca_pem}}", &toml_str(ca_pem))
}

async fn boot_vm(c: StepCtx) -> Result<VmRef> {
    let p: Plan = c.output("plan")?;
    let cloud = &c.svc.cloud;
    // The runtime names the VM first: only its agent is let in.
    lq::runtime_set_vm(c.store.conn(), &c.target, Some(&p.vm_id), &p.volume_id).await?;
    let at = placement(&c).await?;
    // A resumed step finds the VM and only makes sure it runs.
    let missing = cloud.vm_state(&at, &p.vm_id).await? == VmState::Missing;
    // The same token (and so the same user-data) if this step runs again:
    // EC2 answers a repeated ClientToken with the first VM only when the
    // request is the same.
    let token = c
        .svc
        .secrets
        .derive(&format!("enroll:{}:{}", c.target, p.vm_id));
    if missing {
        c.store
            .token_insert(
                &crate::agents::grpc::token_hash(&token),
                &c.target,
                &p.vm_id,
                c.svc.lc.token_ttl.as_millis() as i64,
            )
            .await?;
    }
    let agent_url = c
        .svc
        .agent_url
        .get()
        .ok_or_else(|| Error::internal("the agent endpoint is not listening"))?;
    let user_data = render_user_data(
        &c.target,
        agent_url,
        &token,
        &cloud.layout(&p.vm_id, &p.volume_id),
        c.svc.lc.heartbeat_secs,
        &c.svc.lc.ca_pem,
    );
    cloud
        .ensure_vm(
            &at,
            &VmSpec {
                vm_id: p.vm_id.clone(),
                instance_id: c.target.clone(),
                volume_id: p.volume_id.clone(),
                user_data,
            },
        )
        .await?;
    if missing {
        c.log(format!("VM {} booted", p.vm_id)).await;
    }
    Ok(VmRef { vm_id: p.vm_id })
}

/// Undo of `boot-vm`: the VM it booted is terminated and the runtime names
/// no VM (the data volume is the `data-volume` step's to undo).
async fn terminate_booted_vm(c: StepCtx) -> Result<Nothing> {
    let p: Plan = c.output("plan")?;
    c.svc
        .cloud
        .terminate_vm(&placement(&c).await?, &p.vm_id)
        .await?;
    lq::runtime_clear_vm(c.store.conn(), &c.target).await?;
    c.log(format!("VM {} terminated", p.vm_id)).await;
    Ok(Nothing {})
}

async fn agent_connected(c: StepCtx) -> Result<Nothing> {
    sc::agent_connected(&c, "boot-vm").await
}

async fn finish(c: StepCtx) -> Result<Provisioned> {
    let p: Plan = c.output("plan")?;
    let at = placement(&c).await?;
    let url = c.svc.cloud.public_url(&at, &p.vm_id, p.port).await?;
    lq::runtime_mark_running(c.store.conn(), &c.target, Some(&url)).await?;
    if let Some(old) = p.old_volume_id.as_deref().filter(|v| *v != p.volume_id) {
        // Restored from a snapshot: the previous volume goes now that the
        // node runs healthy on the new one.
        c.svc.cloud.delete_volume(&at, old).await?;
        c.log(format!("deleted the previous data volume {old}"))
            .await;
    }
    Ok(Provisioned {
        instance_id: c.target.clone(),
        public_url: url,
        node_version: p.image_version,
    })
}
