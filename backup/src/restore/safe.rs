//! Writing an archive's entries into a fresh directory without ever leaving
//! it: every path is walked one component at a time from a handle on the
//! destination, with `openat(…, O_NOFOLLOW | O_DIRECTORY)`, and every entry
//! is created relative to its parent's handle (`mkdirat`, `openat(O_CREAT |
//! O_EXCL | O_NOFOLLOW)`, `symlinkat`). Nothing is ever resolved through a
//! path string, so no symlink (the archive's or anybody's) is followed.
//!
//! The rules, each refusal naming the entry and the rule:
//! - a path is relative, UTF-8, made of non-empty names other than `.` and
//!   `..` of at most 255 bytes (a trailing `/` is allowed); top-level names
//!   starting with `.fm-` are reserved for restores;
//! - only directories, regular files and symlinks; hard links, devices,
//!   fifos and every other type are refused;
//! - a path appears once in the archive;
//! - an entry's parent is a directory an earlier entry of the archive
//!   created: never a symlink, a file, or something missing;
//! - a symlink's target is relative, and resolving it from where it sits,
//!   through the archive's other symlinks, never leaves the destination
//!   (checked as each link is made and again for all links at the end, so
//!   the order of the entries changes nothing);
//! - modes keep their permission bits only (`& 0o777`): setuid, setgid and
//!   sticky bits are dropped, since the archive's owners are not restored.
//!   When the agent runs as root, every entry is given the owner and group
//!   of the directory holding the destination (the data dir, which belongs
//!   to the node's user): the archive's uid and gid are never trusted. The
//!   destination itself stays `0700` and the extracting user's until it is
//!   swapped in or removed, so nobody can touch the tree while it is built.

use crate::{Result, err};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Longest name of a path component (Linux's `NAME_MAX`).
const NAME_MAX: usize = 255;
/// Symlinks expanded while resolving one target before it counts as a loop
/// (the kernel's limit).
const MAX_EXPANSIONS: usize = 40;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn refused(rel: &str, why: impl std::fmt::Display) -> crate::Error {
    err(format!("the archive is unsafe: entry {rel:?} {why}"))
}

fn io(rel: &str, what: &str, e: Errno) -> crate::Error {
    err(format!(
        "entry {rel:?}: can't {what}: {}",
        std::io::Error::from(e)
    ))
}

/// Splits an archive path into its names, or says which rule it breaks.
pub(super) fn check_path(raw: &[u8]) -> Result<(String, Vec<String>)> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let s =
        std::str::from_utf8(raw).map_err(|_| refused(&shown, "has a name that is not UTF-8"))?;
    if s.starts_with('/') {
        return Err(refused(s, "is an absolute path"));
    }
    let rel = s.strip_suffix('/').unwrap_or(s);
    if rel.is_empty() {
        return Err(refused(s, "has an empty path"));
    }
    let mut comps = Vec::new();
    for c in rel.split('/') {
        match c {
            "" => return Err(refused(s, "has an empty name (`//`) in its path")),
            "." => return Err(refused(s, "has a `.` in its path")),
            ".." => return Err(refused(s, "has a `..` in its path")),
            c if c.contains('\0') => return Err(refused(s, "has a NUL byte in its path")),
            c if c.len() > NAME_MAX => {
                return Err(refused(
                    s,
                    format!("has a name of {} bytes (at most {NAME_MAX})", c.len()),
                ));
            }
            c => comps.push(c.to_owned()),
        }
    }
    if comps[0].starts_with(".fm-") {
        return Err(refused(
            s,
            "has a top-level name reserved for restores (`.fm-…`)",
        ));
    }
    Ok((rel.to_owned(), comps))
}

/// Opens directories along paths below `root`, never following a symlink;
/// the directories along the last path stay open, since an archive lists a
/// directory's entries together.
pub(super) struct Walker {
    root: OwnedFd,
    open: Vec<(String, OwnedFd)>,
}

