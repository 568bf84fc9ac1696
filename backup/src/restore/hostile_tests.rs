//! Crafted archives: tar headers written byte by byte (none of the tar
//! crate's own checks), with a manifest that matches them, as the party
//! that takes a backup can write both.

use super::*;
use crate::location::Location;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

pub(super) enum T {
    Dir,
    File(Vec<u8>),
    Sym(Vec<u8>),
    Hard(Vec<u8>),
    Fifo,
    Char,
}

pub(super) struct It {
    pub path: Vec<u8>,
    pub t: T,
    pub mode: u32,
}

pub(super) fn it(path: impl AsRef<[u8]>, t: T) -> It {
    let mode = match t {
        T::Dir => 0o755,
        _ => 0o644,
    };
    It {
        path: path.as_ref().to_vec(),
        t,
        mode,
    }
}

fn long(b: &mut tar::Builder<Vec<u8>>, kind: u8, name: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    let mut data = name.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
}

/// The tar stream of `items`, every field written as given.
pub(super) fn raw_tar(items: &[It]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in items {
        let (kind, data, link): (u8, &[u8], &[u8]) = match &i.t {
            T::Dir => (b'5', b"", b""),
            T::File(d) => (b'0', d, b""),
            T::Sym(l) => (b'2', b"", l),
            T::Hard(l) => (b'1', b"", l),
            T::Fifo => (b'6', b"", b""),
            T::Char => (b'3', b"", b""),
        };
        if i.path.len() > 100 {
            long(&mut b, b'L', &i.path);
        }
        if link.len() > 100 {
            long(&mut b, b'K', link);
        }
        let mut h = tar::Header::new_gnu();
        {
            let o = h.as_old_mut();
            let n = i.path.len().min(100);
            o.name[..n].copy_from_slice(&i.path[..n]);
            let n = link.len().min(100);
            o.linkname[..n].copy_from_slice(&link[..n]);
        }
        h.set_mode(i.mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// The manifest a dishonest source writes for `items`: every entry listed
/// as what it claims to be (hard links, fifos and devices as empty files).
fn manifest_of(items: &[It], archive: &[u8]) -> Manifest {
    let mut seen = std::collections::HashSet::new();
    let entries: Vec<manifest::Entry> = items
        .iter()
        .map(|i| {
            let path = String::from_utf8_lossy(&i.path)
                .trim_end_matches('/')
                .to_owned();
            let (kind, data, target) = match &i.t {
                T::Dir => (EntryKind::Dir, &b""[..], String::new()),
                T::File(d) => (EntryKind::File, &d[..], String::new()),
                T::Sym(l) => (
                    EntryKind::Symlink,
                    &b""[..],
                    String::from_utf8_lossy(l).into_owned(),
                ),
                _ => (EntryKind::File, &b""[..], String::new()),
            };
            manifest::Entry {
                path,
                kind,
                mode: i.mode,
                size: data.len() as u64,
                sha256: if kind == EntryKind::File {
                    hex::encode(Sha256::digest(data))
                } else {
                    String::new()
                },
                target,
            }
        })
        .filter(|e| seen.insert(e.path.clone()))
        .collect();
    Manifest {
        format: manifest::FORMAT,
        backup_id: "bk".into(),
        instance_id: "inst".into(),
        node_version: "1.0.0".into(),
        created_at_ms: 0,
        encrypted: false,
        exclusions: Vec::new(),
        archive_size: archive.len() as u64,
        archive_sha256: hex::encode(Sha256::digest(archive)),
        data_bytes: 0,
        entries,
    }
}

pub(super) fn store(dir: &Path) -> Store {
    Location {
        url: format!("file://{}", dir.display()),
        ..Default::default()
    }
    .open()
    .unwrap()
}

/// Writes backup `inst/bk` of `items` into the store at `sdir`.
pub(super) fn put(sdir: &Path, items: &[It]) -> Manifest {
    let archive = zstd::encode_all(&raw_tar(items)[..], 1).unwrap();
    let m = manifest_of(items, &archive);
    let d = sdir.join("inst/bk");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(ARCHIVE), &archive).unwrap();
    std::fs::write(d.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
    m
}

/// Every path below `dir` with its kind, mode, owner and content (link
/// target), skipping `skip` (a name directly in `dir`).
pub(super) fn listing(dir: &Path, skip: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
            if skip.is_some_and(|s| rel == s) {
                continue;
            }
            let md = p.symlink_metadata().unwrap();
            let what = if md.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else {
                format!("{:?}", std::fs::read(&p).unwrap())
            };
            out.push(format!(
                "{rel} {:o} {}:{} {what}",
                md.mode(),
                md.uid(),
                md.gid()
            ));
        }
    }
    out.sort();
    out
}

/// A place to restore into: `root/outside/` (a dir with a file, the target
/// of escapes) and `root/data/` (the data dir, with a file).
pub(super) struct Rig {
    pub t: tempfile::TempDir,
}

impl Rig {
    pub fn new() -> Rig {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/keep"), b"outside").unwrap();
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::fs::write(t.path().join("data/current"), b"today's work").unwrap();
        Rig { t }
    }
    pub fn root(&self) -> &Path {
        self.t.path()
    }
    pub fn outside(&self) -> PathBuf {
        self.t.path().join("outside")
    }
    pub fn data(&self) -> PathBuf {
        self.t.path().join("data")
    }
}

/// Restores and verifies `items`: both must fail with the same error, the
/// data dir and everything around it unchanged, no staging left behind.
async fn refused(items: &[It]) -> String {
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    put(&sdir, items);
    let s = store(&sdir);
    let before = listing(rig.root(), Some("store"));
    let m = read_manifest(&s, "inst", "bk", None, None).await.unwrap();
    let scratch = rig.data().join(".fm-verify-bk");
    let v = verify(&s, &m, None, &scratch, Default::default())
        .await
        .unwrap_err();
    let e = restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap_err();
    assert_eq!(v, e, "verify and restore refuse alike");
    assert_eq!(
        listing(rig.root(), Some("store")),
        before,
        "nothing changed, inside the data dir or out ({e})"
    );
    e.0
}

fn outside_target(rig_root: &Path) -> Vec<u8> {
    rig_root
        .join("outside")
        .to_str()
        .unwrap()
        .as_bytes()
        .to_vec()
}

#[tokio::test]
async fn the_reviews_archive_writes_nothing_through_its_own_symlink() {
    // Entry 1: `a` -> an existing dir outside; entry 2: `a/pwned`.
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let items = [
        it("a", T::Sym(outside_target(rig.root()))),
        it("a/pwned", T::File(b"x".to_vec())),
    ];
    put(&sdir, &items);
    let s = store(&sdir);
    let m = read_manifest(&s, "inst", "bk", None, None).await.unwrap();
    let dest = rig.root().join("dest");
    let e = extract(&s, &m, None, &dest, Default::default())
        .await
        .unwrap_err();
    assert!(!rig.outside().join("pwned").exists());
    assert!(!dest.exists(), "a refused extraction is removed");
    assert!(
        e.0.contains("\"a\"") && e.0.contains("absolute path"),
        "{e}"
    );
}

#[tokio::test]
async fn a_path_through_an_archived_symlink_is_refused_even_inside() {
    let e = refused(&[
        it("d", T::Dir),
        it("l", T::Sym(b"d".to_vec())),
        it("l/x", T::File(b"x".to_vec())),
    ])
    .await;
    assert!(
        e.contains("entry \"l/x\" goes through the symlink \"l\""),
        "{e}"
    );
}

#[tokio::test]
async fn absolute_and_dotted_paths_are_refused_in_every_form() {
    for (p, rule) in [
        (&b"/tmp/fm-abs"[..], "absolute path"),
        (b"../x", "`..`"),
        (b"a/../../x", "`..`"),
        (b"a/..", "`..`"),
        (b"..", "`..`"),
        (b"./x", "`.`"),
        (b"a/./x", "`.`"),
        (b".", "`.`"),
        (b"a//x", "empty name"),
        (b"/", "absolute path"),
        (b"", "empty path"),
        (b".fm-complete", "reserved"),
        (b"\xff", "not UTF-8"),
    ] {
        let e = refused(&[it("a", T::Dir), it(p, T::File(b"x".to_vec()))]).await;
        assert!(
            e.contains("the archive is unsafe") && e.contains(rule),
            "{p:?}: {e}"
        );
    }
    assert!(!Path::new("/tmp/fm-abs").exists());
}

#[tokio::test]
async fn symlinks_out_of_the_data_dir_are_refused() {
    for (t, rule) in [
        (&b"/etc"[..], "absolute path"),
        (b"../..", "leads out"),
        (b"../../outside", "leads out"),
        (b"../d/../../outside", "leads out"),
        (b"../d/../..", "leads out"),
        (b"x/../../..", "leads out"),
        (b"", "empty target"),
    ] {
        let e = refused(&[it("d", T::Dir), it("d/l", T::Sym(t.to_vec()))]).await;
        assert!(
            e.contains("entry \"d/l\"") && e.contains(rule),
            "{t:?}: {e}"
        );
    }
}

#[tokio::test]
async fn symlinks_that_stay_inside_restore() {
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let m = put(
        &sdir,
        &[
            it("d", T::Dir),
            it("f", T::File(b"f".to_vec())),
            it("d/up", T::Sym(b"..".to_vec())),
            it("d/f", T::Sym(b"../f".to_vec())),
            it("d/g", T::Sym(b"up/d/f".to_vec())),
            it("d/dangling", T::Sym(b"../not-yet".to_vec())),
        ],
    );
    let s = store(&sdir);
    restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(rig.data().join("d/g")).unwrap(), b"f");
    assert!(!rig.data().join("current").exists(), "the swap happened");
}

