//! What several sagas share: the provisioning plan (also a restore's), the
//! steps that install, start and restore a node, wait for an agent or run
//! setup actions, and the helpers steps act through (the instance's
//! placement and runtime, agent commands keyed `<op>:<step>`).

use super::StepCtx;
use crate::cloud::{Placement, VmState};
use crate::crypto::Place;
use crate::error::{Error, OpFailure, Result};
use crate::model::instance::Instance;
use crate::model::template::InstanceTemplate;
use crate::store::entities::instance_runtime;
use crate::store::lifecycle as lq;
use crate::store::resources as q;
use fm_proto::agent::{BackupLocation, Command, command};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// How long a node has to stop before its VM goes anyway.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Setup actions split by the stage the agent runs them in; each entry is
/// (action type, its parameters as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetupPlan {
    pub before_install: Vec<(String, String)>,
    pub after_install: Vec<(String, String)>,
    pub after_dss_startup: Vec<(String, String)>,
}

/// What a provisioning (or a restore) decided in its first step; later
/// steps read it back, so a resumed operation keeps the same ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub vm_id: String,
    pub old_vm_id: Option<String>,
    pub volume_id: String,
    pub old_volume_id: Option<String>,
    pub snapshot_ref: Option<String>,
    pub port: u16,
    pub image_version: String,
    pub kit_file: String,
    pub kit_sha256: String,
    pub node_type: String,
    pub allow_downgrade: bool,
    pub setup: SetupPlan,
    /// A backup to restore into the data dir before the node is installed
    /// (a clone), or by a restore.
    #[serde(default)]
    pub backup: Option<BackupRef>,
}

impl Plan {
    /// Whether this plan's volume is one the provisioning makes (the
    /// instance's first, or one from a snapshot), not one it already had.
    pub fn new_volume(&self) -> bool {
        self.old_volume_id.as_deref() != Some(self.volume_id.as_str())
    }
}

/// A backup by the instance it was taken from and its id, as operations'
/// parameters name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRef {
    #[serde(alias = "instance_id")]
    pub instance_id: String,
    #[serde(alias = "backup_id")]
    pub backup_id: String,
}

/// The output of steps that report nothing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Nothing {}

/// The output of a step that deleted an object: the operation's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

impl Deleted {
    pub fn of(id: &str) -> Deleted {
        Deleted {
            id: id.to_string(),
            deleted: true,
        }
    }
}

/// The output of a step that handled a number of objects.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Counted {
    pub count: usize,
}

/// The output of a step that names a VM (booted or started).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmRef {
    pub vm_id: String,
}

/// What a quiesce step paused, for the step (or undo) that resumes it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Quiesced {
    #[serde(default)]
    pub stopped: bool,
    #[serde(default)]
    pub frozen: bool,
}

/// An operation failure of kind `kind`.
pub fn failed(kind: OpFailure, message: impl Into<String>) -> Error {
    Error::op_failed(kind, message)
}

/// Runs agent command `kind` as step `step` of this operation (command id
/// `<op>:<step>`) and waits for its output up to `timeout`. The agent is
/// given the same timeout: past it, it fails the command and goes on with
/// the next one rather than working on for an FM that gave up.
pub async fn run_command_within(
    c: &StepCtx,
    step: &str,
    kind: command::Kind,
    timeout: Duration,
) -> Result<Value> {
    let cmd = Command {
        command_id: format!("{}:{step}", c.op_id),
        kind: Some(kind),
        // Whole seconds, rounded up, at least one (0 means "no timeout set").
        timeout_secs: u32::try_from(timeout.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1),
    };
    c.svc
        .hub
        .run_ok(&c.target, cmd, Some(&c.op_id), timeout)
        .await
}

/// [`run_command_within`] the configured command timeout.
pub async fn run_command(c: &StepCtx, step: &str, kind: command::Kind) -> Result<Value> {
    run_command_within(c, step, kind, c.svc.lc.command_timeout).await
}

/// The instance and its template.
pub async fn instance_and_template(c: &StepCtx) -> Result<(Instance, InstanceTemplate)> {
    let inst: Instance = c.store.instance_doc(&c.tenant, &c.target).await?;
    let tpl: InstanceTemplate = c
        .store
        .template_doc(&c.tenant, &inst.instance_settings_template_id)
        .await?;
    Ok((inst, tpl))
}

/// Where the instance's resources live (secrets opened for this call only).
pub async fn placement(c: &StepCtx) -> Result<Placement> {
    crate::ops::placement::for_instance(&c.svc, &c.tenant, &c.target).await
}

/// The instance's runtime row (made if missing).
pub async fn runtime(c: &StepCtx) -> Result<instance_runtime::Model> {
    lq::runtime_ensure(c.store.conn(), &c.tenant, &c.target).await
}

