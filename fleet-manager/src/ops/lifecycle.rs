//! The instance lifecycle as sagas: provision (and reprovision, from a
//! snapshot too), deprovision, start, stop, restart the node, replay setup
//! actions, reset a password, snapshot, delete a snapshot, delete the
//! instance.
//!
//! Steps are idempotent: cloud calls are keyed by ids derived from the
//! instance and the operation (`vm-<op>`, `vol-<instance>`), agent commands
//! by `<op>:<step>` so an agent that already ran one answers from its
//! journal.

use super::sagas::{Saga, Step, StepCtx, step};
use crate::cloud::{Placement, VmSpec, VmState};
use crate::error::{Error, Result};
use crate::model::instance::Instance;
use crate::model::now_ms;
use crate::model::template::InstanceTemplate;
use crate::store::entities::{instance_runtime, snapshot};
use crate::store::lifecycle as lq;
use crate::store::resources as q;
use fm_proto::agent::{Command, command};
use sea_orm::{ActiveModelTrait, Set};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

pub const PROVISION: &str = "PROVISION_INSTANCE";
pub const DEPROVISION: &str = "DEPROVISION_INSTANCE";
pub const START: &str = "START_INSTANCE";
pub const STOP: &str = "STOP_INSTANCE";
pub const RESTART_NODE: &str = "RESTART_NODE";
pub const REPLAY_SETUP: &str = "REPLAY_SETUP_ACTIONS";
pub const RESET_PASSWORD: &str = "RESET_USER_PASSWORD";
pub const SNAPSHOT: &str = "SNAPSHOT_INSTANCE";
pub const DELETE_SNAPSHOT: &str = "DELETE_SNAPSHOT";
pub const DELETE_INSTANCE: &str = "DELETE_INSTANCE";

pub fn sagas() -> Vec<Saga> {
    vec![
        Saga {
            kind: PROVISION,
            steps: vec![
                step!("plan", plan),
                step!("data-volume", data_volume, undo restore_previous_volume),
                step!("replace-vm", replace_vm, undo mark_provision_failed),
                step!("boot-vm", boot_vm),
                step!("agent-connected", agent_connected),
                step!("setup-before-install", setup_before_install),
                step!("restore-backup", super::backups::restore_data),
                step!("install-node", install_node),
                step!("setup-after-install", setup_after_install),
                step!("start-node", start_node),
                step!("setup-after-startup", setup_after_startup),
                step!("finish", finish_provision),
            ],
        },
        Saga {
            kind: DEPROVISION,
            steps: vec![
                step!("stop-node", stop_node_best_effort),
                step!("terminate-vm", terminate_vm),
            ],
        },
        Saga {
            kind: START,
            steps: vec![
                step!("start-vm", start_vm),
                step!("agent-connected", agent_connected),
                step!("start-node", start_node),
                step!("finish", finish_start),
            ],
        },
        Saga {
            kind: STOP,
            steps: vec![
                step!("stop-node", stop_node_best_effort),
                step!("stop-vm", stop_vm),
            ],
        },
        Saga {
            kind: RESTART_NODE,
            steps: vec![step!("restart-node", restart_node)],
        },
        Saga {
            kind: REPLAY_SETUP,
            steps: vec![
                step!("plan", plan_setup),
                step!("setup-before-install", setup_before_install),
                step!("setup-after-install", setup_after_install),
                step!("setup-after-startup", setup_after_startup),
            ],
        },
        Saga {
            kind: RESET_PASSWORD,
            steps: vec![step!("reset-password", reset_password)],
        },
        Saga {
            kind: SNAPSHOT,
            steps: vec![
                step!("quiesce-node", quiesce_node, undo resume_node),
                step!("snapshot-volume", snapshot_volume),
                step!("resume-node", resume_node),
            ],
        },
        Saga {
            kind: DELETE_SNAPSHOT,
            steps: vec![step!("delete-snapshot", delete_snapshot)],
        },
        Saga {
            kind: DELETE_INSTANCE,
            steps: vec![
                step!("terminate-vm", terminate_vm),
                step!("delete-snapshots", delete_all_snapshots),
                step!("delete-backups", super::backups::delete_all_backups),
                step!("delete-volume", delete_volume),
                step!("release-addresses", release_addresses),
                step!("delete-records", delete_records),
            ],
        },
    ]
}

