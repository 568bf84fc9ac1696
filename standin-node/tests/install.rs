//! Integration tests of the kit's `installer.sh`: fresh install layout,
//! refusals, upgrades and downgrades.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn fresh_install_creates_the_data_dir_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", false);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("unrelated.txt"), "keep me").unwrap();
    let license = tmp.path().join("license.json");
    std::fs::write(&license, r#"{"licensee":"test"}"#).unwrap();

    let out = installer(
        &kit,
        &[
            "-d",
            data.to_str().unwrap(),
            "-p",
            "11234",
            "-t",
            "automation",
            "-l",
            license.to_str().unwrap(),
        ],
    );
    assert_success(&out, "installer.sh");

    let vf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dss-version.json")).unwrap())
            .unwrap();
    assert_eq!(vf["product_version"], "13.5.4");
    assert_eq!(vf["node_type"], "automation");
    assert_eq!(
        std::fs::read_to_string(data.join("install.ini")).unwrap(),
        "[general]\nnodetype = automation\nport = 11234\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("bin/VERSION")).unwrap(),
        "13.5.4"
    );
    for exe in ["bin/standin-node", "bin/dss", "bin/dsscli"] {
        assert_eq!(
            mode(&data.join(exe)) & 0o111,
            0o111,
            "{exe} must be executable"
        );
    }
    assert_eq!(std::fs::read(data.join("bin/env-site.sh")).unwrap(), b"");
    assert_eq!(
        std::fs::read(data.join("config/dip.properties")).unwrap(),
        b""
    );
    let password = std::fs::read_to_string(data.join("config/initial-admin-password")).unwrap();
    assert_eq!(password.len(), 20);
    assert_eq!(mode(&data.join("config/initial-admin-password")), 0o600);
    let key = std::fs::read_to_string(data.join("config/admin-api-key")).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(mode(&data.join("config/admin-api-key")), 0o600);
    let users = std::fs::read_to_string(data.join("config/users.json")).unwrap();
    assert!(users.contains("\"admin\""));
    assert!(
        !users.contains(&password),
        "users.json must not hold the clear password"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("config/license.json")).unwrap(),
        r#"{"licensee":"test"}"#
    );
    assert!(data.join("run").is_dir());
    assert!(data.join("values").is_dir());
    assert!(!data.join("bin/NEVER_HEALTHY").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("unrelated.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn second_install_on_an_installed_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", false);
    let data = tmp.path().join("data");
    install(&kit, &data, free_port(), "design");
    let before = std::fs::read(data.join("config/users.json")).unwrap();

    let out = installer(&kit, &["-d", data.to_str().unwrap(), "-p", "12000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already installed; use -u to upgrade"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1);
    assert_eq!(
        std::fs::read(data.join("config/users.json")).unwrap(),
        before
    );
}

#[test]
fn failed_install_leaves_no_version_file() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", false);
    let data = tmp.path().join("data");
    let out = installer(
        &kit,
        &[
            "-d",
            data.to_str().unwrap(),
            "-p",
            "12000",
            "-t",
            "spaceship",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid node type"),
        "{}",
        stderr(&out)
    );
    assert!(!data.join("dss-version.json").exists());

    let out = installer(
        &kit,
        &[
            "-d",
            data.to_str().unwrap(),
            "-p",
            "12000",
            "-l",
            "/no/such/license",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(!data.join("dss-version.json").exists());
}

#[test]
fn installer_usage_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", false);
    for args in [
        &["-p", "1"][..],
        &["-d", "/tmp/x", "-p", "notaport"],
        &["-d", "/tmp/x", "-z"],
    ] {
        let out = installer(&kit, args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = installer(&kit, &["-d", tmp.path().join("d").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing -p"), "{}", stderr(&out));
}

#[test]
fn upgrade_replaces_the_binary_and_keeps_everything_else() {
    let tmp = tempfile::tempdir().unwrap();
    let old = kit(tmp.path(), "13.5.4", false);
    let new = kit(tmp.path(), "14.2.0", false);
    let data = tmp.path().join("data");
    install(&old, &data, 11000, "govern");
    std::fs::write(data.join("values/k"), "v").unwrap();
    std::fs::write(data.join("config/dip.properties"), "a=b\n").unwrap();
    let users = std::fs::read(data.join("config/users.json")).unwrap();

    let out = installer(&new, &["-d", data.to_str().unwrap(), "-u", "-y"]);
    assert_success(&out, "upgrade");
    let vf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dss-version.json")).unwrap())
            .unwrap();
    assert_eq!(vf["product_version"], "14.2.0");
    assert_eq!(vf["node_type"], "govern");
    assert_eq!(
        std::fs::read_to_string(data.join("bin/VERSION")).unwrap(),
        "14.2.0"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("run/upgrade-history")).unwrap(),
        "13.5.4 -> 14.2.0\n"
    );
    assert_eq!(std::fs::read_to_string(data.join("values/k")).unwrap(), "v");
    assert_eq!(
        std::fs::read_to_string(data.join("config/dip.properties")).unwrap(),
        "a=b\n"
    );
    assert_eq!(
        std::fs::read(data.join("config/users.json")).unwrap(),
        users
    );
    assert_eq!(
        std::fs::read_to_string(data.join("install.ini")).unwrap(),
        "[general]\nnodetype = govern\nport = 11000\n"
    );
}

#[test]
fn upgrade_to_the_same_version_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", false);
    let data = tmp.path().join("data");
    install(&kit, &data, 11000, "design");
    let out = installer(&kit, &["-d", data.to_str().unwrap(), "-u", "-y"]);
    assert_success(&out, "same-version upgrade");
    assert!(!data.join("run/upgrade-history").exists());
}

#[test]
fn downgrade_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let old = kit(tmp.path(), "13.5.4", false);
    let new = kit(tmp.path(), "14.2.0", false);
    let data = tmp.path().join("data");
    install(&new, &data, 11000, "design");
    let out = installer(&old, &["-d", data.to_str().unwrap(), "-u", "-y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refusing to downgrade the data dir from 14.2.0 to 13.5.4"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("bin/VERSION")).unwrap(),
        "14.2.0"
    );
}

#[test]
fn upgrade_without_an_install_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "14.2.0", false);
    let out = installer(
        &kit,
        &["-d", tmp.path().join("none").to_str().unwrap(), "-u"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an installed"),
        "{}",
        stderr(&out)
    );
}
