//! Reading a backup back: the manifest, then the archive extracted into a
//! fresh directory with every entry checked against the manifest as it is
//! written. [`restore_into`] swaps a complete extraction into the data dir;
//! [`verify`] extracts into a scratch dir, compares it with the manifest
//! from disk and removes it. All three (and so clones) extract through
//! `safe`: relative to a handle on the destination, following no symlink,
//! refusing any entry that could reach outside it.

use crate::crypt::{self, BackupKey, Decryptor};
use crate::location::Store;
use crate::manifest::{self, EntryKind, Manifest};
use crate::pipe::{ChannelReader, DEPTH};
use crate::{ARCHIVE, MANIFEST, Result, err};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Size of the ranged reads of an archive.
const RANGE: u64 = 4 << 20;
/// Ranges read ahead of the extraction.
const RANGES_AHEAD: usize = 3;

/// What a restore or a verification went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub entries: usize,
    pub files: usize,
    pub data_bytes: u64,
    pub archive_bytes: u64,
}

/// Reads and checks a backup's manifest. `expected_sha256` is the hash FM
/// recorded when the backup was taken.
pub async fn read_manifest(
    store: &Store,
    instance_id: &str,
    backup_id: &str,
    key: Option<&BackupKey>,
    expected_sha256: Option<&str>,
) -> Result<Manifest> {
    let path = store.object(instance_id, backup_id, MANIFEST);
    let stored = store.read(&path).await?;
    let shown = store.display(&path);
    if let Some(want) = expected_sha256.filter(|s| !s.is_empty()) {
        let got = hex::encode(Sha256::digest(&stored));
        if got != want {
            return Err(err(format!(
                "the manifest {shown} is corrupt: its SHA-256 is {got}, the backup recorded {want}"
            )));
        }
    }
    let json = match key {
        Some(k) => crypt::open(&stored, k)
            .map_err(|e| err(format!("the manifest {shown} can't be decrypted: {e}")))?,
        None => stored.to_vec(),
    };
    let m: Manifest = serde_json::from_slice(&json)
        .map_err(|e| err(format!("the manifest {shown} is corrupt: {e}")))?;
    if m.format != manifest::FORMAT {
        return Err(err(format!(
            "the manifest {shown} has format {}, this agent reads format {}",
            m.format,
            manifest::FORMAT
        )));
    }
    if m.backup_id != backup_id || m.instance_id != instance_id {
        return Err(err(format!(
            "the manifest {shown} is of backup {} of {}, not {backup_id} of {instance_id}",
            m.backup_id, m.instance_id
        )));
    }
    if m.encrypted != key.is_some() {
        return Err(err(format!(
            "the manifest {shown} says encrypted={}, the backup was recorded otherwise",
            m.encrypted
        )));
    }
    Ok(m)
}

/// Extracts the archive of `m` into `dest` (created; must not exist or be
/// empty), checking every entry. On any mismatch `dest` is removed and the
/// error names what was wrong.
pub async fn extract(
    store: &Store,
    m: &Manifest,
    key: Option<&BackupKey>,
    dest: &Path,
    progress: Arc<AtomicU64>,
) -> Result<RestoreStats> {
    let r = extract_inner(store, m, key, dest, progress).await;
    if r.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    r
}

