//! Backups of the data dir to object storage, their restore and their
//! verification (the format is `fm_backup`'s), and the filesystem freeze
//! for consistent snapshots.

use super::install::compare_versions;
use super::node::{installed_version, is_running};
use super::{Ctx, Outcome, Progress};
use fm_backup::crypt::BackupKey;
use fm_backup::{Location, Manifest, Store};
use fm_proto::agent::{BackupLocation, FreezeFs, RestoreBackup, TakeBackup, VerifyBackup};
use serde_json::json;
use std::cmp::Ordering as CmpOrdering;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn open(loc: &Option<BackupLocation>, p: &mut Progress) -> Result<Store, String> {
    let loc = loc.as_ref().ok_or("no backup location in the command")?;
    p.add_secret(&loc.secret_access_key);
    p.add_secret(&loc.session_token);
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Location {
        url: loc.url.clone(),
        s3_endpoint: some(&loc.s3_endpoint),
        s3_region: some(&loc.s3_region),
        access_key_id: some(&loc.access_key_id),
        secret_access_key: some(&loc.secret_access_key),
        session_token: some(&loc.session_token),
    }
    .open()
    .map_err(|e| e.0)
}

fn key(hex: &str, p: &mut Progress) -> Result<Option<BackupKey>, String> {
    if hex.is_empty() {
        return Ok(None);
    }
    p.add_secret(hex);
    BackupKey::from_hex(hex).map(Some).map_err(|e| e.0)
}

/// Reports `counter` (bytes) every few seconds while `work` runs.
async fn with_progress<T>(
    p: &mut Progress,
    verb: &str,
    total: Option<u64>,
    counter: Arc<AtomicU64>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tick.tick() => {
                let done = counter.load(Ordering::Relaxed);
                match total.filter(|t| *t > 0) {
                    Some(t) => p.step(
                        format!("{verb} {} of {} MiB", done >> 20, t >> 20),
                        (done * 100 / t).min(99) as u32,
                    ).await,
                    None => p.line(format!("{verb} {} MiB", done >> 20)).await,
                }
            }
        }
    }
}

/// TakeBackup.
pub async fn take(ctx: &Ctx, p: &mut Progress, req: &TakeBackup) -> Outcome {
    let data_dir = &ctx.cfg.data_dir;
    let version = installed_version(data_dir)
        .filter(|v| !v.is_empty())
        .ok_or("the node is not installed: nothing to back up")?;
    let store = open(&req.location, p)?;
    let key = key(&req.key_hex, p)?;
    if is_running(&ctx.cfg).await == Ok(true) {
        p.line("the node is running: files it writes meanwhile may be inconsistent")
            .await;
    }
    let exclusions = if req.exclusions.is_empty() {
        fm_backup::DEFAULT_EXCLUSIONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        req.exclusions.clone()
    };
    p.line(format!(
        "backing up {} (node {version}{}) to {}",
        data_dir.display(),
        if key.is_some() { ", encrypted" } else { "" },
        store.display(&store.object(&ctx.cfg.instance_id, &req.backup_id, ""))
    ))
    .await;
    let opts = fm_backup::TakeOptions {
        instance_id: ctx.cfg.instance_id.clone(),
        backup_id: req.backup_id.clone(),
        node_version: version.clone(),
        exclusions,
        key,
        progress: Default::default(),
    };
    let started = std::time::Instant::now();
    let counter = opts.progress.clone();
    let t = with_progress(
        p,
        "archived",
        None,
        counter,
        fm_backup::take(&store, data_dir, &opts),
    )
    .await
    .map_err(|e| e.0)?;
    let m = &t.manifest;
    let secs = started.elapsed().as_secs_f64();
    p.step(
        format!(
            "backup {} done: {} files, {} MiB of data in a {} MiB archive, {:.1} s",
            m.backup_id,
            m.file_count(),
            m.data_bytes >> 20,
            m.archive_size >> 20,
            secs
        ),
        100,
    )
    .await;
    Ok(json!({
        "manifestSha256": t.manifest_sha256,
        "archiveSize": m.archive_size,
        "archiveSha256": m.archive_sha256,
        "dataBytes": m.data_bytes,
        "files": m.file_count(),
        "nodeVersion": m.node_version,
        "createdAtMs": m.created_at_ms,
        "encrypted": m.encrypted,
    }))
}

