//! Instances: their settings, their lifecycle actions, status and the
//! node's secrets.

use super::RawJson;
use crate::api::error::ApiErrorBody;
use crate::api::extract::{Ctx, JsonBody, PathParams, QueryParams, flag};
use crate::api::page::{ListedRaw, PageQuery};
use crate::api::path::{InstancePath, TenantPath};
use crate::app::App;
use crate::error::Result;
use crate::model::instance::Instance;
use crate::model::lifecycle::{AdminApiKey, InitialPassword, InstanceStatus};
use crate::model::operation::FutureState;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`;
/// one `routes!` per path.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(instance_list, instance_create))
        .routes(routes!(instance_get, instance_update))
        .routes(routes!(instance_delete))
        .routes(routes!(instance_reprovision))
        .routes(routes!(instance_deprovision))
        .routes(routes!(instance_start))
        .routes(routes!(instance_stop))
        .routes(routes!(instance_restart_node))
        .routes(routes!(instance_replay_setup))
        .routes(routes!(instance_initial_password))
        .routes(routes!(instance_reset_password))
        .routes(routes!(instance_status))
        .routes(routes!(instance_admin_api_key))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances", tag = "instances",
    params(TenantPath, PageQuery),
    responses((status = 200, body = Vec<Instance>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn instance_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<ListedRaw> {
    Ok(ListedRaw(
        app.instance_list_json(&p.tenant_id, &q.page()?).await?,
    ))
}

/// Creates the instance record; no cloud resource is made until it is provisioned.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances", tag = "instances",
    params(TenantPath), request_body = Instance,
    responses((status = 200, body = Instance)),
    security(("apiKey" = ["operator"])))]
pub async fn instance_create(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(body): JsonBody<Instance>,
) -> Result<RawJson> {
    Ok(RawJson(app.instance_create(&p.tenant_id, body).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}", tag = "instances",
    params(InstancePath),
    responses((status = 200, body = Instance)),
    security(("apiKey" = ["viewer"])))]
pub async fn instance_get(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
) -> Result<RawJson> {
    Ok(RawJson(
        app.instance_get_json(&p.tenant_id, &p.instance_id).await?,
    ))
}

/// Replaces the instance's settings with the whole JSON given.
#[utoipa::path(put, path = "/tenants/{tenantId}/instances/{instanceId}", tag = "instances",
    params(InstancePath), request_body = Instance,
    responses((status = 200, body = Instance)),
    security(("apiKey" = ["operator"])))]
pub async fn instance_update(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    JsonBody(body): JsonBody<Instance>,
) -> Result<RawJson> {
    Ok(RawJson(
        app.instance_update(&p.tenant_id, &p.instance_id, body)
            .await?,
    ))
}

/// Starts deleting the instance (a side-effecting GET, as the public API has it).
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/actions/delete", tag = "instances",
    params(InstancePath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn instance_delete(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.instance_delete(&ctx, &p.tenant_id, &p.instance_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReprovisionQuery {
    /// Allow moving the node to an older version than the one installed.
    #[param(schema_with = crate::api::extract::flag_schema)]
    allow_downgrade: Option<String>,
}

/// Provisions the instance, or replaces its VM keeping the data volume. An
/// `imageId` newer than the installed node upgrades it.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/actions/reprovision", tag = "instance lifecycle",
    params(InstancePath, ReprovisionQuery),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody, description = "a downgrade without allowDowngrade, or a busy instance")),
    security(("apiKey" = ["operator"])))]
pub async fn instance_reprovision(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    QueryParams(q): QueryParams<ReprovisionQuery>,
) -> Result<Json<FutureState>> {
    let allow = flag("allowDowngrade", q.allow_downgrade.as_deref())?;
    Ok(Json(
        app.instance_reprovision(&ctx, &p.tenant_id, &p.instance_id, allow, None)
            .await?,
    ))
}

macro_rules! action_handler {
    ($name:ident, $path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "instance lifecycle",
            params(InstancePath),
            responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)),
            security(("apiKey" = ["operator"])))]
        pub async fn $name(
            Ctx(ctx): Ctx,
            State(app): State<App>,
            PathParams(p): PathParams<InstancePath>,
        ) -> Result<Json<FutureState>> {
            Ok(Json(app.instance_action(&ctx, &p.tenant_id, &p.instance_id, $action).await?))
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
    params(InstancePath),
    responses((status = 200, body = InitialPassword), (status = 409, body = ApiErrorBody)),
    security(("apiKey" = ["admin"])))]
pub async fn instance_initial_password(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
) -> Result<Json<InitialPassword>> {
    Ok(Json(
        app.instance_initial_password(&p.tenant_id, &p.instance_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetPasswordBody {
    /// The node user: 1 to 128 letters, digits, `.`, `_`, `@` or `-`.
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,128}$")]
    user_name: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
}

/// Resets a node user's password.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/actions/reset-user-password", tag = "instance lifecycle",
    params(InstancePath), request_body = ResetPasswordBody,
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["admin"])))]
pub async fn instance_reset_password(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    JsonBody(b): JsonBody<ResetPasswordBody>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.instance_reset_password(
            &ctx,
            &p.tenant_id,
            &p.instance_id,
            &b.user_name,
            &b.password,
        )
        .await?,
    ))
}

/// The VM, node and agent as FM sees them.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/status", tag = "instance lifecycle",
    params(InstancePath),
    responses((status = 200, body = InstanceStatus)),
    security(("apiKey" = ["viewer"])))]
pub async fn instance_status(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
) -> Result<Json<InstanceStatus>> {
    Ok(Json(
        app.instance_status(&p.tenant_id, &p.instance_id).await?,
    ))
}

/// The node's admin API key, `{"adminAPIKey": ...}`.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/admin-api-key", tag = "instance lifecycle",
    params(InstancePath),
    responses((status = 200, body = AdminApiKey), (status = 409, body = ApiErrorBody)),
    security(("apiKey" = ["admin"])))]
pub async fn instance_admin_api_key(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
) -> Result<Json<AdminApiKey>> {
    Ok(Json(
        app.instance_admin_api_key(&p.tenant_id, &p.instance_id)
            .await?,
    ))
}
