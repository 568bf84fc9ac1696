use super::*;
use crate::location::Location;
use crate::take::{TakeOptions, take};
use std::os::unix::fs::PermissionsExt;

fn store(dir: &Path) -> Store {
    Location {
        url: format!("file://{}", dir.display()),
        ..Default::default()
    }
    .open()
    .unwrap()
}

fn key() -> BackupKey {
    BackupKey::from_hex(&"42".repeat(32)).unwrap()
}

/// A data dir with nested dirs, an empty file, a binary file, a long path,
/// a symlink, and excluded dirs with content.
fn data_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    std::fs::create_dir_all(d.join("config/projects/P1")).unwrap();
    std::fs::write(d.join("config/projects/P1/params.json"), b"{\"a\":1}").unwrap();
    std::fs::write(d.join("empty"), b"").unwrap();
    let bin: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(d.join("blob.bin"), bin).unwrap();
    let long = "x".repeat(120);
    std::fs::create_dir_all(d.join(&long)).unwrap();
    std::fs::write(d.join(&long).join("y".repeat(90)), b"long").unwrap();
    std::os::unix::fs::symlink("config/projects", d.join("projects-link")).unwrap();
    std::fs::create_dir_all(d.join("tmp/sub")).unwrap();
    std::fs::write(d.join("tmp/sub/junk"), b"junk").unwrap();
    std::fs::create_dir_all(d.join("caches")).unwrap();
    std::fs::write(d.join("caches/c"), b"cache").unwrap();
    std::fs::set_permissions(d.join("blob.bin"), std::fs::Permissions::from_mode(0o600)).unwrap();
    d
}