/// The instance's image, its kit file and the kit's SHA-256; an image
/// without a kit fails the operation.
pub async fn image_kit(
    c: &StepCtx,
    inst: &Instance,
) -> Result<(crate::store::entities::image::Model, String, String)> {
    let image = q::image_get(c.store.conn(), &inst.image_id)
        .await?
        .ok_or_else(|| Error::invalid(format!("image '{}' does not exist", inst.image_id)))?;
    match (image.kit_file.clone(), image.kit_sha256.clone()) {
        (Some(f), Some(h)) => Ok((image, f, h)),
        _ => Err(failed(
            OpFailure::ImageWithoutKit,
            format!("image '{}' has no node kit to install", image.id),
        )),
    }
}

pub fn node_type(inst: &Instance) -> String {
    inst.dss_node_type.as_str().to_string()
}

pub async fn require_vm(c: &StepCtx) -> Result<String> {
    runtime(c)
        .await?
        .vm_id
        .ok_or_else(|| Error::conflict(format!("instance '{}' is not provisioned", c.target)))
}

/// The instance's VM must run and its agent answer (within the connect
/// timeout): a command to a stopped VM fails now, not after the command
/// timeout.
pub async fn require_agent(c: &StepCtx) -> Result<String> {
    let vm = require_vm(c).await?;
    if c.svc.cloud.vm_state(&placement(c).await?, &vm).await? != VmState::Running {
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
pub async fn stop_node_on(c: &StepCtx, vm: &str, step: &str) {
    if c.svc.hub.connected_vm(&c.target).as_deref() != Some(vm) {
        c.log(format!(
            "the agent on VM {vm} is not connected; not stopping the node first"
        ))
        .await;
        return;
    }
    let stop = command::Kind::Stop(Default::default());
    if let Err(e) = run_command_within(c, step, stop, NODE_STOP_TIMEOUT).await {
        c.log(format!(
            "stopping the node failed ({}); going on",
            e.message()
        ))
        .await;
    }
}

/// Stops the node (command id `<op>:<step>`); returns whether it was
/// running. The agent journals its answer, so a step that runs again learns
/// what the first run found, not the state the first run left.
pub async fn stop_for(c: &StepCtx, step: &str) -> Result<bool> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Stopped {
        /// Agents before this field don't say; then assume it ran.
        was_running: Option<bool>,
    }
    let out = run_command(c, step, command::Kind::Stop(Default::default())).await?;
    let s: Stopped = serde_json::from_value(out).unwrap_or(Stopped { was_running: None });
    Ok(s.was_running.unwrap_or(true))
}

/// Starts the node (command id `<op>:<step>`), waiting for its health.
pub async fn start_for(c: &StepCtx, step: &str) -> Result<()> {
    run_command(
        c,
        step,
        command::Kind::Start(fm_proto::agent::StartNode {
            health_timeout_secs: c.svc.lc.health_timeout_secs,
        }),
    )
    .await?;
    Ok(())
}

/// Undoes what a quiesce step did (`q`, its output): thaws the filesystem
/// or starts the node again.
pub async fn resume(c: &StepCtx, q: Quiesced, step: &str) -> Result<()> {
    if q.frozen {
        run_command(c, step, command::Kind::ThawFs(Default::default())).await?;
        c.log("data dir filesystem thawed").await;
    }
    if q.stopped {
        start_for(c, step).await?;
        c.log("node started again").await;
    }
    Ok(())
}

// ------------------------------------------------------------ shared steps

/// Resumes what the saga's `quiesce-node` step paused: the step after the
/// work, and that step's undo when the work failed.
pub async fn resume_quiesced(c: StepCtx) -> Result<Nothing> {
    let q: Quiesced = c.output("quiesce-node")?;
    resume(&c, q, "resume-node").await?;
    Ok(Nothing {})
}

/// Waits for the agent of the VM that step `vm_step` booted or started
/// (its certificate names the VM, so an old VM's agent can't stand in).
pub async fn agent_connected(c: &StepCtx, vm_step: &str) -> Result<Nothing> {
    let vm: VmRef = c.output(vm_step)?;
    c.svc
        .hub
        .wait_connected(&c.target, &vm.vm_id, c.svc.lc.agent_connect_timeout)
        .await?;
    c.log("agent connected").await;
    Ok(Nothing {})
}

/// What installing the node reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub node_version: String,
}

/// The parts of the agent's Install answer FM keeps.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstallAnswer {
    admin_api_key: Option<String>,
    initial_password: Option<String>,
}

/// Installs (or upgrades) the node the plan names.
pub async fn install_node(c: StepCtx) -> Result<Installed> {
    let p: Plan = c.output("plan")?;
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
    let answer: InstallAnswer = serde_json::from_value(out).unwrap_or_default();
    let rt = runtime(&c).await?;
    let admin_key = answer
        .admin_api_key
        .map(|k| {
            c.svc
                .secrets
                .seal(&Place::runtime(&c.target, "admin_api_key"), &k)
        })
        .transpose()?;
    let initial_password = match (rt.initial_password, answer.initial_password) {
        (None, Some(pw)) => Some(
            c.svc
                .secrets
                .seal(&Place::runtime(&c.target, "initial_password"), &pw)?,
        ),
        _ => None,
    };
    lq::runtime_mark_installed(
        c.store.conn(),
        &c.target,
        &p.image_version,
        admin_key,
        initial_password,
    )
    .await?;
    Ok(Installed {
        node_version: p.image_version,
    })
}

