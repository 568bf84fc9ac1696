//! `standin-node install` (what the kit's `installer.sh` runs): fresh install
//! of a stand-in data dir, or in-place upgrade with `-u`.
//!
//! A fresh install writes `dss-version.json` last, so a failed install never
//! looks installed. An upgrade only replaces the binary, `bin/VERSION`, the
//! control shims and `dss-version.json`, records `FROM -> TO` in
//! `run/upgrade-history`, and never downgrades.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::datadir::{DataDir, NODE_TYPES, VersionFile, copy_atomic, write_atomic};
use crate::error::{Context, Fail, Outcome};
use crate::package::NEVER_HEALTHY;
use crate::users::{User, UsersFile, random_alphanumeric};
use crate::version::Version;

/// Length of the generated initial admin password.
const ADMIN_PASSWORD_LEN: usize = 20;
/// Length of the generated admin API key.
const ADMIN_API_KEY_LEN: usize = 32;

/// Options of the installer, as given to `installer.sh`.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The unpacked kit (directory of `installer.sh`).
    pub kit_dir: PathBuf,
    /// `-d`
    pub data_dir: PathBuf,
    /// `-p` (fresh install only)
    pub port: Option<u16>,
    /// `-t` (fresh install only)
    pub node_type: Option<String>,
    /// `-l` (fresh install only)
    pub license: Option<PathBuf>,
    /// `-u`
    pub upgrade: bool,
}

/// `bin/dss` shim written into the data dir.
pub const DSS_SHIM: &str = r#"#!/bin/sh
# Control script of a stand-in node (NOT Dataiku DSS), written by the stand-in
# installer. Usage: dss start|stop|restart|status
DATA_DIR=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd) || exit 1
exec "$DATA_DIR/bin/standin-node" dss --data-dir "$DATA_DIR" "$@"
"#;

/// `bin/dsscli` shim written into the data dir.
pub const DSSCLI_SHIM: &str = r#"#!/bin/sh
# Admin command line of a stand-in node (NOT Dataiku DSS), written by the
# stand-in installer. Usage: dsscli user-edit LOGIN --password PASSWORD
DATA_DIR=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd) || exit 1
exec "$DATA_DIR/bin/standin-node" dsscli --data-dir "$DATA_DIR" "$@"
"#;

/// A validated kit directory.
struct Kit {
    version: Version,
    binary: PathBuf,
    never_healthy: bool,
}

impl Kit {
    fn open(dir: &Path) -> Outcome<Self> {
        let version_path = dir.join("VERSION");
        let text = fs::read_to_string(&version_path)
            .context(|| format!("not a stand-in kit: cannot read {}", version_path.display()))?;
        let version = text
            .parse()
            .context(|| format!("bad version in {}", version_path.display()))?;
        let binary = dir.join("bin/standin-node");
        if !binary.is_file() {
            return Err(Fail::new(format!(
                "not a stand-in kit: {} is missing",
                binary.display()
            )));
        }
        Ok(Self {
            version,
            binary,
            never_healthy: dir.join(NEVER_HEALTHY).exists(),
        })
    }
}

/// Runs the installer; returns the lines to print on success.
pub fn run(opts: &InstallOptions) -> Outcome<Vec<String>> {
    let kit = Kit::open(&opts.kit_dir)?;
    let dd = DataDir::new(&opts.data_dir)?;
    if opts.upgrade {
        if opts.port.is_some() || opts.node_type.is_some() || opts.license.is_some() {
            return Err(Fail::new("-p, -t and -l cannot be used with -u (upgrade)"));
        }
        upgrade(&kit, &dd)
    } else {
        let port = opts
            .port
            .ok_or_else(|| Fail::new("missing -p PORT (required for a fresh install)"))?;
        let node_type = opts.node_type.as_deref().unwrap_or("design");
        fresh_install(&kit, &dd, port, node_type, opts.license.as_deref())
    }
}

