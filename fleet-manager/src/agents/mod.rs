//! The agents port: a registry of connected agents and the commands waiting
//! for them, plus the gRPC endpoint agents dial (`grpc`).
//!
//! A command is sent with an id chosen by the caller (stable across retries
//! of the same operation step) and stays pending until the agent reports its
//! result: if the agent reconnects in the meantime, results it journaled
//! while disconnected arrive in its Hello, and commands it never received are
//! sent again. Agent reports carry generation numbers; the store applies a
//! heartbeat only if it is newer than the last one applied.

pub mod grpc;
pub mod sim;

use crate::error::{Error, OpFailure, Result};
use crate::store::Store;
use fm_proto::agent::{
    Command, CommandResult, FmMessage, Heartbeat, LogLines, LogRequest, fm_message,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

type Outbox = mpsc::Sender<Result<FmMessage, tonic::Status>>;

struct Session {
    id: u64,
    /// The VM the agent runs on (from its certificate).
    vm: String,
    tx: Outbox,
    /// Dropped with the session: its reader stops taking messages.
    _ended: oneshot::Sender<()>,
}

/// A session the hub has ended (another replaced it, or FM stops): its
/// reader stops when `ended` resolves.
pub(crate) struct SessionHandle {
    pub id: u64,
    pub ended: oneshot::Receiver<()>,
}

struct Pending {
    instance_id: String,
    /// The instance's VM when the command was sent: only that VM's agent
    /// receives it and may answer it (`None`: the store could not say).
    vm: Option<String>,
    command: Command,
    op_id: Option<String>,
    done: Option<oneshot::Sender<CommandResult>>,
    /// Progress lines stored for it so far.
    lines: u32,
}

/// The longest progress line kept (the agent sends at most 4 KiB; a longer
/// one is cut), and how many lines one command may add to its operation's
/// log (one note says when the rest is dropped).
const PROGRESS_LINE_MAX: usize = 4096;
const PROGRESS_LINES_PER_COMMAND: u32 = 2000;

#[derive(Default)]
struct State {
    next_session: u64,
    sessions: HashMap<String, Session>,
    pending: HashMap<String, Pending>,
    /// The last refused enrollment per instance, to explain a VM whose
    /// agent never connects.
    refused: HashMap<String, String>,
    next_log_request: u64,
    /// Who waits for the answer of each log request: (instance, waiter).
    log_waiters: HashMap<u64, (String, oneshot::Sender<Vec<String>>)>,
}

/// How long FM waits for an agent's log lines, how many it keeps of an
/// answer and how long each may be in bytes (the agent sends at most 100
/// lines of 400 characters).
pub const LOG_TIMEOUT: Duration = Duration::from_secs(3);
const LOG_LINES_MAX: usize = 100;
const LOG_LINE_MAX: usize = 1604;

/// What an agent said of its recent log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLog {
    /// Its last lines, oldest first.
    Lines(Vec<String>),
    /// No agent of the instance is connected.
    NotConnected,
    /// The agent did not answer within [`LOG_TIMEOUT`].
    NoAnswer,
}