impl Walker {
    /// A handle on the directory `dir` itself (no symlink there either).
    pub(super) fn open(dir: &Path) -> Result<Walker> {
        let shown = dir.display();
        let name = dir
            .file_name()
            .ok_or_else(|| err(format!("{shown} is not a directory name")))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let p = rustix::fs::open(
            parent,
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )
        .map_err(|e| {
            err(format!(
                "can't open {}: {}",
                parent.display(),
                std::io::Error::from(e)
            ))
        })?;
        let root = rustix::fs::openat(&p, name, DIR_FLAGS, Mode::empty()).map_err(|e| {
            err(format!(
                "can't open {shown}{}: {}",
                if matches!(e, Errno::LOOP | Errno::NOTDIR) {
                    " (it is a symlink or not a directory)"
                } else {
                    ""
                },
                std::io::Error::from(e)
            ))
        })?;
        Ok(Walker {
            root,
            open: Vec::new(),
        })
    }

    pub(super) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The directory `dirs` (names below the root), opened name by name
    /// with `O_NOFOLLOW`: a symlink anywhere along it fails with `ELOOP` or
    /// `ENOTDIR`.
    pub(super) fn dir(&mut self, dirs: &[String]) -> std::result::Result<BorrowedFd<'_>, Errno> {
        let same = self
            .open
            .iter()
            .zip(dirs)
            .take_while(|((have, _), want)| have == *want)
            .count();
        self.open.truncate(same);
        for name in &dirs[same..] {
            let fd = {
                let at = self
                    .open
                    .last()
                    .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
                rustix::fs::openat(at, name.as_str(), DIR_FLAGS, Mode::empty())?
            };
            self.open.push((name.clone(), fd));
        }
        Ok(self
            .open
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }
}

/// What an entry of the archive made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Made {
    Dir,
    File,
    Symlink(String),
}

/// The destination as it is built.
pub(super) struct Tree {
    walker: Walker,
    made: HashMap<String, Made>,
    /// Directories in the order they were made, with their modes (applied
    /// at the end, so a read-only directory can still be filled).
    dirs: Vec<(String, Vec<String>, u32)>,
    owner: Option<(Uid, Gid)>,
}

