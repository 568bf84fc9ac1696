//! File helpers: atomic writes (temp file, fsync, rename, fsync of the
//! directory), private directories, ownership matching and hashing.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A name for a temporary sibling of `path`, unique enough for one writer.
pub fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = rand::random();
    path.with_file_name(format!(".{name}.{tag}-{nonce:016x}"))
}

/// Writes `bytes` to `path` atomically with permission bits `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_sibling(path, "tmp");
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits; set exactly what was asked.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path);
    Ok(())
}

/// Like [`write_atomic`] but leaves the file alone when it already holds
/// `bytes`; keeps the existing file's mode. Returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8], new_mode: u32) -> io::Result<bool> {
    let mode = match fs::metadata(path) {
        Ok(m) => {
            if m.len() == bytes.len() as u64 && fs::read(path)? == bytes {
                return Ok(false);
            }
            m.permissions().mode() & 0o7777
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => new_mode,
        Err(e) => return Err(e),
    };
    write_atomic(path, bytes, mode)?;
    Ok(true)
}

/// Fsyncs the directory holding `path` so a rename survives a crash.
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Creates `dir` (and parents) and makes it mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Gives `path` the owner and group of `reference` when they differ (the
/// agent may run as root while the node runs as its own user). Best effort:
/// an unprivileged agent can't chown and then the files are its own anyway.
pub fn match_owner(path: &Path, reference: &Path) {
    let (Ok(want), Ok(have)) = (fs::metadata(reference), fs::symlink_metadata(path)) else {
        return;
    };
    if (want.uid(), want.gid()) != (have.uid(), have.gid()) {
        let _ = std::os::unix::fs::lchown(path, Some(want.uid()), Some(want.gid()));
    }
}

/// Creates `dir` and any missing parents up to (not including) `root`,
/// giving each created directory the owner of `root`.
pub fn create_dir_owned_like(dir: &Path, root: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        if d.starts_with(root) && d != root {
            match_owner(d, root);
        }
    }
    Ok(())
}

/// The hex SHA-256 of a file and its size (blocking).
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Copies `from` to a new file `to` (mode 0644), returning the hex SHA-256
/// and size of what was copied (blocking).
pub fn copy_hashing(from: &Path, to: &Path) -> io::Result<(String, u64)> {
    let mut src = fs::File::open(from)?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(to)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    dst.sync_all()?;
    Ok((hex::encode(h.finalize()), size))
}

/// `path` itself if it exists, else its nearest existing ancestor.
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut cur = path;
    loop {
        if cur.exists() {
            return cur.to_path_buf();
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => return PathBuf::from("/"),
        }
    }
}

/// Checks that `rel` is a relative path that stays inside its base (no
/// `..`, no root), for paths FM gives relative to the data dir.
pub fn safe_relative(rel: &str) -> Result<&Path, String> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if ok {
        Ok(p)
    } else {
        Err(format!(
            "{rel:?} must be a relative path inside the data dir"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_set_the_mode_and_leave_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret.key");
        write_atomic(&p, b"k1", 0o600).unwrap();
        write_atomic(&p, b"k2", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"k2");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_if_changed_does_not_touch_an_identical_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(write_if_changed(&p, b"x", 0o644).unwrap());
        assert!(!write_if_changed(&p, b"x", 0o644).unwrap());
        assert!(write_if_changed(&p, b"y", 0o644).unwrap());
    }

    #[test]
    fn relative_paths_may_not_escape() {
        assert!(safe_relative("config/dip.properties").is_ok());
        assert!(safe_relative("../etc/passwd").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("").is_err());
    }
}