/// The registry of connected agents; cheap to clone.
#[derive(Clone)]
pub struct AgentHub {
    store: Store,
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for AgentHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentHub(..)")
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent maps behind.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentHub {
    pub fn new(store: Store) -> AgentHub {
        AgentHub {
            store,
            state: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Registers a session after the agent's Hello; completes commands whose
    /// results the agent journaled and resends those it never answered. A
    /// session the instance had before is ended: its stream closes and its
    /// messages are no longer taken.
    pub(crate) async fn session_opened(
        &self,
        instance_id: &str,
        vm: &str,
        tx: Outbox,
        journal: Vec<CommandResult>,
    ) -> SessionHandle {
        for r in journal {
            self.complete(instance_id, vm, r);
        }
        let (ended_tx, ended) = oneshot::channel();
        let (id, resend, old) = {
            let mut st = lock(&self.state);
            st.next_session += 1;
            let id = st.next_session;
            let old = st.sessions.insert(
                instance_id.to_string(),
                Session {
                    id,
                    vm: vm.to_string(),
                    tx: tx.clone(),
                    _ended: ended_tx,
                },
            );
            st.refused.remove(instance_id);
            let resend: Vec<Command> = st
                .pending
                .values()
                .filter(|p| p.instance_id == instance_id && p.vm.as_ref().is_none_or(|v| v == vm))
                .map(|p| p.command.clone())
                .collect();
            (id, resend, old)
        };
        if let Some(old) = old {
            tracing::info!(instance = instance_id, old_vm = %old.vm, vm, "a new agent session replaces the previous one");
            let _ = old.tx.try_send(Err(tonic::Status::aborted(
                "another session of this instance replaced this one",
            )));
        }
        for c in resend {
            let _ = tx
                .send(Ok(FmMessage {
                    body: Some(fm_message::Body::Command(c)),
                }))
                .await;
        }
        self.bump();
        SessionHandle { id, ended }
    }

    /// The VM of session `session` if it is still the instance's session;
    /// messages of any other session are dropped.
    fn current_vm(&self, instance_id: &str, session: u64, what: &str) -> Option<String> {
        let vm = lock(&self.state)
            .sessions
            .get(instance_id)
            .filter(|s| s.id == session)
            .map(|s| s.vm.clone());
        if vm.is_none() {
            tracing::warn!(
                instance = instance_id,
                session,
                "dropped a {what} from an ended agent session"
            );
        }
        vm
    }

    pub(crate) fn session_closed(&self, instance_id: &str, session: u64) {
        let mut st = lock(&self.state);
        if st
            .sessions
            .get(instance_id)
            .is_some_and(|s| s.id == session)
        {
            st.sessions.remove(instance_id);
            // Its agent won't answer what it was asked.
            st.log_waiters.retain(|_, (asked, _)| asked != instance_id);
        }
        drop(st);
        self.bump();
    }

    /// Remembers why an instance's agent was refused (for the operation
    /// waiting on it); callers only report instances FM provisions.
    pub(crate) fn enrollment_refused(&self, instance_id: &str, why: &str) {
        let mut st = lock(&self.state);
        if st.refused.len() >= 10_000 {
            st.refused.clear();
        }
        st.refused.insert(instance_id.to_string(), why.to_string());
        drop(st);
        self.bump();
    }

    /// Ends every session (FM is stopping): their streams close, so the
    /// agent endpoint can drain, and agents reconnect to the next FM.
    pub fn close_all(&self) {
        lock(&self.state).sessions.clear();
        self.bump();
    }

    /// Ends the sessions of agents whose VM is no longer their instance's
    /// (one FM replaced or deleted, still up): they could not act, and now
    /// they hold nothing either. Run periodically; returns how many ended.
    pub async fn close_stale_sessions(&self) -> Result<usize> {
        let open: Vec<(String, String, u64)> = lock(&self.state)
            .sessions
            .iter()
            .map(|(i, s)| (i.clone(), s.vm.clone(), s.id))
            .collect();
        if open.is_empty() {
            return Ok(0);
        }
        let current: HashMap<String, String> =
            crate::store::lifecycle::runtime_list_with_vm(self.store.conn())
                .await?
                .into_iter()
                .filter_map(|rt| Some((rt.instance_id, rt.vm_id?)))
                .collect();
        let mut st = lock(&self.state);
        let mut ended = 0;
        for (instance, vm, id) in open {
            if current.get(&instance) != Some(&vm)
                && st.sessions.get(&instance).is_some_and(|s| s.id == id)
            {
                tracing::info!(instance = %instance, vm = %vm, "ended the session of an agent on a VM the instance no longer has");
                st.sessions.remove(&instance);
                ended += 1;
            }
        }
        drop(st);
        if ended > 0 {
            self.bump();
        }
        Ok(ended)
    }

    /// The session of the instance's agent on `vm`, if it is connected.
    pub(crate) fn session_of(&self, instance_id: &str, vm: &str) -> Option<u64> {
        lock(&self.state)
            .sessions
            .get(instance_id)
            .filter(|s| s.vm == vm)
            .map(|s| s.id)
    }

    /// The VM whose agent is connected for the instance, if one is.
    pub fn connected_vm(&self, instance_id: &str) -> Option<String> {
        lock(&self.state)
            .sessions
            .get(instance_id)
            .map(|s| s.vm.clone())
    }

    /// Waits until the agent of the instance's VM `vm` is connected.
    pub async fn wait_connected(
        &self,
        instance_id: &str,
        vm: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            if self.connected_vm(instance_id).as_deref() == Some(vm) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let why = lock(&self.state)
                    .refused
                    .get(instance_id)
                    .map(|w| format!(": its enrollment was refused ({w})"))
                    .unwrap_or_default();
                return Err(Error::op_failed(
                    OpFailure::AgentUnreachable,
                    format!(
                        "the agent of instance '{instance_id}' (VM {vm}) did not connect within {} s{why}",
                        timeout.as_secs()
                    ),
                ));
            }
        }
    }

    /// A progress line from `instance_id`'s agent; lines for commands sent
    /// to another instance are dropped.
    pub(crate) async fn progress(
        &self,
        instance_id: &str,
        session: u64,
        command_id: &str,
        line: &str,
    ) {
        let Some(vm) = self.current_vm(instance_id, session, "progress line") else {
            return;
        };
        let target = {
            let mut st = lock(&self.state);
            st.pending
                .get_mut(command_id)
                .filter(|p| p.instance_id == instance_id && p.vm.as_ref().is_none_or(|v| *v == vm))
                .and_then(|p| {
                    p.lines = p.lines.saturating_add(1);
                    p.op_id.clone().map(|op| (op, p.lines))
                })
        };
        let Some((op, n)) = target else {
            return;
        };
        let text = if n <= PROGRESS_LINES_PER_COMMAND {
            format!("agent: {}", cut(line, PROGRESS_LINE_MAX))
        } else if n == PROGRESS_LINES_PER_COMMAND + 1 {
            format!(
                "agent: (more than {PROGRESS_LINES_PER_COMMAND} lines from command {command_id}; the rest is not kept)"
            )
        } else {
            return;
        };
        let _ = self.store.op_log(&op, &text).await;
    }

    /// A result on session `session` of `instance_id`'s agent; it completes
    /// only a command sent to that instance's VM the session runs on, and
    /// only while the session is the instance's current one.
    pub(crate) async fn command_result(&self, instance_id: &str, session: u64, r: CommandResult) {
        if let Some(vm) = self.current_vm(instance_id, session, "command result") {
            self.complete(instance_id, &vm, r);
        }
    }

    fn complete(&self, instance_id: &str, vm: &str, r: CommandResult) {
        let pending = {
            let mut st = lock(&self.state);
            match st.pending.get(&r.command_id) {
                Some(p)
                    if p.instance_id == instance_id && p.vm.as_ref().is_none_or(|v| v == vm) =>
                {
                    st.pending.remove(&r.command_id)
                }
                Some(p) if p.instance_id == instance_id => {
                    tracing::warn!(
                        instance = instance_id,
                        command = %r.command_id,
                        from_vm = vm,
                        for_vm = ?p.vm,
                        "dropped a result from an agent on another VM than the command's"
                    );
                    None
                }
                _ => None,
            }
        };
        if let Some(mut p) = pending
            && let Some(done) = p.done.take()
        {
            let _ = done.send(r);
        }
    }

    /// A heartbeat on session `session`; applied only while the session is
    /// current and its VM is the instance's VM.
    pub(crate) async fn heartbeat(
        &self,
        instance_id: &str,
        session: u64,
        generation: u64,
        hb: Heartbeat,
    ) {
        let Some(vm) = self.current_vm(instance_id, session, "heartbeat") else {
            return;
        };
        if let Err(e) = self
            .store
            .runtime_heartbeat(instance_id, &vm, generation as i64, &hb)
            .await
        {
            tracing::warn!(instance = instance_id, error = %e, "can't store heartbeat");
        }
    }

    /// The recent log lines of the instance's agent, asked of it now.
    pub async fn agent_log(&self, instance_id: &str) -> AgentLog {
        let (rx, id, tx) = {
            let mut st = lock(&self.state);
            let Some(tx) = st.sessions.get(instance_id).map(|s| s.tx.clone()) else {
                return AgentLog::NotConnected;
            };
            st.next_log_request += 1;
            let id = st.next_log_request;
            let (done, rx) = oneshot::channel();
            st.log_waiters.insert(id, (instance_id.to_string(), done));
            (rx, id, tx)
        };
        let ask = FmMessage {
            body: Some(fm_message::Body::LogRequest(LogRequest { request_id: id })),
        };
        let answer = match tx.try_send(Ok(ask)) {
            Ok(()) => tokio::time::timeout(LOG_TIMEOUT, rx).await.ok(),
            Err(_) => None,
        };
        lock(&self.state).log_waiters.remove(&id);
        match answer {
            Some(Ok(lines)) => AgentLog::Lines(lines),
            // The session ended before the agent answered.
            Some(Err(_)) => AgentLog::NotConnected,
            None => AgentLog::NoAnswer,
        }
    }

    /// An agent's answer to a log request; taken only from the instance's
    /// current session, for a request about that instance, bounded.
    pub(crate) fn log_lines(&self, instance_id: &str, session: u64, l: LogLines) {
        if self.current_vm(instance_id, session, "log lines").is_none() {
            return;
        }
        let mut st = lock(&self.state);
        // Only the instance asked answers its request.
        match st.log_waiters.get(&l.request_id) {
            Some((asked, _)) if asked == instance_id => {}
            _ => return,
        }
        let Some((_, done)) = st.log_waiters.remove(&l.request_id) else {
            return;
        };
        let skip = l.lines.len().saturating_sub(LOG_LINES_MAX);
        let lines = l.lines[skip..]
            .iter()
            .map(|line| cut(line, LOG_LINE_MAX).to_owned())
            .collect();
        let _ = done.send(lines);
    }

    /// Sends a command to the instance's agent and waits for its result. The
    /// command waits for the agent to connect if it is not, within `timeout`
    /// overall. Progress lines land in the log of operation `op_id`.
    pub async fn run_command(
        &self,
        instance_id: &str,
        command: Command,
        op_id: Option<&str>,
        timeout: Duration,
    ) -> Result<CommandResult> {
        let id = command.command_id.clone();
        let (tx, rx) = oneshot::channel();
        // The command is for the instance's VM as the store has it now.
        let vm = match crate::store::lifecycle::runtime_get(self.store.conn(), instance_id).await {
            Ok(rt) => rt.and_then(|rt| rt.vm_id),
            Err(e) => {
                tracing::warn!(instance = instance_id, error = %e, "can't read the instance's VM; the command goes to its connected agent");
                None
            }
        };
        let session = {
            let mut st = lock(&self.state);
            let session = st
                .sessions
                .get(instance_id)
                .filter(|s| vm.as_ref().is_none_or(|v| *v == s.vm))
                .map(|s| s.tx.clone());
            st.pending.insert(
                id.clone(),
                Pending {
                    instance_id: instance_id.to_string(),
                    vm,
                    command: command.clone(),
                    op_id: op_id.map(str::to_string),
                    done: Some(tx),
                    lines: 0,
                },
            );
            session
        };
        // One deadline for sending and answering: an agent that stops
        // reading (its stream full) can't hold the step past it.
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(out) = session {
            let _ = tokio::time::timeout_at(
                deadline,
                out.send(Ok(FmMessage {
                    body: Some(fm_message::Body::Command(command)),
                })),
            )
            .await;
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                lock(&self.state).pending.remove(&id);
                Err(Error::op_failed(
                    OpFailure::AgentTimeout,
                    format!(
                        "the agent of instance '{instance_id}' did not finish command {id} within {} s",
                        timeout.as_secs()
                    ),
                ))
            }
        }
    }

    /// As [`AgentHub::run_command`], turning a failed command into an error.
    pub async fn run_ok(
        &self,
        instance_id: &str,
        command: Command,
        op_id: Option<&str>,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let r = self
            .run_command(instance_id, command, op_id, timeout)
            .await?;
        if r.ok {
            Ok(serde_json::from_str(&r.output_json).unwrap_or(serde_json::Value::Null))
        } else {
            Err(Error::op_failed(OpFailure::AgentCommandFailed, r.error))
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_progress_lines_are_cut_on_a_character_boundary() {
        assert_eq!(super::cut("short", 10), "short");
        assert_eq!(super::cut("ééé", 3), "é");
        assert_eq!(
            super::cut(&"x".repeat(5000), super::PROGRESS_LINE_MAX).len(),
            4096
        );
    }
}