fn fresh_install(
    kit: &Kit,
    dd: &DataDir,
    port: u16,
    node_type: &str,
    license: Option<&Path>,
) -> Outcome<Vec<String>> {
    if !NODE_TYPES.contains(&node_type) {
        return Err(Fail::new(format!(
            "invalid node type {node_type:?} (expected one of {})",
            NODE_TYPES.join(", ")
        )));
    }
    if port == 0 {
        return Err(Fail::new("invalid port 0"));
    }
    if dd.is_installed() {
        return Err(Fail::new(format!(
            "{}: already installed; use -u to upgrade",
            dd.root().display()
        )));
    }
    let license_bytes = match license {
        Some(p) => Some(fs::read(p).context(|| format!("cannot read license {}", p.display()))?),
        None => None,
    };

    for sub in ["", "bin", "config", "run", "values"] {
        let p = dd.join(sub);
        fs::create_dir_all(&p).context(|| format!("cannot create {}", p.display()))?;
    }
    install_binary(kit, dd)?;
    create_if_missing(&dd.join("bin/env-site.sh"))?;
    create_if_missing(&dd.join("config/dip.properties"))?;

    let password = random_alphanumeric(ADMIN_PASSWORD_LEN);
    let api_key = random_alphanumeric(ADMIN_API_KEY_LEN);
    write_file(
        &dd.join("config/initial-admin-password"),
        password.as_bytes(),
        0o600,
    )?;
    write_file(&dd.join("config/admin-api-key"), api_key.as_bytes(), 0o600)?;
    let mut users = UsersFile::default();
    users.users.insert(
        "admin".to_string(),
        User::with_password(&password, vec!["administrators".to_string()]),
    );
    users.save(&dd.join("config/users.json"))?;
    if let Some(bytes) = license_bytes {
        write_file(&dd.join("config/license.json"), &bytes, 0o600)?;
    }
    let ini = format!("[general]\nnodetype = {node_type}\nport = {port}\n");
    write_file(&dd.join("install.ini"), ini.as_bytes(), 0o644)?;

    // Last: only a complete install has a dss-version.json.
    write_version_file(dd, &kit.version, node_type)?;
    Ok(vec![format!(
        "stand-in node (not Dataiku DSS) {} installed in {} as a {node_type} node on port {port}",
        kit.version,
        dd.root().display()
    )])
}

fn upgrade(kit: &Kit, dd: &DataDir) -> Outcome<Vec<String>> {
    let current = dd.read_version_file()?;
    let from: Version = current
        .product_version
        .parse()
        .context(|| format!("bad product_version in {}", dd.version_file().display()))?;
    let to = &kit.version;
    if *to < from {
        return Err(Fail::new(format!(
            "refusing to downgrade the data dir from {from} to {to}"
        )));
    }
    if *to == from {
        return Ok(vec![format!(
            "stand-in node data dir {} is already at version {from}; nothing to do",
            dd.root().display()
        )]);
    }
    for sub in ["bin", "run"] {
        let p = dd.join(sub);
        fs::create_dir_all(&p).context(|| format!("cannot create {}", p.display()))?;
    }
    install_binary(kit, dd)?;
    let history = dd.join("run/upgrade-history");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&history)
        .context(|| format!("cannot open {}", history.display()))?;
    writeln!(f, "{from} -> {to}").context(|| format!("cannot write {}", history.display()))?;
    write_version_file(dd, to, &current.node_type)?;
    Ok(vec![format!(
        "stand-in node (not Dataiku DSS) data dir {} upgraded from {from} to {to}",
        dd.root().display()
    )])
}

/// Copies the kit's binary, `VERSION`, health marker and the control shims
/// into `bin/`.
fn install_binary(kit: &Kit, dd: &DataDir) -> Outcome<()> {
    let target = dd.join("bin/standin-node");
    copy_atomic(&kit.binary, &target, 0o755)
        .context(|| format!("cannot install {}", target.display()))?;
    write_file(
        &dd.binary_version_file(),
        kit.version.as_str().as_bytes(),
        0o644,
    )?;
    write_file(&dd.join("bin/dss"), DSS_SHIM.as_bytes(), 0o755)?;
    write_file(&dd.join("bin/dsscli"), DSSCLI_SHIM.as_bytes(), 0o755)?;
    let marker = dd.join("bin").join(NEVER_HEALTHY);
    if kit.never_healthy {
        write_file(
            &marker,
            b"installed from a never-healthy stand-in kit\n",
            0o644,
        )?;
    } else if marker.exists() {
        fs::remove_file(&marker).context(|| format!("cannot remove {}", marker.display()))?;
    }
    Ok(())
}

