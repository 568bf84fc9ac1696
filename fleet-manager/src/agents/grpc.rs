//! The endpoint agents dial: `Enrollment` (TLS, token + CSR → certificate)
//! and `AgentService` (mutual TLS: the session stream and kit downloads).
//!
//! One TLS listener serves both: client certificates are optional at the
//! TLS layer and required by every `AgentService` call, which takes the
//! instance id from the certificate's common name (FM's CA signed it).

use super::AgentHub;
use crate::config::Limits;
use crate::crypto::hash_api_secret;
use crate::error::Error;
use crate::listen::Guarded;
use crate::model::check_id;
use crate::pki::{Ca, agent_identity};
use crate::store::Store;
use crate::store::lifecycle::runtime_get;
use fm_proto::agent::agent_message::Body;
use fm_proto::agent::agent_service_server::{AgentService, AgentServiceServer};
use fm_proto::agent::enrollment_server::{Enrollment, EnrollmentServer};
use fm_proto::agent::{
    AgentMessage, EnrollRequest, EnrollResponse, FetchKitRequest, FmMessage, KitChunk, RenewRequest,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

/// Everything the endpoint needs.
#[derive(Clone)]
pub struct AgentEndpoint {
    pub store: Store,
    pub hub: AgentHub,
    pub ca: Arc<Ca>,
    pub kits_dir: PathBuf,
    limits: Limits,
    enroll_failures: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
    attestor: Option<Arc<dyn Attestor>>,
}

/// Checks what an enrolling agent presents of its VM (the cloud's
/// identity proof) before FM spends the token and signs a certificate.
#[tonic::async_trait]
pub trait Attestor: Send + Sync {
    async fn attest(
        &self,
        tenant: &str,
        instance_id: &str,
        vm_id: &str,
        evidence: &crate::cloud::Evidence,
    ) -> crate::error::Result<()>;
}

/// The largest CSR an enrollment may carry.
const MAX_CSR_BYTES: usize = 16 * 1024;

impl AgentEndpoint {
    pub fn new(
        store: Store,
        hub: AgentHub,
        ca: Arc<Ca>,
        kits_dir: PathBuf,
        limits: Limits,
    ) -> AgentEndpoint {
        AgentEndpoint {
            store,
            hub,
            ca,
            kits_dir,
            limits,
            enroll_failures: Arc::default(),
            attestor: None,
        }
    }

    /// Enrollments must also pass `a` (the cloud's attestation).
    pub fn with_attestor(mut self, a: Arc<dyn Attestor>) -> AgentEndpoint {
        self.attestor = Some(a);
        self
    }

    /// Whether `source` has used up its failed enrollments for this minute.
    fn enroll_blocked(&self, source: Option<IpAddr>) -> bool {
        let Some(ip) = source else { return false };
        let st = self
            .enroll_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.get(&ip).is_some_and(|(since, n)| {
            since.elapsed() < ENROLL_WINDOW && *n >= self.limits.enroll_failures_per_minute
        })
    }

    fn enroll_failed(&self, source: Option<IpAddr>) {
        let Some(ip) = source else { return };
        let mut st = self
            .enroll_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if st.len() >= 10_000 {
            st.retain(|_, (since, _)| since.elapsed() < ENROLL_WINDOW);
            if st.len() >= 10_000 {
                st.clear();
            }
        }
        let e = st.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= ENROLL_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

const ENROLL_WINDOW: Duration = Duration::from_secs(60);

fn status(e: Error) -> Status {
    match e {
        Error::InvalidInput(m) => Status::invalid_argument(m),
        Error::NotFound { .. } => Status::not_found(e.message()),
        Error::Unauthorized => Status::unauthenticated(e.message()),
        other => {
            tracing::error!(error = %other, "agent endpoint error");
            Status::internal(other.message())
        }
    }
}

/// The hash an enrollment token is stored under.
pub fn token_hash(token: &str) -> String {
    hash_api_secret(token)
}

impl AgentEndpoint {
    /// The instance an mTLS peer is, from its certificate. Only the agent
    /// of the instance's current VM is accepted: an agent left on a VM FM
    /// replaced can't take its place.
    async fn peer_instance<T>(&self, req: &Request<T>) -> Result<(String, String), Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate from enrollment is required")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let (id, vm) = agent_identity(leaf.as_ref()).ok_or_else(|| {
            Status::unauthenticated("the client certificate names no instance and VM")
        })?;
        check_id("instance", &id).map_err(status)?;
        match runtime_get(self.store.conn(), &id).await.map_err(status)? {
            Some(rt) if rt.vm_id.as_deref() == Some(vm.as_str()) => Ok((id, vm)),
            Some(_) => Err(Status::permission_denied(format!(
                "VM '{vm}' is no longer instance '{id}''s VM"
            ))),
            None => Err(Status::permission_denied(format!(
                "instance '{id}' is not provisioned"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Enrollment for AgentEndpoint {
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        // Failed enrollments are limited per source address: past the
        // limit a caller is refused before any parsing or store access.
        let source = req.remote_addr().map(|a| a.ip());
        if self.enroll_blocked(source) {
            return Err(Status::resource_exhausted(
                "too many failed enrollments from this address; retry in a minute",
            ));
        }
        let r = req.into_inner();
        let checked = check_id("instance", &r.instance_id).and_then(|()| {
            if r.csr_pem.len() > MAX_CSR_BYTES {
                return Err(Error::invalid(format!(
                    "the CSR is over {MAX_CSR_BYTES} bytes"
                )));
            }
            // A CSR that can't be signed must not use up the token.
            Ca::check_csr(&r.csr_pem)
        });
        let key = match checked {
            Ok(k) => k,
            Err(e) => {
                self.enroll_failed(source);
                return Err(status(e));
            }
        };
        let hash = token_hash(&r.token);
        // The VM's proof first: a token read off the VM's user-data by
        // someone else is worth nothing without it, and a refusal leaves
        // the token to the real agent.
        if let Some(a) = &self.attestor
            && let Some((vm, tenant)) = self
                .store
                .token_target(&hash, &r.instance_id, &key)
                .await
                .map_err(status)?
        {
            let evidence = crate::cloud::Evidence {
                document: r.identity_document.clone(),
                signature: r.identity_signature.clone(),
            };
            if let Err(e) = a.attest(&tenant, &r.instance_id, &vm, &evidence).await {
                self.enroll_failed(source);
                tracing::warn!(instance = %r.instance_id, vm = %vm, source = ?source, error = %e, "enrollment refused: the VM's identity was not proven");
                // The reason goes to FM's log only: it would tell a token
                // thief which EC2 instance to pose as.
                return Err(Status::permission_denied(
                    "the VM's instance identity was not proven; see FM's log",
                ));
            }
        }
        let Some(vm) = self
            .store
            .token_consume(&hash, &r.instance_id, &key)
            .await
            .map_err(status)?
        else {
            self.enroll_failed(source);
            tracing::warn!(instance = %r.instance_id, source = ?source, "enrollment refused: invalid, used or expired token");
            // Only a caller holding a token FM issued for this instance (now
            // used or expired) leaves a note for the operation waiting on
            // the agent; the answer is the same either way, so it tells
            // nothing about which instances exist.
            if self
                .store
                .token_issued(&hash, &r.instance_id)
                .await
                .unwrap_or(false)
            {
                tracing::warn!(instance = %r.instance_id, source = ?source, "a second enrollment on a token already used (or expired) was refused: if the instance's agent did not make it, someone else holds its token");
                self.hub.enrollment_refused(
                    &r.instance_id,
                    "the enrollment token is already used or expired",
                );
            }
            return Err(Status::permission_denied(
                "the enrollment token is invalid, already used or expired",
            ));
        };
        let (cert, not_after_ms) = self
            .ca
            .sign_agent_csr(&r.csr_pem, &r.instance_id, &vm)
            .map_err(status)?;
        tracing::info!(instance = %r.instance_id, "agent enrolled");
        Ok(Response::new(EnrollResponse {
            certificate_pem: cert,
            ca_pem: self.ca.cert_pem.clone(),
            not_after_ms,
        }))
    }
}

type FmStream = Pin<Box<dyn Stream<Item = Result<FmMessage, Status>> + Send>>;
type KitStream = Pin<Box<dyn Stream<Item = Result<KitChunk, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentEndpoint {
    type SessionStream = FmStream;
    type FetchKitStream = KitStream;

    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<FmStream>, Status> {
        let (instance, vm) = self.peer_instance(&req).await?;
        let mut inbound = req.into_inner();
        let hello_within = self.limits.agent_hello_timeout;
        let first = tokio::time::timeout(hello_within, inbound.next())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no Hello within {} ms",
                    hello_within.as_millis()
                ))
            })?
            .ok_or_else(|| Status::invalid_argument("the session must start with Hello"))??;
        let Some(Body::Hello(hello)) = first.body else {
            return Err(Status::invalid_argument(
                "the session must start with Hello",
            ));
        };
        if hello.instance_id != instance {
            return Err(Status::permission_denied(
                "Hello names another instance than the certificate",
            ));
        }
        let (tx, rx) = mpsc::channel(64);
        let hub = self.hub.clone();
        let handle = hub.session_opened(&instance, &vm, tx, hello.journal).await;
        let session = handle.id;
        let mut ended = handle.ended;
        tracing::info!(instance = %instance, vm = %vm, agent_version = %hello.agent_version, "agent connected");
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.next() => m,
                    // The hub ended this session (a newer one replaced it).
                    _ = &mut ended => break,
                };
                let Some(Ok(msg)) = msg else { break };
                match msg.body {
                    Some(Body::Heartbeat(hb)) => {
                        hub.heartbeat(&instance, session, msg.generation, hb).await
                    }
                    Some(Body::Progress(p)) => {
                        hub.progress(&instance, session, &p.command_id, &p.line)
                            .await
                    }
                    Some(Body::Result(r)) => hub.command_result(&instance, session, r).await,
                    Some(Body::LogLines(l)) => hub.log_lines(&instance, session, l),
                    Some(Body::Hello(_)) | None => {}
                }
            }
            hub.session_closed(&instance, session);
            tracing::info!(instance = %instance, "agent disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<EnrollResponse>, Status> {
        let (instance, vm) = self.peer_instance(&req).await?;
        let csr = req.into_inner().csr_pem;
        Ca::check_csr(&csr).map_err(status)?;
        let (cert, not_after_ms) = self
            .ca
            .sign_agent_csr(&csr, &instance, &vm)
            .map_err(status)?;
        tracing::info!(instance = %instance, "agent certificate renewed");
        Ok(Response::new(EnrollResponse {
            certificate_pem: cert,
            ca_pem: self.ca.cert_pem.clone(),
            not_after_ms,
        }))
    }

    async fn fetch_kit(
        &self,
        req: Request<FetchKitRequest>,
    ) -> Result<Response<KitStream>, Status> {
        self.peer_instance(&req).await?;
        let name = req.into_inner().name;
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Status::invalid_argument("kit names are plain file names"));
        }
        let path = self.kits_dir.join(&name);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| Status::not_found(format!("kit '{name}' does not exist")))?;
        let stream = tokio_util_read_chunks(file);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Streams a file in 64 KiB chunks.
