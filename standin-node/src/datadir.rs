//! Layout of a stand-in data dir and helpers to read its metadata files
//! (`dss-version.json`, `install.ini`, `bin/VERSION`, `bin/env-site.sh`, ...)
//! and to write files atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Fail, Outcome};
use crate::settings;
use crate::version::Version;

/// Node types accepted by the installer (`-t`).
pub const NODE_TYPES: [&str; 5] = ["design", "automation", "deployer", "govern", "api"];

/// Contents of `dss-version.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionFile {
    /// Version of the software that last wrote the data dir.
    pub product_version: String,
    /// Node type chosen at install time.
    #[serde(default = "default_node_type")]
    pub node_type: String,
}

fn default_node_type() -> String {
    "design".to_string()
}

/// A stand-in data dir (the directory given with `-d` to the installer).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Wraps `root`, made absolute against the current directory if relative.
    pub fn new(root: &Path) -> Outcome<Self> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .context(|| "cannot determine the current directory".to_string())?
                .join(root)
        };
        // Drop `.` components so reported paths stay tidy.
        let root = root
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        Ok(Self { root })
    }

    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the data dir.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `dss-version.json`.
    pub fn version_file(&self) -> PathBuf {
        self.join("dss-version.json")
    }

    /// `bin/VERSION`: the version of the installed stand-in binary.
    pub fn binary_version_file(&self) -> PathBuf {
        self.join("bin/VERSION")
    }

    /// `run/node.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.join("run/node.pid")
    }

    /// `run/node.log`.
    pub fn log_file(&self) -> PathBuf {
        self.join("run/node.log")
    }

    /// True if `dss-version.json` exists (the data dir is installed).
    pub fn is_installed(&self) -> bool {
        self.version_file().exists()
    }

    /// Reads `dss-version.json`; a missing file means "not installed".
    pub fn read_version_file(&self) -> Outcome<VersionFile> {
        let path = self.version_file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Fail::new(format!(
                    "{} is not an installed stand-in data dir (no dss-version.json)",
                    self.root.display()
                )));
            }
            Err(e) => return Err(Fail::new(format!("cannot read {}: {e}", path.display()))),
        };
        serde_json::from_str(&text).context(|| format!("cannot parse {}", path.display()))
    }

    /// The version recorded in `dss-version.json`.
    pub fn installed_version(&self) -> Outcome<Version> {
        let file = self.read_version_file()?;
        file.product_version
            .parse()
            .context(|| format!("bad product_version in {}", self.version_file().display()))
    }

    /// The version of the installed binary (`bin/VERSION`).
    pub fn binary_version(&self) -> Outcome<Version> {
        let path = self.binary_version_file();
        let text =
            fs::read_to_string(&path).context(|| format!("cannot read {}", path.display()))?;
        text.parse()
            .context(|| format!("bad version in {}", path.display()))
    }

    /// The HTTP port from `install.ini` (`[general] port = P`).
    pub fn port(&self) -> Outcome<u16> {
        let path = self.join("install.ini");
        let text =
            fs::read_to_string(&path).context(|| format!("cannot read {}", path.display()))?;
        let raw = settings::ini_get(&text, "general", "port")
            .ok_or_else(|| Fail::new(format!("no [general] port in {}", path.display())))?;
        match raw.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(Fail::new(format!("bad port {raw:?} in {}", path.display()))),
        }
    }

    /// Variables of `bin/env-site.sh` (empty if the file is missing).
    pub fn env_site(&self) -> Outcome<BTreeMap<String, String>> {
        Ok(settings::parse_env_site(
            &self.read_optional("bin/env-site.sh")?,
        ))
    }

    /// Properties of `config/dip.properties` (empty if the file is missing).
    pub fn dip_properties(&self) -> Outcome<BTreeMap<String, String>> {
        Ok(settings::parse_properties(
            &self.read_optional("config/dip.properties")?,
        ))
    }

    /// Non-empty lines of `run/upgrade-history` (empty if the file is missing).
    pub fn upgrade_history(&self) -> Outcome<Vec<String>> {
        Ok(self
            .read_optional("run/upgrade-history")?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Reads a text file of the data dir, an empty string if it does not exist.
    pub fn read_optional(&self, rel: &str) -> Outcome<String> {
        let path = self.join(rel);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Fail::new(format!("cannot read {}: {e}", path.display()))),
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so readers never see a partial file. `mode` sets the Unix
/// permissions of the new file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".standin-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Copies `from` to `to` through a temporary file and a rename (safe even
/// when `to` is a running executable), with permissions `mode`.
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> io::Result<()> {
    let dir = to
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".standin-tmp-")
        .tempfile_in(dir)?;
    let mut src = fs::File::open(from)?;
    io::copy(&mut src, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_read_from_install_ini() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("install.ini"),
            "[general]\nnodetype = api\nport = 11200\n",
        )
        .unwrap();
        let dd = DataDir::new(dir.path()).unwrap();
        assert_eq!(dd.port().unwrap(), 11200);
    }

    #[test]
    fn relative_data_dirs_are_made_absolute_without_dot_components() {
        let dd = DataDir::new(Path::new("./some/./dir")).unwrap();
        assert!(dd.root().is_absolute());
        assert!(dd.root().ends_with("some/dir"));
        assert!(!dd.root().to_string_lossy().contains("/./"));
    }

    #[test]
    fn missing_version_file_means_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::new(dir.path()).unwrap();
        assert!(!dd.is_installed());
        let err = dd.read_version_file().unwrap_err();
        assert!(err.message.contains("not an installed"), "{err}");
    }

    #[test]
    fn missing_optional_files_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::new(dir.path()).unwrap();
        assert!(dd.env_site().unwrap().is_empty());
        assert!(dd.dip_properties().unwrap().is_empty());
        assert!(dd.upgrade_history().unwrap().is_empty());
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
