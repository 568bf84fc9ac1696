//! Reading a backup back: the manifest, then the archive extracted into a
//! fresh directory with every entry checked against the manifest as it is
//! written. [`restore_into`] swaps a complete extraction into the data dir;
//! [`verify`] extracts into a scratch dir, compares it with the manifest
//! from disk and removes it.

use crate::crypt::{self, BackupKey, Decryptor};
use crate::location::Store;
use crate::manifest::{self, EntryKind, Manifest};
use crate::pipe::{ChannelReader, DEPTH};
use crate::{ARCHIVE, MANIFEST, Result, err};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

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
    std::fs::create_dir_all(dest)
        .map_err(|e| err(format!("can't create {}: {e}", dest.display())))?;
    if std::fs::read_dir(dest)
        .map(|mut d| d.next().is_some())
        .unwrap_or(true)
    {
        return Err(err(format!("{} is not empty", dest.display())));
    }
    let path = store.object(&m.instance_id, &m.backup_id, ARCHIVE);
    let shown = store.display(&path);
    let got = match store.inner.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(err(format!("the archive {shown} is not there")));
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, rx) = mpsc::channel::<std::result::Result<bytes::Bytes, String>>(DEPTH);
    let downloader = tokio::spawn(async move {
        let mut s = got.into_stream();
        while let Some(c) = s.next().await {
            let msg = c.map_err(|e| format!("object storage: {e}"));
            let stop = msg.is_err();
            if tx.send(msg).await.is_err() || stop {
                break;
            }
        }
    });
    let m2 = m.clone();
    let key = key.cloned();
    let dest2 = dest.to_path_buf();
    let r = tokio::task::spawn_blocking(move || {
        unpack(ChannelReader::new(rx), &m2, key.as_ref(), &dest2, &progress)
    })
    .await
    .map_err(|e| err(format!("the extraction stopped: {e}")))?;
    downloader.abort();
    r.map_err(|e| {
        err(format!(
            "backup {} can't be restored from {shown}: {}",
            m.backup_id, e.0
        ))
    })
}

enum Source {
    Plain(zstd::stream::read::Decoder<'static, io::BufReader<ChannelReader>>),
    Sealed(zstd::stream::read::Decoder<'static, io::BufReader<Decryptor<ChannelReader>>>),
}

impl Read for Source {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(b),
            Source::Sealed(r) => r.read(b),
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> crate::Error {
    err(format!("the archive is corrupt ({e})"))
}

fn unpack(
    input: ChannelReader,
    m: &Manifest,
    key: Option<&BackupKey>,
    dest: &Path,
    progress: &AtomicU64,
) -> Result<RestoreStats> {
    let src = match key {
        Some(k) => Source::Sealed(
            zstd::stream::read::Decoder::new(Decryptor::new(input, k).map_err(corrupt)?)
                .map_err(corrupt)?,
        ),
        None => Source::Plain(zstd::stream::read::Decoder::new(input).map_err(corrupt)?),
    };
    let expected: HashMap<&str, &manifest::Entry> =
        m.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut seen = 0usize;
    let mut stats = RestoreStats::default();
    let mut tar = tar::Archive::new(src);
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let rel = path
            .to_str()
            .ok_or_else(|| corrupt("a path that is not UTF-8"))?
            .trim_end_matches('/')
            .to_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(corrupt(format!("an unsafe path {rel:?}")));
        }
        let want = expected
            .get(rel.as_str())
            .ok_or_else(|| corrupt(format!("{rel} is not in the manifest")))?;
        let target = dest.join(&path);
        match (entry.header().entry_type(), want.kind) {
            (tar::EntryType::Directory, EntryKind::Dir) => {
                std::fs::create_dir_all(&target).map_err(|e| local(&target, e))?;
            }
            (tar::EntryType::Regular, EntryKind::File) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| local(parent, e))?;
                }
                let f = std::fs::File::create(&target).map_err(|e| local(&target, e))?;
                let mut w = io::BufWriter::with_capacity(256 << 10, f);
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 128 << 10];
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(corrupt)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    w.write_all(&buf[..n]).map_err(|e| local(&target, e))?;
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
                let f = w.into_inner().map_err(|e| local(&target, e.into_error()))?;
                if let Ok(mtime) = entry.header().mtime() {
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    let _ = f.set_modified(t);
                }
                stats.files += 1;
                stats.data_bytes += size;
            }
            (tar::EntryType::Symlink, EntryKind::Symlink) => {
                let link = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| corrupt(format!("{rel}: a link without a target")))?;
                if link.to_str() != Some(want.target.as_str()) {
                    return Err(corrupt(format!(
                        "{rel}: the link target differs from the manifest"
                    )));
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| local(parent, e))?;
                }
                std::os::unix::fs::symlink(&*link, &target).map_err(|e| local(&target, e))?;
            }
            (t, k) => {
                return Err(corrupt(format!(
                    "{rel} is a {t:?} in the archive and a {k:?} in the manifest"
                )));
            }
        }
        if want.kind != EntryKind::Symlink {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(want.mode))
                .map_err(|e| local(&target, e))?;
        }
        seen += 1;
    }
    if seen != m.entries.len() {
        return Err(corrupt(format!(
            "it holds {seen} of the manifest's {} entries",
            m.entries.len()
        )));
    }
    // Read to the end of the stream: the zstd frame's checksum and the
    // encryption's last segment are checked there.
    let mut src = tar.into_inner();
    io::copy(&mut src, &mut io::sink()).map_err(corrupt)?;
    let input = match src {
        Source::Plain(d) => d.finish().into_inner(),
        Source::Sealed(d) => d.finish().into_inner().into_inner(),
    };
    let (sha, size) = input.finish().map_err(corrupt)?;
    if sha != m.archive_sha256 || size != m.archive_size {
        return Err(corrupt(format!(
            "{size} bytes with SHA-256 {sha}; the manifest recorded {} bytes with {}",
            m.archive_size, m.archive_sha256
        )));
    }
    stats.entries = seen;
    stats.archive_bytes = size;
    Ok(stats)
}

