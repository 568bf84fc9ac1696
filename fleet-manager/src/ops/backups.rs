//! Agent backups as sagas: take (node stopped per the instance's policy,
//! started again whatever happens), delete, restore onto the instance (node
//! stopped, data swapped by the agent only once the whole backup checked
//! out, upgraded by the kit if the backup is older, started), verify.
//! A clone is a provisioning whose `restore-backup` step fills the new data
//! dir (see `lifecycle.rs`).
//!
//! FM keeps the catalogue (one row per complete backup) and the key:
//! `HMAC(FM's key, "backup-key:<backup>")`, so a restored FM can still open
//! every backup it ever took.

use super::lifecycle::{
    self as lc, BackupRef, at, failed, install_node, instance_and_template, read_plan,
    require_agent, run_command, runtime, start_node, stop_for,
};
use super::sagas::{Saga, Step, StepCtx, step};
use crate::error::{Error, Result};
use crate::model::instance::BackupConsistency;
use crate::model::now_ms;
use crate::store::entities::backup;
use crate::store::lifecycle as lq;
use fm_proto::agent::{BackupLocation, command};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};

pub const BACKUP: &str = "BACKUP_INSTANCE";
pub const DELETE_BACKUP: &str = "DELETE_BACKUP";
pub const RESTORE_BACKUP: &str = "RESTORE_BACKUP";
pub const VERIFY_BACKUP: &str = "VERIFY_BACKUP";

pub fn sagas() -> Vec<Saga> {
    vec![
        Saga {
            kind: BACKUP,
            steps: vec![
                step!("quiesce-node", quiesce, undo resume_quietly),
                step!("take-backup", take_backup),
                step!("resume-node", resume),
            ],
        },
        Saga {
            kind: DELETE_BACKUP,
            steps: vec![step!("delete-backup", delete_backup)],
        },
        Saga {
            kind: RESTORE_BACKUP,
            steps: vec![
                step!("plan", lc::plan_restore),
                step!("stop-node", stop_for_restore, undo restart_after_failure),
                step!("restore-backup", restore_data),
                step!("install-node", install_node),
                step!("start-node", start_node),
                step!("finish", finish_restore),
            ],
        },
        Saga {
            kind: VERIFY_BACKUP,
            steps: vec![step!("verify-backup", verify_backup)],
        },
    ]
}

/// The JSON of a backup (REST and futures).
pub fn backup_view(b: &backup::Model) -> Value {
    json!({
        "id": b.id,
        "instanceId": b.instance_id,
        "location": b.location_url,
        "nodeVersion": b.node_version,
        "creationDate": b.created_at,
        "archiveSizeBytes": b.archive_bytes,
        "dataSizeBytes": b.data_bytes,
        "files": b.files,
        "manifestSha256": b.manifest_sha256,
        "encrypted": b.encrypted,
        "automated": b.automated,
        "reason": b.reason,
        "lastVerification": b.verified_at.map(|at| json!({
            "date": at,
            "ok": b.verify_ok,
            "message": b.verify_message,
        })),
    })
}

/// The configured location, at `url` if given (where an older backup was
/// taken), with the configured credentials.
pub fn location(lc: &super::LifecycleConfig, url: Option<&str>) -> Result<fm_backup::Location> {
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

fn proto_location(l: &fm_backup::Location) -> BackupLocation {
    BackupLocation {
        url: l.url.clone(),
        s3_endpoint: l.s3_endpoint.clone().unwrap_or_default(),
        s3_region: l.s3_region.clone().unwrap_or_default(),
        access_key_id: l.access_key_id.clone().unwrap_or_default(),
        secret_access_key: l.secret_access_key.clone().unwrap_or_default(),
    }
}

fn key_hex(c: &StepCtx, encrypted: bool, backup_id: &str) -> String {
    if encrypted {
        c.svc.secrets.derive(&format!("backup-key:{backup_id}"))
    } else {
        String::new()
    }
}

fn param<'a>(c: &'a StepCtx, k: &str) -> &'a str {
    c.params.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The backup `b` (`{"instanceId", "backupId"}`) of this tenant, restorable
