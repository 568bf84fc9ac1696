//! Simulated agents: in-process stand-ins for `fm-agent` that open a
//! session on the hub and answer commands by policy, with a simulated node
//! (installed version, running, frozen). Like the real agent they journal
//! every command by id (a command sent again is answered from the journal,
//! never run twice) and report a heartbeat before each result. The `sim`
//! cloud connects one per running VM, so saga tests run without binaries
//! (omicron's `sled-agent/src/sim`).

use super::AgentHub;
use fm_proto::agent::{
    CommandResult, FmMessage, Heartbeat, LogLines, NodeState, command, fm_message,
};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The simulated node of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimNode {
    /// The installed node version, if any.
    pub version: Option<String>,
    pub running: bool,
    pub frozen: bool,
}

#[derive(Default)]
struct Agent {
    vm: String,
    session: Option<tokio::task::JoinHandle<()>>,
    journal: HashMap<String, CommandResult>,
}

#[derive(Default)]
struct State {
    agents: HashMap<String, Agent>,
    /// Nodes by instance: they live on the data volume, so they outlast VMs.
    nodes: HashMap<String, SimNode>,
    /// How many times each command id was executed (not answered from the
    /// journal).
    executed: BTreeMap<String, u32>,
    /// Command kinds that fail (`"install"`, `"take_backup"`, ...).
    failing: HashSet<&'static str>,
    generation: u64,
}

/// Every simulated agent of one FM; cheap to clone.
#[derive(Clone)]
pub struct SimAgents {
    hub: AgentHub,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimAgents(..)")
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The name of a command's kind, as [`SimAgents::fail`] takes it.
pub fn kind_name(k: &command::Kind) -> &'static str {
    use command::Kind as K;
    match k {
        K::Install(_) => "install",
        K::Start(_) => "start",
        K::Stop(_) => "stop",
        K::Restart(_) => "restart",
        K::RunSetupActions(_) => "run_setup_actions",
        K::ResetUserPassword(_) => "reset_user_password",
        K::Ping(_) => "ping",
        K::TakeBackup(_) => "take_backup",
        K::RestoreBackup(_) => "restore_backup",
        K::VerifyBackup(_) => "verify_backup",
        K::FreezeFs(_) => "freeze_fs",
        K::ThawFs(_) => "thaw_fs",
    }
}

impl SimAgents {
    pub fn new(hub: AgentHub) -> SimAgents {
        SimAgents {
            hub,
            state: Arc::default(),
        }
    }

    /// The agent of `instance_id` on `vm` connects (a VM booted or started);
    /// an agent already connected from another VM is replaced.
    pub async fn connect(&self, instance_id: &str, vm: &str) {
        let (tx, mut rx) = mpsc::channel::<Result<FmMessage, tonic::Status>>(64);
        let journal: Vec<CommandResult> = {
            let mut st = lock(&self.state);
            let a = st.agents.entry(instance_id.to_string()).or_default();
            if a.vm == vm && a.session.as_ref().is_some_and(|s| !s.is_finished()) {
                return;
            }
            if let Some(s) = a.session.take() {
                s.abort();
            }
            if a.vm != vm {
                // A new VM's agent starts with an empty journal.
                a.journal.clear();
            }
            a.vm = vm.to_string();
            a.journal.values().cloned().collect()
        };
        let session = self
            .hub
            .session_opened(instance_id, vm, tx, journal)
            .await
            .id;
        let me = self.clone();
        let instance = instance_id.to_string();
        let task = tokio::spawn(async move {
            me.heartbeat(&instance, session).await;
            while let Some(Ok(msg)) = rx.recv().await {
                match msg.body {
                    Some(fm_message::Body::Command(c)) => {
                        let r = me.answer(&instance, c);
                        me.heartbeat(&instance, session).await;
                        me.hub.command_result(&instance, session, r).await;
                    }
                    Some(fm_message::Body::LogRequest(r)) => {
                        let lines = LogLines {
                            request_id: r.request_id,
                            lines: vec![format!("simulated agent of {instance}: session open")],
                        };
                        me.hub.log_lines(&instance, session, lines);
                    }
                    None => {}
                }
            }
            me.hub.session_closed(&instance, session);
        });
        let mut st = lock(&self.state);
        if let Some(a) = st.agents.get_mut(instance_id) {
            a.session = Some(task);
        }
    }

    /// The agent of `instance_id` goes away if it runs on `vm` (its VM
    /// stopped or was terminated).
    pub fn disconnect(&self, instance_id: &str, vm: &str) {
        let task = {
            let mut st = lock(&self.state);
            match st.agents.get_mut(instance_id) {
                Some(a) if a.vm == vm => a.session.take(),
                _ => None,
            }
        };
        if let Some(t) = task {
            t.abort();
        }
        if let Some(session) = self.hub.session_of(instance_id, vm) {
            self.hub.session_closed(instance_id, session);
        }
        // A stopped VM stops its node too.
        if let Some(n) = lock(&self.state).nodes.get_mut(instance_id) {
            n.running = false;
            n.frozen = false;
        }
    }