async fn extract_inner(
    store: &Store,
    m: &Manifest,
    key: Option<&BackupKey>,
    dest: &Path,
    progress: Arc<AtomicU64>,
) -> Result<RestoreStats> {
    let tree = safe::Tree::create(dest)?;
    let path = store.object(&m.instance_id, &m.backup_id, ARCHIVE);
    let shown = store.display(&path);
    let size = match store.inner.head(&path).await {
        Ok(meta) => meta.size,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(err(format!("the archive {shown} is not there")));
        }
        Err(e) => return Err(e.into()),
    };
    if size != m.archive_size {
        return Err(err(format!(
            "backup {} can't be restored from {shown}: the archive is corrupt (it is {size} bytes, the manifest recorded {})",
            m.backup_id, m.archive_size
        )));
    }
    // Ranged reads, one ahead of the extraction: large reads on every kind
    // of store, and a bounded amount in memory.
    let (tx, rx) = mpsc::channel::<std::result::Result<bytes::Bytes, String>>(RANGES_AHEAD);
    let inner = store.inner.clone();
    let p2 = path.clone();
    let downloader = tokio::spawn(async move {
        let mut start = 0u64;
        while start < size {
            let end = (start + RANGE).min(size);
            let r = inner
                .get_range(&p2, start..end)
                .await
                .map_err(|e| format!("object storage: {e}"));
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                break;
            }
            start = end;
        }
    });
    // Threads like `decrypt | zstd -d | tar -x`: one decrypts and hashes
    // the stored archive (when encrypted), one decompresses (and hashes a
    // plain archive), one unpacks, hashes and writes the files.
    let (dtx, drx) = mpsc::channel::<std::result::Result<bytes::Bytes, String>>(DEPTH);
    let m2 = m.clone();
    let (opener, decoder) = match key.cloned() {
        None => (
            None,
            tokio::task::spawn_blocking(move || decode(ChannelReader::new(rx), Some(&m2), &dtx)),
        ),
        Some(k) => {
            let (otx, orx) = mpsc::channel::<std::result::Result<bytes::Bytes, String>>(DEPTH);
            let m4 = m.clone();
            let opener = tokio::task::spawn_blocking(move || {
                open_stream(ChannelReader::unhashed(rx), &k, &m4, &otx)
            });
            (
                Some(opener),
                tokio::task::spawn_blocking(move || {
                    decode(ChannelReader::unhashed(orx), None, &dtx)
                }),
            )
        }
    };
    let m3 = m.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        unpack(ChannelReader::unhashed(drx), &m3, tree, &progress)
    });
    let opened = match opener {
        Some(o) => Some(
            o.await
                .map_err(|e| err(format!("the extraction stopped: {e}")))?,
        ),
        None => None,
    };
    let decoded = decoder
        .await
        .map_err(|e| err(format!("the extraction stopped: {e}")))?;
    // A fault of the stored object explains the later stages' faults.
    let decoded = match opened {
        Some(Err(e)) => Err(e),
        Some(Ok(Some(size))) => decoded.map(|d| d.map(|_| size)),
        _ => decoded,
    };
    let unpacked = unpacker
        .await
        .map_err(|e| err(format!("the extraction stopped: {e}")))?;
    downloader.abort();
    let r = match (decoded, unpacked) {
        // A fault of the archive itself explains the unpacker's too.
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(Some(size)), Ok(mut stats)) => {
            stats.archive_bytes = size;
            Ok(stats)
        }
        (Ok(None), Ok(_)) => Err(err("the archive stream stopped early")),
    };
    r.map_err(|e| {
        err(format!(
            "backup {} can't be restored from {shown}: {}",
            m.backup_id, e.0
        ))
    })
}

fn corrupt(e: impl std::fmt::Display) -> crate::Error {
    err(format!("the archive is corrupt ({e})"))
}

type Chunks = mpsc::Sender<std::result::Result<bytes::Bytes, String>>;

/// Reads `src` to its end into `out` in chunks; false if the reader of
/// `out` went away.
fn pump(src: &mut impl Read, out: &Chunks) -> Result<bool> {
    loop {
        let mut buf = bytes::BytesMut::zeroed(crate::pipe::CHUNK);
        let mut have = 0;
        while have < buf.len() {
            let n = src.read(&mut buf[have..]).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            have += n;
        }
        if have == 0 {
            return Ok(true);
        }
        buf.truncate(have);
        if out.blocking_send(Ok(buf.freeze())).is_err() {
            return Ok(false);
        }
    }
}

/// The stored archive's size and hash must be the manifest's (an
/// encrypted archive's reader does not hash: every segment was
/// authenticated and the last one marked, which says more).
fn check_stored(input: ChannelReader, m: &Manifest) -> Result<u64> {
    let (sha, size) = input.finish().map_err(corrupt)?;
    let hashed = !sha.is_empty();
    if (hashed && sha != m.archive_sha256) || size != m.archive_size {
        return Err(corrupt(if hashed {
            format!(
                "{size} bytes with SHA-256 {sha}; the manifest recorded {} bytes with {}",
                m.archive_size, m.archive_sha256
            )
        } else {
            format!("{size} bytes; the manifest recorded {}", m.archive_size)
        }));
    }
    Ok(size)
}