/// Setup actions split by the stage the agent runs them in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SetupPlan {
    before_install: Vec<(String, String)>,
    after_install: Vec<(String, String)>,
    after_dss_startup: Vec<(String, String)>,
}

/// What a provisioning decided in its first step; later steps read it back,
/// so a resumed operation keeps the same ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Plan {
    vm_id: String,
    old_vm_id: Option<String>,
    volume_id: String,
    old_volume_id: Option<String>,
    snapshot_ref: Option<String>,
    pub(super) port: u16,
    pub(super) image_version: String,
    kit_file: String,
    kit_sha256: String,
    node_type: String,
    allow_downgrade: bool,
    setup: SetupPlan,
    /// A backup to restore into the data dir before the node is installed
    /// (a clone), or by a restore.
    #[serde(default)]
    pub(super) backup: Option<BackupRef>,
}

/// A backup by the instance it was taken from and its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BackupRef {
    pub instance_id: String,
    pub backup_id: String,
}

pub(super) fn failed(error_type: &str, message: impl Into<String>) -> Error {
    Error::OperationFailed {
        error_type: error_type.into(),
        message: message.into(),
    }
}

pub(super) fn read_plan(c: &StepCtx) -> Result<Plan> {
    let v = c
        .outputs
        .get("plan")
        .cloned()
        .ok_or_else(|| Error::internal("the plan step's output is missing"))?;
    serde_json::from_value(v).map_err(Error::internal)
}

/// Runs agent command `kind` as step `step` of this operation (command id
/// `<op>:<step>`) and waits for its output up to the command timeout.
pub(super) async fn run_command(c: &StepCtx, step: &str, kind: command::Kind) -> Result<Value> {
    let cmd = command_for(c, step, kind);
    c.svc
        .hub
        .run_ok(&c.target, cmd, Some(&c.op_id), c.svc.lc.command_timeout)
        .await
}

pub(super) fn command_for(c: &StepCtx, step: &str, kind: command::Kind) -> Command {
    Command {
        command_id: format!("{}:{step}", c.op_id),
        kind: Some(kind),
    }
}

/// Dotted versions compared number by number; missing parts count as 0
/// (`14.2` is `14.2.0`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (mut x, mut y) = (parse(a), parse(b));
    let n = x.len().max(y.len());
    x.resize(n, 0);
    y.resize(n, 0);
    x.cmp(&y)
}

fn stage_of(action_type: &str, params: &Value) -> &'static str {
    match action_type {
        "RUN_ANSIBLE_TASKS" => match params.get("stage").and_then(Value::as_str) {
            Some("before_install") => "before_install",
            Some("after_dss_startup") => "after_dss_startup",
            _ => "after_install",
        },
        "ADD_AUTHORIZED_KEY"
        | "ADD_SSH_KEY"
        | "ADD_CA_TO_TRUSTSTORE"
        | "INSTALL_SYSTEM_PACKAGES" => "before_install",
        _ => "after_install",
    }
}

pub(super) async fn instance_and_template(c: &StepCtx) -> Result<(Instance, InstanceTemplate)> {
    let row = q::instance_get(c.store.conn(), &c.tenant, &c.target)
        .await?
        .ok_or_else(|| Error::not_found("instance", &c.target))?;
    let inst: Instance = serde_json::from_str(&row.doc).map_err(Error::internal)?;
    let tpl = q::template_get(
        c.store.conn(),
        &c.tenant,
        &inst.instance_settings_template_id,
    )
    .await?
    .ok_or_else(|| Error::not_found("instance template", &inst.instance_settings_template_id))?;
    let tpl: InstanceTemplate = serde_json::from_str(&tpl.doc).map_err(Error::internal)?;
    Ok((inst, tpl))
}

fn setup_plan(tpl: &InstanceTemplate) -> Result<SetupPlan> {
    let mut p = SetupPlan::default();
    for a in tpl.setup_actions.iter().filter(|a| a.enabled) {
        let t = serde_json::to_value(a.action_type).map_err(Error::internal)?;
        let t = t.as_str().unwrap_or_default().to_string();
        let params = Value::Object(a.params.clone().unwrap_or_default());
        let entry = (t.clone(), params.to_string());
        match stage_of(&t, &params) {
            "before_install" => p.before_install.push(entry),
            "after_dss_startup" => p.after_dss_startup.push(entry),
            _ => p.after_install.push(entry),
        }
    }
    Ok(p)
}