/// The store, key and checked manifest of backup `backup_id` of `source`
/// (restore and verify).
async fn open_backup(
    p: &mut Progress,
    loc: &Option<BackupLocation>,
    key_hex: &str,
    source: &str,
    backup_id: &str,
    sha: &str,
) -> Result<(Store, Option<BackupKey>, Manifest), String> {
    let store = open(loc, p)?;
    let key = key(key_hex, p)?;
    let m = fm_backup::restore::read_manifest(&store, source, backup_id, key.as_ref(), Some(sha))
        .await
        .map_err(|e| e.0)?;
    Ok((store, key, m))
}

/// RestoreBackup.
pub async fn restore(ctx: &Ctx, p: &mut Progress, req: &RestoreBackup) -> Outcome {
    let data_dir = &ctx.cfg.data_dir;
    let (store, key, m) = open_backup(
        p,
        &req.location,
        &req.key_hex,
        &req.source_instance_id,
        &req.backup_id,
        &req.manifest_sha256,
    )
    .await?;
    if !req.max_node_version.is_empty()
        && compare_versions(&m.node_version, &req.max_node_version) == CmpOrdering::Greater
    {
        return Err(format!(
            "backup {} was taken on node version {}, newer than this instance's {}: restoring it would downgrade the node; refused",
            m.backup_id, m.node_version, req.max_node_version
        ));
    }
    if is_running(&ctx.cfg).await == Ok(true) {
        p.line("stopping the node before the restore").await;
        super::node::stop(ctx, p).await?;
    }
    p.line(format!(
        "restoring backup {} (node {}, {} files, {} MiB) into {}",
        m.backup_id,
        m.node_version,
        m.file_count(),
        m.data_bytes >> 20,
        data_dir.display()
    ))
    .await;
    // A new instance's data dir (a clone) is made for the node's user: the
    // restored files take the owner of the dir they land in.
    if !data_dir.exists() {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("can't create {}: {e}", data_dir.display()))?;
        crate::nodeuser::give_to_node(&ctx.cfg, data_dir)?;
        if std::fs::create_dir_all(&ctx.cfg.home_dir).is_ok() {
            crate::nodeuser::give_to_node(&ctx.cfg, &ctx.cfg.home_dir)?;
        }
    }
    let counter: Arc<AtomicU64> = Default::default();
    let stats = with_progress(
        p,
        "restored",
        Some(m.data_bytes),
        counter.clone(),
        fm_backup::restore_into(&store, &m, key.as_ref(), data_dir, counter),
    )
    .await
    .map_err(|e| e.0)?;
    if req.port > 0 {
        set_port(data_dir, req.port)?;
    }
    p.step(
        format!(
            "backup {} restored: node {} ({} files checked)",
            m.backup_id, m.node_version, stats.files
        ),
        100,
    )
    .await;
    Ok(json!({
        "backupId": m.backup_id,
        "nodeVersion": m.node_version,
        "files": stats.files,
        "dataBytes": stats.data_bytes,
    }))
}

/// VerifyBackup.
pub async fn verify(ctx: &Ctx, p: &mut Progress, req: &VerifyBackup) -> Outcome {
    let (store, key, m) = open_backup(
        p,
        &req.location,
        &req.key_hex,
        &req.source_instance_id,
        &req.backup_id,
        &req.manifest_sha256,
    )
    .await?;
    let scratch = ctx
        .cfg
        .data_dir
        .join(format!(".fm-verify-{}", req.backup_id));
    p.line(format!(
        "verifying backup {} ({} files) in {}",
        m.backup_id,
        m.file_count(),
        scratch.display()
    ))
    .await;
    let counter: Arc<AtomicU64> = Default::default();
    let stats = with_progress(
        p,
        "extracted",
        Some(m.data_bytes),
        counter.clone(),
        fm_backup::verify(&store, &m, key.as_ref(), &scratch, counter),
    )
    .await
    .map_err(|e| e.0)?;
    p.step(
        format!(
            "backup {} verified: {} entries, {} files match the manifest",
            m.backup_id, stats.entries, stats.files
        ),
        100,
    )
    .await;
    Ok(json!({
        "backupId": m.backup_id,
        "ok": true,
        "files": stats.files,
        "dataBytes": stats.data_bytes,
        "nodeVersion": m.node_version,
    }))
}

