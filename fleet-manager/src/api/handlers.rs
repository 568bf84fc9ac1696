//! REST handlers: parse, call one application method, render. Paths are
//! relative to `/api/public`.

use super::error::ApiErrorBody;
use super::extract::{JsonBody, PathParams, QueryParams, flag};
use crate::app::App;
use crate::app::backups::CloneRequest;
use crate::error::Result;
use crate::model::account::CloudAccount;
use crate::model::backup::Backup;
use crate::model::image::Image;
use crate::model::instance::Instance;
use crate::model::lifecycle::{AdminApiKey, InitialPassword, InstanceStatus};
use crate::model::network::VirtualNetwork;
use crate::model::operation::FutureState;
use crate::model::snapshot::Snapshot;
use crate::model::template::InstanceTemplate;
use crate::model::tenant::{CloudCredentials, CloudTagsEnvelope};
use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::IntoParams;

/// A response whose body is JSON already serialized (stored documents).
pub struct RawJson(pub String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

type Tenant = PathParams<String>;
type TenantAnd = PathParams<(String, String)>;

// ---------------------------------------------------------------- tenant

/// The tenant's cloud credentials (secrets are never returned).
#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-credentials", tag = "tenant",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = CloudCredentials)))]
pub async fn cloud_credentials_get(
    State(app): State<App>,
    PathParams(t): Tenant,
) -> Result<Json<CloudCredentials>> {
    Ok(Json(app.cloud_credentials_get(&t).await?))
}

/// Replaces the tenant's cloud credentials; secrets left out are kept.
#[utoipa::path(put, path = "/tenants/{tenantId}/cloud-credentials", tag = "tenant",
    params(("tenantId" = String, Path)), request_body = CloudCredentials,
    responses((status = 200, body = CloudCredentials)))]
pub async fn cloud_credentials_put(
    State(app): State<App>,
    PathParams(t): Tenant,
    JsonBody(body): JsonBody<CloudCredentials>,
) -> Result<Json<CloudCredentials>> {
    Ok(Json(app.cloud_credentials_put(&t, body).await?))
}

/// The tenant's cloud tags, as `{"msg": "<JSON object as a string>"}`.
#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-tags", tag = "tenant",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = CloudTagsEnvelope)))]
pub async fn cloud_tags_get(
    State(app): State<App>,
    PathParams(t): Tenant,
) -> Result<Json<CloudTagsEnvelope>> {
    let tags = app.cloud_tags_get(&t).await?;
    let msg = serde_json::to_string(&tags).map_err(crate::error::Error::internal)?;
    Ok(Json(CloudTagsEnvelope { msg }))
}

/// Replaces the tenant's cloud tags with the JSON object given.
#[utoipa::path(put, path = "/tenants/{tenantId}/cloud-tags", tag = "tenant",
    params(("tenantId" = String, Path)), request_body = BTreeMap<String, String>,
    responses((status = 200, body = BTreeMap<String, String>)))]
pub async fn cloud_tags_put(
    State(app): State<App>,
    PathParams(t): Tenant,
    JsonBody(body): JsonBody<BTreeMap<String, String>>,
) -> Result<Json<BTreeMap<String, String>>> {
    Ok(Json(app.cloud_tags_put(&t, body).await?))
}

// ---------------------------------------------------------------- cloud accounts

#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-accounts", tag = "cloud accounts",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = Vec<CloudAccount>)))]
pub async fn account_list(
    State(app): State<App>,
    PathParams(t): Tenant,
) -> Result<Json<Vec<CloudAccount>>> {
    Ok(Json(app.account_list(&t).await?))
}

#[utoipa::path(post, path = "/tenants/{tenantId}/cloud-accounts", tag = "cloud accounts",
    params(("tenantId" = String, Path)), request_body = CloudAccount,
    responses((status = 200, body = CloudAccount)))]
pub async fn account_create(
    State(app): State<App>,
    PathParams(t): Tenant,
    JsonBody(body): JsonBody<CloudAccount>,
) -> Result<Json<CloudAccount>> {
    Ok(Json(app.account_create(&t, body).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-accounts/{accountId}", tag = "cloud accounts",
    params(("tenantId" = String, Path), ("accountId" = String, Path)),
    responses((status = 200, body = CloudAccount)))]
pub async fn account_get(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<CloudAccount>> {
    Ok(Json(app.account_get(&t, &id).await?))
}

#[utoipa::path(put, path = "/tenants/{tenantId}/cloud-accounts/{accountId}", tag = "cloud accounts",
    params(("tenantId" = String, Path), ("accountId" = String, Path)), request_body = CloudAccount,
    responses((status = 200, body = CloudAccount)))]