/// Where the instance's resources live (secrets opened for this call only).
pub(super) async fn at(c: &StepCtx) -> Result<Placement> {
    super::placement::for_instance(&c.svc, &c.tenant, &c.target).await
}

pub(super) async fn runtime(c: &StepCtx) -> Result<instance_runtime::Model> {
    lq::runtime_ensure(c.store.conn(), &c.tenant, &c.target).await
}

/// Picks the lowest free port block for an instance that has none.
async fn allocate_port(c: &StepCtx) -> Result<u16> {
    let lc = &c.svc.lc;
    for _ in 0..5 {
        let rt = runtime(c).await?;
        if let Some(p) = rt.port {
            return Ok(p as u16);
        }
        let used = lq::runtime_ports(c.store.conn()).await?;
        let shared = c.svc.cloud.shares_host();
        let port = (0..1000u32)
            .map(|k| lc.port_base as u32 + k * lc.port_step as u32)
            .filter(|p| *p <= 65_000 && !used.contains(&(*p as i32)))
            // Where all nodes share this host (the local cloud, an emulator): skip ports
            // something else already holds.
            .find(|p| !shared || std::net::TcpListener::bind(("127.0.0.1", *p as u16)).is_ok())
            .ok_or_else(|| failed("NoFreePort", "no free port block left for a new node"))?;
        match lq::runtime_set(
            c.store.conn(),
            &c.target,
            vec![(instance_runtime::Column::Port, (port as i32).into())],
        )
        .await
        {
            Ok(()) => return Ok(port as u16),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(failed(
        "NoFreePort",
        "could not reserve a port block; try again",
    ))
}

// ------------------------------------------------------------ provision

/// The instance's image, its kit file and the kit's SHA-256; an image
/// without a kit fails the operation.
async fn image_kit(
    c: &StepCtx,
    inst: &Instance,
) -> Result<(crate::store::entities::image::Model, String, String)> {
    let image = q::image_get(c.store.conn(), &inst.image_id)
        .await?
        .ok_or_else(|| Error::invalid(format!("image '{}' does not exist", inst.image_id)))?;
    match (image.kit_file.clone(), image.kit_sha256.clone()) {
        (Some(f), Some(h)) => Ok((image, f, h)),
        _ => Err(failed(
            "ImageWithoutKit",
            format!("image '{}' has no node kit to install", image.id),
        )),
    }
}

fn node_type(inst: &Instance) -> Result<String> {
    Ok(serde_json::to_value(inst.dss_node_type)
        .map_err(Error::internal)?
        .as_str()
        .unwrap_or("design")
        .to_string())
}

async fn plan(c: StepCtx) -> Result<Value> {
    let (inst, tpl) = instance_and_template(&c).await?;
    let (image, kit_file, kit_sha256) = image_kit(&c, &inst).await?;
    let rt = runtime(&c).await?;
    let allow_downgrade = c
        .params
        .get("allowDowngrade")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(installed) = &rt.node_version
        && version_cmp(&image.node_version, installed).is_lt()
        && !allow_downgrade
    {
        return Err(Error::conflict(format!(
            "image {} would downgrade the node from {installed} to {}; reprovision with allowDowngrade=true to force it",
            image.id, image.node_version
        )));
    }
    let backup = match c.params.get("restoreBackup") {
        Some(b) => Some(super::backups::check_restorable(&c, b, &image.node_version).await?),
        None => None,
    };
    let port = allocate_port(&c).await?;
    let short = c.op_id.trim_start_matches("op-");
    let current_volume = rt
        .volume_id
        .clone()
        .unwrap_or_else(|| format!("vol-{}", c.target));
    let (volume_id, old_volume_id, snapshot_ref) =
        match c.params.get("snapshotId").and_then(Value::as_str) {
            Some(sid) => {
                let snap = lq::snapshot_get(c.store.conn(), &c.target, sid)
                    .await?
                    .ok_or_else(|| Error::not_found("snapshot", sid))?;
                let old = rt.volume_id.clone();
                (
                    format!("vol-{}-{short}", c.target),
                    old,
                    Some(snap.cloud_ref),
                )
            }
            // Disaster recovery: a new instance's first volume comes from
            // the cloud snapshot it names.
            None if rt.volume_id.is_none() => (current_volume, None, inst.aws_snapshot_id.clone()),
            None => (current_volume, None, None),
        };
    let p = Plan {
        vm_id: format!("vm-{short}"),
        old_vm_id: rt.vm_id.clone(),
        volume_id,
        old_volume_id,
        snapshot_ref,
        port,
        image_version: image.node_version.clone(),
        kit_file,
        kit_sha256,
        node_type: node_type(&inst)?,
        allow_downgrade,
        setup: setup_plan(&tpl)?,
        backup,
    };
    c.log(format!(
        "plan: VM {}, volume {}, port {}, node {} {}",
        p.vm_id, p.volume_id, p.port, p.node_type, p.image_version
    ))
    .await;
    serde_json::to_value(&p).map_err(Error::internal)
}

/// The plan of a restore onto the instance's current VM: the same shape as
/// a provisioning's, so the install and start steps are shared.
pub(super) async fn plan_restore(c: StepCtx) -> Result<Value> {
    let vm = require_agent(&c).await?;
    let (inst, tpl) = instance_and_template(&c).await?;
    let (image, kit_file, kit_sha256) = image_kit(&c, &inst).await?;
    let rt = runtime(&c).await?;
    let b = c
        .params
        .get("restoreBackup")
        .ok_or_else(|| Error::internal("a restore without a backup"))?;
    let backup = super::backups::check_restorable(&c, b, &image.node_version).await?;
    let p = Plan {
        vm_id: vm,
        old_vm_id: None,
        volume_id: rt.volume_id.clone().unwrap_or_default(),
        old_volume_id: None,
        snapshot_ref: None,
        port: rt
            .port
            .map(|p| p as u16)
            .ok_or_else(|| Error::conflict(format!("instance '{}' has no port", c.target)))?,
        image_version: image.node_version.clone(),
        kit_file,
        kit_sha256,
        node_type: node_type(&inst)?,
        allow_downgrade: false,
        setup: setup_plan(&tpl)?,
        backup: Some(backup),
    };
    serde_json::to_value(&p).map_err(Error::internal)
}

async fn data_volume(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    match &p.snapshot_ref {
        Some(snap) => {
            c.svc
                .cloud
                .volume_from_snapshot(&at(&c).await?, snap, &p.volume_id)
                .await?
        }
        None => {
            c.svc
                .cloud
                .ensure_volume(&at(&c).await?, &p.volume_id)
                .await?
        }
    }
    Ok(json!({"volumeId": p.volume_id}))
}

/// Undo of `data-volume`: a restore from a snapshot that did not reach a
/// healthy node gives the instance its previous volume back (the data it
/// had) and deletes the one made from the snapshot, with the VM using it.
async fn restore_previous_volume(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    if p.snapshot_ref.is_none() || p.old_volume_id.as_deref() == Some(p.volume_id.as_str()) {
        return Ok(json!({}));
    }
    let at = at(&c).await?;
    c.svc.cloud.terminate_vm(&at, &p.vm_id).await?;
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![
            (
                instance_runtime::Column::VmId,
                Option::<String>::None.into(),
            ),
            (
                instance_runtime::Column::VolumeId,
                p.old_volume_id.clone().into(),
            ),
            (
                instance_runtime::Column::PublicUrl,
                Option::<String>::None.into(),
            ),
        ],
    )
    .await?;
    c.svc.cloud.delete_volume(&at, &p.volume_id).await?;
    c.log(format!(
        "the instance keeps its previous data volume; {} deleted",
        p.volume_id
    ))
    .await;
    Ok(json!({}))
}

/// Undo of `replace-vm`: the instance shows the provisioning failed (the
/// operation's error says why); a reprovision starts over.
async fn mark_provision_failed(c: StepCtx) -> Result<Value> {
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![(
            instance_runtime::Column::State,
            "provisioning-failed".into(),
        )],
    )
    .await?;
    Ok(json!({}))
}