fn opts(key: Option<BackupKey>) -> TakeOptions {
    TakeOptions {
        instance_id: "inst".into(),
        backup_id: "bk-1".into(),
        node_version: "14.2.0".into(),
        exclusions: crate::DEFAULT_EXCLUSIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        key,
        progress: Default::default(),
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
            let md = p.symlink_metadata().unwrap();
            if md.file_type().is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(&p).unwrap().to_str().unwrap().into(),
                ));
            } else if md.is_dir() {
                out.push((rel, b"<dir>".to_vec()));
                stack.push(p);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

async fn round_trip(k: Option<BackupKey>) {
    let t = tempfile::tempdir().unwrap();
    let d = data_dir(t.path());
    let s = store(&t.path().join("store"));
    let taken = take(&s, &d, &opts(k.clone())).await.unwrap();
    assert_eq!(taken.manifest.file_count(), 4);
    assert!(
        !taken
            .manifest
            .entries
            .iter()
            .any(|e| e.path.starts_with("tmp/")),
        "excluded content is not archived"
    );
    assert!(taken.manifest.entries.iter().any(|e| e.path == "tmp"));
    let mut before = snapshot(&d);
    before.retain(|(p, _)| !p.starts_with("tmp/") && !p.starts_with("caches/"));
    // Change the data: edit, add, remove.
    std::fs::write(d.join("config/projects/P1/params.json"), b"changed").unwrap();
    std::fs::write(d.join("new-file"), b"new").unwrap();
    std::fs::remove_file(d.join("empty")).unwrap();
    let m = read_manifest(&s, "inst", "bk-1", k.as_ref(), Some(&taken.manifest_sha256))
        .await
        .unwrap();
    assert_eq!(m, taken.manifest);
    let stats = restore_into(&s, &m, k.as_ref(), &d, Default::default())
        .await
        .unwrap();
    assert_eq!(stats.files, 4);
    assert_eq!(snapshot(&d), before);
    let mode = std::fs::metadata(d.join("blob.bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let scratch = t.path().join("scratch");
    verify(&s, &m, k.as_ref(), &scratch, Default::default())
        .await
        .unwrap();
    assert!(!scratch.exists(), "verify removes its scratch dir");
}

#[tokio::test]
async fn a_backup_restores_the_data_dir_as_it_was() {
    round_trip(None).await;
}

#[tokio::test]
async fn an_encrypted_backup_restores_the_data_dir_as_it_was() {
    round_trip(Some(key())).await;
}

#[tokio::test]
async fn an_encrypted_backup_holds_no_plain_text() {
    let t = tempfile::tempdir().unwrap();
    let d = data_dir(t.path());
    std::fs::write(d.join("secret.txt"), "the-password-is-swordfish").unwrap();
    let sdir = t.path().join("store");
    let s = store(&sdir);
    take(&s, &d, &opts(Some(key()))).await.unwrap();
    for name in [ARCHIVE, MANIFEST] {
        let raw = std::fs::read(sdir.join("inst/bk-1").join(name)).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("secret.txt") && !text.contains("swordfish"));
    }
    let wrong = BackupKey::from_hex(&"43".repeat(32)).unwrap();
    let e = read_manifest(&s, "inst", "bk-1", Some(&wrong), None)
        .await
        .unwrap_err();
    assert!(e.0.contains("can't be decrypted"), "{e}");
}

async fn corrupt_object_then_restore(k: Option<BackupKey>, name: &str) -> String {
    let t = tempfile::tempdir().unwrap();
    let d = data_dir(t.path());
    let sdir = t.path().join("store");
    let s = store(&sdir);
    let taken = take(&s, &d, &opts(k.clone())).await.unwrap();
    let obj = sdir.join("inst/bk-1").join(name);
    let mut raw = std::fs::read(&obj).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 0x55;
    std::fs::write(&obj, raw).unwrap();
    std::fs::write(d.join("current"), b"today's work").unwrap();
    let before = snapshot(&d);
    let e = match read_manifest(&s, "inst", "bk-1", k.as_ref(), Some(&taken.manifest_sha256)).await
    {
        Err(e) => e,
        Ok(m) => {
            let v = verify(
                &s,
                &m,
                k.as_ref(),
                &t.path().join("scratch"),
                Default::default(),
            )
            .await
            .unwrap_err();
            assert!(!t.path().join("scratch").exists());
            let e = restore_into(&s, &m, k.as_ref(), &d, Default::default())
                .await
                .unwrap_err();
            assert_eq!(v, e, "verify and restore see the same fault");
            e
        }
    };
    assert_eq!(snapshot(&d), before, "the current data is untouched");
    e.0
}

#[tokio::test]
async fn a_corrupted_archive_is_refused_and_the_data_left_alone() {
    let e = corrupt_object_then_restore(None, ARCHIVE).await;
    assert!(e.contains("corrupt"), "{e}");
    let e = corrupt_object_then_restore(Some(key()), ARCHIVE).await;
    assert!(e.contains("corrupt"), "{e}");
}

#[tokio::test]
async fn a_corrupted_manifest_is_refused_and_the_data_left_alone() {
    let e = corrupt_object_then_restore(None, MANIFEST).await;
    assert!(e.contains("manifest") && e.contains("corrupt"), "{e}");
    let e = corrupt_object_then_restore(Some(key()), MANIFEST).await;
    assert!(e.contains("manifest") && e.contains("corrupt"), "{e}");
}

#[tokio::test]
async fn a_truncated_archive_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = data_dir(t.path());
    let sdir = t.path().join("store");
    let s = store(&sdir);
    let taken = take(&s, &d, &opts(None)).await.unwrap();
    let obj = sdir.join("inst/bk-1").join(ARCHIVE);
    let raw = std::fs::read(&obj).unwrap();
    std::fs::write(&obj, &raw[..raw.len() - 100]).unwrap();
    let e = verify(
        &s,
        &taken.manifest,
        None,
        &t.path().join("x"),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("corrupt"), "{e}");
}

#[tokio::test]
async fn a_swap_cut_off_midway_is_finished_by_the_next_run() {
    let t = tempfile::tempdir().unwrap();
    let d = data_dir(t.path());
    let s = store(&t.path().join("store"));
    let taken = take(&s, &d, &opts(None)).await.unwrap();
    let mut want = snapshot(&d);
    want.retain(|(p, _)| !p.starts_with("tmp/") && !p.starts_with("caches/"));
    std::fs::write(d.join("new-file"), b"new").unwrap();
    // What a run cut off after moving one old entry aside looks like.
    let (stage, previous) = staging(&d, "bk-1");
    extract(&s, &taken.manifest, None, &stage, Default::default())
        .await
        .unwrap();
    let mark = format!("bk-1 {}\n", taken.manifest.archive_sha256);
    std::fs::write(stage.join(COMPLETE), mark).unwrap();
    std::fs::create_dir_all(&previous).unwrap();
    std::fs::set_permissions(&previous, std::fs::Permissions::from_mode(0o700)).unwrap();
    let old = top_names(&d).unwrap();
    std::fs::write(previous.join(OLD_NAMES), serde_json::to_vec(&old).unwrap()).unwrap();
    std::fs::rename(d.join("blob.bin"), previous.join("blob.bin")).unwrap();
    std::fs::rename(stage.join("blob.bin"), d.join("blob.bin")).unwrap();
    restore_into(&s, &taken.manifest, None, &d, Default::default())
        .await
        .unwrap();
    assert_eq!(snapshot(&d), want);
}

#[tokio::test]
async fn unreachable_storage_fails_the_backup_with_a_clear_message() {
    let t = tempfile::tempdir().unwrap();
    let d = data_dir(t.path());
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Location {
        url: "s3://bucket/p".into(),
        s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
        s3_region: Some("us-east-1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        session_token: None,
    }
    .open()
    .unwrap();
    let e = take(&s, &d, &opts(None)).await.unwrap_err();
    assert!(e.0.contains("object storage"), "{e}");
}
