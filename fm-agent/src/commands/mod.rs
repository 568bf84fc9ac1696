//! FM's commands: a queue run by one worker, in arrival order, each one
//! journaled before it runs and after it finishes, so that a command id
//! already done is answered from the journal and never run again, and one
//! already queued (FM resends what is pending after a reconnect) is not
//! queued twice. Each command has a deadline (FM's timeout, counted from
//! its arrival): past it the command fails and the worker goes on.
//!
//! Every command converges: it checks the real state first, so running it
//! again after an agent restart (journal entry still "started") is safe.

pub mod backup;
pub mod install;
pub mod node;
pub mod password;
pub mod setup_actions;

use crate::config::{Config, DownloadLimits};
use crate::journal::{Entry, Journal, MAX_LINES, State, StoredResult};
use crate::session::Link;
use fm_proto::agent::agent_message::Body;
use fm_proto::agent::command::Kind;
use fm_proto::agent::{Command, CommandProgress, CommandResult};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;

/// What a command needs.
#[derive(Debug)]
pub struct Ctx {
    /// The user-data.
    pub cfg: Arc<Config>,
    /// The mutual-TLS channel to FM (for kits).
    pub channel: Channel,
    /// The command journal.
    pub journal: Journal,
    /// The current session, for progress and results.
    pub link: Link,
    starting: AtomicUsize,
    /// Ids of the commands queued or running.
    queued: Mutex<HashSet<String>>,
}

impl Ctx {
    /// A context with no session yet.
    pub fn new(cfg: Arc<Config>, channel: Channel, journal: Journal) -> Self {
        Ctx {
            cfg,
            channel,
            journal,
            link: Link::default(),
            starting: AtomicUsize::new(0),
            queued: Mutex::default(),
        }
    }

    /// Whether a start or restart command is waiting for the node.
    /// Whether no command is queued or running.
    pub fn idle(&self) -> bool {
        lock(&self.queued).is_empty()
    }

    pub fn node_starting(&self) -> bool {
        self.starting.load(Ordering::Relaxed) > 0
    }

    fn starting_guard(&self) -> StartingGuard<'_> {
        self.starting.fetch_add(1, Ordering::Relaxed);
        StartingGuard(&self.starting)
    }
}

struct StartingGuard<'a>(&'a AtomicUsize);

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A command's output (a JSON object) or what went wrong.
pub type Outcome = Result<Value, String>;

/// A running command's progress: lines go to FM (when connected, and
/// dropped rather than waited for when the session is backed up) and the
/// last [`MAX_LINES`] to the journal. Registered secrets are masked.
#[derive(Debug)]
pub struct Progress {
    command_id: String,
    link: Link,
    lines: VecDeque<String>,
    secrets: Vec<String>,
}

impl Progress {
    /// Progress of command `command_id`, sent through `link`.
    pub fn new(command_id: &str, link: Link) -> Self {
        Progress {
            command_id: command_id.to_owned(),
            link,
            lines: VecDeque::new(),
            secrets: Vec::new(),
        }
    }

    /// Masks `secret` in every line and error from now on.
    pub fn add_secret(&mut self, secret: &str) {
        if !secret.is_empty() && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with the registered secrets masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }

    /// Reports one line (percent unknown).
    pub async fn line(&mut self, line: impl Into<String>) {
        self.step(line, 0).await;
    }

    /// Reports one line with a completion percentage.
    pub async fn step(&mut self, line: impl Into<String>, percent: u32) {
        let line = self.redact(&line.into());
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.clone());
        self.link.try_send(Body::Progress(CommandProgress {
            command_id: self.command_id.clone(),
            line,
            percent: percent.min(100),
        }));
        // Let the session send it before the next line comes.
        tokio::task::yield_now().await;
    }

    /// The lines kept so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// A command waiting for the worker, with the time it must be done by.
#[derive(Debug)]
pub struct Queued {
    pub cmd: Command,
    pub deadline: Instant,
}

/// The worker's queue.
pub type Queue = mpsc::UnboundedSender<Queued>;

/// How long `cmd` may take: FM's timeout, else the configured default.
pub fn time_allowed(cfg: &Config, cmd: &Command) -> std::time::Duration {
    match cmd.timeout_secs {
        0 => cfg.command_timeout,
        s => std::time::Duration::from_secs(u64::from(s)),
    }
}