fn local(p: &Path, e: io::Error) -> crate::Error {
    err(format!("{}: {e}", p.display()))
}

/// Compares `dir` with `m`, reading every file back from disk.
pub fn compare(dir: &Path, m: &Manifest) -> Result<()> {
    for e in &m.entries {
        let p = dir.join(&e.path);
        let md = std::fs::symlink_metadata(&p)
            .map_err(|x| err(format!("{} is missing after extraction: {x}", e.path)))?;
        match e.kind {
            EntryKind::Dir if md.is_dir() => {}
            EntryKind::Symlink if md.file_type().is_symlink() => {}
            EntryKind::File if md.is_file() => {
                let mut f = std::fs::File::open(&p).map_err(|x| local(&p, x))?;
                let mut h = Sha256::new();
                io::copy(&mut f, &mut h).map_err(|x| local(&p, x))?;
                let sha = hex::encode(h.finalize());
                if sha != e.sha256 || md.len() != e.size {
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

fn top_names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(dir).map_err(|e| local(dir, e))? {
        let name = d.map_err(|e| local(dir, e))?.file_name();
        let name = name.into_string().map_err(|n| {
            err(format!(
                "{}: a name that is not UTF-8 ({n:?})",
                dir.display()
            ))
        })?;
        if !name.starts_with(".fm-") {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

/// Restores `m` into `data_dir`: extracts and checks it beside the current
/// data (in `data_dir/.fm-restore-<backup>`), and only then swaps it in.
/// A corrupt backup leaves the current data untouched. Run again after a
/// crash, it finishes an interrupted swap instead of starting over.
pub async fn restore_into(
    store: &Store,
    m: &Manifest,
    key: Option<&BackupKey>,
    data_dir: &Path,
    progress: Arc<AtomicU64>,
) -> Result<RestoreStats> {
    std::fs::create_dir_all(data_dir).map_err(|e| local(data_dir, e))?;
    let (stage, previous) = staging(data_dir, &m.backup_id);
    let mut stats = RestoreStats::default();
    let swapping = previous.join(OLD_NAMES).exists();
    if !swapping {
        let _ = std::fs::remove_dir_all(&previous);
        if !stage.join(COMPLETE).exists() {
            let _ = std::fs::remove_dir_all(&stage);
            stats = extract(store, m, key, &stage, progress).await?;
            std::fs::write(stage.join(COMPLETE), b"").map_err(|e| local(&stage, e))?;
        }
        // Record what is there now, then move it aside.
        std::fs::create_dir_all(&previous).map_err(|e| local(&previous, e))?;
        let old = top_names(data_dir)?;
        let list = serde_json::to_vec(&old).map_err(|e| err(e.to_string()))?;
        let tmp = previous.join(".fm-old-names.tmp");
        std::fs::write(&tmp, list).map_err(|e| local(&tmp, e))?;
        std::fs::rename(&tmp, previous.join(OLD_NAMES)).map_err(|e| local(&previous, e))?;
    }
    let list = std::fs::read(previous.join(OLD_NAMES)).map_err(|e| local(&previous, e))?;
    let old: Vec<String> = serde_json::from_slice(&list).map_err(|e| err(e.to_string()))?;
    for name in &old {
        let (from, to) = (data_dir.join(name), previous.join(name));
        if !to.exists() && from.symlink_metadata().is_ok() {
            std::fs::rename(&from, &to).map_err(|e| local(&from, e))?;
        }
    }
    if stage.exists() {
        for name in top_names(&stage)? {
            let (from, to) = (stage.join(&name), data_dir.join(&name));
            std::fs::rename(&from, &to).map_err(|e| local(&from, e))?;
        }
        std::fs::remove_dir_all(&stage).map_err(|e| local(&stage, e))?;
    }
    std::fs::remove_dir_all(&previous).map_err(|e| local(&previous, e))?;
    Ok(stats)
}

#[cfg(test)]
mod tests;