#[tokio::test]
async fn a_symlink_chain_out_is_refused_in_either_order() {
    // `a/b/s` -> `..` is `a`; `a/b/t` -> `s/../..` is then the parent of
    // the data dir, though each target alone stays inside on paper.
    let chain = |first_s: bool| {
        let s = it("a/b/s", T::Sym(b"..".to_vec()));
        let t = it("a/b/t", T::Sym(b"s/../..".to_vec()));
        let mut v = vec![it("a", T::Dir), it("a/b", T::Dir)];
        if first_s {
            v.extend([s, t]);
        } else {
            v.extend([t, s]);
        }
        v
    };
    for first_s in [true, false] {
        let e = refused(&chain(first_s)).await;
        assert!(
            e.contains("entry \"a/b/t\"") && e.contains("leads out"),
            "{e}"
        );
    }
    // A loop is refused too.
    let e = refused(&[
        it("x", T::Sym(b"y".to_vec())),
        it("y", T::Sym(b"x/z".to_vec())),
    ])
    .await;
    assert!(e.contains("loop"), "{e}");
}

#[tokio::test]
async fn a_directory_over_a_symlink_is_a_duplicate() {
    let rig = Rig::new();
    let out = outside_target(rig.root());
    let e = refused(&[it("a", T::Sym(out.clone())), it("a", T::Dir)]).await;
    assert!(e.contains("absolute path"), "{e}");
    let e = refused(&[
        it("d", T::Dir),
        it("a", T::Sym(b"d".to_vec())),
        it("a/", T::Dir),
    ])
    .await;
    assert!(e.contains("entry \"a\" appears twice"), "{e}");
}