fn write_version_file(dd: &DataDir, version: &Version, node_type: &str) -> Outcome<()> {
    let vf = VersionFile {
        product_version: version.as_str().to_string(),
        node_type: node_type.to_string(),
    };
    let mut text =
        serde_json::to_string_pretty(&vf).context(|| "cannot serialize version".to_string())?;
    text.push('\n');
    write_file(&dd.version_file(), text.as_bytes(), 0o644)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Outcome<()> {
    write_atomic(path, bytes, mode).context(|| format!("cannot write {}", path.display()))
}

fn create_if_missing(path: &Path) -> Outcome<()> {
    if path.exists() {
        Ok(())
    } else {
        write_file(path, b"", 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_kit(dir: &Path, version: &str) -> PathBuf {
        let kit = dir.join(format!("kit-{version}"));
        fs::create_dir_all(kit.join("bin")).unwrap();
        fs::write(kit.join("VERSION"), version).unwrap();
        fs::write(kit.join("bin/standin-node"), b"#!/bin/sh\n").unwrap();
        kit
    }

    fn opts(kit: &Path, data: &Path) -> InstallOptions {
        InstallOptions {
            kit_dir: kit.to_path_buf(),
            data_dir: data.to_path_buf(),
            port: Some(12000),
            node_type: None,
            license: None,
            upgrade: false,
        }
    }

    #[test]
    fn fresh_install_defaults_to_a_design_node() {
        let tmp = tempfile::tempdir().unwrap();
        let kit = make_kit(tmp.path(), "13.5.4");
        let data = tmp.path().join("data");
        run(&opts(&kit, &data)).unwrap();
        let vf: VersionFile =
            serde_json::from_str(&fs::read_to_string(data.join("dss-version.json")).unwrap())
                .unwrap();
        assert_eq!(vf.product_version, "13.5.4");
        assert_eq!(vf.node_type, "design");
        assert_eq!(
            fs::read_to_string(data.join("install.ini")).unwrap(),
            "[general]\nnodetype = design\nport = 12000\n"
        );
    }

    #[test]
    fn unknown_node_type_fails_without_leaving_a_version_file() {
        let tmp = tempfile::tempdir().unwrap();
        let kit = make_kit(tmp.path(), "13.5.4");
        let data = tmp.path().join("data");
        let mut o = opts(&kit, &data);
        o.node_type = Some("spaceship".into());
        let err = run(&o).unwrap_err();
        assert!(err.message.contains("invalid node type"), "{err}");
        assert!(!data.join("dss-version.json").exists());
    }

    #[test]
    fn unreadable_license_fails_without_leaving_a_version_file() {
        let tmp = tempfile::tempdir().unwrap();
        let kit = make_kit(tmp.path(), "13.5.4");
        let data = tmp.path().join("data");
        let mut o = opts(&kit, &data);
        o.license = Some(tmp.path().join("no-such-license.json"));
        let err = run(&o).unwrap_err();
        assert!(err.message.contains("cannot read license"), "{err}");
        assert!(!data.join("dss-version.json").exists());
    }

    #[test]
    fn upgrade_flags_reject_fresh_install_options() {
        let tmp = tempfile::tempdir().unwrap();
        let kit = make_kit(tmp.path(), "13.5.4");
        let data = tmp.path().join("data");
        let mut o = opts(&kit, &data);
        o.upgrade = true;
        let err = run(&o).unwrap_err();
        assert!(err.message.contains("cannot be used with -u"), "{err}");
    }

    #[test]
    fn upgrade_of_a_missing_install_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kit = make_kit(tmp.path(), "14.2.0");
        let data = tmp.path().join("data");
        let mut o = opts(&kit, &data);
        o.upgrade = true;
        o.port = None;
        let err = run(&o).unwrap_err();
        assert!(err.message.contains("not an installed"), "{err}");
    }

    #[test]
    fn kit_without_binary_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let kit = tmp.path().join("kit");
        fs::create_dir_all(&kit).unwrap();
        fs::write(kit.join("VERSION"), "1.0").unwrap();
        let err = run(&opts(&kit, &tmp.path().join("d"))).unwrap_err();
        assert!(err.message.contains("not a stand-in kit"), "{err}");
    }
}
