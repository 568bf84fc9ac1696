//! The public gRPC API (`proto/fm/fleet/v1/fleet.proto`): the third surface
//! over the same [`App`], on its own listener (`FM_GRPC_LISTEN`).
//!
//! Every method is declared once in [`methods`] with who may call it: the
//! health check anyone, reflection a viewer, the rest the role of the REST
//! endpoint that does the same (read from the REST role table, so one
//! action needs one role on every surface); anything not declared is
//! refused. [`Guard`] runs before the services: it authenticates the API
//! key in the `authorization` metadata (`Basic base64(id:secret)` or
//! `Bearer id:secret`), checks the role, audits refusals, and hands the
//! caller's [`OpCtx`] to the service in the request's extensions. Changes
//! are audited by the services (they know the tenant, the object and the
//! outcome). [`status`] is the one mapping from the domain error.

pub(crate) mod accounts;
pub(crate) mod fields;
pub(crate) mod instances;
pub(crate) mod networks;
mod operations;
pub(crate) mod rollouts;
mod snapshots;
pub(crate) mod templates;
mod watch;

use crate::api::access::Roles;
use crate::app::App;
use crate::app::audit::{Refusal, Request as AuditRequest};
use crate::error::{Error, Result};
use crate::model::tenant::DEFAULT_TENANT;
use crate::model::user::Role;
use crate::opctx::OpCtx;
use axum::http::Method;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::{Code, Status};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Role(Role),
}

/// The package of FM's own services.
const PACKAGE: &str = "fm.fleet.v1";