#[tokio::test]
async fn duplicate_paths_are_refused() {
    let e = refused(&[
        it("f", T::File(b"one".to_vec())),
        it("f", T::File(b"one".to_vec())),
    ])
    .await;
    assert!(
        e.contains("entry \"f\" appears twice in the archive"),
        "{e}"
    );
    let e = refused(&[it("d", T::Dir), it("d/", T::Dir)]).await;
    assert!(e.contains("entry \"d\" appears twice"), "{e}");
}

#[tokio::test]
async fn hard_links_devices_and_fifos_are_refused() {
    for (t, rule) in [
        (T::Hard(b"/etc/passwd".to_vec()), "hard link"),
        (T::Hard(b"f".to_vec()), "hard link"),
        (T::Fifo, "fifo"),
        (T::Char, "device file"),
    ] {
        let e = refused(&[it("f", T::File(b"x".to_vec())), it("g", t)]).await;
        assert!(e.contains("entry \"g\" is a ") && e.contains(rule), "{e}");
    }
}

#[tokio::test]
async fn an_entry_before_its_directory_or_under_a_file_is_refused() {
    let e = refused(&[it("a/x", T::File(b"x".to_vec())), it("a", T::Dir)]).await;
    assert!(e.contains("comes before its parent directory \"a\""), "{e}");
    let e = refused(&[
        it("f", T::File(b"x".to_vec())),
        it("f/x", T::File(b"x".to_vec())),
    ])
    .await;
    assert!(e.contains("goes through \"f\", which is a file"), "{e}");
}