/// Sends a stage's error down the pipeline too, so the next stage stops.
fn passing_on<T>(r: Result<T>, out: &Chunks) -> Result<T> {
    if let Err(e) = &r {
        let _ = out.blocking_send(Err(e.0.clone()));
    }
    r
}

/// Decrypts the stored archive into `out`, then checks its size and hash.
/// `Ok(None)`: the next stage stopped reading (its error says why).
fn open_stream(
    input: ChannelReader,
    key: &BackupKey,
    m: &Manifest,
    out: &Chunks,
) -> Result<Option<u64>> {
    let r = (|| {
        let mut src = Decryptor::new(input, key).map_err(corrupt)?;
        if !pump(&mut src, out)? {
            return Ok(None);
        }
        check_stored(src.into_inner(), m).map(Some)
    })();
    passing_on(r, out)
}

/// Decompresses into `out`; when `stored` is given, `input` is the stored
/// archive and its size and hash are checked at the end.
fn decode(input: ChannelReader, stored: Option<&Manifest>, out: &Chunks) -> Result<Option<u64>> {
    let r = (|| {
        let mut src = zstd::stream::read::Decoder::new(input).map_err(corrupt)?;
        if !pump(&mut src, out)? {
            return Ok(None);
        }
        let input = src.finish().into_inner();
        match stored {
            Some(m) => check_stored(input, m).map(Some),
            None => input.finish().map(|(_, n)| Some(n)).map_err(corrupt),
        }
    })();
    passing_on(r, out)
}

fn unpack(
    src: ChannelReader,
    m: &Manifest,
    tree: safe::Tree,
    progress: &AtomicU64,
) -> Result<RestoreStats> {
    let mut tree = tree;
    let mut expected: HashMap<&str, &manifest::Entry> = HashMap::with_capacity(m.entries.len());
    for e in &m.entries {
        if expected.insert(e.path.as_str(), e).is_some() {
            return Err(corrupt(format!("the manifest lists {} twice", e.path)));
        }
    }
    let mut seen = 0usize;
    let mut stats = RestoreStats::default();
    let mut buf = vec![0u8; 128 << 10];
    let mut tar = tar::Archive::new(src);
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let (rel, comps) = safe::check_path(&entry.path_bytes())?;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular => EntryKind::File,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => return Err(unsafe_entry(&rel, "is a hard link (refused)")),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(unsafe_entry(&rel, "is a device file (refused)"));
            }
            tar::EntryType::Fifo => return Err(unsafe_entry(&rel, "is a fifo (refused)")),
            t => {
                return Err(unsafe_entry(
                    &rel,
                    format!(
                        "is of tar type {:?} (only directories, files and symlinks are restored)",
                        t.as_byte() as char
                    ),
                ));
            }
        };
        tree.check_new(&rel)?;
        let want = expected
            .get(rel.as_str())
            .ok_or_else(|| corrupt(format!("{rel} is not in the manifest")))?;
        if kind != want.kind {
            return Err(corrupt(format!(
                "{rel} is a {kind:?} in the archive and a {:?} in the manifest",
                want.kind
            )));
        }
        match kind {
            EntryKind::Dir => tree.dir(&rel, &comps, want.mode)?,
            EntryKind::File => {
                let f = tree.file(&rel, &comps)?;
                let mut w = io::BufWriter::with_capacity(256 << 10, f);
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(corrupt)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    w.write_all(&buf[..n]).map_err(|e| written(&rel, e))?;
                    size += n as u64;
                    progress.fetch_add(n as u64, Ordering::Relaxed);
                }
                let sha = hex::encode(hasher.finalize());
                if size != want.size || sha != want.sha256 {
                    return Err(corrupt(format!(
                        "{rel} differs from the manifest: {size} bytes with SHA-256 {sha}, expected {} bytes with {}",
                        want.size, want.sha256
                    )));
                }
                let f = w.into_inner().map_err(|e| written(&rel, e.into_error()))?;
                tree.file_done(&rel, &f, want.mode)?;
                if let Ok(mtime) = entry.header().mtime() {
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    let _ = f.set_modified(t);
                }
                stats.files += 1;
                stats.data_bytes += size;
            }
            EntryKind::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&rel, "is a symlink with an empty target"))?;
                if *link != *want.target.as_bytes() {
                    return Err(corrupt(format!(
                        "{rel}: the link target differs from the manifest"
                    )));
                }
                tree.symlink(&rel, &comps, &want.target)?;
            }
        }
        seen += 1;
    }
    if seen != m.entries.len() {
        return Err(corrupt(format!(
            "it holds {seen} of the manifest's {} entries",
            m.entries.len()
        )));
    }
    tree.finish()?;
    // Read to the end of the stream: the decoder checks the zstd frame's
    // checksum, the encryption's last segment and the archive's hash there,
    // and reports a fault through the stream.
    let mut src = tar.into_inner();
    io::copy(&mut src, &mut io::sink()).map_err(corrupt)?;
    stats.entries = seen;
    Ok(stats)
}