/// Every method served (its HTTP/2 path) and who may call it.
pub fn methods(rest: &Roles) -> HashMap<&'static str, Access> {
    let same_as = |method: Method, path: &str| Access::Role(rest.of_rest(method, path));
    let instance = "/tenants/{tenantId}/instances/{instanceId}";
    let action = |a: &str| same_as(Method::GET, &format!("{instance}/actions/{a}"));
    let future = "/tenants/{tenantId}/futures/{jobId}";
    let rollouts = "/tenants/{tenantId}/rollouts";
    let rollout = "/tenants/{tenantId}/rollouts/{rolloutId}";
    let rollout_action = |a: &str| same_as(Method::POST, &format!("{rollout}/actions/{a}"));
    let networks = "/tenants/{tenantId}/virtual-networks";
    let network = "/tenants/{tenantId}/virtual-networks/{networkId}";
    let templates = "/tenants/{tenantId}/instance-settings-templates";
    let template = "/tenants/{tenantId}/instance-settings-templates/{templateId}";
    let accounts = "/tenants/{tenantId}/cloud-accounts";
    let account = "/tenants/{tenantId}/cloud-accounts/{accountId}";
    let snapshots = format!("{instance}/snapshots");
    let snapshot = format!("{instance}/snapshots/{{snapshotId}}");
    let backups = format!("{instance}/backups");
    let backup = format!("{instance}/backups/{{backupId}}");
    HashMap::from([
        ("/grpc.health.v1.Health/Check", Access::Public),
        (
            "/fm.fleet.v1.CloudAccounts/GetCloudAccount",
            same_as(Method::GET, account),
        ),
        (
            "/fm.fleet.v1.CloudAccounts/ListCloudAccounts",
            same_as(Method::GET, accounts),
        ),
        (
            "/fm.fleet.v1.CloudAccounts/CreateCloudAccount",
            same_as(Method::POST, accounts),
        ),
        (
            "/fm.fleet.v1.CloudAccounts/UpdateCloudAccount",
            same_as(Method::PUT, account),
        ),
        (
            "/fm.fleet.v1.CloudAccounts/DeleteCloudAccount",
            same_as(Method::DELETE, account),
        ),
        (
            "/fm.fleet.v1.Images/ListImages",
            same_as(Method::GET, "/tenants/{tenantId}/images"),
        ),
        (
            "/fm.fleet.v1.Snapshots/GetSnapshot",
            same_as(Method::GET, &snapshot),
        ),
        (
            "/fm.fleet.v1.Snapshots/ListSnapshots",
            same_as(Method::GET, &snapshots),
        ),
        (
            "/fm.fleet.v1.Snapshots/CreateSnapshot",
            same_as(Method::POST, &snapshots),
        ),
        (
            "/fm.fleet.v1.Snapshots/DeleteSnapshot",
            same_as(Method::DELETE, &snapshot),
        ),
        (
            "/fm.fleet.v1.Snapshots/ReprovisionFromSnapshot",
            same_as(Method::POST, &format!("{snapshot}/reprovision")),
        ),
        (
            "/fm.fleet.v1.Backups/GetBackup",
            same_as(Method::GET, &backup),
        ),
        (
            "/fm.fleet.v1.Backups/ListBackups",
            same_as(Method::GET, &backups),
        ),
        (
            "/fm.fleet.v1.Backups/CreateBackup",
            same_as(Method::POST, &backups),
        ),
        (
            "/fm.fleet.v1.Backups/DeleteBackup",
            same_as(Method::DELETE, &backup),
        ),
        (
            "/fm.fleet.v1.Backups/RestoreBackup",
            same_as(Method::POST, &format!("{backup}/restore")),
        ),
        (
            "/fm.fleet.v1.Backups/VerifyBackup",
            same_as(Method::POST, &format!("{backup}/verify")),
        ),
        (
            "/fm.fleet.v1.Backups/CloneBackup",
            same_as(Method::POST, &format!("{backup}/clone")),
        ),
        (
            "/fm.fleet.v1.Instances/WatchInstances",
            same_as(Method::GET, "/tenants/{tenantId}/instances"),
        ),
        (
            "/fm.fleet.v1.Operations/WatchOperation",
            same_as(Method::GET, future),
        ),
        (
            "/fm.fleet.v1.Operations/ListOperations",
            same_as(Method::GET, "/tenants/{tenantId}/futures"),
        ),
        ("/grpc.health.v1.Health/Watch", Access::Public),
        (
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Access::Role(Role::Viewer),
        ),
        (
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            Access::Role(Role::Viewer),
        ),
        (
            "/fm.fleet.v1.Instances/GetInstance",
            same_as(Method::GET, instance),
        ),
        (
            "/fm.fleet.v1.Instances/ListInstances",
            same_as(Method::GET, "/tenants/{tenantId}/instances"),
        ),
        (
            "/fm.fleet.v1.Instances/ReprovisionInstance",
            action("reprovision"),
        ),
        ("/fm.fleet.v1.Instances/StartInstance", action("start")),
        ("/fm.fleet.v1.Instances/StopInstance", action("stop")),
        (
            "/fm.fleet.v1.Instances/CreateInstance",
            same_as(Method::POST, "/tenants/{tenantId}/instances"),
        ),
        (
            "/fm.fleet.v1.Instances/UpdateInstance",
            same_as(Method::PUT, instance),
        ),
        ("/fm.fleet.v1.Instances/DeleteInstance", action("delete")),
        (
            "/fm.fleet.v1.VirtualNetworks/GetVirtualNetwork",
            same_as(Method::GET, network),
        ),
        (
            "/fm.fleet.v1.VirtualNetworks/ListVirtualNetworks",
            same_as(Method::GET, networks),
        ),
        (
            "/fm.fleet.v1.VirtualNetworks/CreateVirtualNetwork",
            same_as(Method::POST, networks),
        ),
        (
            "/fm.fleet.v1.VirtualNetworks/UpdateVirtualNetwork",
            same_as(Method::PUT, network),
        ),
        (
            "/fm.fleet.v1.VirtualNetworks/DeleteVirtualNetwork",
            same_as(Method::DELETE, network),
        ),
        (
            "/fm.fleet.v1.InstanceTemplates/GetInstanceTemplate",
            same_as(Method::GET, template),
        ),
        (
            "/fm.fleet.v1.InstanceTemplates/ListInstanceTemplates",
            same_as(Method::GET, templates),
        ),
        (
            "/fm.fleet.v1.InstanceTemplates/CreateInstanceTemplate",
            same_as(Method::POST, templates),
        ),
        (
            "/fm.fleet.v1.InstanceTemplates/UpdateInstanceTemplate",
            same_as(Method::PUT, template),
        ),
        (
            "/fm.fleet.v1.InstanceTemplates/DeleteInstanceTemplate",
            same_as(Method::DELETE, template),
        ),
        (
            "/fm.fleet.v1.Operations/GetOperation",
            same_as(Method::GET, future),
        ),
        (
            "/fm.fleet.v1.Operations/WaitOperation",
            same_as(Method::GET, future),
        ),
        (
            "/fm.fleet.v1.Operations/CancelOperation",
            same_as(Method::DELETE, future),
        ),
        (
            "/fm.fleet.v1.Rollouts/CreateRollout",
            same_as(Method::POST, rollouts),
        ),
        (
            "/fm.fleet.v1.Rollouts/GetRollout",
            same_as(Method::GET, rollout),
        ),
        (
            "/fm.fleet.v1.Rollouts/ListRollouts",
            same_as(Method::GET, rollouts),
        ),
        (
            "/fm.fleet.v1.Rollouts/PauseRollout",
            rollout_action("pause"),
        ),
        (
            "/fm.fleet.v1.Rollouts/ResumeRollout",
            rollout_action("resume"),
        ),
        (
            "/fm.fleet.v1.Rollouts/CancelRollout",
            rollout_action("cancel"),
        ),
    ])
}

