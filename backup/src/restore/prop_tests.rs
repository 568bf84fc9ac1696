//! Generated archives over a small alphabet of names (`a`, `b`, `..`, `.`,
//! empty), absolute and relative paths, symlinks to random targets (some
//! absolute, into the surroundings), hard links and fifos: whatever the
//! restore and the verification make of them, nothing around the data dir
//! changes, a refused restore leaves the data dir as it was, and every
//! symlink a successful one leaves resolves inside the data dir.

use super::hostile_tests::{It, T, listing, put, store};
use super::*;
use proptest::prelude::*;

/// Stands for the absolute path of the dir beside the data dir.
const OUT: &str = "@OUT";
/// Stands for the absolute path of the dir holding everything.
const ROOT: &str = "@ROOT";

fn name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("a"),
        4 => Just("b"),
        2 => Just(".."),
        1 => Just("."),
        1 => Just(""),
    ]
}

fn clean_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b")]
}

/// Mostly clean paths (their parents can be filled in), some with every
/// kind of dot, slash and emptiness.
fn rel_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            3 => prop::collection::vec(clean_name(), 1..4),
            1 => prop::collection::vec(name(), 1..5),
        ],
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(names, lead, trail)| {
            let mut s = names.join("/");
            if lead {
                s.insert(0, '/');
            }
            if trail {
                s.push('/');
            }
            s
        })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => rel_path(),
        3 => prop::collection::vec(prop_oneof![Just(".."), clean_name()], 1..6)
            .prop_map(|v| v.join("/")),
        1 => Just(OUT.to_owned()),
        1 => Just(ROOT.to_owned()),
        1 => rel_path().prop_map(|p| format!("{OUT}/{p}")),
    ]
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File,
    Sym(String),
    Hard(String),
    Fifo,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Dir),
        3 => Just(Kind::File),
        5 => target().prop_map(Kind::Sym),
        1 => target().prop_map(Kind::Hard),
        1 => Just(Kind::Fifo),
    ]
}

/// Entries, each with its missing parent directories put before it when
/// the flag is set.
fn archive() -> impl Strategy<Value = Vec<(String, Kind, bool)>> {
    prop::collection::vec((rel_path(), kind(), prop::bool::weighted(0.8)), 1..9)
}

/// The archive's entries: the missing parents of a flagged entry are made
/// directories first (a path already in the archive, whatever it is, is not
/// added again).
fn entries(generated: &[(String, Kind, bool)]) -> Vec<(String, Kind)> {
    let mut out: Vec<(String, Kind)> = Vec::new();
    for (p, k, parents) in generated {
        if *parents {
            let names: Vec<&str> = p.trim_matches('/').split('/').collect();
            for n in 1..names.len() {
                let d = names[..n].join("/");
                if !out.iter().any(|(q, _)| q.trim_end_matches('/') == d) {
                    out.push((d, Kind::Dir));
                }
            }
        }
        out.push((p.clone(), k.clone()));
    }
    out
}

fn subst(s: &str, root: &Path) -> Vec<u8> {
    s.replace(OUT, root.join("outside").to_str().unwrap())
        .replace(ROOT, root.to_str().unwrap())
        .into_bytes()
}

fn check(items: &[(String, Kind)]) -> std::result::Result<(), TestCaseError> {
    // In memory when there is a tmpfs: the cases are all file system calls.
    let t = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm"),
        false => tempfile::tempdir(),
    }
    .unwrap();
    let root = t.path();
    // The data dir sits deep enough that `..` from it lands in `root`.
    let data = root.join("p/q/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(root.join("outside/a")).unwrap();
    std::fs::write(root.join("outside/keep"), b"outside").unwrap();
    std::fs::write(root.join("p/q/sibling"), b"sibling").unwrap();
    std::fs::write(data.join("current"), b"today's work").unwrap();
    let arch: Vec<It> = items
        .iter()
        .map(|(p, k)| It {
            path: subst(p, root),
            t: match k {
                Kind::Dir => T::Dir,
                Kind::File => T::File(p.as_bytes().to_vec()),
                Kind::Sym(x) => T::Sym(subst(x, root)),
                Kind::Hard(x) => T::Hard(subst(x, root)),
                Kind::Fifo => T::Fifo,
            },
            mode: 0o755,
        })
        .collect();
    let sdir = t.path().join("store");
    put(&sdir, &arch);
    let around = || {
        let mut v = listing(root, Some("store"));
        v.retain(|l| !l.starts_with("p/q/data/") && !l.starts_with("p/q/data "));
        v
    };
    let before_around = around();
    let before_data = listing(&data, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = store(&sdir);
    let (v, r) = rt.block_on(async {
        let m = read_manifest(&s, "inst", "bk", None, None).await.unwrap();
        let v = verify(
            &s,
            &m,
            None,
            &data.join(".fm-verify-bk"),
            Default::default(),
        )
        .await;
        let r = restore_into(&s, &m, None, &data, Default::default()).await;
        (v, r)
    });
    prop_assert_eq!(around(), before_around, "outside changed: {:?}", r);
    prop_assert!(!data.join(".fm-verify-bk").exists());
    prop_assert!(!data.join(".fm-restore-bk").exists());
    prop_assert_eq!(v.is_ok(), r.is_ok(), "verify {:?}, restore {:?}", v, r);
    match r {
        Err(_) => prop_assert_eq!(listing(&data, None), before_data),
        Ok(_) => {
            let inside = data.canonicalize().unwrap();
            let mut stack = vec![data.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    let md = p.symlink_metadata().unwrap();
                    if md.file_type().is_symlink() {
                        if let Ok(to) = p.canonicalize() {
                            prop_assert!(to.starts_with(&inside), "{:?} -> {:?}", p, to);
                        }
                    } else if md.is_dir() {
                        stack.push(p);
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_archive_writes_outside_the_data_dir(generated in archive()) {
        check(&entries(&generated))?;
    }
}

/// A few archives of the generator's kind that restore, so the property is
/// not only ever about refusals.
#[test]
fn the_alphabet_makes_restorable_archives_too() {
    let items = vec![
        ("a".to_owned(), Kind::Dir),
        ("a/b".to_owned(), Kind::File),
        ("b".to_owned(), Kind::Sym("a/b".to_owned())),
        ("a/a".to_owned(), Kind::Sym("..".to_owned())),
    ];
    check(&items).unwrap();
}