fn unsafe_entry(rel: &str, why: impl std::fmt::Display) -> crate::Error {
    err(format!("the archive is unsafe: entry {rel:?} {why}"))
}

fn written(rel: &str, e: io::Error) -> crate::Error {
    err(format!("entry {rel:?}: can't write the file: {e}"))
}

fn local(p: &Path, e: io::Error) -> crate::Error {
    err(format!("{}: {e}", p.display()))
}

/// Compares `dir` with `m`, reading every file back from disk (walking
/// each path from a handle on `dir`, following no symlink).
pub fn compare(dir: &Path, m: &Manifest) -> Result<()> {
    let mut walker = safe::Walker::open(dir)?;
    for e in &m.entries {
        let (_, comps) = safe::check_path(e.path.as_bytes())?;
        let (name, parents) = comps.split_last().expect("a checked path has a name");
        let at = walker.dir(parents).map_err(|x| {
            err(format!(
                "{} is missing after extraction: {}",
                e.path,
                io::Error::from(x)
            ))
        })?;
        let st = rustix::fs::statat(at, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| {
                err(format!(
                    "{} is missing after extraction: {}",
                    e.path,
                    io::Error::from(x)
                ))
            })?;
        let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
        match e.kind {
            EntryKind::Dir if ft == rustix::fs::FileType::Directory => {}
            EntryKind::Symlink if ft == rustix::fs::FileType::Symlink => {}
            EntryKind::File if ft == rustix::fs::FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    at,
                    name.as_str(),
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::NOFOLLOW
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|x| {
                    err(format!(
                        "{}: can't read it back: {}",
                        e.path,
                        io::Error::from(x)
                    ))
                })?;
                let mut f = std::fs::File::from(fd);
                let mut h = Sha256::new();
                let n = io::copy(&mut f, &mut h)
                    .map_err(|x| err(format!("{}: can't read it back: {x}", e.path)))?;
                let sha = hex::encode(h.finalize());
                if sha != e.sha256 || n != e.size {
                    return Err(err(format!(
                        "{} read back from disk differs from the manifest",
                        e.path
                    )));
                }
            }
            _ => {
                return Err(err(format!(
                    "{} has the wrong kind after extraction",
                    e.path
                )));
            }
        }
    }
    Ok(())
}