pub async fn start_node(c: StepCtx) -> Result<Nothing> {
    start_for(&c, "start-node").await?;
    Ok(Nothing {})
}

/// What a restore step reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub restored: bool,
    #[serde(default)]
    pub backup_id: Option<String>,
    #[serde(default)]
    pub node_version: Option<String>,
}

/// Restores the plan's backup (if any) into the data dir: the agent checks
/// the manifest's hash, refuses a backup newer than the image, extracts and
/// checks every file beside the current data, and swaps only then.
pub async fn restore_data(c: StepCtx) -> Result<Restored> {
    let p: Plan = c.output("plan")?;
    let Some(r) = p.backup else {
        return Ok(Restored {
            restored: false,
            backup_id: None,
            node_version: None,
        });
    };
    let b = lq::backup_get(c.store.conn(), &r.instance_id, &r.backup_id)
        .await?
        .ok_or_else(|| Error::not_found("backup", &r.backup_id))?;
    let loc = agent_reads(&c, &b).await?;
    let out = run_command(
        &c,
        "restore-backup",
        command::Kind::RestoreBackup(fm_proto::agent::RestoreBackup {
            location: Some(proto_location(&loc)),
            source_instance_id: b.instance_id.clone(),
            backup_id: b.id.clone(),
            manifest_sha256: b.manifest_sha256.clone(),
            key_hex: backup_key_hex(&c, b.encrypted, &b.id),
            max_node_version: p.image_version.clone(),
            port: u32::from(p.port),
        }),
    )
    .await
    .map_err(|e| match e {
        Error::OperationFailed { message, .. } => failed(OpFailure::BackupRestoreFailed, message),
        e => e,
    })?;
    c.log(format!(
        "backup {} of {} restored (node {})",
        b.id, b.instance_id, b.node_version
    ))
    .await;
    Ok(Restored {
        restored: true,
        backup_id: Some(b.id),
        node_version: out
            .get("nodeVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

// ------------------------------------------------------------ backups

/// The configured backup location, at `url` if given (where an older
/// backup was taken), with the configured credentials.
pub fn backup_location(
    lc: &crate::ops::LifecycleConfig,
    url: Option<&str>,
) -> Result<fm_backup::Location> {
    let mut l = lc.backups.clone().ok_or_else(|| {
        Error::conflict(
            "no backup location is configured: set FM_BACKUP_URL (file:///DIR or s3://BUCKET/PREFIX) or [backups] url",
        )
    })?;
    if let Some(u) = url {
        l.url = u.to_owned();
    }
    Ok(l)
}

/// The location an agent reads backup `b` from (restore, clone, verify):
/// where it was taken, with credentials for that backup only when FM
/// scopes them.
pub async fn agent_reads(
    c: &StepCtx,
    b: &crate::store::entities::backup::Model,
) -> Result<fm_backup::Location> {
    crate::ops::backup_access::for_agent(
        backup_location(&c.svc.lc, Some(&b.location_url))?,
        c.svc.lc.backup_scoping.as_ref(),
        &b.instance_id,
        &b.id,
        crate::ops::backup_access::Access::Read,
    )
    .await
}

pub fn proto_location(l: &fm_backup::Location) -> BackupLocation {
    BackupLocation {
        url: l.url.clone(),
        s3_endpoint: l.s3_endpoint.clone().unwrap_or_default(),
        s3_region: l.s3_region.clone().unwrap_or_default(),
        access_key_id: l.access_key_id.clone().unwrap_or_default(),
        secret_access_key: l.secret_access_key.clone().unwrap_or_default(),
        session_token: l.session_token.clone().unwrap_or_default(),
    }
}

/// The key of backup `backup_id`: `HMAC(FM's key, "backup-key:<backup>")`,
/// so a restored FM can still open every backup it ever took.
pub fn backup_key_hex(c: &StepCtx, encrypted: bool, backup_id: &str) -> String {
    if encrypted {
        c.svc.secrets.derive(&format!("backup-key:{backup_id}"))
    } else {
        String::new()
    }
}

/// The backup `r` of this tenant, restorable on a node of version
/// `target_version`: an older backup is upgraded after the restore, a
/// newer one refused.
pub async fn check_restorable(c: &StepCtx, r: &BackupRef, target_version: &str) -> Result<()> {
    let row = c
        .store
        .backup_of_tenant(&c.tenant, &r.instance_id, &r.backup_id)
        .await?;
    crate::model::image::check_restorable_version(&row.id, &row.node_version, target_version)
        .map_err(|m| failed(OpFailure::BackupTooNew, m))
}
