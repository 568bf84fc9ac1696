//! The CLI's connection to a running FM's gRPC API: one channel, the API
//! key in every call's `authorization` metadata, and a refused call as the
//! error the user reads.

use crate::error::{Error, Result};
use fm_proto::fleet;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Adds the key to each call.
#[derive(Clone)]
pub struct Auth(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Chan = InterceptedService<Channel, Auth>;

/// The clients of every service, on one channel.
pub struct Clients {
    pub instances: fleet::instances_client::InstancesClient<Chan>,
    pub networks: fleet::virtual_networks_client::VirtualNetworksClient<Chan>,
    pub templates: fleet::instance_templates_client::InstanceTemplatesClient<Chan>,
    pub accounts: fleet::cloud_accounts_client::CloudAccountsClient<Chan>,
    pub images: fleet::images_client::ImagesClient<Chan>,
    pub snapshots: fleet::snapshots_client::SnapshotsClient<Chan>,
    pub backups: fleet::backups_client::BackupsClient<Chan>,
    pub operations: fleet::operations_client::OperationsClient<Chan>,
    pub rollouts: fleet::rollouts_client::RolloutsClient<Chan>,
}

/// Connects to `url` with the key `id:secret`.
pub async fn connect(url: &str, id: &str, secret: &str) -> Result<Clients> {
    if !url.starts_with("http://") {
        return Err(Error::invalid(format!(
            "--grpc-url {url}: FM serves its gRPC API as http:// (put a TLS proxy in front of it to reach it from afar)"
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid(format!("--grpc-url {url}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(90));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Error::invalid(format!("can't reach FM's gRPC API at {url}: {e}")))?;
    let token = format!("Bearer {id}:{secret}");
    let value: MetadataValue<Ascii> = token
        .parse()
        .map_err(|_| Error::invalid("the API key id and secret must be printable ASCII"))?;
    let svc = InterceptedService::new(channel, Auth(value));
    Ok(Clients {
        instances: fleet::instances_client::InstancesClient::new(svc.clone()),
        networks: fleet::virtual_networks_client::VirtualNetworksClient::new(svc.clone()),
        templates: fleet::instance_templates_client::InstanceTemplatesClient::new(svc.clone()),
        accounts: fleet::cloud_accounts_client::CloudAccountsClient::new(svc.clone()),
        images: fleet::images_client::ImagesClient::new(svc.clone()),
        snapshots: fleet::snapshots_client::SnapshotsClient::new(svc.clone()),
        backups: fleet::backups_client::BackupsClient::new(svc.clone()),
        operations: fleet::operations_client::OperationsClient::new(svc.clone()),
        rollouts: fleet::rollouts_client::RolloutsClient::new(svc),
    })
}

/// A refused call as the error printed: the code, FM's `errorType` and
/// its message (`NotFound: instance 'x' does not exist`).
pub fn refused(s: tonic::Status) -> Error {
    let error_type = s
        .metadata()
        .get("error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", s.code()));
    Error::invalid(format!("{error_type}: {}", s.message()))
}

/// The answer of a call, or the refusal as the error.
pub fn answer<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>) -> Result<T> {
    r.map(tonic::Response::into_inner).map_err(refused)
}