    /// The node of `instance_id` as it is now.
    pub fn node(&self, instance_id: &str) -> SimNode {
        lock(&self.state)
            .nodes
            .get(instance_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets the node of a deleted volume.
    pub fn forget_node(&self, instance_id: &str) {
        lock(&self.state).nodes.remove(instance_id);
    }

    /// How many times each command id was executed.
    pub fn executed(&self) -> BTreeMap<String, u32> {
        lock(&self.state).executed.clone()
    }

    /// Makes commands of kind `kind` (see [`kind_name`]) fail, or succeed
    /// again.
    pub fn fail(&self, kind: &'static str, failing: bool) {
        let mut st = lock(&self.state);
        if failing {
            st.failing.insert(kind);
        } else {
            st.failing.remove(kind);
        }
    }

    async fn heartbeat(&self, instance_id: &str, session: u64) {
        let (generation, node) = {
            let mut st = lock(&self.state);
            st.generation += 1;
            (
                st.generation,
                st.nodes.get(instance_id).cloned().unwrap_or_default(),
            )
        };
        let node_state = match (&node.version, node.running) {
            (None, _) => NodeState::NotInstalled,
            (Some(_), true) => NodeState::Running,
            (Some(_), false) => NodeState::Stopped,
        };
        let hb = Heartbeat {
            node_state: node_state as i32,
            node_version: node.version.unwrap_or_default(),
            agent_version: "sim".into(),
            ..Default::default()
        };
        self.hub
            .heartbeat(instance_id, session, generation, hb)
            .await;
    }

    /// Answers command `c`: from the journal if it ran before, else by
    /// policy.
    fn answer(&self, instance_id: &str, c: fm_proto::agent::Command) -> CommandResult {
        let mut st = lock(&self.state);
        if let Some(r) = st
            .agents
            .get(instance_id)
            .and_then(|a| a.journal.get(&c.command_id))
        {
            return r.clone();
        }
        *st.executed.entry(c.command_id.clone()).or_default() += 1;
        let outcome = match &c.kind {
            Some(k) if st.failing.contains(kind_name(k)) => {
                Err(format!("simulated failure of {}", kind_name(k)))
            }
            Some(k) => {
                let node = st.nodes.entry(instance_id.to_string()).or_default();
                Ok(apply(node, instance_id, k))
            }
            None => Err("a command without a kind".to_string()),
        };
        let r = match outcome {
            Ok(out) => CommandResult {
                command_id: c.command_id.clone(),
                ok: true,
                error: String::new(),
                output_json: out.to_string(),
            },
            Err(e) => CommandResult {
                command_id: c.command_id.clone(),
                ok: false,
                error: e,
                output_json: String::new(),
            },
        };
        if let Some(a) = st.agents.get_mut(instance_id) {
            a.journal.insert(c.command_id, r.clone());
        }
        r
    }
}

/// What command `k` does to the node, and its output.
fn apply(node: &mut SimNode, instance_id: &str, k: &command::Kind) -> serde_json::Value {
    use command::Kind as K;
    match k {
        K::Install(i) => {
            node.version = Some(i.node_version.clone());
            json!({"nodeVersion": i.node_version, "adminApiKey": "sim-admin-key", "initialPassword": "sim-initial-password"})
        }
        K::Start(_) | K::Restart(_) => {
            node.running = true;
            json!({})
        }
        K::Stop(_) => {
            let was = node.running;
            node.running = false;
            json!({"wasRunning": was})
        }
        K::FreezeFs(_) => {
            node.frozen = true;
            json!({"mountPoint": "/sim"})
        }
        K::ThawFs(_) => {
            node.frozen = false;
            json!({})
        }
        K::TakeBackup(t) => {
            let version = node.version.clone().unwrap_or_default();
            json!({
                "manifestSha256": sim_manifest(instance_id, t, &version),
                "archiveSize": 1024,
                "archiveSha256": "",
                "dataBytes": 4096,
                "files": 3,
                "nodeVersion": version,
                "createdAtMs": crate::model::now_ms(),
                "encrypted": !t.key_hex.is_empty(),
            })
        }
        K::RestoreBackup(_) => json!({"nodeVersion": node.version.clone().unwrap_or_default()}),
        K::RunSetupActions(_) | K::ResetUserPassword(_) | K::Ping(_) | K::VerifyBackup(_) => {
            json!({})
        }
    }
}

/// A simulated backup's manifest (no archive), written where a real agent
/// would (a `file://` location), so FM's read-back finds it; its SHA-256.
fn sim_manifest(instance_id: &str, t: &fm_proto::agent::TakeBackup, version: &str) -> String {
    use sha2::Digest;
    let m = fm_backup::Manifest {
        format: fm_backup::manifest::FORMAT,
        backup_id: t.backup_id.clone(),
        instance_id: instance_id.to_string(),
        node_version: version.to_string(),
        created_at_ms: crate::model::now_ms(),
        encrypted: !t.key_hex.is_empty(),
        exclusions: t.exclusions.clone(),
        archive_size: 1024,
        archive_sha256: String::new(),
        data_bytes: 4096,
        entries: Vec::new(),
    };
    let json = serde_json::to_vec(&m).unwrap_or_default();
    let bytes = match fm_backup::crypt::BackupKey::from_hex(&t.key_hex) {
        Ok(k) if !t.key_hex.is_empty() => fm_backup::crypt::seal(&json, &k),
        _ => json,
    };
    let url = t
        .location
        .as_ref()
        .map(|l| l.url.as_str())
        .unwrap_or_default();
    if let Some(dir) = url.strip_prefix("file://") {
        let d = std::path::Path::new(dir)
            .join(instance_id)
            .join(&t.backup_id);
        let _ = std::fs::create_dir_all(&d)
            .and_then(|()| std::fs::write(d.join(fm_backup::MANIFEST), &bytes));
    }
    hex::encode(sha2::Sha256::digest(&bytes))
}
