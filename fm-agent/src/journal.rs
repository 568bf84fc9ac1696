//! The command journal: one JSON file per command under
//! `state_dir/journal/`, written atomically, so that a command FM sends
//! again (after a reconnect or an agent restart) is answered from its
//! stored result instead of being run twice.
//!
//! The stored command is a redacted description (passwords and setup
//! action parameters are left out); the stored result is what FM is sent.

use crate::fsutil;
use fm_proto::agent::CommandResult;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Entries older than this are removed at start.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Progress lines kept per entry.
pub const MAX_LINES: usize = 200;
/// Results sent in Hello.
pub const HELLO_RESULTS: usize = 100;

/// Where a journaled command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Running, or was running when the agent stopped.
    Started,
    /// Finished; `result` holds the outcome.
    Done,
}

/// A command's outcome as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResult {
    /// Whether it succeeded.
    pub ok: bool,
    /// What went wrong, when it failed.
    #[serde(default)]
    pub error: String,
    /// The output JSON object, when it succeeded.
    #[serde(default)]
    pub output_json: String,
}

impl StoredResult {
    /// The protocol message for command `command_id`.
    pub fn to_proto(&self, command_id: &str) -> CommandResult {
        CommandResult {
            command_id: command_id.to_owned(),
            ok: self.ok,
            error: self.error.clone(),
            output_json: self.output_json.clone(),
        }
    }
}

/// One journal file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// FM's id of the command.
    pub command_id: String,
    /// The command, redacted, as JSON.
    pub command: serde_json::Value,
    /// Started or done.
    pub state: State,
    /// The outcome once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StoredResult>,
    /// The last [`MAX_LINES`] progress lines.
    #[serde(default)]
    pub lines: Vec<String>,
}

/// The journal directory.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating) `state_dir/journal`.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("journal");
        fsutil::create_private_dir(&dir)?;
        Ok(Journal { dir })
    }

    /// The file of command `id`: the id itself when it is a plain name,
    /// else a hash of it (ids come from FM and must not name other paths).
    pub fn path_of(&self, id: &str) -> PathBuf {
        let plain = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let name = if plain {
            format!("{id}.json")
        } else {
            format!(
                "x-{}.json",
                &hex::encode(Sha256::digest(id.as_bytes()))[..32]
            )
        };
        self.dir.join(name)
    }

    /// The entry of command `id`, if journaled and readable.
    pub fn get(&self, id: &str) -> Option<Entry> {
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "can't read a journal entry: {e}");
                return None;
            }
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e) if e.command_id == id => Some(e),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "unreadable journal entry: {e}");
                None
            }
        }
    }

    /// Stores `entry` (keeping its last [`MAX_LINES`] lines), atomically.
    pub fn put(&self, entry: &Entry) -> io::Result<()> {
        let mut e = entry.clone();
        if e.lines.len() > MAX_LINES {
            e.lines.drain(..e.lines.len() - MAX_LINES);
        }
        let bytes = serde_json::to_vec_pretty(&e).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.path_of(&e.command_id), &bytes, 0o600)
    }

    /// The results of the newest `n` finished commands, newest first.
    pub fn recent_results(&self, n: usize) -> Vec<CommandResult> {
        let mut files: Vec<(SystemTime, PathBuf)> = self
            .files()
            .into_iter()
            .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        files
            .into_iter()
            .filter_map(|(_, p)| serde_json::from_slice::<Entry>(&fs::read(p).ok()?).ok())
            .filter_map(|e| match (e.state, e.result) {
                (State::Done, Some(r)) => Some(r.to_proto(&e.command_id)),
                _ => None,
            })
            .take(n)
            .collect()
    }

    /// Removes entries last written more than `max_age` ago (and leftover
    /// temporary files); returns how many entries went.
    pub fn prune(&self, max_age: Duration) -> usize {
        let now = SystemTime::now();
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for ent in rd.flatten() {
            let path = ent.path();
            let is_tmp = ent.file_name().to_string_lossy().starts_with('.');
            let old = ent
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > max_age);
            if is_tmp {
                let _ = fs::remove_file(&path);
            } else if old && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn files(&self) -> Vec<PathBuf> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: &str, out: &str) -> Entry {
        Entry {
            command_id: id.into(),
            command: serde_json::json!({"ping": {}}),
            state: State::Done,
            result: Some(StoredResult {
                ok: true,
                error: String::new(),
                output_json: out.into(),
            }),
            lines: vec!["a".into()],
        }
    }

    #[test]
    fn an_entry_round_trips_through_its_file() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let mut e = done("cmd-1", "{\"x\":1}");
        e.lines = (0..250).map(|i| format!("line {i}")).collect();
        j.put(&e).unwrap();
        let back = j.get("cmd-1").unwrap();
        assert_eq!(back.state, State::Done);
        assert_eq!(back.result, e.result);
        assert_eq!(back.lines.len(), MAX_LINES);
        assert_eq!(back.lines[0], "line 50");
        assert!(j.get("cmd-2").is_none());
    }

    #[test]
    fn the_file_on_disk_has_the_documented_shape() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        j.put(&done("c", "{}")).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(d.path().join("journal/c.json")).unwrap()).unwrap();
        assert_eq!(v["state"], "done");
        assert_eq!(v["result"]["ok"], true);
        assert!(v["command"].is_object());
        assert!(v["lines"].is_array());
    }

    #[test]
    fn odd_command_ids_cannot_escape_the_journal_dir() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let p = j.path_of("../../etc/passwd");
        assert_eq!(p.parent().unwrap(), d.path().join("journal"));
        j.put(&done("../../etc/passwd", "{}")).unwrap();
        assert!(j.get("../../etc/passwd").is_some());
    }

    #[test]
    fn hello_lists_only_finished_commands_newest_first() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        j.put(&done("old", "{}")).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(j.path_of("old"))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        j.put(&done("new", "{}")).unwrap();
        let mut running = done("running", "{}");
        running.state = State::Started;
        running.result = None;
        j.put(&running).unwrap();
        let ids: Vec<_> = j
            .recent_results(10)
            .into_iter()
            .map(|r| r.command_id)
            .collect();
        assert_eq!(ids, ["new", "old"]);
        assert_eq!(j.recent_results(1).len(), 1);
    }

    #[test]
    fn entries_older_than_the_limit_are_pruned() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        j.put(&done("old", "{}")).unwrap();
        j.put(&done("new", "{}")).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(j.path_of("old"))
            .unwrap();
        f.set_modified(SystemTime::now() - MAX_AGE - Duration::from_secs(60))
            .unwrap();
        assert_eq!(j.prune(MAX_AGE), 1);
        assert!(j.get("old").is_none());
        assert!(j.get("new").is_some());
    }
}
