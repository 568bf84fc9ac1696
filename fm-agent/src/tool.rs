//! `fm-agent backup take|restore|verify`: the agent's backup code run by
//! hand, without FM (a node rebuilt while FM is away, a restore checked on
//! another machine, the throughput benchmark). Storage credentials come
//! from the environment (`AWS_ACCESS_KEY_ID`, ... or the instance profile).

use fm_backup::crypt::BackupKey;
use fm_backup::{Location, Store};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Tool {
    /// Backups of a data dir in object storage.
    #[command(subcommand)]
    Backup(BackupTool),
}

#[derive(Debug, clap::Args)]
pub struct Where {
    /// `file:///DIR` or `s3://BUCKET[/PREFIX]`.
    #[arg(long)]
    url: String,
    #[arg(long)]
    s3_endpoint: Option<String>,
    #[arg(long)]
    s3_region: Option<String>,
    /// The instance the backup belongs to.
    #[arg(long)]
    instance: String,
    #[arg(long)]
    backup: String,
    /// A file holding the 64-hex-digit key of an encrypted backup.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum BackupTool {
    /// Archive a data dir.
    Take {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        data_dir: PathBuf,
        /// Paths relative to the data dir whose content is skipped
        /// (default: the node's guide's list).
        #[arg(long = "exclude")]
        exclusions: Vec<String>,
        #[arg(long, default_value = "")]
        node_version: String,
    },
    /// Replace a data dir with a backup (checked first; the current data is
    /// kept if anything is wrong).
    Restore {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        data_dir: PathBuf,
        /// The manifest's SHA-256 as recorded when the backup was taken.
        #[arg(long)]
        manifest_sha256: Option<String>,
    },
    /// Extract into a scratch dir and compare with the manifest.
    Verify {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        scratch: PathBuf,
        #[arg(long)]
        manifest_sha256: Option<String>,
    },
}

fn open(w: &Where) -> Result<(Store, Option<BackupKey>), String> {
    let store = Location {
        url: w.url.clone(),
        s3_endpoint: w.s3_endpoint.clone(),
        s3_region: w.s3_region.clone(),
        access_key_id: None,
        secret_access_key: None,
        session_token: None,
    }
    .open()
    .map_err(|e| e.0)?;
    let key = match &w.key_file {
        Some(p) => {
            let hex = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(BackupKey::from_hex(&hex).map_err(|e| e.0)?)
        }
        None => None,
    };
    Ok((store, key))
}

async fn open_manifest(
    w: &Where,
    sha: Option<&str>,
) -> Result<(Store, Option<BackupKey>, fm_backup::Manifest), String> {
    let (store, key) = open(w)?;
    let m = fm_backup::restore::read_manifest(&store, &w.instance, &w.backup, key.as_ref(), sha)
        .await
        .map_err(|e| e.0)?;
    Ok((store, key, m))
}

async fn run_tool(t: Tool) -> Result<serde_json::Value, String> {
    let Tool::Backup(b) = t;
    match b {
        BackupTool::Take {
            at,
            data_dir,
            exclusions,
            node_version,
        } => {
            let (store, key) = open(&at)?;
            let opts = fm_backup::TakeOptions {
                instance_id: at.instance.clone(),
                backup_id: at.backup.clone(),
                node_version,
                exclusions: if exclusions.is_empty() {
                    fm_backup::DEFAULT_EXCLUSIONS
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                } else {
                    exclusions
                },
                key,
                progress: Default::default(),
            };
            let t = fm_backup::take(&store, &data_dir, &opts)
                .await
                .map_err(|e| e.0)?;
            Ok(serde_json::json!({
                "manifestSha256": t.manifest_sha256,
                "files": t.manifest.file_count(),
                "dataBytes": t.manifest.data_bytes,
                "archiveSize": t.manifest.archive_size,
            }))
        }
        BackupTool::Restore {
            at,
            data_dir,
            manifest_sha256,
        } => {
            let (store, key, m) = open_manifest(&at, manifest_sha256.as_deref()).await?;
            let s =
                fm_backup::restore_into(&store, &m, key.as_ref(), &data_dir, Default::default())
                    .await
                    .map_err(|e| e.0)?;
            Ok(
                serde_json::json!({"files": s.files, "dataBytes": s.data_bytes, "nodeVersion": m.node_version}),
            )
        }
        BackupTool::Verify {
            at,
            scratch,
            manifest_sha256,
        } => {
            let (store, key, m) = open_manifest(&at, manifest_sha256.as_deref()).await?;
            let s = fm_backup::verify(&store, &m, key.as_ref(), &scratch, Default::default())
                .await
                .map_err(|e| e.0)?;
            Ok(serde_json::json!({"ok": true, "files": s.files, "dataBytes": s.data_bytes}))
        }
    }
}

/// Runs a tool command on the agent's own runtime settings; prints its
/// JSON result, or the error on stderr (exit 1).
pub fn run(t: Tool) -> ExitCode {
    let Some(rt) = crate::runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(run_tool(t)) {
        Ok(v) => {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fm-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
