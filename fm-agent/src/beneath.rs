//! Files under a directory the node controls (its data dir, its home),
//! reached without following any symlink.
//!
//! The agent may be root while the node's user owns these trees and can
//! plant a symlink anywhere in them at any moment. Every path here is
//! walked one component at a time from a handle on the root with
//! `O_NOFOLLOW`; files are created with `O_EXCL` beside their final name
//! and renamed over it (`renameat` replaces a planted symlink, it doesn't
//! follow it); what is read must be a regular file (a fifo can't block the
//! agent). What the agent creates gets the root's owner, as if the node's
//! user had made it.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A handle on a node-controlled directory.
#[derive(Debug)]
pub struct Beneath {
    root: PathBuf,
    fd: OwnedFd,
    owner: Option<(u32, u32)>,
}

fn refused(p: &Path, e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR => io::Error::other(format!(
            "{} goes through a symlink or a file that is not a directory; refused",
            p.display()
        )),
        e => io::Error::new(
            io::Error::from(e).kind(),
            format!("{}: {}", p.display(), io::Error::from(e)),
        ),
    }
}

/// The normal components of `rel`; anything else (`..`, a root) refused.
fn components(rel: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} must stay inside its directory", rel.display()),
                ));
            }
        }
    }
    Ok(out)
}

impl Beneath {
    /// Opens `root` (created if missing, the path as the agent's
    /// configuration gives it). Files made under it get its owner when the
    /// agent is root.
    pub fn open(root: &Path) -> io::Result<Beneath> {
        std::fs::create_dir_all(root)?;
        let fd = rustix::fs::open(root, DIR.difference(OFlags::NOFOLLOW), Mode::empty())
            .map_err(|e| refused(root, e))?;
        let owner = if rustix::process::geteuid().is_root() {
            let st = rustix::fs::fstat(&fd).map_err(|e| refused(root, e))?;
            Some((st.st_uid, st.st_gid))
        } else {
            None
        };
        Ok(Beneath {
            root: root.to_path_buf(),
            fd,
            owner,
        })
    }