/// Takes a command from FM: one already done is answered at once from the
/// journal; one already queued or running is not queued again (its result
/// goes to the session current when it is done); any other joins the queue
/// with its deadline.
pub async fn accept(ctx: &Ctx, cmd: Command, queue: &Queue) {
    let id = cmd.command_id.clone();
    if let Some(r) = journaled_result(ctx, &id) {
        tracing::info!(command_id = %id, "command already done; answering from the journal");
        ctx.link.send(Body::Result(r)).await;
        return;
    }
    if !lock(&ctx.queued).insert(id.clone()) {
        tracing::info!(command_id = %id, "command already queued or running; not queued again");
        return;
    }
    let deadline = Instant::now() + time_allowed(&ctx.cfg, &cmd);
    tracing::debug!(command_id = %id, "command queued");
    if queue.send(Queued { cmd, deadline }).is_err() {
        lock(&ctx.queued).remove(&id);
        tracing::error!("the command worker is gone");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the worker that runs queued commands one at a time.
pub fn spawn_worker(ctx: Arc<Ctx>) -> Queue {
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    tokio::spawn(async move {
        while let Some(Queued { cmd, deadline }) = rx.recv().await {
            let id = cmd.command_id.clone();
            run_command_until(&ctx, cmd, deadline).await;
            // Done and journaled: a copy arriving from now on is answered
            // from the journal.
            lock(&ctx.queued).remove(&id);
        }
    });
    tx
}

fn journaled_result(ctx: &Ctx, id: &str) -> Option<CommandResult> {
    match ctx.journal.get(id)? {
        Entry {
            state: State::Done,
            result: Some(r),
            ..
        } => Some(r.to_proto(id)),
        _ => None,
    }
}

/// Runs one command with its journal entries (or answers it from the
/// journal if it is done), sends and returns the result; its deadline is
/// its time allowed from now.
pub async fn run_command(ctx: &Ctx, cmd: Command) -> CommandResult {
    let deadline = Instant::now() + time_allowed(&ctx.cfg, &cmd);
    run_command_until(ctx, cmd, deadline).await
}

/// [`run_command`], failing the command (not run, or stopped where it is)
/// if it is not done by `deadline`.
pub async fn run_command_until(ctx: &Ctx, cmd: Command, deadline: Instant) -> CommandResult {
    let id = cmd.command_id.clone();
    if let Some(r) = journaled_result(ctx, &id) {
        tracing::info!(command_id = %id, "command already done; answering from the journal");
        ctx.link.send(Body::Result(r.clone())).await;
        return r;
    }
    let kind = kind_name(&cmd);
    let mut entry = Entry {
        command_id: id.clone(),
        command: describe(&cmd),
        state: State::Started,
        result: None,
        lines: Vec::new(),
    };
    let stored = if let Err(e) = ctx.journal.put(&entry) {
        // Without a journal entry a crash could make us run it twice.
        StoredResult {
            ok: false,
            error: format!("can't write the command journal: {e}"),
            output_json: String::new(),
        }
    } else {
        tracing::info!(command_id = %id, kind, "running command");
        let mut progress = Progress::new(&id, ctx.link.clone());
        let allowed = time_allowed(&ctx.cfg, &cmd).as_secs();
        let outcome = if Instant::now() >= deadline {
            Err(format!(
                "timed out: not started within its {allowed} s (queued behind other commands)"
            ))
        } else {
            // Past the deadline the command's future is dropped where it
            // is (its child processes are killed) and the worker goes on.
            tokio::time::timeout_at(deadline, execute(ctx, &cmd, &mut progress))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "timed out: not done within its {allowed} s; stopped"
                    ))
                })
        };
        let stored = match outcome {
            Ok(v) => StoredResult {
                ok: true,
                error: String::new(),
                output_json: v.to_string(),
            },
            Err(e) => StoredResult {
                ok: false,
                error: progress.redact(&e),
                output_json: String::new(),
            },
        };
        entry.state = State::Done;
        entry.result = Some(stored.clone());
        entry.lines = progress.lines();
        if let Err(e) = ctx.journal.put(&entry) {
            tracing::error!(command_id = %id, "can't journal the result: {e}");
        }
        stored
    };
    if stored.ok {
        tracing::info!(command_id = %id, kind, "command done");
    } else {
        tracing::warn!(command_id = %id, kind, "command failed: {}", stored.error);
    }
    let result = stored.to_proto(&id);
    // After a command that changes the node, a fresh heartbeat first: FM's
    // view of the node is current by the time the operation waiting for
    // this result goes on.
    if !matches!(
        cmd.kind,
        Some(Kind::Ping(_)) | Some(Kind::ResetUserPassword(_)) | None
    ) {
        let hb = crate::heartbeat::collect(&ctx.cfg, ctx.node_starting()).await;
        ctx.link.send(Body::Heartbeat(hb)).await;
    }
    ctx.link.send(Body::Result(result.clone())).await;
    result
}

