//! `standin-node package`: builds a reproducible stand-in node kit
//! `standin-kit-V.tar.gz` holding `installer.sh`, `bin/standin-node` (a copy
//! of the running executable), `VERSION` and optionally `NEVER_HEALTHY`.
//!
//! The archive is made with the system `tar` with fixed names order, mtime,
//! owner and permissions and `gzip -n`, so the same binary and version give
//! the same bytes (and SHA-256).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Context, Fail, Outcome};
use crate::version::Version;

/// Name of the marker file that makes every node installed from the kit
/// report unhealthy (a test aid).
pub const NEVER_HEALTHY: &str = "NEVER_HEALTHY";

/// The kit's `installer.sh`: a shim handing over to `bin/standin-node install`
/// with the kit directory.
pub const INSTALLER_SH: &str = r#"#!/bin/sh
# Installer of the stand-in node kit. This is NOT Dataiku DSS: the project
# ships this small stand-in program with the same command-line contract as the
# real node installer, for the agent and the tests.
#
# Usage: installer.sh -d DATA_DIR -p PORT [-t NODE_TYPE] [-l LICENSE_FILE]
#        installer.sh -d DATA_DIR -u [-y]
KIT_DIR=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
exec "$KIT_DIR/bin/standin-node" install --kit-dir "$KIT_DIR" "$@"
"#;

/// What `package` prints as its JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct PackageResult {
    /// Absolute path of the archive.
    pub file: String,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    /// Version of the kit.
    pub version: String,
}

/// Builds the kit for `version` into `out_dir`.
pub fn package(version: &str, out_dir: &Path, never_healthy: bool) -> Outcome<PackageResult> {
    let version: Version = version.parse().context(|| "bad --version".to_string())?;
    let v = version.as_str();
    fs::create_dir_all(out_dir).context(|| format!("cannot create {}", out_dir.display()))?;
    let out_dir =
        fs::canonicalize(out_dir).context(|| format!("cannot resolve {}", out_dir.display()))?;
    let file_name = if never_healthy {
        format!("standin-kit-{v}-never-healthy.tar.gz")
    } else {
        format!("standin-kit-{v}.tar.gz")
    };
    let out_file = out_dir.join(&file_name);

    let staging = tempfile::Builder::new()
        .prefix("standin-kit-staging-")
        .tempdir()
        .context(|| "cannot create a staging directory".to_string())?;
    let top = format!("standin-kit-{v}");
    stage_kit(&staging.path().join(&top), v, never_healthy)?;

    let tmp_out = tempfile::Builder::new()
        .prefix(".standin-kit-")
        .suffix(".tar.gz.tmp")
        .tempfile_in(&out_dir)
        .context(|| format!("cannot create a temporary file in {}", out_dir.display()))?;
    run_tar(staging.path(), &top, tmp_out.path())?;
    set_mode(tmp_out.path(), 0o644)?;
    tmp_out
        .persist(&out_file)
        .map_err(|e| e.error)
        .context(|| format!("cannot write {}", out_file.display()))?;
    let sha256 =
        sha256_file(&out_file).context(|| format!("cannot read {}", out_file.display()))?;
    Ok(PackageResult {
        file: out_file.to_string_lossy().into_owned(),
        sha256,
        version: v.to_string(),
    })
}

fn stage_kit(top: &Path, version: &str, never_healthy: bool) -> Outcome<()> {
    let bin = top.join("bin");
    fs::create_dir_all(&bin).context(|| format!("cannot create {}", bin.display()))?;
    write_with_mode(&top.join("installer.sh"), INSTALLER_SH.as_bytes(), 0o755)?;
    write_with_mode(&top.join("VERSION"), version.as_bytes(), 0o644)?;
    if never_healthy {
        write_with_mode(
            &top.join(NEVER_HEALTHY),
            b"stand-in node kit built with --never-healthy: /api/health always answers 503\n",
            0o644,
        )?;
    }
    let exe = current_exe()?;
    let target = bin.join("standin-node");
    fs::copy(&exe, &target).context(|| format!("cannot copy {}", exe.display()))?;
    set_mode(&target, 0o755)?;
    set_mode(&bin, 0o755)?;
    set_mode(top, 0o755)
}

/// The running executable; falls back to `/proc/self/exe` when the file
/// behind `current_exe()` is gone (e.g. replaced while running).
fn current_exe() -> Outcome<PathBuf> {
    match std::env::current_exe() {
        Ok(p) if p.is_file() => Ok(p),
        _ => {
            let p = PathBuf::from("/proc/self/exe");
            if p.exists() {
                Ok(p)
            } else {
                Err(Fail::new(
                    "cannot locate the running standin-node executable",
                ))
            }
        }
    }
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Outcome<()> {
    fs::write(path, bytes).context(|| format!("cannot write {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Outcome<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .context(|| format!("cannot set permissions of {}", path.display()))
}

fn run_tar(dir: &Path, top: &str, out: &Path) -> Outcome<()> {
    let output = Command::new("tar")
        .env("LC_ALL", "C")
        .env_remove("GZIP")
        .env_remove("TAR_OPTIONS")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
            "-I",
            "gzip -n",
            "-cf",
        ])
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(top)
        .output()
        .context(|| "cannot run tar".to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(Fail::new(format!(
            "tar failed ({}): {}",
            output.status,
            stderr.trim().replace('\n', "; ")
        )))
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_shim_hands_over_to_the_install_subcommand_with_the_kit_dir() {
        assert!(INSTALLER_SH.starts_with("#!/bin/sh\n"));
        assert!(INSTALLER_SH.contains("install --kit-dir \"$KIT_DIR\" \"$@\""));
        assert!(INSTALLER_SH.contains("NOT Dataiku DSS"));
    }

    #[test]
    fn bad_version_is_refused_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = package("1.x", &out, false).unwrap_err();
        assert!(err.message.contains("bad --version"), "{err}");
        assert!(!out.exists());
    }
}
