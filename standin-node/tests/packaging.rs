//! Integration tests of `standin-node package`: kit layout and reproducible
//! archives.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn package_writes_a_kit_with_installer_binary_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let p = package(&tmp.path().join("out"), "13.5.4", false);
    assert_eq!(p.version, "13.5.4");
    assert!(p.file.is_absolute());
    assert_eq!(p.file.file_name().unwrap(), "standin-kit-13.5.4.tar.gz");
    assert_eq!(p.sha256.len(), 64);

    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&p.file)
        .output()
        .unwrap();
    assert_success(&listing, "tar -t");
    let mut names: Vec<String> = stdout(&listing)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "standin-kit-13.5.4",
            "standin-kit-13.5.4/VERSION",
            "standin-kit-13.5.4/bin",
            "standin-kit-13.5.4/bin/standin-node",
            "standin-kit-13.5.4/installer.sh",
        ]
    );

    let kit = extract(&p.file, &tmp.path().join("x"), "13.5.4");
    assert_eq!(
        std::fs::read_to_string(kit.join("VERSION")).unwrap(),
        "13.5.4"
    );
    let mode = std::fs::metadata(kit.join("installer.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "installer.sh must be executable");
    assert_eq!(
        std::fs::read(kit.join("bin/standin-node")).unwrap(),
        std::fs::read(BIN).unwrap(),
        "the kit carries a copy of the running executable"
    );
}

#[test]
fn packaging_twice_gives_the_same_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let a = package(&tmp.path().join("a"), "14.2.0", false);
    let b = package(&tmp.path().join("b"), "14.2.0", false);
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(
        std::fs::read(&a.file).unwrap(),
        std::fs::read(&b.file).unwrap()
    );
    // Overwriting in place is reproducible too.
    let c = package(&tmp.path().join("a"), "14.2.0", false);
    assert_eq!(a.sha256, c.sha256);
}

#[test]
fn printed_sha256_matches_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let p = package(&tmp.path().join("out"), "13.5.4", false);
    let out = Command::new("sha256sum").arg(&p.file).output().unwrap();
    assert_success(&out, "sha256sum");
    assert!(stdout(&out).starts_with(&p.sha256));
}

#[test]
fn never_healthy_kit_has_its_own_name_and_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let p = package(&tmp.path().join("out"), "13.5.4", true);
    assert_eq!(
        p.file.file_name().unwrap(),
        "standin-kit-13.5.4-never-healthy.tar.gz"
    );
    let kit = extract(&p.file, &tmp.path().join("x"), "13.5.4");
    assert!(kit.join("NEVER_HEALTHY").is_file());
}

#[test]
fn package_rejects_a_non_dotted_version() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["package", "--version", "latest", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
}
