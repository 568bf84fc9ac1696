//! The image catalog and the node kits behind it.
//!
//! Each image names a kit file in FM's kits directory and its SHA-256; the
//! agent fetches the kit from FM and checks that digest before using it. At
//! start FM publishes the stand-in node kit (built by this workspace) for the
//! seeded versions when the `standin-node` binary is at hand.

use super::App;
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::store::entities::image;
use crate::store::resources as q;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Hex SHA-256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::invalid(format!("can't read {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::internal(format!("can't read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl App {
    /// Adds or replaces a catalog entry: copies the kit into the kits
    /// directory and records its digest.
    pub async fn image_register(
        &self,
        id: &str,
        label: &str,
        version: &str,
        kit: &Path,
        sort_key: i64,
    ) -> Result<()> {
        crate::model::check_id("image", id)?;
        let name = kit
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".tar.gz"))
            .ok_or_else(|| Error::invalid("a kit is a .tar.gz file"))?
            .to_string();
        let dest = self.cfg.kits_dir.join(&name);
        if kit != dest {
            std::fs::create_dir_all(&self.cfg.kits_dir).map_err(Error::internal)?;
            std::fs::copy(kit, &dest)
                .map_err(|e| Error::invalid(format!("can't copy {}: {e}", kit.display())))?;
        }
        let sha = file_sha256(&dest)?;
        q::image_upsert(
            self.store.conn(),
            image::Model {
                id: id.to_string(),
                label: label.to_string(),
                node_version: version.to_string(),
                sort_key,
                created_at: now_ms(),
                kit_file: Some(name),
                kit_sha256: Some(sha),
            },
        )
        .await?;
        Ok(())
    }

    /// Packages the stand-in kit for each seeded version (once) and points
    /// the seeded images at them.
    pub(super) async fn publish_standin_kits(&self) -> Result<()> {
        let Some(bin) = self.cfg.standin_bin.clone().filter(|b| b.exists()) else {
            tracing::warn!(
                "no standin-node binary found: seeded images have no kit and can't be provisioned"
            );
            return Ok(());
        };
        for (i, img) in crate::model::image::seed_catalog().into_iter().enumerate() {
            let file = self
                .cfg
                .kits_dir
                .join(format!("standin-kit-{}.tar.gz", img.node_version));
            if !file.exists() {
                package_kit(&bin, &img.node_version, &self.cfg.kits_dir).await?;
            }
            self.image_register(&img.id, &img.label, &img.node_version, &file, i as i64)
                .await?;
        }
        Ok(())
    }
}

async fn package_kit(bin: &PathBuf, version: &str, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(Error::internal)?;
    let o = tokio::process::Command::new(bin)
        .args(["package", "--version", version, "--out"])
        .arg(out)
        .output()
        .await
        .map_err(|e| Error::internal(format!("can't run {}: {e}", bin.display())))?;
    if !o.status.success() {
        return Err(Error::internal(format!(
            "packaging the stand-in kit failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    Ok(())
}
