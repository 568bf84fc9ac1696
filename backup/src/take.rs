//! Taking a backup: walk the data dir, tar it, compress, encrypt, upload —
//! one stream, then the manifest.

use crate::crypt::{self, BackupKey, Encryptor};
use crate::location::Store;
use crate::manifest::{self, Entry, EntryKind, Manifest};
use crate::pipe::{ChannelWriter, DEPTH, Msg};
use crate::{ARCHIVE, MANIFEST, Result, err};
use object_store::WriteMultipart;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Parts of the multipart upload (S3's minimum is 5 MiB).
const PART: usize = 8 << 20;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct TakeOptions {
    pub instance_id: String,
    pub backup_id: String,
    pub node_version: String,
    /// Paths relative to the data dir whose content is skipped.
    pub exclusions: Vec<String>,
    pub key: Option<BackupKey>,
    /// Bytes of file content archived so far, for progress reports.
    pub progress: Arc<AtomicU64>,
}

/// A taken backup.
#[derive(Debug, Clone)]
pub struct TakeStats {
    pub manifest: Manifest,
    /// Hex SHA-256 of the manifest object as stored.
    pub manifest_sha256: String,
}

/// Backs up `data_dir` into `store`. A backup with the same id that an
/// earlier, interrupted run left is replaced. Nothing is committed (no
/// manifest) unless every byte of the archive was uploaded.
pub async fn take(store: &Store, data_dir: &Path, opts: &TakeOptions) -> Result<TakeStats> {
    let meta = std::fs::metadata(data_dir)
        .map_err(|e| err(format!("data dir {}: {e}", data_dir.display())))?;
    if !meta.is_dir() {
        return Err(err(format!("{} is not a directory", data_dir.display())));
    }
    store
        .delete_backup(&opts.instance_id, &opts.backup_id)
        .await?;
    let archive_path = store.object(&opts.instance_id, &opts.backup_id, ARCHIVE);
    let upload = store.inner.put_multipart(&archive_path).await?;
    let (tx, mut rx) = mpsc::channel::<Msg>(DEPTH);
    let uploader = tokio::spawn(async move {
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut ended = false;
        while let Some(m) = rx.recv().await {
            match m {
                Msg::Data(b) => {
                    if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        let _ = w.abort().await;
                        return Err(crate::Error::from(e));
                    }
                    w.put(b);
                }
                Msg::End => {
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            let _ = w.abort().await;
            return Err(err("the archive stream stopped before its end"));
        }
        w.finish().await?;
        Ok(())
    });
    let dir = data_dir.to_path_buf();
    let o = opts.clone();
    // Like `tar | zstd | encrypt`: the archiver (reading, hashing files,
    // zstd with its own worker), then a thread that encrypts when asked and
    // hashes what is stored, so the archiver's thread does no more than
    // tar's.
    let (ctx, crx) = mpsc::channel::<Msg>(DEPTH);
    let key = opts.key.clone();
    let sealer =
        tokio::task::spawn_blocking(move || seal(crx, key.as_ref(), ChannelWriter::new(tx)));
    let archiver =
        tokio::task::spawn_blocking(move || archive(&dir, &o, ChannelWriter::unhashed(ctx)));
    let archived = archiver
        .await
        .map_err(|e| err(format!("the archiver stopped: {e}")))?;
    let sealed = sealer
        .await
        .map_err(|e| err(format!("the encryption stopped: {e}")))?;
    let uploaded = uploader
        .await
        .map_err(|e| err(format!("the upload stopped: {e}")))?;
    // An upload error explains a broken pipe on the archive side: it first.
    uploaded?;
    let entries = archived?;
    let (archive_sha256, archive_size) = sealed?;
    let data_bytes = entries.iter().map(|e| e.size).sum();
    let manifest = Manifest {
        format: manifest::FORMAT,
        backup_id: opts.backup_id.clone(),
        instance_id: opts.instance_id.clone(),
        node_version: opts.node_version.clone(),
        created_at_ms: now_ms(),
        encrypted: opts.key.is_some(),
        exclusions: opts.exclusions.clone(),
        archive_size,
        archive_sha256,
        data_bytes,
        entries,
    };
    let json = serde_json::to_vec(&manifest).map_err(|e| err(e.to_string()))?;
    let stored = match &opts.key {
        Some(k) => crypt::seal(&json, k),
        None => json,
    };
    let manifest_sha256 = hex::encode(Sha256::digest(&stored));
    store
        .write(
            &store.object(&opts.instance_id, &opts.backup_id, MANIFEST),
            stored.into(),
        )
        .await?;
    Ok(TakeStats {
        manifest,
        manifest_sha256,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encrypts (with a key) the compressed stream from `rx` into `out`; (hex
/// SHA-256, size) of what was stored. A stream that stops without its end
/// mark is not completed (the upload is then aborted).
fn seal(
    mut rx: mpsc::Receiver<Msg>,
    key: Option<&BackupKey>,
    mut out: ChannelWriter,
) -> Result<(String, u64)> {
    let mut enc = key.map(Encryptor::new);
    while let Some(m) = rx.blocking_recv() {
        match (m, &mut enc) {
            (Msg::Data(b), None) => out.send_owned(b).map_err(io_err)?,
            (Msg::Data(b), Some(enc)) => {
                enc.push(&b).map_err(io_err)?;
                if let Some(sealed) = enc.ready(crate::pipe::CHUNK) {
                    out.send_owned(sealed).map_err(io_err)?;
                }
            }
            (Msg::End, enc) => {
                if let Some(enc) = enc.take() {
                    out.send_owned(enc.finish().map_err(io_err)?)
                        .map_err(io_err)?;
                }
                return out.finish().map_err(io_err);
            }
        }
    }
    Err(err("the archive stream stopped before its end"))
}

fn encoder<W: Write>(w: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut e = zstd::stream::write::Encoder::new(w, 1)?;
    e.include_checksum(true)?;
    // One worker: compression runs beside the reading and hashing.
    e.multithread(1)?;
    Ok(e)
}

/// Archives `dir` into `out`; the entries archived.
fn archive(dir: &Path, o: &TakeOptions, out: ChannelWriter) -> Result<Vec<Entry>> {
    let mut tar = tar::Builder::new(encoder(out).map_err(io_err)?);
    tar.follow_symlinks(false);
    let mut entries = Vec::new();
    let mut block = vec![0u8; BLOCK];
    let mut stack: Vec<(PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&abs)
            .map_err(|e| err(format!("can't list {}: {e}", abs.display())))?
            .map(|d| d.map(|d| d.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| err(format!("can't list {}: {e}", abs.display())))?;
        names.sort();
        // Directories are pushed in reverse so they come out in order.
        let mut subdirs = Vec::new();
        for name in names {
            let name = name.into_string().map_err(|n| {
                err(format!(
                    "{}: a file name that is not UTF-8 ({n:?}) can't be backed up",
                    abs.display()
                ))
            })?;
            if rel.is_empty() && name.starts_with(".fm-") {
                continue; // a restore's staging area
            }
            let path = abs.join(&name);
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let md = std::fs::symlink_metadata(&path)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            let mode = md.permissions().mode() & 0o7777;
            let mut h = tar::Header::new_gnu();
            h.set_mode(mode);
            h.set_mtime(md.mtime().max(0) as u64);
            h.set_uid(md.uid() as u64);
            h.set_gid(md.gid() as u64);
            let ft = md.file_type();
            if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, &r, io::empty()).map_err(io_err)?;
                entries.push(Entry {
                    path: r.clone(),
                    kind: EntryKind::Dir,
                    mode,
                    size: 0,
                    sha256: String::new(),
                    target: String::new(),
                });
                if !o.exclusions.iter().any(|x| x.trim_matches('/') == r) {
                    subdirs.push((path, r));
                }
            } else if ft.is_file() {
                let size = md.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                let f = std::fs::File::open(&path)
                    .map_err(|e| err(format!("can't read {}: {e}", path.display())))?;
                let mut hr = Hashing {
                    inner: f.take(size),
                    hasher: Sha256::new(),
                    left: size,
                    path: &path,
                    progress: &o.progress,
                };
                if h.set_path(&r).is_ok() {
                    // The name fits the header: the content goes in in
                    // large blocks (tar's own copy moves 8 KiB at a time).
                    h.set_cksum();
                    append_file(tar.get_mut(), &h, &mut hr, &mut block).map_err(io_err)?;
                } else {
                    // A long name takes tar's GNU extension entry first.
                    tar.append_data(&mut h, &r, &mut hr).map_err(io_err)?;
                }
                entries.push(Entry {
                    path: r,
                    kind: EntryKind::File,
                    mode,
                    size,
                    sha256: hex::encode(hr.hasher.finalize()),
                    target: String::new(),
                });
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(|e| err(format!("{}: {e}", path.display())))?;
                let target = target.to_str().map(str::to_owned).ok_or_else(|| {
                    err(format!(
                        "{}: a link target that is not UTF-8",
                        path.display()
                    ))
                })?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, &r, &target).map_err(io_err)?;
                entries.push(Entry {
                    path: r,
                    kind: EntryKind::Symlink,
                    mode,
                    size: 0,
                    sha256: String::new(),
                    target,
                });
            }
            // Sockets, fifos and devices are not data: skipped.
        }
        stack.extend(subdirs.into_iter().rev());
    }
    let out = tar.into_inner().map_err(io_err)?.finish().map_err(io_err)?;
    out.finish().map_err(io_err)?;
    Ok(entries)
}

/// File content is read and compressed in blocks of this size.
const BLOCK: usize = 256 << 10;

/// A regular file's entry as `tar::Builder::append_data` writes it (the
/// header, the content, zeros up to the next 512-byte boundary), moving
/// the content through `block`.
fn append_file<W: Write, R: Read>(
    w: &mut W,
    h: &tar::Header,
    content: &mut R,
    block: &mut [u8],
) -> io::Result<()> {
    w.write_all(h.as_bytes())?;
    let mut len = 0u64;
    loop {
        let n = match content.read(block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&block[..n])?;
        len += n as u64;
    }
    let pad = (512 - len % 512) % 512;
    w.write_all(&[0u8; 512][..pad as usize])
}

fn io_err(e: io::Error) -> crate::Error {
    err(format!("archiving: {e}"))
}

/// A file's content as archived: hashed, and exactly the size the header
/// announced (a file that shrank meanwhile fails the backup rather than
/// corrupting the archive).
struct Hashing<'a, R: Read> {
    inner: R,
    hasher: Sha256,
    left: u64,
    path: &'a Path,
    progress: &'a AtomicU64,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while it was archived (the node was writing to it; take the backup with the node stopped)",
                self.path.display()
            )));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