    /// The path `rel` names, for messages.
    pub fn shown(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    fn give(&self, at: impl AsFd, name: &std::ffi::OsStr) {
        if let Some((u, g)) = self.owner {
            let _ = rustix::fs::chownat(
                at,
                name,
                Some(rustix::process::Uid::from_raw(u)),
                Some(rustix::process::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
        }
    }

    /// A handle on the directory `rel`; missing directories are created
    /// (mode `mode`) when `create` is set.
    pub fn dir(&self, rel: &Path, create: Option<u32>) -> io::Result<OwnedFd> {
        let mut cur = rustix::fs::openat(&self.fd, ".", DIR, Mode::empty())
            .map_err(|e| refused(&self.root, e))?;
        let mut shown = self.root.clone();
        for name in components(rel)? {
            shown.push(name);
            let next = match rustix::fs::openat(&cur, name, DIR, Mode::empty()) {
                Err(Errno::NOENT) if create.is_some() => {
                    let mode = create.unwrap_or(0o755);
                    match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(mode)) {
                        Ok(()) => self.give(&cur, name),
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(refused(&shown, e)),
                    }
                    rustix::fs::openat(&cur, name, DIR, Mode::empty())
                }
                r => r,
            }
            .map_err(|e| refused(&shown, e))?;
            cur = next;
        }
        Ok(cur)
    }

    fn split<'a>(&self, rel: &'a Path) -> io::Result<(OwnedFd, &'a std::ffi::OsStr)> {
        let name = rel.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file name", rel.display()),
            )
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.dir(parent, None)?, name))
    }

    /// The bytes of the regular file `rel`; `None` when it doesn't exist
    /// (nor its directory).
    pub fn read(&self, rel: &Path) -> io::Result<Option<Vec<u8>>> {
        let shown = self.shown(rel);
        let (at, name) = match self.split(rel) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let fd = match rustix::fs::openat(
            &at,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(refused(&shown, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| refused(&shown, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(format!(
                "{} is not a regular file; refused",
                shown.display()
            )));
        }
        let mut v = Vec::new();
        File::from(fd).read_to_end(&mut v)?;
        Ok(Some(v))
    }

    /// Writes `bytes` to `rel` atomically: the existing file's mode when
    /// there is one (a symlink there counts as none), else `mode`. Returns
    /// whether it wrote (`false`: the file held `bytes` already).
    pub fn write_if_changed(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
        let shown = self.shown(rel);
        let (at, name) = self.split(rel)?;
        let mode = match rustix::fs::statat(&at, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                if self.read(rel)?.as_deref() == Some(bytes) {
                    return Ok(false);
                }
                st.st_mode & 0o777
            }
            Ok(_) | Err(Errno::NOENT) => mode,
            Err(e) => return Err(refused(&shown, e)),
        };
        self.write_at(&at, name, bytes, mode & 0o777, &shown)?;
        Ok(true)
    }

    /// Writes `bytes` to `rel` atomically with permission bits `mode`.
    pub fn write(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let shown = self.shown(rel);
        let (at, name) = self.split(rel)?;
        self.write_at(&at, name, bytes, mode & 0o777, &shown)
    }

    /// Copies the agent's own file `from` to `rel` (mode 0644).
    pub fn copy_in(&self, from: &Path, rel: &Path) -> io::Result<()> {
        let shown = self.shown(rel);
        let (at, name) = self.split(rel)?;
        let mut src = File::open(from)?;
        let tmp = temp_name(name);
        let mut f = self.create_temp(&at, &tmp, 0o644, &shown)?;
        let r = io::copy(&mut src, &mut f).and_then(|_| f.sync_all());
        self.finish(&at, &tmp, name, r, &shown)
    }

    fn create_temp(
        &self,
        at: &OwnedFd,
        tmp: &std::ffi::OsStr,
        mode: u32,
        shown: &Path,
    ) -> io::Result<File> {
        let fd = rustix::fs::openat(
            at,
            tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| refused(shown, e))?;
        // The umask may have removed bits; set exactly what was asked.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| refused(shown, e))?;
        if let Some((u, g)) = self.owner {
            rustix::fs::fchown(
                &fd,
                Some(rustix::process::Uid::from_raw(u)),
                Some(rustix::process::Gid::from_raw(g)),
            )
            .map_err(|e| refused(shown, e))?;
        }
        Ok(File::from(fd))
    }

    fn finish(
        &self,
        at: &OwnedFd,
        tmp: &std::ffi::OsStr,
        name: &std::ffi::OsStr,
        written: io::Result<()>,
        shown: &Path,
    ) -> io::Result<()> {
        let r = written
            .and_then(|()| rustix::fs::renameat(at, tmp, at, name).map_err(|e| refused(shown, e)));
        if r.is_err() {
            let _ = rustix::fs::unlinkat(at, tmp, AtFlags::empty());
        }
        r?;
        let _ = rustix::fs::fsync(at);
        Ok(())
    }

    fn write_at(
        &self,
        at: &OwnedFd,
        name: &std::ffi::OsStr,
        bytes: &[u8],
        mode: u32,
        shown: &Path,
    ) -> io::Result<()> {
        let tmp = temp_name(name);
        let mut f = self.create_temp(at, &tmp, mode, shown)?;
        let r = f.write_all(bytes).and_then(|()| f.sync_all());
        self.finish(at, &tmp, name, r, shown)
    }

    /// Sets the mode of `rel` (not following a symlink there: one is
    /// refused).
    pub fn chmod(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let shown = self.shown(rel);
        let fd = match self.split(rel) {
            Ok((at, name)) => rustix::fs::openat(
                &at,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| refused(&shown, e))?,
            Err(e) => return Err(e),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| refused(&shown, e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(io::Error::other(format!(
                "{} is a symlink; refused",
                shown.display()
            )));
        }
        // An O_PATH handle can't fchmod; its /proc name changes the inode.
        let proc_path = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
        rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(mode))
            .map_err(|e| refused(&shown, e))
    }

    /// Removes the file `rel` (a symlink there: the link itself).
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let shown = self.shown(rel);
        let (at, name) = self.split(rel)?;
        rustix::fs::unlinkat(&at, name, AtFlags::empty()).map_err(|e| refused(&shown, e))
    }

    /// The names in the directory `rel` (none when it doesn't exist).
    pub fn names(&self, rel: &Path) -> io::Result<Vec<String>> {
        let d = match self.dir(rel, None) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut v = Vec::new();
        for e in rustix::fs::Dir::read_from(&d).map_err(|e| refused(&self.shown(rel), e))? {
            let e = e.map_err(|e| refused(&self.shown(rel), e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n != "." && n != ".." {
                v.push(n);
            }
        }
        v.sort();
        Ok(v)
    }
}

fn temp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let nonce: u64 = rand::random();
    format!(".{}.tmp-{nonce:016x}", name.to_string_lossy()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn files_are_written_read_and_rewritten_only_when_they_change() {
        let d = tempfile::tempdir().unwrap();
        let b = Beneath::open(d.path()).unwrap();
        b.dir(Path::new("bin"), Some(0o755)).unwrap();
        let rel = Path::new("bin/env-site.sh");
        assert_eq!(b.read(rel).unwrap(), None);
        assert!(b.write_if_changed(rel, b"a\n", 0o640).unwrap());
        assert!(!b.write_if_changed(rel, b"a\n", 0o640).unwrap());
        assert_eq!(b.read(rel).unwrap().unwrap(), b"a\n");
        let m = std::fs::metadata(d.path().join(rel)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        assert_eq!(b.names(Path::new("bin")).unwrap(), ["env-site.sh"]);
    }

    #[test]
    fn a_symlinked_directory_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        symlink(&victim, data.join("bin")).unwrap();
        let b = Beneath::open(&data).unwrap();
        let e = b
            .write_if_changed(Path::new("bin/env-site.sh"), b"x", 0o644)
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(b.dir(Path::new("bin/sub"), Some(0o755)).is_err());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    }

    #[test]
    fn a_symlinked_file_is_not_read_and_is_replaced_not_written_through() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "S").unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        symlink(&secret, data.join("f")).unwrap();
        let b = Beneath::open(&data).unwrap();
        assert!(b.read(Path::new("f")).is_err());
        assert!(b.write_if_changed(Path::new("f"), b"new", 0o600).unwrap());
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "S");
        let m = std::fs::symlink_metadata(data.join("f")).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(std::fs::read(data.join("f")).unwrap(), b"new");
        assert!(b.chmod(Path::new("f"), 0o600).is_ok());
        symlink(&secret, data.join("g")).unwrap();
        assert!(b.chmod(Path::new("g"), 0o777).is_err());
        assert_ne!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o777
        );
    }

    #[test]
    fn a_fifo_is_refused_instead_of_blocking() {
        let d = tempfile::tempdir().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("p").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let b = Beneath::open(d.path()).unwrap();
        let e = b.read(Path::new("p")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn escaping_paths_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let b = Beneath::open(d.path()).unwrap();
        assert!(b.write(Path::new("../x"), b"x", 0o644).is_err());
        assert!(b.dir(Path::new("/etc"), None).is_err());
    }
}