async fn execute(ctx: &Ctx, cmd: &Command, p: &mut Progress) -> Outcome {
    match &cmd.kind {
        Some(Kind::Install(c)) => install::install(ctx, p, c).await,
        Some(Kind::Start(c)) => node::start(ctx, p, c.health_timeout_secs).await,
        Some(Kind::Stop(_)) => node::stop(ctx, p).await,
        Some(Kind::Restart(c)) => node::restart(ctx, p, c.health_timeout_secs).await,
        Some(Kind::RunSetupActions(c)) => setup_actions::run(ctx, p, c).await,
        Some(Kind::ResetUserPassword(c)) => password::reset(ctx, p, c).await,
        Some(Kind::Ping(_)) => Ok(json!({ "agentTimeMs": crate::heartbeat::now_ms() })),
        Some(Kind::TakeBackup(c)) => backup::take(ctx, p, c).await,
        Some(Kind::RestoreBackup(c)) => backup::restore(ctx, p, c).await,
        Some(Kind::VerifyBackup(c)) => backup::verify(ctx, p, c).await,
        Some(Kind::FreezeFs(c)) => backup::freeze(ctx, p, c).await,
        Some(Kind::ThawFs(_)) => backup::thaw(ctx, p).await,
        None => Err("unknown command (this agent is older than FM?)".into()),
    }
}

fn kind_name(cmd: &Command) -> &'static str {
    match &cmd.kind {
        Some(Kind::Install(_)) => "install",
        Some(Kind::Start(_)) => "start",
        Some(Kind::Stop(_)) => "stop",
        Some(Kind::Restart(_)) => "restart",
        Some(Kind::RunSetupActions(_)) => "runSetupActions",
        Some(Kind::ResetUserPassword(_)) => "resetUserPassword",
        Some(Kind::Ping(_)) => "ping",
        Some(Kind::TakeBackup(_)) => "takeBackup",
        Some(Kind::RestoreBackup(_)) => "restoreBackup",
        Some(Kind::VerifyBackup(_)) => "verifyBackup",
        Some(Kind::FreezeFs(_)) => "freezeFs",
        Some(Kind::ThawFs(_)) => "thawFs",
        None => "unknown",
    }
}

/// The command as JSON for the journal, without secrets: no password, no
/// setup action parameters (they may hold credentials), no URL userinfo.
pub fn describe(cmd: &Command) -> Value {
    let body = match &cmd.kind {
        Some(Kind::Install(c)) => json!({
            "kitUrl": redact_url(&c.kit_url),
            "kitSha256": c.kit_sha256,
            "nodeVersion": c.node_version,
            "nodeType": c.node_type,
            "port": c.port,
            "allowDowngrade": c.allow_downgrade,
        }),
        Some(Kind::Start(c)) => json!({ "healthTimeoutSecs": c.health_timeout_secs }),
        Some(Kind::Restart(c)) => json!({ "healthTimeoutSecs": c.health_timeout_secs }),
        Some(Kind::Stop(_) | Kind::Ping(_)) | None => json!({}),
        Some(Kind::RunSetupActions(c)) => json!({
            "stage": c.stage,
            "actions": c.actions.iter().map(|a| a.r#type.as_str()).collect::<Vec<_>>(),
        }),
        Some(Kind::ResetUserPassword(c)) => json!({ "userName": c.user_name }),
        // No credentials, no key.
        Some(Kind::TakeBackup(c)) => json!({
            "location": c.location.as_ref().map(|l| l.url.as_str()),
            "backupId": c.backup_id,
            "encrypted": !c.key_hex.is_empty(),
        }),
        Some(Kind::RestoreBackup(c)) => json!({
            "location": c.location.as_ref().map(|l| l.url.as_str()),
            "sourceInstanceId": c.source_instance_id,
            "backupId": c.backup_id,
        }),
        Some(Kind::VerifyBackup(c)) => json!({
            "location": c.location.as_ref().map(|l| l.url.as_str()),
            "sourceInstanceId": c.source_instance_id,
            "backupId": c.backup_id,
        }),
        Some(Kind::FreezeFs(c)) => json!({ "thawAfterSecs": c.thaw_after_secs }),
        Some(Kind::ThawFs(_)) => json!({}),
    };
    json!({ kind_name(cmd): body })
}

/// `url` with any `user:password@` replaced by `***@`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let shown = match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    };
    // Query values (tokens, presigned signatures) are masked too.
    match shown.split_once('?') {
        Some((base, query)) => {
            let (query, fragment) = query
                .split_once('#')
                .map_or((query, None), |(q, f)| (q, Some(f)));
            let masked: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{k}=***"),
                    None => kv.to_owned(),
                })
                .collect();
            let mut out = format!("{base}?{}", masked.join("&"));
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
            out
        }
        None => shown,
    }
}

