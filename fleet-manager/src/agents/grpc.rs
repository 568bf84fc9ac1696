//! The endpoint agents dial: `Enrollment` (TLS, token + CSR → certificate)
//! and `AgentService` (mutual TLS: the session stream and kit downloads).
//!
//! One TLS listener serves both: client certificates are optional at the
//! TLS layer and required by every `AgentService` call, which takes the
//! instance id from the certificate's common name (FM's CA signed it).

use super::AgentHub;
use crate::crypto::hash_api_secret;
use crate::error::Error;
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
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// Everything the endpoint needs.
#[derive(Clone)]
pub struct AgentEndpoint {
    pub store: Store,
    pub hub: AgentHub,
    pub ca: Arc<Ca>,
    pub kits_dir: PathBuf,
}

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
        let r = req.into_inner();
        check_id("instance", &r.instance_id).map_err(status)?;
        // A CSR that can't be signed must not use up the token.
        let key = Ca::check_csr(&r.csr_pem).map_err(status)?;
        let Some(vm) = self
            .store
            .token_consume(&token_hash(&r.token), &r.instance_id, &key)
            .await
            .map_err(status)?
        else {
            tracing::warn!(instance = %r.instance_id, "enrollment refused: invalid, used or expired token");
            if runtime_get(self.store.conn(), &r.instance_id)
                .await
                .map_err(status)?
                .is_some()
            {
                self.hub.enrollment_refused(
                    &r.instance_id,
                    "the enrollment token is invalid, already used or expired",
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
        let first = inbound
            .next()
            .await
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
        let session = hub.session_opened(&instance, &vm, tx, hello.journal).await;
        tracing::info!(instance = %instance, agent_version = %hello.agent_version, "agent connected");
        tokio::spawn(async move {
            while let Some(msg) = inbound.next().await {
                let Ok(msg) = msg else { break };
                match msg.body {
                    Some(Body::Heartbeat(hb)) => hub.heartbeat(&instance, msg.generation, hb).await,
                    Some(Body::Progress(p)) => {
                        hub.progress(&instance, &p.command_id, &p.line).await
                    }
                    Some(Body::Result(r)) => hub.command_result(&instance, r).await,
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
    let server = endpoint.ca.server_cert(&server_names)?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(server.cert_pem, server.key_pem))
        .client_ca_root(Certificate::from_pem(endpoint.ca.cert_pem.clone()))
        .client_auth_optional(true);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    Server::builder()
        .tls_config(tls)
        .map_err(|e| Error::internal(format!("agent endpoint TLS: {e}")))?
        .add_service(EnrollmentServer::new(endpoint.clone()))
        .add_service(AgentServiceServer::new(endpoint))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::internal(format!("agent endpoint: {e}")))
}