/// Verifies a backup: extracts it into `scratch`, compares what landed on
/// disk with the manifest, and removes `scratch` whatever the outcome.
pub async fn verify(
    store: &Store,
    m: &Manifest,
    key: Option<&BackupKey>,
    scratch: &Path,
    progress: Arc<AtomicU64>,
) -> Result<RestoreStats> {
    let _ = std::fs::remove_dir_all(scratch);
    let r = match extract(store, m, key, scratch, progress).await {
        Ok(stats) => {
            let dir = scratch.to_path_buf();
            let m2 = m.clone();
            tokio::task::spawn_blocking(move || compare(&dir, &m2))
                .await
                .map_err(|e| err(format!("the comparison stopped: {e}")))?
                .map(|()| stats)
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(scratch);
    r
}

const COMPLETE: &str = ".fm-complete";
const OLD_NAMES: &str = ".fm-old-names";

fn staging(data_dir: &Path, backup_id: &str) -> (PathBuf, PathBuf) {
    (
        data_dir.join(format!(".fm-restore-{backup_id}")),
        data_dir.join(format!(".fm-previous-{backup_id}")),
    )
}

#[cfg(test)]
fn top_names(dir: &Path) -> Result<Vec<String>> {
    safe::names(&safe::open_trusted(dir)?, dir)
}

/// Restores `m` into `data_dir`: extracts and checks it beside the current
/// data (in `data_dir/.fm-restore-<backup>`), and only then swaps it in.
/// A corrupt backup leaves the current data untouched. Run again after a
/// crash, it finishes an interrupted swap instead of starting over.
///
/// The swap works on handles too: the staging and previous dirs are opened
/// without following a symlink (one planted there is removed, not
/// followed), and every move is a `renameat` between handles, so nothing
/// the node puts in its data dir meanwhile redirects a move as root.
pub async fn restore_into(
    store: &Store,
    m: &Manifest,
    key: Option<&BackupKey>,
    data_dir: &Path,
    progress: Arc<AtomicU64>,
) -> Result<RestoreStats> {
    std::fs::create_dir_all(data_dir).map_err(|e| local(data_dir, e))?;
    let (stage, previous) = staging(data_dir, &m.backup_id);
    let stage_name = format!(".fm-restore-{}", m.backup_id);
    let previous_name = format!(".fm-previous-{}", m.backup_id);
    let data = safe::open_trusted(data_dir)?;
    let mut stats = RestoreStats::default();
    // A staging or previous dir counts only if the agent made it (its own,
    // 0700) and marked it for this very backup: one the node's user planted
    // is removed and redone, never trusted.
    let mark = format!("{} {}\n", m.backup_id, m.archive_sha256);
    let mut prev = safe::sub_dir(&data, &previous_name, &previous)?;
    let swapping = prev
        .as_ref()
        .is_some_and(|p| safe::is_private(p) && safe::exists_at(p, OLD_NAMES));
    if !swapping {
        drop(prev);
        let _ = std::fs::remove_dir_all(&previous);
        let complete = safe::sub_dir(&data, &stage_name, &stage)?.is_some_and(|s| {
            safe::is_private(&s)
                && safe::read_at(&s, COMPLETE, &stage).is_ok_and(|b| b == mark.as_bytes())
        });
        if !complete {
            let _ = std::fs::remove_dir_all(&stage);
            stats = extract(store, m, key, &stage, progress).await?;
            let s = safe::sub_dir(&data, &stage_name, &stage)?
                .ok_or_else(|| err(format!("{} went away", stage.display())))?;
            safe::write_at(&s, COMPLETE, mark.as_bytes(), &stage)?;
        }
        // Record what is there now, then move it aside.
        let p = safe::make_dir_at(&data, &previous_name, &previous)?;
        let old = safe::names(&data, data_dir)?;
        let list = serde_json::to_vec(&old).map_err(|e| err(e.to_string()))?;
        safe::write_at(&p, ".fm-old-names.tmp", &list, &previous)?;
        rustix::fs::renameat(&p, ".fm-old-names.tmp", &p, OLD_NAMES)
            .map_err(|e| local(&previous, e.into()))?;
        prev = Some(p);
    }
    let prev = prev.expect("the previous dir is open");
    let list = safe::read_at(&prev, OLD_NAMES, &previous)?;
    let old: Vec<String> = serde_json::from_slice(&list).map_err(|e| err(e.to_string()))?;
    for name in &old {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(err(format!(
                "{}: the list of names holds {name:?}",
                previous.display()
            )));
        }
        if !safe::exists_at(&prev, name) && safe::exists_at(&data, name) {
            rustix::fs::renameat(&data, name.as_str(), &prev, name.as_str())
                .map_err(|e| local(&data_dir.join(name), e.into()))?;
        }
    }
    if let Some(st) = safe::sub_dir(&data, &stage_name, &stage)? {
        for name in safe::names(&st, &stage)? {
            rustix::fs::renameat(&st, name.as_str(), &data, name.as_str())
                .map_err(|e| local(&stage.join(&name), e.into()))?;
        }
        drop(st);
        std::fs::remove_dir_all(&stage).map_err(|e| local(&stage, e))?;
    }
    drop(prev);
    std::fs::remove_dir_all(&previous).map_err(|e| local(&previous, e))?;
    Ok(stats)
}

mod safe;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod prop_tests;