/// on a node of version `target_version`: an older backup is upgraded
/// after the restore, a newer one refused.
pub(super) async fn check_restorable(
    c: &StepCtx,
    b: &Value,
    target_version: &str,
) -> Result<BackupRef> {
    let r: BackupRef = serde_json::from_value(json!({
        "instance_id": b.get("instanceId"),
        "backup_id": b.get("backupId"),
    }))
    .map_err(|_| Error::internal("a backup reference without instanceId or backupId"))?;
    let row = lq::backup_get(c.store.conn(), &r.instance_id, &r.backup_id)
        .await?
        .filter(|row| row.tenant_id == c.tenant)
        .ok_or_else(|| Error::not_found("backup", &r.backup_id))?;
    if lc::version_cmp(&row.node_version, target_version).is_gt() {
        return Err(failed(
            "BackupTooNew",
            format!(
                "backup {} was taken on node version {}, newer than this instance's image ({target_version}): restoring it would downgrade the node. Use an image of version {} or later",
                row.id, row.node_version, row.node_version
            ),
        ));
    }
    Ok(r)
}

// ------------------------------------------------------------ take

/// Stops the node while it is archived (policy `STOP_NODE`), if it runs.
async fn quiesce(c: StepCtx) -> Result<Value> {
    require_agent(&c).await?;
    location(&c.svc.lc, None)?;
    let (inst, _) = instance_and_template(&c).await?;
    let running = runtime(&c)
        .await?
        .node_state
        .is_some_and(|s| matches!(s.as_str(), "running" | "starting" | "unhealthy"));
    if inst.backup_policy.consistency == BackupConsistency::None || !running {
        return Ok(json!({"stopped": false}));
    }
    stop_for(&c, "quiesce-node").await?;
    c.log("node stopped for a consistent backup").await;
    Ok(json!({"stopped": true}))
}

async fn resume_quietly(c: StepCtx) -> Result<Value> {
    lc::undo_quiesce(&c, "quiesce-node", "resume-node").await?;
    Ok(json!({}))
}

async fn resume(c: StepCtx) -> Result<Value> {
    lc::undo_quiesce(&c, "quiesce-node", "resume-node").await?;
    Ok(c.outputs.get("take-backup").cloned().unwrap_or(json!({})))
}

async fn take_backup(c: StepCtx) -> Result<Value> {
    let id = param(&c, "backupId").to_owned();
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &id).await? {
        return Ok(backup_view(&b));
    }
    let (inst, _) = instance_and_template(&c).await?;
    let policy = &inst.backup_policy;
    let loc = location(&c.svc.lc, None)?;
    let out = match run_command(
        &c,
        "take-backup",
        command::Kind::TakeBackup(fm_proto::agent::TakeBackup {
            location: Some(proto_location(&loc)),
            backup_id: id.clone(),
            exclusions: policy.exclusions.clone(),
            key_hex: key_hex(&c, policy.encrypt, &id),
        }),
    )
    .await
    {
        Ok(out) => out,
        Err(e) => {
            // What an interrupted upload left is not a backup: remove it.
            if let Ok(store) = loc.open()
                && store.delete_backup(&c.target, &id).await.is_ok()
            {
                c.log("removed what the failed backup had uploaded").await;
            }
            return Err(e);
        }
    };
    let n = |k: &str| out.get(k).and_then(Value::as_i64).unwrap_or(0);
    let s = |k: &str| {
        out.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let m = backup::ActiveModel {
        id: Set(id),
        tenant_id: Set(c.tenant.clone()),
        instance_id: Set(c.target.clone()),
        location_url: Set(loc.url.clone()),
        node_version: Set(s("nodeVersion")),
        created_at: Set(out
            .get("createdAtMs")
            .and_then(Value::as_i64)
            .unwrap_or_else(now_ms)),
        archive_bytes: Set(n("archiveSize")),
        data_bytes: Set(n("dataBytes")),
        files: Set(n("files")),
        manifest_sha256: Set(s("manifestSha256")),
        encrypted: Set(out
            .get("encrypted")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        automated: Set(c
            .params
            .get("automated")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        reason: Set(c
            .params
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned)),
        verified_at: Set(None),
        verify_ok: Set(None),
        verify_message: Set(None),
    }
    .insert(c.store.conn())
    .await?;
    Ok(backup_view(&m))
}

// ------------------------------------------------------------ delete

async fn delete_backup(c: StepCtx) -> Result<Value> {
    let id = param(&c, "backupId").to_owned();
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &id).await? {
        remove(&c, &b).await?;
    }
    Ok(json!({"id": id, "deleted": true}))
}

async fn remove(c: &StepCtx, b: &backup::Model) -> Result<()> {
    let store = location(&c.svc.lc, Some(&b.location_url))?
        .open()
        .map_err(|e| failed("BackupStorageError", e.0))?;
    store
        .delete_backup(&b.instance_id, &b.id)
        .await
        .map_err(|e| failed("BackupStorageError", e.0))?;
    lq::backup_delete(c.store.conn(), &b.id).await?;
    c.log(format!("backup {} deleted", b.id)).await;
    Ok(())
}

