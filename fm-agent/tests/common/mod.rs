//! Test harness: a fake FM (tonic over TLS with a CA made here, enrollment
//! with one-time tokens, sessions that need an issued client certificate,
//! kits), the real `fm-agent` binary in a guard that kills it, and a tiny
//! fake node kit whose installer counts its runs.

#![allow(dead_code)]

use fm_proto::agent::agent_service_server::{AgentService, AgentServiceServer};
use fm_proto::agent::enrollment_server::{Enrollment, EnrollmentServer};
use fm_proto::agent::{
    AgentMessage, Command, CommandResult, EnrollRequest, EnrollResponse, FetchKitRequest,
    FmMessage, Heartbeat, Hello, KitChunk, agent_message, fm_message,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    DnValue, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// What the fake FM saw.
#[derive(Default)]
pub struct FmState {
    tokens: HashSet<String>,
    issued: Vec<Vec<u8>>,
    pub enroll_attempts: usize,
    pub enroll_refusals: usize,
    pub sessions: usize,
    pub sessions_without_cert: usize,
    /// (session number, message) in arrival order.
    pub messages: Vec<(usize, AgentMessage)>,
    current: Option<mpsc::Sender<Result<FmMessage, Status>>>,
    kits: HashMap<String, Vec<u8>>,
    pub kit_fetches: usize,
    fail_kit_fetches: usize,
}

impl FmState {
    pub fn results(&self, id: &str) -> Vec<CommandResult> {
        self.messages
            .iter()
            .filter_map(|(_, m)| match &m.body {
                Some(agent_message::Body::Result(r)) if r.command_id == id => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn heartbeats(&self) -> Vec<(usize, u64, Heartbeat)> {
        self.messages
            .iter()
            .filter_map(|(s, m)| match &m.body {
                Some(agent_message::Body::Heartbeat(h)) => Some((*s, m.generation, h.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn hellos(&self) -> Vec<(usize, Hello)> {
        self.messages
            .iter()
            .filter_map(|(s, m)| match &m.body {
                Some(agent_message::Body::Hello(h)) => Some((*s, h.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn progress(&self, id: &str) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|(_, m)| match &m.body {
                Some(agent_message::Body::Progress(p)) if p.command_id == id => {
                    Some(p.line.clone())
                }
                _ => None,
            })
            .collect()
    }
}

#[derive(Clone)]
struct Svc {
    state: Arc<Mutex<FmState>>,
    issuer: Arc<CertifiedIssuer<'static, KeyPair>>,
}

fn cn(v: &DnValue) -> String {
    match v {
        DnValue::Utf8String(s) => s.clone(),
        DnValue::PrintableString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

#[tonic::async_trait]
impl Enrollment for Svc {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let r = request.into_inner();
        {
            let mut s = self.state.lock().unwrap();
            s.enroll_attempts += 1;
            if !s.tokens.remove(&r.token) {
                s.enroll_refusals += 1;
                return Err(Status::permission_denied(
                    "enrollment token unknown or already used",
                ));
            }
        }
        let mut csr = CertificateSigningRequestParams::from_pem(&r.csr_pem)
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let name = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(cn)
            .unwrap_or_default();
        if name != r.instance_id {
            return Err(Status::invalid_argument(format!(
                "CSR names {name:?}, not {:?}",
                r.instance_id
            )));
        }
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = csr
            .signed_by(&**self.issuer)
            .map_err(|e| Status::internal(e.to_string()))?;
        self.state.lock().unwrap().issued.push(cert.der().to_vec());
        Ok(Response::new(EnrollResponse {
            certificate_pem: cert.pem(),
            ca_pem: self.issuer.pem(),
            not_after_ms: 0,
        }))
    }
}

impl Svc {
    fn check_peer<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let certs = req.peer_certs();
        let Some(first) = certs.as_ref().and_then(|c| c.first().cloned()) else {
            self.state.lock().unwrap().sessions_without_cert += 1;
            return Err(Status::unauthenticated("a client certificate is required"));
        };
        if !self
            .state
            .lock()
            .unwrap()
            .issued
            .iter()
            .any(|d| d.as_slice() == first.as_ref())
        {
            return Err(Status::permission_denied("unknown client certificate"));
        }
        Ok(())
    }
}

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Svc {
    type SessionStream = ReceiverStream<Result<FmMessage, Status>>;
    type FetchKitStream = BoxStream<KitChunk>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.check_peer(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let n = {
            let mut s = self.state.lock().unwrap();
            s.sessions += 1;
            s.current = Some(tx);
            s.sessions
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                state.lock().unwrap().messages.push((n, m));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn renew(
        &self,
        _request: Request<fm_proto::agent::RenewRequest>,
    ) -> Result<Response<fm_proto::agent::EnrollResponse>, Status> {
        Err(Status::unimplemented(
            "renewal is tested against FM's own endpoint",
        ))
    }

    async fn fetch_kit(
        &self,
        request: Request<FetchKitRequest>,
    ) -> Result<Response<Self::FetchKitStream>, Status> {
        self.check_peer(&request)?;
        let name = request.into_inner().name;
        let bytes = {
            let mut s = self.state.lock().unwrap();
            s.kit_fetches += 1;
            if s.fail_kit_fetches > 0 {
                s.fail_kit_fetches -= 1;
                return Err(Status::unavailable("FM is restarting"));
            }
            s.kits.get(&name).cloned()
        }
        .ok_or_else(|| Status::not_found(format!("no kit {name}")))?;
        let chunks: Vec<Result<KitChunk, Status>> = bytes
            .chunks(16 * 1024)
            .map(|c| Ok(KitChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

/// The fake FM, served until dropped.
pub struct FakeFm {
    pub addr: SocketAddr,
    pub ca_pem: String,
    state: Arc<Mutex<FmState>>,
    svc: Svc,
    tls: ServerTlsConfig,
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Drop for FakeFm {
    fn drop(&mut self) {
        if let Some((_, task)) = self.server.take() {
            task.abort();
        }
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    svc: Svc,
    tls: ServerTlsConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(EnrollmentServer::new(svc.clone()))
        .add_service(AgentServiceServer::new(svc));
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, task)
}

impl FakeFm {
    /// Serves on 127.0.0.1 with a fresh CA; `tokens` are each good once.
    pub async fn start(tokens: &[&str]) -> FakeFm {
        // Built in the workspace, rustls has two providers linked in (the
        // AWS SDK brings aws-lc-rs): name one, as the agent's main does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake FM CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "fake FM");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &*issuer).unwrap();
        let ca_pem = issuer.pem();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                server_cert.pem(),
                server_key.serialize_pem(),
            ))
            .client_ca_root(Certificate::from_pem(&ca_pem))
            .client_auth_optional(true);
        let state = Arc::new(Mutex::new(FmState {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            ..FmState::default()
        }));
        let svc = Svc {
            state: state.clone(),
            issuer: Arc::new(issuer),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = serve(listener, svc.clone(), tls.clone());
        FakeFm {
            addr,
            ca_pem,
            state,
            svc,
            tls,
            server: Some(server),
        }
    }

    /// Stops serving: ends the sessions, then the server.
    pub async fn stop(&mut self) {
        self.state.lock().unwrap().current = None;
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Serves again on the same address, with the same CA and state.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.server = Some(serve(listener, self.svc.clone(), self.tls.clone()));
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn add_kit(&self, name: &str, bytes: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .kits
            .insert(name.to_owned(), bytes);
    }

    /// Makes the next `n` FetchKit calls fail with UNAVAILABLE.
    pub fn fail_next_kit_fetches(&self, n: usize) {
        self.state.lock().unwrap().fail_kit_fetches = n;
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&FmState) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    /// Waits until `cond` holds (panics with `what` after `timeout`).
    pub async fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&FmState) -> bool) {
        let until = Instant::now() + timeout;
        loop {
            if self.with(&cond) {
                return;
            }
            if Instant::now() > until {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the `n`th result of command `id` and returns it.
    pub async fn result(&self, id: &str, n: usize, timeout: Duration) -> CommandResult {
        self.wait(&format!("result #{n} of {id}"), timeout, |s| {
            s.results(id).len() >= n
        })
        .await;
        self.with(|s| s.results(id)[n - 1].clone())
    }

    /// Sends `cmd` on the newest session.
    pub async fn send(&self, cmd: Command) {
        let tx = self.with(|s| s.current.clone()).expect("no session yet");
        tx.send(Ok(FmMessage {
            body: Some(fm_message::Body::Command(cmd)),
        }))
        .await
        .expect("session gone");
    }
}

/// One agent's files: its user-data, state, data and home dirs, log.
pub struct AgentDirs {
    pub root: PathBuf,
    pub state: PathBuf,
    pub data: PathBuf,
    pub home: PathBuf,
    pub user_data: PathBuf,
    pub log: PathBuf,
}

impl AgentDirs {
    pub fn new(parent: &Path, name: &str) -> AgentDirs {
        let root = parent.join(name);
        std::fs::create_dir_all(root.join("home")).unwrap();
        AgentDirs {
            state: root.join("state"),
            data: root.join("data"),
            home: root.join("home"),
            user_data: root.join("user-data.toml"),
            log: root.join("agent.log"),
            root,
        }
    }

    pub fn write_user_data(
        &self,
        fm: &FakeFm,
        instance_id: &str,
        token: &str,
        heartbeat_secs: u64,
    ) {
        let text = format!(
            "instance_id = \"{instance_id}\"\nfm_url = \"{}\"\nca_pem = \"\"\"{}\"\"\"\nenrollment_token = \"{token}\"\nstate_dir = \"{}\"\ndata_dir = \"{}\"\nhome_dir = \"{}\"\nheartbeat_secs = {heartbeat_secs}\n",
            fm.url(),
            fm.ca_pem,
            self.state.display(),
            self.data.display(),
            self.home.display(),
        );
        std::fs::write(&self.user_data, text).unwrap();
    }

    /// Adds `lines` (TOML) to the user-data file.
    pub fn append_user_data(&self, lines: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.user_data)
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How often the fake installer ran for this data dir.
    pub fn installer_runs(&self) -> usize {
        std::fs::read_to_string(self.root.join("installer-runs"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// The real agent binary, killed (SIGKILL) when dropped.
pub struct Agent {
    child: std::process::Child,
}

impl Agent {
    pub fn spawn(dirs: &AgentDirs) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dirs.log)
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_fm-agent"))
            .arg("--user-data")
            .arg(&dirs.user_data)
            .env("FM_AGENT_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops the fake node (its health server) when dropped.
pub struct NodeGuard(pub PathBuf);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("run/node.pid")) {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.trim())
                .status();
        }
    }
}

/// A fake kit `standin-kit-VERSION.tar.gz` in `dir`: (path, name, bytes,
/// sha256). Its installer counts its runs in `DATA_DIR/../installer-runs`,
/// writes `dss-version.json`, `install.ini`, the initial password and a
/// `bin/dss` whose `start` launches a Python server answering
/// `/api/health` on the port.
pub fn make_kit(dir: &Path, version: &str) -> (PathBuf, String, Vec<u8>, String) {
    let top = format!("standin-kit-{version}");
    let build = dir.join(format!("build-{version}"));
    let kit_dir = build.join(&top);
    std::fs::create_dir_all(&kit_dir).unwrap();
    let installer = format!(
        r#"#!/bin/sh
set -e
DATA=""; PORT=""; TYPE=""; UPGRADE=0
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DATA="$2"; shift 2;;
    -p) PORT="$2"; shift 2;;
    -t) TYPE="$2"; shift 2;;
    -u) UPGRADE=1; shift;;
    -y) shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
HERE="$(cd "$(dirname "$0")" && pwd)"
echo run >> "$DATA/../installer-runs"
echo "installing {version} into $DATA (upgrade=$UPGRADE type=$TYPE)"
mkdir -p "$DATA/bin" "$DATA/config"
if [ "$UPGRADE" = 0 ]; then
  printf '[general]\nnodetype = %s\nport = %s\n' "$TYPE" "$PORT" > "$DATA/install.ini"
  echo "initial-pw-123" > "$DATA/config/initial-admin-password"
fi
cp "$HERE/dss" "$HERE/health.py" "$DATA/bin/"
chmod +x "$DATA/bin/dss"
printf '{{"product_version": "{version}"}}\n' > "$DATA/dss-version.json"
echo "install done" >&2
"#
    );
    let dss = r#"#!/bin/sh
D="$(cd "$(dirname "$0")/.." && pwd)"
PIDF="$D/run/node.pid"
running() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }
case "$1" in
  start)
    if running; then echo "already running"; exit 0; fi
    mkdir -p "$D/run"
    PORT=$(sed -n 's/^port *= *//p' "$D/install.ini")
    python3 "$D/bin/health.py" "$PORT" > "$D/run/node.log" 2>&1 &
    echo $! > "$PIDF"
    echo "node started on $PORT"
    ;;
  stop)
    if running; then kill "$(cat "$PIDF")"; fi
    rm -f "$PIDF"
    echo "node stopped"
    ;;
  status)
    running
    ;;
  *) echo "usage: dss start|stop|status" >&2; exit 2;;
esac
"#;
    let health = r#"import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
    for (name, text, mode) in [
        ("installer.sh", installer.as_str(), 0o755),
        ("dss", dss, 0o755),
        ("health.py", health, 0o644),
    ] {
        let p = kit_dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let name = format!("{top}.tar.gz");
    let path = dir.join(&name);
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&path)
        .arg("-C")
        .arg(&build)
        .arg(&top)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    let bytes = std::fs::read(&path).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    (path, name, bytes, sha)
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