/// The one mapping from the domain error to a gRPC status; the REST API's
/// `errorType` goes in the `error-type` metadata.
pub fn status(e: Error) -> Status {
    let code = match &e {
        Error::InvalidInput(_) | Error::UnsupportedMediaType(_) => Code::InvalidArgument,
        Error::Unauthorized => Code::Unauthenticated,
        Error::Forbidden { .. } => Code::PermissionDenied,
        Error::NotFound { .. } => Code::NotFound,
        Error::Conflict(_) => Code::FailedPrecondition,
        Error::Stale(_) => Code::Aborted,
        Error::PayloadTooLarge { .. } => Code::ResourceExhausted,
        Error::MethodNotAllowed => Code::Unimplemented,
        Error::OperationFailed { .. } => Code::FailedPrecondition,
        Error::OperationAborted => Code::Aborted,
        Error::Internal { context } => {
            tracing::error!("{context}");
            Code::Internal
        }
    };
    let mut s = Status::new(code, e.message());
    if let Ok(v) = e.error_type().parse() {
        s.metadata_mut().insert("error-type", v);
    }
    s
}

/// The page a list request asks for (AIP-158): `page_size` from 0 (the
/// default, `default`) to `max`, after the `page_token` of the previous
/// page.
fn page_of(
    page_size: i32,
    page_token: &str,
    max: i32,
    default: u64,
) -> std::result::Result<crate::store::page::Page, Status> {
    if !(0..=max).contains(&page_size) {
        return Err(status(Error::invalid(format!(
            "page_size must be between 0 and {max}"
        ))));
    }
    Ok(crate::store::page::Page {
        after: (!page_token.is_empty())
            .then(|| crate::api::page::decode_token(page_token))
            .transpose()
            .map_err(status)?,
        limit: Some(if page_size == 0 {
            default
        } else {
            page_size as u64
        }),
    })
}

/// The tenant a request names; empty is the default one.
fn tenant(t: &str) -> &str {
    if t.is_empty() { DEFAULT_TENANT } else { t }
}

/// The caller, as [`Guard`] found them.
fn caller<T>(req: &tonic::Request<T>) -> std::result::Result<OpCtx, Status> {
    req.extensions()
        .get::<OpCtx>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials"))
}

/// Where a request came from.
fn source<T>(req: &tonic::Request<T>) -> Option<String> {
    req.remote_addr().map(|a| a.ip().to_string())
}

/// Runs a change under an audit row naming the method, the tenant and the
/// object; the row gets the outcome (with the REST API's status code for
/// the same error).
async fn audited<T>(
    app: &App,
    ctx: &OpCtx,
    method: &str,
    about: (&str, &str, Option<String>),
    change: impl Future<Output = Result<T>>,
) -> std::result::Result<T, Status> {
    let (tenant, object, source) = about;
    let req = AuditRequest {
        method: "GRPC".into(),
        path: format!("/{PACKAGE}.{method}"),
        tenant: Some(tenant.to_string()),
        object: Some(object.to_string()),
        source,
    };
    let row = app.audit_begin(ctx, &req).await.map_err(status)?;
    let start = std::time::Instant::now();
    let out = change.await;
    let (code, error) = match &out {
        Ok(_) => (200, None),
        Err(e) => (
            crate::api::error::status_of(e).as_u16(),
            Some(format!("{}: {}", e.error_type(), e.message())),
        ),
    };
    if let Err(e) = app
        .audit_end(ctx, &row, code, error, start.elapsed().as_millis() as i64)
        .await
    {
        tracing::error!(row = %row, error = %e, "could not complete an audit row");
    }
    out.map_err(status)
}