/// Deletes every backup of the instance (it is being deleted).
pub(super) async fn delete_all_backups(c: StepCtx) -> Result<Value> {
    let all = lq::backup_list(c.store.conn(), &c.target).await?;
    for b in &all {
        remove(&c, b).await?;
    }
    Ok(json!({"backups": all.len()}))
}

// ------------------------------------------------------------ restore

async fn stop_for_restore(c: StepCtx) -> Result<Value> {
    stop_for(&c, "stop-node").await?;
    Ok(json!({"stopped": true}))
}

async fn restart_after_failure(c: StepCtx) -> Result<Value> {
    lc::undo_quiesce(&c, "stop-node", "restart-node").await?;
    Ok(json!({}))
}

/// Restores the plan's backup (if any) into the data dir: the agent checks
/// the manifest's hash, refuses a backup newer than the image, extracts and
/// checks every file beside the current data, and swaps only then.
pub(super) async fn restore_data(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    let Some(r) = p.backup else {
        return Ok(json!({"restored": false}));
    };
    let b = lq::backup_get(c.store.conn(), &r.instance_id, &r.backup_id)
        .await?
        .ok_or_else(|| Error::not_found("backup", &r.backup_id))?;
    let loc = location(&c.svc.lc, Some(&b.location_url))?;
    let out = run_command(
        &c,
        "restore-backup",
        command::Kind::RestoreBackup(fm_proto::agent::RestoreBackup {
            location: Some(proto_location(&loc)),
            source_instance_id: b.instance_id.clone(),
            backup_id: b.id.clone(),
            manifest_sha256: b.manifest_sha256.clone(),
            key_hex: key_hex(&c, b.encrypted, &b.id),
            max_node_version: p.image_version.clone(),
            port: u32::from(p.port),
        }),
    )
    .await
    .map_err(|e| match e {
        Error::OperationFailed { message, .. } => failed("BackupRestoreFailed", message),
        e => e,
    })?;
    c.log(format!(
        "backup {} of {} restored (node {})",
        b.id, b.instance_id, b.node_version
    ))
    .await;
    Ok(json!({"restored": true, "backupId": b.id, "nodeVersion": out.get("nodeVersion")}))
}

async fn finish_restore(c: StepCtx) -> Result<Value> {
    let p = read_plan(&c)?;
    let url = c
        .svc
        .cloud
        .public_url(
            &at(&c).await?,
            &runtime(&c).await?.vm_id.unwrap_or_default(),
            p.port,
        )
        .await?;
    Ok(json!({
        "instanceId": c.target,
        "backupId": p.backup.map(|b| b.backup_id),
        "nodeVersion": p.image_version,
        "publicURL": url,
    }))
}

// ------------------------------------------------------------ verify

async fn verify_backup(c: StepCtx) -> Result<Value> {
    require_agent(&c).await?;
    let id = param(&c, "backupId").to_owned();
    let source = match param(&c, "sourceInstanceId") {
        "" => c.target.clone(),
        s => s.to_owned(),
    };
    let b = lq::backup_get(c.store.conn(), &source, &id)
        .await?
        .ok_or_else(|| Error::not_found("backup", &id))?;
    let loc = location(&c.svc.lc, Some(&b.location_url))?;
    let r = run_command(
        &c,
        "verify-backup",
        command::Kind::VerifyBackup(fm_proto::agent::VerifyBackup {
            location: Some(proto_location(&loc)),
            source_instance_id: b.instance_id.clone(),
            backup_id: b.id.clone(),
            manifest_sha256: b.manifest_sha256.clone(),
            key_hex: key_hex(&c, b.encrypted, &b.id),
        }),
    )
    .await;
    let message = match r {
        Ok(_) => None,
        Err(Error::OperationFailed { message, .. }) => Some(message),
        // FM's or the agent's trouble, not the backup's: nothing recorded.
        Err(e) => return Err(e),
    };
    let ok = message.is_none();
    let mut row: backup::ActiveModel = b.into();
    row.verified_at = Set(Some(now_ms()));
    row.verify_ok = Set(Some(ok));
    row.verify_message = Set(message.clone());
    let row = backup::Entity::update(row).exec(c.store.conn()).await?;
    match message {
        None => Ok(backup_view(&row)),
        Some(m) => Err(failed("BackupVerificationFailed", m)),
    }
}