async fn replace_vm(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    if let Some(old) = p.old_vm_id.as_deref().filter(|old| *old != p.vm_id) {
        stop_node_on(&c, old, "stop-old-node").await;
        c.svc.cloud.terminate_vm(&at(&c).await?, old).await?;
        c.log(format!("terminated the previous VM {old}")).await;
    }
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![
            (
                instance_runtime::Column::VmId,
                Option::<String>::None.into(),
            ),
            (instance_runtime::Column::State, "provisioning".into()),
        ],
    )
    .await?;
    Ok(json!({}))
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
    include_str!("../../../templates/agent-user-data.toml")
        .replace("{{instance_id}}", &toml_str(instance_id))
        .replace("{{fm_url}}", &toml_str(fm_url))
        .replace("{{enrollment_token}}", &toml_str(token))
        .replace("{{state_dir}}", &toml_str(&layout.state_dir))
        .replace("{{data_dir}}", &toml_str(&layout.data_dir))
        .replace("{{home_dir}}", &toml_str(&layout.home_dir))
        .replace("{{heartbeat_secs}}", &heartbeat_secs.to_string())
        .replace("{{ca_pem}}", &toml_str(ca_pem))
}

async fn boot_vm(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    let cloud = &c.svc.cloud;
    // The runtime names the VM first: only its agent is let in.
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![
            (instance_runtime::Column::VmId, Some(p.vm_id.clone()).into()),
            (
                instance_runtime::Column::VolumeId,
                Some(p.volume_id.clone()).into(),
            ),
        ],
    )
    .await?;
    let at = at(&c).await?;
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
    Ok(json!({"vmId": p.vm_id}))
}