fn tokio_util_read_chunks(
    mut file: tokio::fs::File,
) -> impl Stream<Item = Result<KitChunk, Status>> + Send {
    use tokio::io::AsyncReadExt;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .send(Ok(KitChunk {
                            data: buf[..n].to_vec(),
                        }))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!(
                            "reading the kit failed: {e}"
                        ))))
                        .await;
                    break;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Serves the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    endpoint: AgentEndpoint,
    listener: tokio::net::TcpListener,
    server_names: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::error::Result<()> {
    let acceptor = tls_acceptor(&endpoint.ca, &server_names)?;
    let l = endpoint.limits.clone();
    let (tx, rx) = mpsc::channel(64);
    let accepting = tokio::spawn(accept_tls(listener, acceptor, l.clone(), tx));
    let incoming = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let served = Server::builder()
        .timeout(l.agent_request_timeout)
        .http2_keepalive_interval(Some(l.agent_keepalive))
        .http2_keepalive_timeout(Some(l.agent_keepalive))
        .max_concurrent_streams(l.agent_max_streams)
        .add_service(EnrollmentServer::new(endpoint.clone()).max_decoding_message_size(64 * 1024))
        .add_service(AgentServiceServer::new(endpoint))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::internal(format!("agent endpoint: {e}")));
    accepting.abort();
    served
}

/// The TLS side of the endpoint: FM's server certificate, client
/// certificates from FM's CA optional (enrollment has none yet), HTTP/2.
fn tls_acceptor(ca: &Ca, server_names: &[String]) -> crate::error::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let server = ca.server_cert(server_names)?;
    let bad = |e: &dyn std::fmt::Display| Error::internal(format!("agent endpoint TLS: {e}"));
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad(&e))?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Accepts agent connections under the connection cap and hands on those
/// whose TLS handshake finishes within the handshake timeout; the others
/// are closed. A connection then closes itself when it reads nothing for
/// the idle timeout (HTTP/2 keepalive keeps a live one busy).
async fn accept_tls(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    l: Limits,
    tx: mpsc::Sender<Guarded<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(l.agent_max_connections));
    let mut handshakes = tokio::task::JoinSet::new();
    loop {
        let (stream, peer, slot) = tokio::select! {
            c = crate::listen::accept(&listener, &slots, "agent") => c,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        let (within, idle) = (l.agent_handshake_timeout, l.agent_idle_timeout);
        handshakes.spawn(async move {
            match tokio::time::timeout(within, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Guarded::new(tls, idle, Some(slot))).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "agent TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "agent TLS handshake timed out"),
            }
        });
    }
}