impl Tree {
    /// Creates `dest` (`0700`; it may exist if it is an empty directory,
    /// not a symlink) and a handle on it.
    pub(super) fn create(dest: &Path) -> Result<Tree> {
        let shown = dest.display();
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("can't create {}: {e}", parent.display())))?;
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| err(format!("{shown} is not a directory name")))?;
        let p = rustix::fs::open(
            parent,
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )
        .map_err(|e| {
            err(format!(
                "can't open {}: {}",
                parent.display(),
                std::io::Error::from(e)
            ))
        })?;
        match rustix::fs::mkdirat(&p, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(err(format!(
                    "can't create {shown}: {}",
                    std::io::Error::from(e)
                )));
            }
        }
        let walker = Walker::open(dest)?;
        // One the node's user made (or could write into) is not used.
        if !is_private(&walker.root) {
            return Err(err(format!(
                "{shown} is not the agent's own private directory; refused"
            )));
        }
        let d = rustix::fs::Dir::read_from(walker.root())
            .map_err(|e| err(format!("can't list {shown}: {}", std::io::Error::from(e))))?;
        for e in d {
            let e =
                e.map_err(|e| err(format!("can't list {shown}: {}", std::io::Error::from(e))))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                return Err(err(format!("{shown} is not empty")));
            }
        }
        // The owner of the dir that holds the destination: the data dir,
        // the node user's.
        let owner = if rustix::process::geteuid().is_root() {
            let st = rustix::fs::fstat(&p).map_err(|e| {
                err(format!(
                    "can't stat {}: {}",
                    parent.display(),
                    std::io::Error::from(e)
                ))
            })?;
            Some((Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid)))
        } else {
            None
        };
        Ok(Tree {
            walker,
            made: HashMap::new(),
            dirs: Vec::new(),
            owner,
        })
    }

    /// Refuses a path an earlier entry had.
    pub(super) fn check_new(&self, rel: &str) -> Result<()> {
        if self.made.contains_key(rel) {
            return Err(refused(rel, "appears twice in the archive"));
        }
        Ok(())
    }

    /// Checks that `rel` is new and that its parent is a directory of the
    /// archive; the parent's handle and the entry's own name.
    fn parent<'a>(&mut self, rel: &str, comps: &'a [String]) -> Result<(BorrowedFd<'_>, &'a str)> {
        self.check_new(rel)?;
        let (name, dirs) = comps.split_last().expect("a checked path has a name");
        let mut at = String::new();
        for d in dirs {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(d);
            match self.made.get(&at) {
                Some(Made::Dir) => {}
                Some(Made::Symlink(t)) => {
                    return Err(refused(
                        rel,
                        format!(
                            "goes through the symlink {at:?} -> {t:?} (no entry may pass through a symlink)"
                        ),
                    ));
                }
                Some(Made::File) => {
                    return Err(refused(
                        rel,
                        format!("goes through {at:?}, which is a file"),
                    ));
                }
                None => {
                    return Err(refused(
                        rel,
                        format!(
                            "comes before its parent directory {at:?} (or that is not in the archive)"
                        ),
                    ));
                }
            }
        }
        let fd = self
            .walker
            .dir(dirs)
            .map_err(|e| io(rel, "open its parent directory", e))?;
        Ok((fd, name.as_str()))
    }

    pub(super) fn dir(&mut self, rel: &str, comps: &[String], mode: u32) -> Result<()> {
        let (at, name) = self.parent(rel, comps)?;
        rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o700))
            .map_err(|e| io(rel, "create the directory", e))?;
        self.made.insert(rel.to_owned(), Made::Dir);
        self.dirs
            .push((rel.to_owned(), comps.to_vec(), mode & 0o777));
        Ok(())
    }

    /// A new file (`0600` until [`Tree::file_done`]).
    pub(super) fn file(&mut self, rel: &str, comps: &[String]) -> Result<File> {
        let (at, name) = self.parent(rel, comps)?;
        let fd = rustix::fs::openat(
            at,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io(rel, "create the file", e))?;
        self.made.insert(rel.to_owned(), Made::File);
        Ok(File::from(fd))
    }

    /// Gives a written file its owner and mode.
    pub(super) fn file_done(&self, rel: &str, f: &File, mode: u32) -> Result<()> {
        if let Some((u, g)) = self.owner {
            rustix::fs::fchown(f, Some(u), Some(g)).map_err(|e| io(rel, "set the owner", e))?;
        }
        rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| io(rel, "set the mode", e))
    }

    pub(super) fn symlink(&mut self, rel: &str, comps: &[String], target: &str) -> Result<()> {
        if target.is_empty() {
            return Err(refused(rel, "is a symlink with an empty target"));
        }
        if target.starts_with('/') {
            return Err(refused(
                rel,
                format!(
                    "is a symlink to the absolute path {target:?} (a link must stay inside the data dir)"
                ),
            ));
        }
        if target.contains('\0') {
            return Err(refused(rel, "is a symlink whose target holds a NUL byte"));
        }
        self.check_link(rel, comps, target)?;
        let owner = self.owner;
        let (at, name) = self.parent(rel, comps)?;
        rustix::fs::symlinkat(target, at, name).map_err(|e| io(rel, "create the symlink", e))?;
        if let Some((u, g)) = owner {
            rustix::fs::chownat(at, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io(rel, "set the owner", e))?;
        }
        self.made
            .insert(rel.to_owned(), Made::Symlink(target.to_owned()));
        Ok(())
    }

    /// Resolves the link `rel` -> `target` the way the kernel would, through
    /// the links made so far; refused if it leaves the destination.
    fn check_link(&self, rel: &str, comps: &[String], target: &str) -> Result<()> {
        let mut cur: Vec<String> = comps[..comps.len() - 1].to_vec();
        let mut todo: Vec<String> = target.rsplit('/').map(str::to_owned).collect();
        let mut expansions = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => {}
                ".." => {
                    if cur.pop().is_none() {
                        return Err(refused(
                            rel,
                            format!("is a symlink to {target:?}, which leads out of the data dir"),
                        ));
                    }
                }
                _ => {
                    cur.push(c);
                    if let Some(Made::Symlink(t)) = self.made.get(&cur.join("/")) {
                        expansions += 1;
                        if expansions > MAX_EXPANSIONS {
                            return Err(refused(
                                rel,
                                format!("is a symlink to {target:?}, which is a symlink loop"),
                            ));
                        }
                        if t.starts_with('/') {
                            return Err(refused(
                                rel,
                                format!(
                                    "is a symlink to {target:?}, which leads out of the data dir"
                                ),
                            ));
                        }
                        cur.pop();
                        todo.extend(t.rsplit('/').map(str::to_owned));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks every link once more (a later link can change where an earlier
    /// one leads), then gives the directories their owner and mode, deepest
    /// first.
    pub(super) fn finish(mut self) -> Result<()> {
        let mut links: Vec<(&String, &String)> = self
            .made
            .iter()
            .filter_map(|(p, m)| match m {
                Made::Symlink(t) => Some((p, t)),
                _ => None,
            })
            .collect();
        links.sort();
        for (p, t) in links {
            let comps: Vec<String> = p.split('/').map(str::to_owned).collect();
            self.check_link(p, &comps, t)?;
        }
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, comps, mode) in dirs.iter().rev() {
            let fd = {
                let (name, parents) = comps.split_last().expect("a checked path has a name");
                let at = self
                    .walker
                    .dir(parents)
                    .map_err(|e| io(rel, "open its parent directory", e))?;
                rustix::fs::openat(at, name.as_str(), DIR_FLAGS, Mode::empty())
                    .map_err(|e| io(rel, "open the directory", e))?
            };
            if let Some((u, g)) = self.owner {
                rustix::fs::fchown(&fd, Some(u), Some(g))
                    .map_err(|e| io(rel, "set the owner", e))?;
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(*mode))
                .map_err(|e| io(rel, "set the mode", e))?;
        }
        Ok(())
    }
}

fn at_err(p: &Path, e: Errno) -> crate::Error {
    err(format!("{}: {}", p.display(), std::io::Error::from(e)))
}

/// A handle on a directory named by the agent's own configuration (the
/// data dir): symlinks along it are the administrator's.
pub(super) fn open_trusted(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(dir, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
        .map_err(|e| at_err(dir, e))
}

/// The directory `name` in `at`, if there is one; anything else there (a
/// planted symlink, a file) is removed, never followed. `shown` names it.
pub(super) fn sub_dir(at: &OwnedFd, name: &str, shown: &Path) -> Result<Option<OwnedFd>> {
    match rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::LOOP | Errno::NOTDIR) => {
            rustix::fs::unlinkat(at, name, AtFlags::empty()).map_err(|e| at_err(shown, e))?;
            Ok(None)
        }
        Err(e) => Err(at_err(shown, e)),
    }
}

/// Creates the directory `name` (`0700`) in `at` and opens it.
pub(super) fn make_dir_at(at: &OwnedFd, name: &str, shown: &Path) -> Result<OwnedFd> {
    rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o700)).map_err(|e| at_err(shown, e))?;
    rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty()).map_err(|e| at_err(shown, e))
}