/// An action's request id (AIP-155): the operation an earlier attempt with
/// it started, if any, and the caller's context recording this attempt's
/// operation under it (`without_id`: the request, its id taken out).
async fn replayed<M: prost::Message>(
    app: &App,
    ctx: OpCtx,
    tenant: &str,
    method: &str,
    request_id: &str,
    without_id: &M,
) -> std::result::Result<(OpCtx, Option<fm_proto::fleet::Operation>), Status> {
    let r = fields::client_request(method, request_id, without_id).map_err(status)?;
    let earlier = app.operation_replayed(tenant, &r).await.map_err(status)?;
    Ok((
        ctx.with_client_request(r),
        earlier.map(operations::to_proto),
    ))
}

/// Starts an operation under an audit row (see [`audited`]) and answers it.
async fn started(
    app: &App,
    ctx: &OpCtx,
    method: &str,
    about: (&str, &str, Option<String>),
    start: impl Future<Output = Result<crate::app::StartedFuture>>,
) -> std::result::Result<tonic::Response<fm_proto::fleet::Operation>, Status> {
    let f = audited(app, ctx, method, about, start).await?;
    Ok(tonic::Response::new(operations::to_proto(f)))
}

/// The key id and secret of an `authorization` value.
fn credentials(v: &str) -> Option<(String, String)> {
    if let Some(b) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    {
        let (id, secret) = b.trim().split_once(':')?;
        return Some((id.to_string(), secret.to_string()));
    }
    crate::api::access::basic_credentials(v)
}

/// The guard in front of every service (see the module's comment).
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    app: App,
    methods: Arc<HashMap<&'static str, Access>>,
}

#[derive(Clone)]
pub struct GuardLayer {
    app: App,
    methods: Arc<HashMap<&'static str, Access>>,
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            app: self.app.clone(),
            methods: self.methods.clone(),
        }
    }
}

type Req = axum::http::Request<tonic::body::Body>;
type Resp = axum::http::Response<tonic::body::Body>;

impl<S> tower::Service<Req> for Guard<S>
where
    S: tower::Service<Req, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        // The clone that was made ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let app = self.app.clone();
        let methods = self.methods.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            // A method FM does not serve is said so only to a key holder.
            let needed = match methods.get(path.as_str()) {
                Some(Access::Public) => return inner.call(req).await,
                Some(Access::Role(r)) => Some(*r),
                None => None,
            };
            let peer = req
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|i| i.remote_addr());
            let about = AuditRequest {
                method: "GRPC".into(),
                path: path.clone(),
                tenant: None,
                object: None,
                source: peer.map(|p: SocketAddr| p.ip().to_string()),
            };
            let creds = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(credentials);
            let Some((id, secret)) = creds else {
                return Ok(Status::unauthenticated(
                    "an API key is needed: authorization: Basic base64(id:secret)",
                )
                .into_http());
            };
            let ctx = match app.authenticate(&id, &secret).await {
                Ok(Ok(ctx)) => ctx,
                Ok(Err(refused)) => {
                    // Only refusals that name a real key are recorded.
                    if refused.key_id.is_some() {
                        let r = Refusal::unauthenticated(refused);
                        if let Err(e) = app.audit_refused(&about, r).await {
                            return Ok(status(e).into_http());
                        }
                    }
                    return Ok(status(Error::Unauthorized).into_http());
                }
                Err(e) => return Ok(status(e).into_http()),
            };
            let Some(needed) = needed else {
                return Ok(Status::unimplemented(format!("no method {path}")).into_http());
            };
            if ctx.role < needed {
                let e = Error::Forbidden {
                    needed,
                    have: ctx.role,
                };
                let r = Refusal::of_caller(&ctx, 403, &e);
                if let Err(err) = app.audit_refused(&about, r).await {
                    return Ok(status(err).into_http());
                }
                return Ok(status(e).into_http());
            }
            req.extensions_mut().insert(ctx);
            inner.call(req).await
        })
    }
}