pub async fn account_update(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    JsonBody(body): JsonBody<CloudAccount>,
) -> Result<Json<CloudAccount>> {
    Ok(Json(app.account_update(&t, &id, body).await?))
}

/// Starts deleting the account; 409 while virtual networks use it.
#[utoipa::path(delete, path = "/tenants/{tenantId}/cloud-accounts/{accountId}", tag = "cloud accounts",
    params(("tenantId" = String, Path), ("accountId" = String, Path)),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)))]
pub async fn account_delete(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.account_delete(&t, &id).await?))
}

// ---------------------------------------------------------------- virtual networks

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct NetworkCreateQuery {
    /// Use FM's own region, VPC and subnet for the fields left out.
    use_default_values: Option<String>,
}

#[utoipa::path(get, path = "/tenants/{tenantId}/virtual-networks", tag = "virtual networks",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = Vec<VirtualNetwork>)))]
pub async fn network_list(
    State(app): State<App>,
    PathParams(t): Tenant,
) -> Result<Json<Vec<VirtualNetwork>>> {
    Ok(Json(app.network_list(&t).await?))
}

#[utoipa::path(post, path = "/tenants/{tenantId}/virtual-networks", tag = "virtual networks",
    params(("tenantId" = String, Path), NetworkCreateQuery), request_body = VirtualNetwork,
    responses((status = 200, body = VirtualNetwork)))]
pub async fn network_create(
    State(app): State<App>,
    PathParams(t): Tenant,
    QueryParams(q): QueryParams<NetworkCreateQuery>,
    JsonBody(body): JsonBody<VirtualNetwork>,
) -> Result<Json<VirtualNetwork>> {
    let defaults = flag("useDefaultValues", q.use_default_values.as_deref())?;
    Ok(Json(app.network_create(&t, body, defaults).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/virtual-networks/{networkId}", tag = "virtual networks",
    params(("tenantId" = String, Path), ("networkId" = String, Path)),
    responses((status = 200, body = VirtualNetwork)))]
pub async fn network_get(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<VirtualNetwork>> {
    Ok(Json(app.network_get(&t, &id).await?))
}

#[utoipa::path(put, path = "/tenants/{tenantId}/virtual-networks/{networkId}", tag = "virtual networks",
    params(("tenantId" = String, Path), ("networkId" = String, Path)), request_body = VirtualNetwork,
    responses((status = 200, body = VirtualNetwork)))]
pub async fn network_update(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    JsonBody(body): JsonBody<VirtualNetwork>,
) -> Result<Json<VirtualNetwork>> {
    Ok(Json(app.network_update(&t, &id, body).await?))
}

/// Starts deleting the network; 409 while instances use it.
#[utoipa::path(delete, path = "/tenants/{tenantId}/virtual-networks/{networkId}", tag = "virtual networks",
    params(("tenantId" = String, Path), ("networkId" = String, Path)),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)))]
pub async fn network_delete(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.network_delete(&t, &id).await?))
}

// ---------------------------------------------------------------- instance templates

#[utoipa::path(get, path = "/tenants/{tenantId}/instance-settings-templates", tag = "instance templates",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = Vec<InstanceTemplate>)))]
pub async fn template_list(
    State(app): State<App>,
    PathParams(t): Tenant,
) -> Result<Json<Vec<InstanceTemplate>>> {
    Ok(Json(app.template_list(&t).await?))
}

#[utoipa::path(post, path = "/tenants/{tenantId}/instance-settings-templates", tag = "instance templates",
    params(("tenantId" = String, Path)), request_body = InstanceTemplate,
    responses((status = 200, body = InstanceTemplate)))]