/// Whether the directory `fd` is the agent's own and open to nobody else
/// (owner the effective user, no group or other bits): nothing the node's
/// user made or can write into.
pub(super) fn is_private(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd)
        .is_ok_and(|st| st.st_uid == rustix::process::geteuid().as_raw() && st.st_mode & 0o077 == 0)
}

/// Whether `name` is in `at` (a symlink counts as itself).
pub(super) fn exists_at(at: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

pub(super) fn write_at(at: &OwnedFd, name: &str, data: &[u8], dir: &Path) -> Result<()> {
    use std::io::Write;
    let fd = rustix::fs::openat(
        at,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| at_err(&dir.join(name), e))?;
    File::from(fd)
        .write_all(data)
        .map_err(|e| err(format!("{}: {e}", dir.join(name).display())))
}

pub(super) fn read_at(at: &OwnedFd, name: &str, dir: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| at_err(&dir.join(name), e))?;
    let mut v = Vec::new();
    File::from(fd)
        .read_to_end(&mut v)
        .map_err(|e| err(format!("{}: {e}", dir.join(name).display())))?;
    Ok(v)
}

/// The names in `at` but those starting with `.fm-` (restores' own),
/// sorted; `dir` names it.
pub(super) fn names(at: &OwnedFd, dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in rustix::fs::Dir::read_from(at).map_err(|e| at_err(dir, e))? {
        let e = e.map_err(|e| at_err(dir, e))?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let name = std::str::from_utf8(n).map_err(|_| {
            err(format!(
                "{}: a name that is not UTF-8 ({:?})",
                dir.display(),
                String::from_utf8_lossy(n)
            ))
        })?;
        if !name.starts_with(".fm-") {
            v.push(name.to_owned());
        }
    }
    v.sort();
    Ok(v)
}