/// Rewrites the `port` key of install.ini's `[general]` (or `[server]`)
/// section.
fn set_port(data_dir: &Path, port: u32) -> Result<(), String> {
    let ini = data_dir.join("install.ini");
    let Ok(text) = std::fs::read_to_string(&ini) else {
        return Ok(());
    };
    let mut section = String::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            section = t[1..t.len() - 1].trim().to_owned();
        }
        let is_port = t.split_once('=').is_some_and(|(k, _)| k.trim() == "port");
        if is_port && (section == "general" || section == "server") {
            out.push_str(&format!("port = {port}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    crate::fsutil::write_atomic(&ini, out.as_bytes(), 0o644)
        .map_err(|e| format!("can't write {}: {e}", ini.display()))
}

/// The mount point holding `dir`, if `dir` is on its own filesystem (not
/// the root one: freezing `/` would freeze the agent too).
fn own_mount_point(dir: &Path) -> Result<std::path::PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("can't read /proc/self/mounts: {e}"))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let best = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| dir.starts_with(m))
        .max_by_key(|m| m.len())
        .unwrap_or_else(|| "/".into());
    if best == "/" {
        return Err(format!(
            "{} is on the root filesystem; FREEZE_FS needs the data dir on its own volume (use STOP_NODE)",
            dir.display()
        ));
    }
    Ok(best.into())
}

/// FreezeFs: `fsfreeze -f` on the data dir's filesystem, thawed by itself
/// after `thaw_after_secs` if FM never says ThawFs.
pub async fn freeze(ctx: &Ctx, p: &mut Progress, req: &FreezeFs) -> Outcome {
    let mount = own_mount_point(&ctx.cfg.data_dir)?;
    fsfreeze(&mount, "-f").await?;
    let secs = if req.thaw_after_secs == 0 {
        120
    } else {
        req.thaw_after_secs
    };
    let m = mount.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(secs.into())).await;
        // Already thawed is an error of fsfreeze we don't care about.
        let _ = fsfreeze(&m, "-u").await;
    });
    p.line(format!(
        "{} frozen (thawed by itself in {secs} s at the latest)",
        mount.display()
    ))
    .await;
    Ok(json!({"mountPoint": mount.display().to_string()}))
}

/// ThawFs.
pub async fn thaw(ctx: &Ctx, p: &mut Progress) -> Outcome {
    let mount = own_mount_point(&ctx.cfg.data_dir)?;
    match fsfreeze(&mount, "-u").await {
        Ok(()) => p.line(format!("{} thawed", mount.display())).await,
        Err(e) if e.contains("Invalid argument") => {
            p.line(format!("{} was not frozen", mount.display())).await
        }
        Err(e) => return Err(e),
    }
    Ok(json!({}))
}

async fn fsfreeze(mount: &Path, flag: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("fsfreeze")
        .arg(flag)
        .arg(mount)
        .output()
        .await
        .map_err(|e| format!("can't run fsfreeze: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "fsfreeze {flag} {}: {}",
            mount.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_rewritten_in_its_section_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("install.ini"),
            "[other]\nport = 1\n[general]\nnodetype = design\nport = 10000\n",
        )
        .unwrap();
        set_port(d.path(), 10020).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("install.ini")).unwrap(),
            "[other]\nport = 1\n[general]\nnodetype = design\nport = 10020\n"
        );
    }

    #[test]
    fn freezing_the_root_filesystem_is_refused() {
        let d = tempfile::tempdir().unwrap();
        // A temp dir is on / or on a tmpfs; on / it must be refused.
        if let Err(e) = own_mount_point(d.path()) {
            assert!(e.contains("own volume"), "{e}");
        }
        let e = own_mount_point(Path::new("/")).unwrap_err();
        assert!(e.contains("root filesystem"), "{e}");
    }
}