#[tokio::test]
async fn very_long_names_restore_deeper_than_path_max_and_overlong_ones_are_refused() {
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let name = "n".repeat(255);
    let mut items = Vec::new();
    let mut p = String::new();
    for _ in 0..20 {
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(&name);
        items.push(it(&p, T::Dir));
    }
    assert!(p.len() > 4096, "longer than PATH_MAX");
    items.push(it(format!("{p}/f"), T::File(b"deep".to_vec())));
    items.push(it(format!("{p}/l"), T::Sym(b"f".to_vec())));
    put(&sdir, &items);
    let s = store(&sdir);
    let m = read_manifest(&s, "inst", "bk", None, None).await.unwrap();
    let stats = verify(
        &s,
        &m,
        None,
        &rig.data().join(".fm-verify-bk"),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!((stats.entries, stats.files), (22, 1));
    assert!(!rig.data().join(".fm-verify-bk").exists());
    let e = refused(&[it("n".repeat(256), T::File(b"x".to_vec()))]).await;
    assert!(e.contains("256 bytes"), "{e}");
}

#[tokio::test]
async fn a_symlink_planted_at_the_scratch_dir_is_not_followed() {
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let m = put(&sdir, &[it("f", T::File(b"x".to_vec()))]);
    let s = store(&sdir);
    let scratch = rig.data().join(".fm-verify-bk");
    std::os::unix::fs::symlink(rig.outside(), &scratch).unwrap();
    let e = extract(&s, &m, None, &scratch, Default::default())
        .await
        .unwrap_err();
    assert!(e.0.contains("symlink or not a directory"), "{e}");
    assert!(!rig.outside().join("f").exists());
    assert!(rig.outside().join("keep").exists());
}

#[tokio::test]
async fn setuid_setgid_and_sticky_bits_are_dropped() {
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let mut d = it("d", T::Dir);
    d.mode = 0o3775;
    let mut f = it("d/sh", T::File(b"#!".to_vec()));
    f.mode = 0o6755;
    let mut ro = it("ro", T::Dir);
    ro.mode = 0o500;
    let inner = it("ro/x", T::File(b"x".to_vec()));
    let m = put(&sdir, &[d, f, ro, inner]);
    let s = store(&sdir);
    restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap();
    let mode = |p: &str| {
        std::fs::symlink_metadata(rig.data().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("d"), 0o775);
    assert_eq!(mode("d/sh"), 0o755);
    assert_eq!(mode("ro"), 0o500, "a read-only dir is filled, then closed");
    assert_eq!(std::fs::read(rig.data().join("ro/x")).unwrap(), b"x");
}

/// As root, the archive's owners (here root) give way to the data dir's.
#[tokio::test]
async fn as_root_entries_get_the_data_dirs_owner() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rig = Rig::new();
    std::os::unix::fs::chown(rig.data(), Some(1000), Some(1001)).unwrap();
    let sdir = rig.root().join("store");
    let mut f = it("d/x", T::File(b"x".to_vec()));
    f.mode = 0o4755;
    let m = put(
        &sdir,
        &[it("d", T::Dir), f, it("d/l", T::Sym(b"x".to_vec()))],
    );
    let s = store(&sdir);
    restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap();
    for p in ["d", "d/x", "d/l"] {
        let md = std::fs::symlink_metadata(rig.data().join(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 1001), "{p}");
    }
    let md = std::fs::metadata(rig.data().join("d/x")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o755);
}

/// The review's H2 case through a real backup: a setuid copy in the data
/// dir comes back without the bit.
#[tokio::test]
async fn a_taken_setuid_file_restores_without_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("x"), b"#!/bin/sh").unwrap();
    std::fs::set_permissions(d.join("x"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let s = store(&t.path().join("store"));
    let o = crate::take::TakeOptions {
        instance_id: "inst".into(),
        backup_id: "bk".into(),
        node_version: "1.0.0".into(),
        exclusions: Vec::new(),
        key: None,
        progress: Default::default(),
    };
    let taken = crate::take(&s, &d, &o).await.unwrap();
    let fresh = t.path().join("fresh");
    restore_into(&s, &taken.manifest, None, &fresh, Default::default())
        .await
        .unwrap();
    let mode = std::fs::metadata(fresh.join("x")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o755);
}

/// Symlinks the node could plant at the staging and previous dirs, aimed
/// at a dir that looks like a finished extraction and an interrupted swap:
/// removed and never followed, nothing moved out of or into their targets.
#[tokio::test]
async fn symlinks_planted_at_the_staging_dirs_are_not_followed() {
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let m = put(&sdir, &[it("f", T::File(b"restored".to_vec()))]);
    let s = store(&sdir);
    let bait = rig.outside();
    std::fs::write(bait.join(".fm-complete"), b"").unwrap();
    std::fs::write(bait.join("etc-passwd"), b"root:x:0:0").unwrap();
    std::os::unix::fs::symlink(&bait, rig.data().join(".fm-restore-bk")).unwrap();
    let before = listing(&bait, None);
    restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap();
    assert_eq!(listing(&bait, None), before);
    assert_eq!(std::fs::read(rig.data().join("f")).unwrap(), b"restored");
    assert!(!rig.data().join("etc-passwd").exists());

    std::fs::write(bait.join(".fm-old-names"), b"[\"keep\"]").unwrap();
    std::fs::remove_file(bait.join("keep")).unwrap();
    std::fs::write(rig.data().join("keep"), b"mine").unwrap();
    std::os::unix::fs::symlink(&bait, rig.data().join(".fm-previous-bk")).unwrap();
    let before = listing(&bait, None);
    restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap();
    assert_eq!(listing(&bait, None), before, "nothing moved into the bait");
    assert_eq!(listing(&rig.data(), None).len(), 1, "just f");
}

/// A staging dir the node made itself, holding its own files and a
/// completion mark that names this very backup: not the agent's own, so
/// it is removed and the backup extracted afresh.
#[tokio::test]
async fn a_staging_dir_the_node_made_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new();
    let sdir = rig.root().join("store");
    let m = put(&sdir, &[it("f", T::File(b"restored".to_vec()))]);
    let s = store(&sdir);
    let stage = rig.data().join(".fm-restore-bk");
    std::fs::create_dir(&stage).unwrap();
    std::fs::write(stage.join("evil"), b"planted").unwrap();
    std::fs::write(
        stage.join(".fm-complete"),
        format!("{} {}\n", m.backup_id, m.archive_sha256),
    )
    .unwrap();
    std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o755)).unwrap();
    restore_into(&s, &m, None, &rig.data(), Default::default())
        .await
        .unwrap();
    assert!(
        !rig.data().join("evil").exists(),
        "the planted file came in"
    );
    assert_eq!(std::fs::read(rig.data().join("f")).unwrap(), b"restored");
}