/// Waits for the agent of the VM the previous step booted or started (its
/// certificate names the VM, so an old VM's agent can't stand in for it).
async fn agent_connected(c: StepCtx) -> Result<Value> {
    let vm = c
        .outputs
        .get("boot-vm")
        .or_else(|| c.outputs.get("start-vm"))
        .and_then(|v| v.get("vmId"))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::internal("no VM to wait for"))?
        .to_string();
    c.svc
        .hub
        .wait_connected(&c.target, &vm, c.svc.lc.agent_connect_timeout)
        .await?;
    c.log("agent connected").await;
    Ok(json!({}))
}

/// The parameters as the agent needs them: sealed secrets opened, only in
/// the command itself (never in stored outputs or logs).
fn unseal_params(c: &StepCtx, params_json: &str) -> Result<String> {
    use crate::model::setup_action::SEALED_PREFIX;
    let mut v: Value = serde_json::from_str(params_json).map_err(Error::internal)?;
    if let Some(map) = v.as_object_mut() {
        for val in map.values_mut() {
            if let Some(sealed) = val.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX)) {
                *val =
                    serde_json::from_str(&c.svc.secrets.open(sealed)?).map_err(Error::internal)?;
            }
        }
    }
    Ok(v.to_string())
}

async fn setup_stage(c: &StepCtx, stage: &str, actions: &[(String, String)]) -> Result<Value> {
    if actions.is_empty() {
        return Ok(json!({"actions": 0}));
    }
    run_command(
        c,
        &format!("setup-{stage}"),
        command::Kind::RunSetupActions(fm_proto::agent::RunSetupActions {
            stage: stage.to_string(),
            actions: actions
                .iter()
                .map(|(t, p)| {
                    Ok(fm_proto::agent::SetupAction {
                        r#type: t.clone(),
                        params_json: unseal_params(c, p)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        }),
    )
    .await?;
    Ok(json!({"actions": actions.len()}))
}

/// The setup actions the `plan` step chose (both the provisioning plan and
/// the replay's keep them under `setup`).
fn setup_from(c: &StepCtx) -> Result<SetupPlan> {
    let setup = c
        .outputs
        .get("plan")
        .and_then(|v| v.get("setup"))
        .cloned()
        .ok_or_else(|| Error::internal("the plan step's setup actions are missing"))?;
    serde_json::from_value(setup).map_err(Error::internal)
}

async fn setup_before_install(c: StepCtx) -> Result<Value> {
    let s = setup_from(&c)?;
    setup_stage(&c, "before_install", &s.before_install).await
}

async fn setup_after_install(c: StepCtx) -> Result<Value> {
    let s = setup_from(&c)?;
    setup_stage(&c, "after_install", &s.after_install).await
}

async fn setup_after_startup(c: StepCtx) -> Result<Value> {
    let s = setup_from(&c)?;
    setup_stage(&c, "after_dss_startup", &s.after_dss_startup).await
}

async fn plan_setup(c: StepCtx) -> Result<Value> {
    require_agent(&c).await?;
    let (_, tpl) = instance_and_template(&c).await?;
    Ok(json!({"setup": setup_plan(&tpl)?}))
}

pub(super) async fn install_node(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    let out = run_command(
        &c,
        "install-node",
        command::Kind::Install(fm_proto::agent::InstallNode {
            kit_url: format!("fm:kits/{}", p.kit_file),
            kit_sha256: p.kit_sha256.clone(),
            node_version: p.image_version.clone(),
            node_type: p.node_type.clone(),
            port: p.port as u32,
            allow_downgrade: p.allow_downgrade,
        }),
    )
    .await?;
    let rt = runtime(&c).await?;
    let mut sets = vec![(
        instance_runtime::Column::NodeVersion,
        Some(p.image_version.clone()).into(),
    )];
    if let Some(key) = out.get("adminApiKey").and_then(Value::as_str) {
        sets.push((
            instance_runtime::Column::AdminApiKey,
            Some(c.svc.secrets.seal(key)?).into(),
        ));
    }
    if rt.initial_password.is_none()
        && let Some(pw) = out.get("initialPassword").and_then(Value::as_str)
    {
        sets.push((
            instance_runtime::Column::InitialPassword,
            Some(c.svc.secrets.seal(pw)?).into(),
        ));
    }
    lq::runtime_set(c.store.conn(), &c.target, sets).await?;
    Ok(json!({"nodeVersion": p.image_version}))
}

pub(super) async fn start_node(c: StepCtx) -> Result<Value> {
    run_command(
        &c,
        "start-node",
        command::Kind::Start(fm_proto::agent::StartNode {
            health_timeout_secs: c.svc.lc.health_timeout_secs,
        }),
    )
    .await?;
    Ok(json!({}))
}

async fn finish_provision(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    let at = at(&c).await?;
    let url = c.svc.cloud.public_url(&at, &p.vm_id, p.port).await?;
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![
            (instance_runtime::Column::State, "running".into()),
            (
                instance_runtime::Column::PublicUrl,
                Some(url.clone()).into(),
            ),
        ],
    )
    .await?;
    if let Some(old) = p.old_volume_id.as_deref().filter(|v| *v != p.volume_id) {
        // Restored from a snapshot: the previous volume goes now that the
        // node runs healthy on the new one.
        c.svc.cloud.delete_volume(&at, old).await?;
        c.log(format!("deleted the previous data volume {old}"))
            .await;
    }
    Ok(json!({"instanceId": c.target, "publicURL": url, "nodeVersion": p.image_version}))
}

// ------------------------------------------------------------ power

async fn require_vm(c: &StepCtx) -> Result<String> {
    runtime(c)
        .await?
        .vm_id
        .ok_or_else(|| Error::conflict(format!("instance '{}' is not provisioned", c.target)))
}

/// The instance's VM must run and its agent answer (within the connect
/// timeout): a command to a stopped VM fails now, not after the command
/// timeout.
pub(super) async fn require_agent(c: &StepCtx) -> Result<String> {
    let vm = require_vm(c).await?;
    if c.svc.cloud.vm_state(&at(c).await?, &vm).await? != VmState::Running {
        return Err(Error::conflict(format!(
            "the VM of instance '{}' is not running; start the instance first",
            c.target
        )));
    }
    c.svc
        .hub
        .wait_connected(&c.target, &vm, c.svc.lc.agent_connect_timeout)
        .await?;
    Ok(vm)
}

/// Asks the node on `vm` to stop, if its agent is there; a failure is
/// logged and the caller goes on (the VM is about to stop or go).
async fn stop_node_on(c: &StepCtx, vm: &str, step: &str) {
    if c.svc.hub.connected_vm(&c.target).as_deref() != Some(vm) {
        c.log(format!(
            "the agent on VM {vm} is not connected; not stopping the node first"
        ))
        .await;
        return;
    }
    let cmd = command_for(c, step, command::Kind::Stop(Default::default()));
    if let Err(e) = c
        .svc
        .hub
        .run_ok(&c.target, cmd, Some(&c.op_id), Duration::from_secs(120))
        .await
    {
        c.log(format!(
            "stopping the node failed ({}); going on",
            e.message()
        ))
        .await;
    }
}

async fn stop_node_best_effort(c: StepCtx) -> Result<Value> {
    if let Some(vm) = runtime(&c).await?.vm_id {
        stop_node_on(&c, &vm, "stop-node").await;
    }
    Ok(json!({}))
}

async fn terminate_vm(c: StepCtx) -> Result<Value> {
    let rt = runtime(&c).await?;
    if let Some(vm) = &rt.vm_id {
        c.svc.cloud.terminate_vm(&at(&c).await?, vm).await?;
        c.log(format!("VM {vm} terminated; the data volume is kept"))
            .await;
    }
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![
            (
                instance_runtime::Column::VmId,
                Option::<String>::None.into(),
            ),
            (instance_runtime::Column::State, "deprovisioned".into()),
            (
                instance_runtime::Column::PublicUrl,
                Option::<String>::None.into(),
            ),
        ],
    )
    .await?;
    Ok(json!({}))
}

async fn start_vm(c: StepCtx) -> Result<Value> {
    let vm = require_vm(&c).await?;
    let at = at(&c).await?;
    if c.svc.cloud.vm_state(&at, &vm).await? != VmState::Running {
        c.svc.cloud.start_vm(&at, &vm).await?;
    }
    Ok(json!({"vmId": vm}))
}

async fn finish_start(c: StepCtx) -> Result<Value> {
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![(instance_runtime::Column::State, "running".into())],
    )
    .await?;
    Ok(json!({}))
}

async fn stop_vm(c: StepCtx) -> Result<Value> {
    let vm = require_vm(&c).await?;
    c.svc.cloud.stop_vm(&at(&c).await?, &vm).await?;
    lq::runtime_set(
        c.store.conn(),
        &c.target,
        vec![(instance_runtime::Column::State, "stopped".into())],
    )
    .await?;
    Ok(json!({}))
}

async fn restart_node(c: StepCtx) -> Result<Value> {
    require_agent(&c).await?;
    run_command(
        &c,
        "restart-node",
        command::Kind::Restart(fm_proto::agent::RestartNode {
            health_timeout_secs: c.svc.lc.health_timeout_secs,
        }),
    )
    .await?;
    Ok(json!({}))
}

async fn reset_password(c: StepCtx) -> Result<Value> {
    require_agent(&c).await?;
    let user = c
        .params
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let sealed = c
        .params
        .get("passwordSealed")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let password = c.svc.secrets.open(sealed)?;
    run_command(
        &c,
        "reset-password",
        command::Kind::ResetUserPassword(fm_proto::agent::ResetUserPassword {
            user_name: user.clone(),
            password,
        }),
    )
    .await?;
    Ok(json!({"userName": user}))
}

// ------------------------------------------------------------ snapshots

/// The public JSON of a snapshot.
pub fn snapshot_view(s: &snapshot::Model) -> Value {
    json!({
        "id": s.id,
        "instanceId": s.instance_id,
        "reasonForSnapshot": s.reason,
        "nodeVersion": s.node_version,
        "sizeBytes": s.size_bytes,
        "creationDate": s.created_at,
        "automated": s.automated,
        "cloudSnapshotId": s.cloud_ref,
    })
}

/// Makes the node consistent for a snapshot, as the instance asks: stops
/// it (`STOP_NODE`) or freezes its filesystem (`FREEZE_FS`), when the node
/// runs. Its undo, and the saga's last step, undo that: whether the cloud
/// call succeeds, fails, or FM dies in between, the node is not left
/// stopped (a freeze also thaws by itself on the agent after a while).
async fn quiesce_node(c: StepCtx) -> Result<Value> {
    use crate::model::instance::SnapshotConsistency as Sc;
    let (inst, _) = instance_and_template(&c).await?;
    let Some(vm) = runtime(&c).await?.vm_id else {
        return Ok(json!({"stopped": false}));
    };
    if inst.snapshot_consistency == Sc::None
        || c.svc.cloud.vm_state(&at(&c).await?, &vm).await? != VmState::Running
        || c.svc.hub.connected_vm(&c.target).as_deref() != Some(vm.as_str())
    {
        return Ok(json!({"stopped": false}));
    }
    if inst.snapshot_consistency == Sc::FreezeFs {
        run_command(
            &c,
            "quiesce-node",
            command::Kind::FreezeFs(fm_proto::agent::FreezeFs {
                thaw_after_secs: 300,
            }),
        )
        .await?;
        c.log("data dir filesystem frozen for a consistent snapshot")
            .await;
        return Ok(json!({"stopped": false, "frozen": true}));
    }
    stop_for(&c, "quiesce-node").await?;
    c.log("node stopped for a consistent snapshot").await;
    Ok(json!({"stopped": true}))
}

/// Stops the node (command id `<op>:<step>`).
pub(super) async fn stop_for(c: &StepCtx, step: &str) -> Result<()> {
    run_command(c, step, command::Kind::Stop(Default::default())).await?;
    Ok(())
}

/// Undoes what the quiesce step (`quiesce`, by step name) did: thaws the
/// filesystem or starts the node again.
pub(super) async fn undo_quiesce(c: &StepCtx, quiesce: &str, step: &str) -> Result<()> {
    let out = c.outputs.get(quiesce);
    let flag = |k: &str| out.and_then(|v| v.get(k)).and_then(Value::as_bool) == Some(true);
    if flag("frozen") {
        run_command(c, step, command::Kind::ThawFs(Default::default())).await?;
        c.log("data dir filesystem thawed").await;
    }
    if flag("stopped") {
        run_command(
            c,
            step,
            command::Kind::Start(fm_proto::agent::StartNode {
                health_timeout_secs: c.svc.lc.health_timeout_secs,
            }),
        )
        .await?;
        c.log("node started again").await;
    }
    Ok(())
}

/// Resumes what the quiesce step paused. Its output is the snapshot (the
/// saga's result) when the snapshot was taken.
async fn resume_node(c: StepCtx) -> Result<Value> {
    let snapshot = c
        .outputs
        .get("snapshot-volume")
        .cloned()
        .unwrap_or_else(|| json!({}));
    undo_quiesce(&c, "quiesce-node", "resume-node").await?;
    Ok(snapshot)
}

async fn snapshot_volume(c: StepCtx) -> Result<Value> {
    let rt = runtime(&c).await?;
    let volume = rt.volume_id.clone().ok_or_else(|| {
        Error::conflict(format!("instance '{}' has no data volume yet", c.target))
    })?;
    let id = c
        .params
        .get("snapshotId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(s) = lq::snapshot_get(c.store.conn(), &c.target, &id).await? {
        return Ok(snapshot_view(&s));
    }
    let (cloud_ref, size) = c
        .svc
        .cloud
        .snapshot_volume(&at(&c).await?, &volume, &id)
        .await?;
    let m = snapshot::ActiveModel {
        id: Set(id),
        tenant_id: Set(c.tenant.clone()),
        instance_id: Set(c.target.clone()),
        cloud_ref: Set(cloud_ref),
        reason: Set(c
            .params
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string)),
        node_version: Set(rt.node_version.clone()),
        size_bytes: Set(Some(size as i64)),
        created_at: Set(now_ms()),
        automated: Set(c
            .params
            .get("automated")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
    }
    .insert(c.store.conn())
    .await?;
    Ok(snapshot_view(&m))
}

async fn delete_snapshot(c: StepCtx) -> Result<Value> {
    let id = c
        .params
        .get("snapshotId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(s) = lq::snapshot_get(c.store.conn(), &c.target, &id).await? {
        c.svc
            .cloud
            .delete_snapshot(&at(&c).await?, &s.cloud_ref)
            .await?;
        lq::snapshot_delete(c.store.conn(), &s.id).await?;
    }
    Ok(json!({"id": id, "deleted": true}))
}

// ------------------------------------------------------------ delete

async fn delete_all_snapshots(c: StepCtx) -> Result<Value> {
    let snaps = lq::snapshot_list(c.store.conn(), &c.target).await?;
    let at = at(&c).await?;
    for s in &snaps {
        c.svc.cloud.delete_snapshot(&at, &s.cloud_ref).await?;
        lq::snapshot_delete(c.store.conn(), &s.id).await?;
    }
    Ok(json!({"snapshots": snaps.len()}))
}

async fn delete_volume(c: StepCtx) -> Result<Value> {
    let at = at(&c).await?;
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
    Ok(json!({}))
}

/// Releases what the instance held beyond VMs and volumes (an Elastic IP
/// FM allocated for it).
async fn release_addresses(c: StepCtx) -> Result<Value> {
    c.svc.cloud.release_instance(&at(&c).await?).await?;
    Ok(json!({}))
}

async fn delete_records(c: StepCtx) -> Result<Value> {
    use sea_orm::TransactionTrait;
    let txn = c.store.conn().begin().await?;
    lq::runtime_delete(&txn, &c.target).await?;
    q::instance_delete(&txn, &c.tenant, &c.target).await?;
    txn.commit().await?;
    Ok(json!({"id": c.target, "deleted": true}))
}