pub async fn template_create(
    State(app): State<App>,
    PathParams(t): Tenant,
    JsonBody(body): JsonBody<InstanceTemplate>,
) -> Result<Json<InstanceTemplate>> {
    Ok(Json(app.template_create(&t, body).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instance-settings-templates/{templateId}", tag = "instance templates",
    params(("tenantId" = String, Path), ("templateId" = String, Path)),
    responses((status = 200, body = InstanceTemplate)))]
pub async fn template_get(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<InstanceTemplate>> {
    Ok(Json(app.template_get(&t, &id).await?))
}

#[utoipa::path(put, path = "/tenants/{tenantId}/instance-settings-templates/{templateId}", tag = "instance templates",
    params(("tenantId" = String, Path), ("templateId" = String, Path)), request_body = InstanceTemplate,
    responses((status = 200, body = InstanceTemplate)))]
pub async fn template_update(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    JsonBody(body): JsonBody<InstanceTemplate>,
) -> Result<Json<InstanceTemplate>> {
    Ok(Json(app.template_update(&t, &id, body).await?))
}

/// Starts deleting the template; 409 while instances use it.
#[utoipa::path(delete, path = "/tenants/{tenantId}/instance-settings-templates/{templateId}", tag = "instance templates",
    params(("tenantId" = String, Path), ("templateId" = String, Path)),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)))]
pub async fn template_delete(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.template_delete(&t, &id).await?))
}

// ---------------------------------------------------------------- instances

#[utoipa::path(get, path = "/tenants/{tenantId}/instances", tag = "instances",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = Vec<Instance>)))]
pub async fn instance_list(State(app): State<App>, PathParams(t): Tenant) -> Result<RawJson> {
    Ok(RawJson(app.instance_list_json(&t).await?))
}

/// Creates the instance record; no cloud resource is made until it is provisioned.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances", tag = "instances",
    params(("tenantId" = String, Path)), request_body = Instance,
    responses((status = 200, body = Instance)))]
pub async fn instance_create(
    State(app): State<App>,
    PathParams(t): Tenant,
    JsonBody(body): JsonBody<Instance>,
) -> Result<RawJson> {
    Ok(RawJson(app.instance_create(&t, body).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}", tag = "instances",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = Instance)))]
pub async fn instance_get(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<RawJson> {
    Ok(RawJson(app.instance_get_json(&t, &id).await?))
}

/// Replaces the instance's settings with the whole JSON given.
#[utoipa::path(put, path = "/tenants/{tenantId}/instances/{instanceId}", tag = "instances",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)), request_body = Instance,
    responses((status = 200, body = Instance)))]
pub async fn instance_update(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    JsonBody(body): JsonBody<Instance>,
) -> Result<RawJson> {
    Ok(RawJson(app.instance_update(&t, &id, body).await?))
}

/// Starts deleting the instance (a side-effecting GET, as the public API has it).
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/actions/delete", tag = "instances",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn instance_delete(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.instance_delete(&t, &id).await?))
}

// ---------------------------------------------------------------- images

/// The node versions FM can deploy.
#[utoipa::path(get, path = "/tenants/{tenantId}/images", tag = "images",
    params(("tenantId" = String, Path)),
    responses((status = 200, body = Vec<Image>)))]
pub async fn image_list(State(app): State<App>, PathParams(t): Tenant) -> Result<Json<Vec<Image>>> {
    Ok(Json(app.image_list(&t).await?))
}

// ---------------------------------------------------------------- futures

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FutureQuery {
    /// `true`: return the state whatever it is. `false` (default): a failed
    /// or aborted future answers with its error (409).
    peek: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FutureListQuery {
    /// At most this many futures (1 to 500, default 50).
    limit: Option<u64>,
}

/// The most recent futures, newest first.
#[utoipa::path(get, path = "/tenants/{tenantId}/futures", tag = "futures",
    params(("tenantId" = String, Path), FutureListQuery),
    responses((status = 200, body = Vec<FutureState>)))]
pub async fn future_list(
    State(app): State<App>,
    PathParams(t): Tenant,
    QueryParams(q): QueryParams<FutureListQuery>,
) -> Result<Json<Vec<FutureState>>> {
    Ok(Json(app.future_list(&t, q.limit.unwrap_or(50)).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/futures/{jobId}", tag = "futures",
    params(("tenantId" = String, Path), ("jobId" = String, Path), FutureQuery),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody, description = "the future failed or was aborted (without peek)")))]
pub async fn future_get(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    QueryParams(q): QueryParams<FutureQuery>,
) -> Result<Json<FutureState>> {
    let peek = flag("peek", q.peek.as_deref())?;
    Ok(Json(app.future_get(&t, &id, peek).await?))
}