/// Serves the public gRPC API on `listener` until `stop` resolves.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use fm_proto::fleet::backups_server::BackupsServer;
    use fm_proto::fleet::cloud_accounts_server::CloudAccountsServer;
    use fm_proto::fleet::images_server::ImagesServer;
    use fm_proto::fleet::instance_templates_server::InstanceTemplatesServer;
    use fm_proto::fleet::instances_server::InstancesServer;
    use fm_proto::fleet::operations_server::OperationsServer;
    use fm_proto::fleet::rollouts_server::RolloutsServer;
    use fm_proto::fleet::snapshots_server::SnapshotsServer;
    use fm_proto::fleet::virtual_networks_server::VirtualNetworksServer;
    let methods = Arc::new(methods(&crate::api::roles()));
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<InstancesServer<instances::Service>>()
        .await;
    health
        .set_serving::<OperationsServer<operations::Service>>()
        .await;
    health
        .set_serving::<RolloutsServer<rollouts::Service>>()
        .await;
    health
        .set_serving::<VirtualNetworksServer<networks::Service>>()
        .await;
    health
        .set_serving::<InstanceTemplatesServer<templates::Service>>()
        .await;
    health
        .set_serving::<CloudAccountsServer<accounts::Service>>()
        .await;
    health
        .set_serving::<ImagesServer<accounts::ImagesService>>()
        .await;
    health
        .set_serving::<SnapshotsServer<snapshots::Service>>()
        .await;
    health
        .set_serving::<BackupsServer<snapshots::BackupsService>>()
        .await;
    // Reflection in both versions clients speak (grpcurl v1, grpcio's
    // own client v1alpha).
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fm_proto::fleet::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(Error::internal)?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fm_proto::fleet::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(Error::internal)?;
    // Streams end when FM stops, so they don't hold its graceful stop.
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let stop = {
        let mut s = stopping.clone();
        async move {
            let _ = s.wait_for(|v| *v).await;
        }
    };
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .timeout(std::time::Duration::from_secs(120))
        .layer(GuardLayer {
            app: app.clone(),
            methods,
        })
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(InstancesServer::new(instances::Service {
            app: app.clone(),
            stopping: stopping.clone(),
        }))
        .add_service(OperationsServer::new(operations::Service {
            app: app.clone(),
            stopping: stopping.clone(),
        }))
        .add_service(VirtualNetworksServer::new(networks::Service {
            app: app.clone(),
        }))
        .add_service(InstanceTemplatesServer::new(templates::Service {
            app: app.clone(),
        }))
        .add_service(CloudAccountsServer::new(accounts::Service {
            app: app.clone(),
        }))
        .add_service(ImagesServer::new(accounts::ImagesService {
            app: app.clone(),
        }))
        .add_service(SnapshotsServer::new(snapshots::Service {
            app: app.clone(),
        }))
        .add_service(BackupsServer::new(snapshots::BackupsService {
            app: app.clone(),
        }))
        .add_service(RolloutsServer::new(rollouts::Service { app }))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| Error::internal(format!("gRPC API: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fleet_method_of_the_proto_has_a_declared_role() {
        let table = methods(&crate::api::roles());
        let set: prost_types::FileDescriptorSet =
            prost::Message::decode(fm_proto::fleet::FILE_DESCRIPTOR_SET).unwrap();
        let mut n = 0;
        for f in &set.file {
            for s in &f.service {
                for m in &s.method {
                    let path = format!("/{PACKAGE}.{}/{}", s.name(), m.name());
                    assert!(
                        matches!(table.get(path.as_str()), Some(Access::Role(_))),
                        "{path} has no role"
                    );
                    n += 1;
                }
            }
        }
        assert!(n >= 48, "only {n} methods");
    }

    #[test]
    fn keys_come_as_basic_or_bearer() {
        assert_eq!(
            credentials("Bearer key-1:s3cret"),
            Some(("key-1".into(), "s3cret".into()))
        );
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "key-1:s3cret")
        );
        assert_eq!(credentials(&basic), Some(("key-1".into(), "s3cret".into())));
        assert_eq!(credentials("Bearer nocolon"), None);
        assert_eq!(credentials("Digest x"), None);
    }

    #[test]
    fn domain_errors_map_to_their_codes_with_their_error_type() {
        let s = status(Error::not_found("instance", "inst-x"));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.metadata().get("error-type").unwrap(), "NotFound");
        assert_eq!(
            status(Error::invalid("label must not be empty")).code(),
            Code::InvalidArgument
        );
        let s = status(Error::internal("secret context"));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("secret context"));
    }
}
