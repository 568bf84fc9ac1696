//! Who the node's processes run as, and how the agent starts them.
//!
//! The agent may run as root; the node never does when it has a user of
//! its own. Every command of the kit (`installer.sh`, `bin/dss`,
//! `bin/dsscli`) and every unpacking into the data dir runs as the node's
//! user, in a process group of its own, with an environment the agent
//! chooses (nothing of the agent's own, which may hold FM's settings).
//!
//! The node's user is `node_user` from the user-data (a name from
//! `/etc/passwd`, or `UID:GID`); without it, the owner of the data dir.
//! An agent that is not root runs everything as itself.

use crate::config::Config;
use std::path::Path;
use tokio::process::Command;

/// The `PATH` node commands get.
pub const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user and group to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

/// `node_user` as the user-data gives it: a name or `UID:GID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    /// A user of `/etc/passwd`.
    Name(String),
    /// Numeric ids.
    Ids(Ids),
}

impl UserSpec {
    /// Parses `name` or `UID:GID`.
    pub fn parse(s: &str) -> Result<UserSpec, String> {
        if let Some((u, g)) = s.split_once(':') {
            let num = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("node_user {s:?}: {v:?} is not a numeric id"))
            };
            return Ok(UserSpec::Ids(Ids {
                uid: num(u)?,
                gid: num(g)?,
            }));
        }
        let ok = !s.is_empty()
            && s.len() <= 32
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(UserSpec::Name(s.to_owned()))
        } else {
            Err(format!(
                "node_user {s:?} must be a user name (letters, digits, '-', '_', '.') or UID:GID"
            ))
        }
    }

    /// The ids: looked up in `passwd` (the text of `/etc/passwd`) for a name.
    pub fn resolve(&self, passwd: &str) -> Result<Ids, String> {
        match self {
            UserSpec::Ids(ids) => Ok(*ids),
            UserSpec::Name(name) => passwd
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 4 && f[0] == name).then(|| (f[2].parse(), f[3].parse()))
                })
                .find_map(|ids| match ids {
                    (Ok(uid), Ok(gid)) => Some(Ids { uid, gid }),
                    _ => None,
                })
                .ok_or_else(|| format!("node_user {name:?} is not a user of /etc/passwd")),
        }
    }
}

/// The ids the node's commands switch to, or `None` to run them as the
/// agent itself (the agent is not root, or the node's user is root).
pub fn node_ids(cfg: &Config) -> Result<Option<Ids>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let ids = match &cfg.node_user {
        Some(spec) => {
            let passwd = match spec {
                UserSpec::Name(_) => std::fs::read_to_string("/etc/passwd")
                    .map_err(|e| format!("can't read /etc/passwd: {e}"))?,
                UserSpec::Ids(_) => String::new(),
            };
            spec.resolve(&passwd)?
        }
        None => match owner(&cfg.data_dir) {
            Some(ids) => ids,
            None => return Ok(None),
        },
    };
    Ok((ids.uid != 0).then_some(ids))
}

fn owner(p: &Path) -> Option<Ids> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some(Ids {
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// A command of the node: run as the node's user (when the agent can
/// switch), with a cleared environment (`PATH`, `HOME` the node's home,
/// `LANG`) in the data dir.
pub fn command(cfg: &Config, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, String> {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", NODE_PATH)
        .env("HOME", &cfg.home_dir)
        .env("LANG", "C.UTF-8")
        .current_dir(&cfg.data_dir);
    if let Some(ids) = node_ids(cfg)? {
        // std drops the supplementary groups when root sets a uid.
        cmd.uid(ids.uid).gid(ids.gid);
    }
    Ok(cmd)
}

/// Gives `path` (made by the agent) to the node's user, when the agent
/// runs the node as another user.
pub fn give_to_node(cfg: &Config, path: &Path) -> Result<(), String> {
    if let Some(ids) = node_ids(cfg)? {
        std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))
            .map_err(|e| format!("can't give {} to the node's user: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        dataiku:x:1001:1002:Dataiku:/home/dataiku:/bin/bash\n\
        broken:x:abc:1:::\n";

    #[test]
    fn a_node_user_is_a_name_or_numeric_ids() {
        assert_eq!(
            UserSpec::parse("64100:64100").unwrap(),
            UserSpec::Ids(Ids {
                uid: 64100,
                gid: 64100
            })
        );
        assert_eq!(
            UserSpec::parse("dataiku").unwrap(),
            UserSpec::Name("dataiku".into())
        );
        for bad in ["", "-x", "a b", "1:x", "x:1", "../etc"] {
            assert!(UserSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_looked_up_in_passwd() {
        let ids = UserSpec::Name("dataiku".into()).resolve(PASSWD).unwrap();
        assert_eq!(
            ids,
            Ids {
                uid: 1001,
                gid: 1002
            }
        );
        let e = UserSpec::Name("nobody2".into())
            .resolve(PASSWD)
            .unwrap_err();
        assert!(e.contains("not a user"), "{e}");
        assert!(UserSpec::Name("broken".into()).resolve(PASSWD).is_err());
    }
}