/// Aborts the future: at once if not started, between steps otherwise.
#[utoipa::path(delete, path = "/tenants/{tenantId}/futures/{jobId}", tag = "futures",
    params(("tenantId" = String, Path), ("jobId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn future_abort(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.future_abort(&t, &id).await?))
}

// ---------------------------------------------------------------- lifecycle

type InstanceAnd = PathParams<(String, String, String)>;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ReprovisionQuery {
    /// Allow moving the node to an older version than the one installed.
    allow_downgrade: Option<String>,
}

/// Provisions the instance, or replaces its VM keeping the data volume. An
/// `imageId` newer than the installed node upgrades it.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/actions/reprovision", tag = "instance lifecycle",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ReprovisionQuery),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody, description = "a downgrade without allowDowngrade, or a busy instance")))]
pub async fn instance_reprovision(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    QueryParams(q): QueryParams<ReprovisionQuery>,
) -> Result<Json<FutureState>> {
    let allow = flag("allowDowngrade", q.allow_downgrade.as_deref())?;
    Ok(Json(app.instance_reprovision(&t, &id, allow, None).await?))
}

macro_rules! action_handler {
    ($name:ident, $path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "instance lifecycle",
            params(("tenantId" = String, Path), ("instanceId" = String, Path)),
            responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)))]
        pub async fn $name(State(app): State<App>, PathParams((t, id)): TenantAnd) -> Result<Json<FutureState>> {
            Ok(Json(app.instance_action(&t, &id, $action).await?))
        }
    };
}

action_handler!(
    instance_deprovision,
    "/tenants/{tenantId}/instances/{instanceId}/actions/deprovision",
    crate::app::Action::Deprovision,
    "Terminates the VM; the data volume is kept."
);
action_handler!(
    instance_start,
    "/tenants/{tenantId}/instances/{instanceId}/actions/start",
    crate::app::Action::Start,
    "Starts the VM and the node."
);
action_handler!(
    instance_stop,
    "/tenants/{tenantId}/instances/{instanceId}/actions/stop",
    crate::app::Action::Stop,
    "Stops the node and the VM."
);
action_handler!(
    instance_restart_node,
    "/tenants/{tenantId}/instances/{instanceId}/actions/restart-dss",
    crate::app::Action::RestartNode,
    "Restarts the node, even one that no longer answers."
);
action_handler!(
    instance_replay_setup,
    "/tenants/{tenantId}/instances/{instanceId}/actions/replay-setup-actions",
    crate::app::Action::ReplaySetupActions,
    "Runs the template's setup actions again, without reprovisioning."
);

/// The node's initial admin password: answers once, then 409.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/actions/get-initial-password", tag = "instance lifecycle",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = InitialPassword), (status = 409, body = ApiErrorBody)))]
pub async fn instance_initial_password(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<InitialPassword>> {
    Ok(Json(app.instance_initial_password(&t, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetPasswordBody {
    user_name: String,
    password: String,
}

/// Resets a node user's password.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/actions/reset-user-password", tag = "instance lifecycle",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)), request_body = ResetPasswordBody,
    responses((status = 200, body = FutureState)))]
pub async fn instance_reset_password(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    JsonBody(b): JsonBody<ResetPasswordBody>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.instance_reset_password(&t, &id, &b.user_name, &b.password)
            .await?,
    ))
}

/// The VM, node and agent as FM sees them.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/status", tag = "instance lifecycle",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = InstanceStatus)))]
pub async fn instance_status(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<InstanceStatus>> {
    Ok(Json(app.instance_status(&t, &id).await?))
}

/// The node's admin API key, `{"adminAPIKey": ...}`.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/admin-api-key", tag = "instance lifecycle",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = AdminApiKey), (status = 409, body = ApiErrorBody)))]
pub async fn instance_admin_api_key(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<AdminApiKey>> {
    Ok(Json(app.instance_admin_api_key(&t, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    reason_for_snapshot: Option<String>,
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots", tag = "snapshots",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = Vec<Snapshot>)))]
pub async fn snapshot_list(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<Vec<Snapshot>>> {
    Ok(Json(app.snapshot_list(&t, &id).await?))
}

/// Snapshots the data volume; answers with the snapshot.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots", tag = "snapshots",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), SnapshotQuery),
    responses((status = 200, body = Snapshot)))]
pub async fn snapshot_create(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    QueryParams(q): QueryParams<SnapshotQuery>,
) -> Result<Json<Snapshot>> {
    Ok(Json(
        app.snapshot_create(&t, &id, q.reason_for_snapshot.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}", tag = "snapshots",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("snapshotId" = String, Path)),
    responses((status = 200, body = Snapshot)))]
pub async fn snapshot_get(
    State(app): State<App>,
    PathParams((t, id, s)): InstanceAnd,
) -> Result<Json<Snapshot>> {
    Ok(Json(app.snapshot_get(&t, &id, &s).await?))
}

#[utoipa::path(delete, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}", tag = "snapshots",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("snapshotId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn snapshot_delete(
    State(app): State<App>,
    PathParams((t, id, s)): InstanceAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.snapshot_delete(&t, &id, &s).await?))
}

/// Reprovisions the instance with its data volume made from this snapshot;
/// the current volume is deleted once the node is healthy on the new one.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}/reprovision", tag = "snapshots",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("snapshotId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn snapshot_reprovision(
    State(app): State<App>,
    PathParams((t, id, s)): InstanceAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.instance_reprovision(&t, &id, false, Some(&s)).await?,
    ))
}

// ------------------------------------------------------------ backups

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Why the backup is taken (kept with it).
    reason: Option<String>,
}