/// The parts of `url` that are secrets: its userinfo (and the password in
/// it) and its query values.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some((_, rest)) = url.split_once("://") else {
        return out;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..end].rfind('@') {
        let userinfo = &rest[..at];
        out.push(userinfo.to_owned());
        if let Some((_, pw)) = userinfo.split_once(':') {
            out.push(pw.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for kv in query.split('&') {
            if let Some((_, v)) = kv.split_once('=')
                && v.len() >= 4
            {
                out.push(v.to_owned());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The last path segment of a URL (no query or fragment).
pub fn url_file_name(url: &str) -> Option<String> {
    let no_query = url.split(['?', '#']).next()?;
    let path = no_query.split_once("://").map_or(no_query, |(_, r)| r);
    let name = path.rsplit('/').next()?;
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains('\\');
    ok.then(|| name.to_owned())
}

/// A file being written while its SHA-256 is computed.
pub(crate) struct HashingFile {
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
}

impl HashingFile {
    /// Creates `path` (must not exist), mode 0644.
    pub(crate) async fn create(path: &Path) -> Result<Self, String> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .await
            .map_err(|e| format!("can't create {}: {e}", path.display()))?;
        Ok(HashingFile {
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.file
            .write_all(data)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Flushes to disk; (hex SHA-256, size).
    pub(crate) async fn finish(mut self) -> Result<(String, u64), String> {
        self.file.flush().await.map_err(|e| format!("write: {e}"))?;
        self.file
            .sync_all()
            .await
            .map_err(|e| format!("fsync: {e}"))?;
        Ok((hex::encode(self.hasher.finalize()), self.size))
    }
}

/// Credentials and headers for an HTTP download.
#[derive(Debug, Default)]
pub(crate) struct HttpAuth {
    pub headers: Vec<(String, String)>,
    pub basic: Option<(String, String)>,
}

/// A failed download: what happened, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct FetchError {
    pub msg: String,
    pub transient: bool,
}

impl FetchError {
    pub(crate) fn transient(msg: String) -> Self {
        FetchError {
            msg,
            transient: true,
        }
    }
}

/// Local failures (writing the file) are not worth retrying.
impl From<String> for FetchError {
    fn from(msg: String) -> Self {
        FetchError {
            msg,
            transient: false,
        }
    }
}

/// GETs `url` into `out`, reporting every 64 MiB, within `limits`: the
/// whole download within `limits.timeout`, the headers and each next chunk
/// within `limits.idle_timeout`, at most `limits.max_bytes`.
pub(crate) async fn http_download(
    url: &str,
    auth: &HttpAuth,
    limits: &DownloadLimits,
    out: &mut HashingFile,
    p: &mut Progress,
) -> Result<(), FetchError> {
    let shown = redact_url(url);
    match tokio::time::timeout(
        limits.timeout,
        http_download_inner(url, &shown, auth, limits, out, p),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(FetchError::transient(format!(
            "GET {shown}: not done within {} s",
            limits.timeout.as_secs()
        ))),
    }
}

async fn http_download_inner(
    url: &str,
    shown: &str,
    auth: &HttpAuth,
    limits: &DownloadLimits,
    out: &mut HashingFile,
    p: &mut Progress,
) -> Result<(), FetchError> {
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        // Backstops: the timeouts below fire first, with clearer errors.
        .read_timeout(limits.idle_timeout + std::time::Duration::from_secs(5))
        .timeout(limits.timeout + std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut req = client.get(url);
    for (k, v) in &auth.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some((u, pw)) = &auth.basic {
        req = req.basic_auth(u, Some(pw));
    }
    let idle = |what: &str| {
        FetchError::transient(format!(
            "GET {shown}: no {what} within {} s",
            limits.idle_timeout.as_secs()
        ))
    };
    let failed = |e: reqwest::Error, what: &str| {
        if e.is_timeout() {
            idle(what)
        } else {
            FetchError::transient(format!("GET {shown}: {}", e.without_url()))
        }
    };
    let mut resp = tokio::time::timeout(limits.idle_timeout, req.send())
        .await
        .map_err(|_| idle("answer"))?
        .map_err(|e| failed(e, "answer"))?;
    let status = resp.status();
    if !status.is_success() {
        let msg = format!("GET {shown}: HTTP {status}");
        return Err(
            if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                FetchError::transient(msg)
            } else {
                msg.into()
            },
        );
    }
    let too_big = || -> FetchError {
        format!(
            "GET {shown}: larger than the {} bytes a download may have",
            limits.max_bytes
        )
        .into()
    };
    if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
        return Err(too_big());
    }
    let mut next_report = 64 << 20;
    while let Some(chunk) = tokio::time::timeout(limits.idle_timeout, resp.chunk())
        .await
        .map_err(|_| idle("data"))?
        .map_err(|e| failed(e, "data"))?
    {
        if out.size() + chunk.len() as u64 > limits.max_bytes {
            return Err(too_big());
        }
        out.write(&chunk).await?;
        if out.size() >= next_report {
            p.line(format!("downloaded {} MiB", out.size() >> 20)).await;
            next_report += 64 << 20;
        }
    }
    Ok(())
}

/// Path of `prog` on `$PATH`, if it is there and executable.
pub fn find_on_path(prog: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A context on `dir` (state, data and home dirs under it) whose
    /// channel leads nowhere.
    pub fn ctx(dir: &Path) -> Ctx {
        let cfg = Config::parse(&format!(
            r#"instance_id = "i"
fm_url = "https://127.0.0.1:1"
ca_pem = "-----BEGIN CERTIFICATE-----"
enrollment_token = "t"
state_dir = "{0}/state"
data_dir = "{0}/data"
home_dir = "{0}/home"
"#,
            dir.display()
        ))
        .unwrap();
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let journal = Journal::open(&cfg.state_dir).unwrap();
        Ctx::new(Arc::new(cfg), channel, journal)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::ctx;
    use super::*;
    use fm_proto::agent::{Ping, ResetUserPassword};

    fn ping(id: &str) -> Command {
        Command {
            command_id: id.into(),
            kind: Some(Kind::Ping(Ping {})),
            timeout_secs: 0,
        }
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_fails_without_running() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let late = Instant::now() - std::time::Duration::from_millis(1);
        let r = run_command_until(&ctx, ping("late"), late).await;
        assert!(!r.ok);
        assert!(r.error.contains("timed out"), "{}", r.error);
        assert!(r.output_json.is_empty(), "it did not run");
        assert_eq!(ctx.journal.get("late").unwrap().state, State::Done);
    }

    #[tokio::test]
    async fn the_time_allowed_is_fms_else_the_configured_default() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let mut c = ping("t");
        assert_eq!(time_allowed(&ctx.cfg, &c), ctx.cfg.command_timeout);
        c.timeout_secs = 7;
        assert_eq!(
            time_allowed(&ctx.cfg, &c),
            std::time::Duration::from_secs(7)
        );
    }

    #[tokio::test]
    async fn a_command_already_queued_is_not_queued_again() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let (tx, mut rx) = mpsc::unbounded_channel();
        accept(&ctx, ping("q1"), &tx).await;
        accept(&ctx, ping("q1"), &tx).await;
        accept(&ctx, ping("q2"), &tx).await;
        let ids: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|q| q.cmd.command_id)
            .collect();
        assert_eq!(ids, ["q1", "q2"]);
    }

    #[tokio::test]
    async fn a_done_command_is_answered_from_the_journal_not_rerun() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let stored = StoredResult {
            ok: true,
            error: String::new(),
            output_json: r#"{"marker":1}"#.into(),
        };
        ctx.journal
            .put(&Entry {
                command_id: "c1".into(),
                command: json!({"ping": {}}),
                state: State::Done,
                result: Some(stored.clone()),
                lines: vec![],
            })
            .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        ctx.link.set(Some(tx));
        let r = run_command(&ctx, ping("c1")).await;
        // A real run would answer {"agentTimeMs": ...}.
        assert_eq!(r.output_json, r#"{"marker":1}"#);
        match rx.recv().await.unwrap() {
            Body::Result(r) => assert_eq!(r.output_json, r#"{"marker":1}"#),
            other => panic!("unexpected {other:?}"),
        }
        assert!(rx.try_recv().is_err(), "nothing else was sent");
    }

    #[tokio::test]
    async fn a_new_command_is_journaled_done_with_its_result() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let first = run_command(&ctx, ping("p1")).await;
        assert!(first.ok);
        assert!(first.output_json.contains("agentTimeMs"));
        let e = ctx.journal.get("p1").unwrap();
        assert_eq!(e.state, State::Done);
        assert_eq!(e.result.unwrap().to_proto("p1"), first);
        let again = run_command(&ctx, ping("p1")).await;
        assert_eq!(again, first);
    }

    #[tokio::test]
    async fn a_command_started_before_a_restart_runs_again() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        ctx.journal
            .put(&Entry {
                command_id: "p2".into(),
                command: json!({"ping": {}}),
                state: State::Started,
                result: None,
                lines: vec![],
            })
            .unwrap();
        let r = run_command(&ctx, ping("p2")).await;
        assert!(r.output_json.contains("agentTimeMs"));
        assert_eq!(ctx.journal.get("p2").unwrap().state, State::Done);
    }

    #[test]
    fn the_journaled_command_holds_no_password() {
        let cmd = Command {
            timeout_secs: 0,
            command_id: "r".into(),
            kind: Some(Kind::ResetUserPassword(ResetUserPassword {
                user_name: "admin".into(),
                password: "hunter2".into(),
            })),
        };
        let s = describe(&cmd).to_string();
        assert!(s.contains("admin") && !s.contains("hunter2"), "{s}");
    }

    #[test]
    fn the_journaled_backup_command_holds_no_key_or_credentials() {
        let cmd = Command {
            timeout_secs: 0,
            command_id: "b".into(),
            kind: Some(Kind::TakeBackup(fm_proto::agent::TakeBackup {
                location: Some(fm_proto::agent::BackupLocation {
                    url: "s3://bucket/p".into(),
                    access_key_id: "AKIDEXAMPLE".into(),
                    secret_access_key: "wJalrXUtnFEMI".into(),
                    session_token: "FwoGZXIvYXdzEXAMPLE".into(),
                    ..Default::default()
                }),
                backup_id: "bk-1".into(),
                exclusions: vec![],
                key_hex: "ab".repeat(32),
            })),
        };
        let s = describe(&cmd).to_string();
        assert!(s.contains("bk-1") && s.contains("s3://bucket/p"), "{s}");
        assert!(
            !s.contains("AKIDEXAMPLE")
                && !s.contains("wJalr")
                && !s.contains("FwoGZ")
                && !s.contains("abab"),
            "{s}"
        );
    }

    #[test]
    fn url_credentials_are_masked() {
        assert_eq!(
            redact_url("https://u:pw@host/x/k.tar.gz?a=b"),
            "https://***@host/x/k.tar.gz?a=***"
        );
        assert_eq!(
            redact_url("jdbc-driver://h/d.jar?token=SECRET&x#frag"),
            "jdbc-driver://h/d.jar?token=***&x#frag"
        );
        assert_eq!(
            url_secrets("https://u:pw12@h/x?token=SECRET&n=1"),
            ["u:pw12", "pw12", "SECRET"]
        );
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
    }

    #[test]
    fn file_names_come_from_the_last_url_segment() {
        assert_eq!(
            url_file_name("https://h/a/driver.jar?x=1").as_deref(),
            Some("driver.jar")
        );
        assert_eq!(
            url_file_name("file:///tmp/k.tar.gz").as_deref(),
            Some("k.tar.gz")
        );
        assert_eq!(url_file_name("https://h/a/"), None);
    }

    #[tokio::test]
    async fn progress_masks_secrets_and_keeps_the_last_lines() {
        let mut p = Progress::new("c", Link::default());
        p.add_secret("s3cret");
        for i in 0..(MAX_LINES + 5) {
            p.line(format!("line {i} s3cret")).await;
        }
        let lines = p.lines();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[0], "line 5 ***");
        assert_eq!(p.redact("x s3cret y"), "x *** y");
    }
}
