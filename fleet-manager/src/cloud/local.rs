//! The `local` cloud, FM's embedded default: a VM is a directory plus an
//! `fm-agent` process (in its own process group, so stopping the VM stops
//! everything it started), a data volume is a directory kept across
//! reprovisions, and a snapshot is an archived copy of a volume.
//!
//! Like a real VM, a local VM outlives a restart of FM: its state is in
//! `vms/<id>/vm.json` and its processes are not FM's children after FM
//! restarts; FM finds them again by pid.

use super::{CloudProvider, Placement, VmLayout, VmSpec, VmState};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The node user of a local cloud FM runs as root: a uid and gid no
/// account of the host needs to exist for.
pub const DEFAULT_NODE_USER: &str = "64100:64100";

#[derive(Debug)]
pub struct LocalCloud {
    root: PathBuf,
    agent_bin: PathBuf,
    /// What the agents run their nodes as (`UID:GID`); `None`: themselves.
    node_user: Option<String>,
    /// Serializes changes to VMs, so housekeeping never restarts an agent
    /// that a stop or a termination is taking down.
    vm_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug, Serialize, Deserialize)]
struct VmRecord {
    vm_id: String,
    instance_id: String,
    volume_id: String,
    pid: Option<u32>,
    /// Every process group started on this VM since it last halted: an
    /// agent restarted after a crash gets a new group, while the node its
    /// predecessor started stays in the old one.
    #[serde(default)]
    groups: Vec<u32>,
    /// "running", "stopped" or "terminated" (as asked by FM).
    state: String,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("local cloud: {what} {}: {e}", p.display()))
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    live_session(pid).is_some()
}

/// The session of process `pid` if it exists and is not a zombie.
fn live_session(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state, ppid, pgrp, session.
    match fields.first() {
        Some(&"Z") | Some(&"X") | None => None,
        Some(_) => fields.get(3)?.parse().ok(),
    }
}

/// Every process id in `/proc`.
fn proc_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
}