/// The instance's agent backups (in object storage), oldest first.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/backups", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 200, body = Vec<Backup>)))]
pub async fn backup_list(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
) -> Result<Json<Vec<Backup>>> {
    Ok(Json(app.backup_list(&t, &id).await?))
}

/// Backs up the data dir to object storage (the node stopped meanwhile
/// unless `backupPolicy.consistency` is NONE); the future's result is the
/// backup.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), BackupQuery),
    responses((status = 200, body = FutureState)))]
pub async fn backup_take(
    State(app): State<App>,
    PathParams((t, id)): TenantAnd,
    QueryParams(q): QueryParams<BackupQuery>,
) -> Result<Json<FutureState>> {
    Ok(Json(app.backup_take(&t, &id, q.reason.as_deref()).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("backupId" = String, Path)),
    responses((status = 200, body = Backup)))]
pub async fn backup_get(
    State(app): State<App>,
    PathParams((t, id, b)): InstanceAnd,
) -> Result<Json<Backup>> {
    Ok(Json(app.backup_get(&t, &id, &b).await?))
}

/// Deletes the backup's objects, then its record.
#[utoipa::path(delete, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("backupId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn backup_delete(
    State(app): State<App>,
    PathParams((t, id, b)): InstanceAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.backup_delete(&t, &id, &b).await?))
}

/// Replaces the instance's data dir with the backup: the node is stopped,
/// the backup extracted and checked file by file beside the current data
/// (which stays untouched if anything is wrong), swapped in, upgraded by
/// the kit if the backup is older, and started. A backup newer than the
/// instance's image is refused (409).
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/restore", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("backupId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn backup_restore(
    State(app): State<App>,
    PathParams((t, id, b)): InstanceAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.backup_restore(&t, &id, &b).await?))
}

/// Restores the backup into a scratch dir on the instance, compares every
/// file with the manifest, removes the scratch dir; the outcome is kept as
/// the backup's `lastVerification`.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/verify", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("backupId" = String, Path)),
    responses((status = 200, body = FutureState)))]
pub async fn backup_verify(
    State(app): State<App>,
    PathParams((t, id, b)): InstanceAnd,
) -> Result<Json<FutureState>> {
    Ok(Json(app.backup_verify(&t, &id, &b).await?))
}

/// Creates a new instance with the source's settings and provisions it with
/// the backup restored into its data dir; the future's result names the
/// new instance (`instanceId`).
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/clone", tag = "backups",
    params(("tenantId" = String, Path), ("instanceId" = String, Path), ("backupId" = String, Path)),
    request_body = CloneRequest,
    responses((status = 200, body = FutureState)))]
pub async fn backup_clone(
    State(app): State<App>,
    PathParams((t, id, b)): InstanceAnd,
    JsonBody(req): JsonBody<CloneRequest>,
) -> Result<Json<FutureState>> {
    Ok(Json(app.backup_clone(&t, &id, &b, req).await?))
}