async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .await
        .map_err(|e| Error::internal(format!("local cloud: {what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "local cloud: {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl LocalCloud {
    /// A local cloud under `root`. Its nodes run as `node_user` (`UID:GID`)
    /// when FM runs as root: [`LocalCloud::node_user_for`] picks it.
    pub fn new(root: PathBuf, agent_bin: PathBuf) -> Result<LocalCloud> {
        Self::with_node_user(root, agent_bin, None)
    }

    /// [`LocalCloud::new`] with the node's user given (`None`: the agent's).
    pub fn with_node_user(
        root: PathBuf,
        agent_bin: PathBuf,
        node_user: Option<String>,
    ) -> Result<LocalCloud> {
        for d in ["vms", "volumes", "snapshots"] {
            std::fs::create_dir_all(root.join(d))
                .map_err(|e| io("can't create", &root.join(d), e))?;
        }
        if node_user.is_some() {
            // The node's user passes through to its VM's dirs, lists nothing.
            use std::os::unix::fs::PermissionsExt;
            for d in [root.clone(), root.join("vms"), root.join("volumes")] {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))
                    .map_err(|e| io("can't set the mode of", &d, e))?;
            }
        }
        Ok(LocalCloud {
            root,
            agent_bin,
            node_user,
            vm_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The user nodes run as under `root`: `setting` (`FM_LOCAL_NODE_USER`:
    /// `UID:GID`, or `agent` for the agent's own) or, when FM is root,
    /// [`DEFAULT_NODE_USER`], if it can reach `root` (every directory above
    /// it lets others pass); else the agent's own, with a warning.
    pub fn node_user_for(root: &std::path::Path, setting: Option<&str>) -> Result<Option<String>> {
        let user = match setting.map(str::trim) {
            Some("agent") => return Ok(None),
            Some(s) if !s.is_empty() => {
                let ok = s
                    .split_once(':')
                    .is_some_and(|(u, g)| u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok());
                if !ok {
                    return Err(Error::invalid(format!(
                        "FM_LOCAL_NODE_USER {s:?} must be UID:GID or \"agent\""
                    )));
                }
                s.to_owned()
            }
            _ if rustix::process::geteuid().is_root() => DEFAULT_NODE_USER.to_owned(),
            _ => return Ok(None),
        };
        let mut blocked = None;
        let mut cur = root.parent();
        while let Some(d) = cur {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(d)
                && m.permissions().mode() & 0o001 == 0
            {
                blocked = Some(d.to_path_buf());
            }
            cur = d.parent();
        }
        if let Some(d) = blocked {
            tracing::warn!(
                dir = %d.display(),
                "local cloud: the node's user {user} can't pass through this directory; \
                 nodes run as the agent's user (root). Put FM's data dir where others may \
                 pass, or set FM_LOCAL_NODE_USER=agent to silence this"
            );
            return Ok(None);
        }
        Ok(Some(user))
    }

    fn vm_dir(&self, vm_id: &str) -> PathBuf {
        self.root.join("vms").join(vm_id)
    }

    fn volume_dir(&self, volume_id: &str) -> PathBuf {
        self.root.join("volumes").join(volume_id)
    }

    fn read_vm(&self, vm_id: &str) -> Result<Option<VmRecord>> {
        let p = self.vm_dir(vm_id).join("vm.json");
        match std::fs::read_to_string(&p) {
            Ok(s) => serde_json::from_str(&s).map(Some).map_err(Error::internal),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("can't read", &p, e)),
        }
    }

    fn write_vm(&self, rec: &VmRecord) -> Result<()> {
        let p = self.vm_dir(&rec.vm_id).join("vm.json");
        let tmp = p.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(rec).map_err(Error::internal)?,
        )
        .map_err(|e| io("can't write", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("can't write", &p, e))
    }

    /// Starts the VM's agent in a session of its own (`setsid`): the VM is
    /// that session, whatever process groups the agent's commands make.
    fn boot(&self, rec: &mut VmRecord) -> Result<()> {
        let dir = self.vm_dir(&rec.vm_id);
        // A live agent this record doesn't name: an FM died between starting
        // it and recording it. That boot never completed; this one replaces
        // it, so the VM has one agent.
        let orphans = agent_sessions(&dir.join("user-data.toml"));
        if !orphans.is_empty() {
            tracing::info!(vm = %rec.vm_id, "local cloud: stopping an unrecorded agent of the VM");
            signal_sessions(&orphans, rustix::process::Signal::KILL);
        }
        let log_path = dir.join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io("can't open", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| io("can't open", &log_path, e))?;
        let mut cmd = tokio::process::Command::new("setsid");
        cmd.arg(&self.agent_bin)
            .arg("--user-data")
            .arg(dir.join("user-data.toml"))
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Only what an agent needs of FM's environment: never its
            // database, keys or cloud credentials.
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| {
                k.to_str()
                    .is_some_and(|k| AGENT_ENV.contains(&k) || k.starts_with("FM_AGENT_"))
            }));
        let mut child = cmd.spawn().map_err(|e| {
            Error::internal(format!(
                "local cloud: can't start {}: {e}",
                self.agent_bin.display()
            ))
        })?;
        rec.pid = child.id();
        rec.groups.extend(rec.pid);
        rec.state = "running".into();
        // Reap the agent when it exits while FM runs.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        self.write_vm(rec)
    }

    /// Stops every process of the VM (its process group): TERM, then KILL.
    async fn halt(&self, rec: &mut VmRecord) -> Result<()> {
        use rustix::process::Signal;
        // An agent booted by an FM that died before recording it is this
        // VM's too.
        for sid in agent_sessions(&self.vm_dir(&rec.vm_id).join("user-data.toml")) {
            if !rec.groups.contains(&sid) {
                rec.groups.push(sid);
            }
        }
        signal_sessions(&rec.groups, Signal::TERM);
        for _ in 0..100 {
            if !rec.groups.iter().any(|g| !session_members(*g).is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Whatever is left (a node, a hung child) goes now.
        signal_sessions(&rec.groups, Signal::KILL);
        rec.groups.clear();
        rec.pid = None;
        Ok(())
    }
}

/// What a local agent keeps of FM's environment (besides `FM_AGENT_*`).
const AGENT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "RUST_BACKTRACE",
];

/// Sends `sig` to every process of the sessions `sids` (a VM's agents,
/// their commands and the node they started, whatever their groups).
fn signal_sessions(sids: &[u32], sig: rustix::process::Signal) {
    for sid in sids {
        // A VM booted by an earlier version is its agent's process group.
        if let Some(g) = i32::try_from(*sid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(g, sig);
        }
        for pid in session_members(*sid) {
            if let Some(p) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
    }
}

/// The sessions of the live agents started with `user_data`: how a VM's
/// processes are found when no record of them survived (FM died between
/// starting the agent and writing `vm.json`).
fn agent_sessions(user_data: &Path) -> Vec<u32> {
    let want = user_data.as_os_str().as_encoded_bytes();
    let mut out: Vec<u32> = proc_pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == want))
        })
        .filter_map(live_session)
        .collect();
    // Never FM's own session (a wrapper caught before it left it), nor none
    // (a process whose session was made outside this namespace reads as 0).
    let own = live_session(std::process::id());
    out.retain(|sid| *sid > 1 && Some(*sid) != own);
    out.sort_unstable();
    out.dedup();
    out
}

/// The live (not zombie) processes of session `sid`.
fn session_members(sid: u32) -> Vec<u32> {
    proc_pids()
        .filter(|pid| live_session(*pid) == Some(sid))
        .collect()
}

#[async_trait::async_trait]
impl CloudProvider for LocalCloud {
    fn name(&self) -> &'static str {
        "local"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn layout(&self, vm_id: &str, volume_id: &str) -> VmLayout {
        let vm = self.vm_dir(vm_id);
        VmLayout {
            state_dir: vm.join("agent").display().to_string(),
            data_dir: self
                .volume_dir(volume_id)
                .join("data")
                .display()
                .to_string(),
            home_dir: vm.join("home").display().to_string(),
            node_user: self.node_user.clone(),
            imds_url: None,
        }
    }

    fn shares_host(&self) -> bool {
        true
    }

    async fn public_url(&self, _at: &Placement, _vm_id: &str, port: u16) -> Result<String> {
        Ok(format!("http://127.0.0.1:{port}"))
    }

    async fn ensure_volume(&self, _at: &Placement, volume_id: &str) -> Result<()> {
        let d = self.volume_dir(volume_id);
        std::fs::create_dir_all(&d).map_err(|e| io("can't create", &d, e))
    }

    async fn volume_from_snapshot(
        &self,
        _at: &Placement,
        snapshot_ref: &str,
        volume_id: &str,
    ) -> Result<()> {
        let d = self.volume_dir(volume_id);
        if d.exists() {
            return Ok(());
        }
        let archive = self.root.join("snapshots").join(snapshot_ref);
        if !archive.exists() {
            return Err(Error::invalid(format!(
                "snapshot '{snapshot_ref}' does not exist in the local cloud"
            )));
        }
        let tmp = self
            .root
            .join("volumes")
            .join(format!(".{volume_id}.restoring"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io("can't create", &tmp, e))?;
        run(
            tokio::process::Command::new("tar")
                .arg("-xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&tmp),
            "restore snapshot",
        )
        .await?;
        std::fs::rename(&tmp, &d).map_err(|e| io("can't create", &d, e))
    }

    async fn delete_volume(&self, _at: &Placement, volume_id: &str) -> Result<()> {
        let d = self.volume_dir(volume_id);
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("can't delete", &d, e)),
            _ => Ok(()),
        }
    }

    async fn ensure_vm(&self, _at: &Placement, spec: &VmSpec) -> Result<()> {
        let _guard = self.vm_lock.lock().await;
        if let Some(mut rec) = self.read_vm(&spec.vm_id)? {
            if rec.state == "running" && !rec.pid.is_some_and(pid_alive) {
                self.boot(&mut rec)?;
            }
            return Ok(());
        }
        let dir = self.vm_dir(&spec.vm_id);
        std::fs::create_dir_all(dir.join("home")).map_err(|e| io("can't create", &dir, e))?;
        let ud = dir.join("user-data.toml");
        // It holds the enrollment token: FM's user's alone from the start
        // (no moment at the umask's mode).
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::remove_file(&ud);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&ud)
                .and_then(|mut f| f.write_all(spec.user_data.as_bytes()))
                .map_err(|e| io("can't write", &ud, e))?;
        }
        let mut rec = VmRecord {
            vm_id: spec.vm_id.clone(),
            instance_id: spec.instance_id.clone(),
            volume_id: spec.volume_id.clone(),
            pid: None,
            groups: vec![],
            state: "running".into(),
        };
        self.boot(&mut rec)
    }

    async fn vm_state(&self, _at: &Placement, vm_id: &str) -> Result<VmState> {
        Ok(match self.read_vm(vm_id)? {
            None => VmState::Missing,
            Some(r) if r.pid.is_some_and(pid_alive) => VmState::Running,
            Some(_) => VmState::Stopped,
        })
    }

    async fn start_vm(&self, _at: &Placement, vm_id: &str) -> Result<()> {
        let _guard = self.vm_lock.lock().await;
        let mut rec = self
            .read_vm(vm_id)?
            .ok_or_else(|| Error::invalid(format!("VM '{vm_id}' does not exist")))?;
        if rec.pid.is_some_and(pid_alive) {
            return Ok(());
        }
        self.boot(&mut rec)
    }

    async fn stop_vm(&self, _at: &Placement, vm_id: &str) -> Result<()> {
        let _guard = self.vm_lock.lock().await;
        let Some(mut rec) = self.read_vm(vm_id)? else {
            return Ok(());
        };
        rec.state = "stopped".into();
        self.write_vm(&rec)?;
        self.halt(&mut rec).await?;
        self.write_vm(&rec)
    }

    async fn terminate_vm(&self, _at: &Placement, vm_id: &str) -> Result<()> {
        let _guard = self.vm_lock.lock().await;
        if let Some(mut rec) = self.read_vm(vm_id)? {
            rec.state = "terminated".into();
            self.write_vm(&rec)?;
            self.halt(&mut rec).await?;
        }
        let d = self.vm_dir(vm_id);
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("can't delete", &d, e)),
            _ => Ok(()),
        }
    }

    async fn snapshot_volume(
        &self,
        _at: &Placement,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(String, u64)> {
        let name = format!("{snapshot_id}.tar.gz");
        let dest = self.root.join("snapshots").join(&name);
        if !dest.exists() {
            let src = self.volume_dir(volume_id);
            let tmp = self.root.join("snapshots").join(format!(".{name}.tmp"));
            run(
                tokio::process::Command::new("tar")
                    .arg("-czf")
                    .arg(&tmp)
                    .arg("-C")
                    .arg(&src)
                    .arg("."),
                "snapshot",
            )
            .await?;
            std::fs::rename(&tmp, &dest).map_err(|e| io("can't write", &dest, e))?;
        }
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        Ok((name, size))
    }

    /// Restarts the agent of every VM that should run but whose agent died,
    /// as the VM's init system would.
    async fn tick(&self) -> Result<()> {
        let _guard = self.vm_lock.lock().await;
        let dir = self.root.join("vms");
        let entries = std::fs::read_dir(&dir).map_err(|e| io("can't list", &dir, e))?;
        for e in entries.flatten() {
            let Some(vm_id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(Some(mut rec)) = self.read_vm(&vm_id)
                && rec.state == "running"
                && !rec.pid.is_some_and(pid_alive)
            {
                tracing::info!(vm = %vm_id, "local cloud: restarting the VM's agent");
                self.boot(&mut rec)?;
            }
        }
        Ok(())
    }

    async fn delete_snapshot(&self, _at: &Placement, snapshot_ref: &str) -> Result<()> {
        let p = self.root.join("snapshots").join(snapshot_ref);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("can't delete", &p, e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an FM that died between starting a VM's agent and recording it
    /// leaves: a process, in a session of its own, whose command line names
    /// the VM's user-data.
    fn unrecorded_agent(user_data: &Path) -> std::process::Child {
        let mut child = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 60; exit 0", "agent", "--user-data"])
            .arg(user_data)
            .spawn()
            .unwrap();
        // Once it is in a session of its own (`setsid` has run).
        for _ in 0..100 {
            if agent_sessions(user_data) == [child.id()] {
                return child;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the stand-in agent never got a session of its own");
    }

    /// Whether `child` exits within 5 s.
    async fn exits(child: &mut std::process::Child) -> bool {
        for _ in 0..50 {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn cloud_with_vm(dir: &Path) -> (LocalCloud, VmRecord) {
        let cloud = LocalCloud::new(dir.to_path_buf(), "/bin/true".into()).unwrap();
        std::fs::create_dir_all(cloud.vm_dir("vm-1")).unwrap();
        let rec = VmRecord {
            vm_id: "vm-1".into(),
            instance_id: "inst-1".into(),
            volume_id: "vol-1".into(),
            pid: None,
            groups: vec![],
            state: "running".into(),
        };
        (cloud, rec)
    }

    #[tokio::test]
    async fn booting_a_vm_again_stops_the_agent_no_record_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cloud, mut rec) = cloud_with_vm(dir.path());
        let mut orphan = unrecorded_agent(&cloud.vm_dir("vm-1").join("user-data.toml"));
        // Another VM's agent is left alone.
        let mut other = unrecorded_agent(&cloud.vm_dir("vm-2").join("user-data.toml"));
        cloud.boot(&mut rec).unwrap();
        assert!(exits(&mut orphan).await, "the unrecorded agent still runs");
        assert!(other.try_wait().unwrap().is_none());
        other.kill().unwrap();
    }

    #[tokio::test]
    async fn halting_a_vm_stops_the_agent_no_record_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cloud, mut rec) = cloud_with_vm(dir.path());
        let mut orphan = unrecorded_agent(&cloud.vm_dir("vm-1").join("user-data.toml"));
        cloud.halt(&mut rec).await.unwrap();
        assert!(exits(&mut orphan).await, "the unrecorded agent still runs");
    }
}
