//! Virtual networks.

use crate::api::error::ApiErrorBody;
use crate::api::extract::{Ctx, JsonBody, PathParams, QueryParams, flag};
use crate::api::page::{Listed, PageQuery};
use crate::api::path::{NetworkPath, TenantPath};
use crate::app::App;
use crate::error::Result;
use crate::model::network::VirtualNetwork;
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
        .routes(routes!(network_list, network_create))
        .routes(routes!(network_get, network_update, network_delete))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NetworkCreateQuery {
    /// Use FM's own region, VPC and subnet for the fields left out.
    #[param(schema_with = crate::api::extract::flag_schema)]
    use_default_values: Option<String>,
}

#[utoipa::path(get, path = "/tenants/{tenantId}/virtual-networks", tag = "virtual networks",
    params(TenantPath, PageQuery),
    responses((status = 200, body = Vec<VirtualNetwork>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn network_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Listed<VirtualNetwork>> {
    Ok(Listed(app.network_list(&p.tenant_id, &q.page()?).await?))
}

#[utoipa::path(post, path = "/tenants/{tenantId}/virtual-networks", tag = "virtual networks",
    params(TenantPath, NetworkCreateQuery), request_body = VirtualNetwork,
    responses((status = 200, body = VirtualNetwork)),
    security(("apiKey" = ["admin"])))]
pub async fn network_create(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<NetworkCreateQuery>,
    JsonBody(body): JsonBody<VirtualNetwork>,
) -> Result<Json<VirtualNetwork>> {
    let defaults = flag("useDefaultValues", q.use_default_values.as_deref())?;
    Ok(Json(
        app.network_create(&p.tenant_id, body, defaults).await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/virtual-networks/{networkId}", tag = "virtual networks",
    params(NetworkPath),
    responses((status = 200, body = VirtualNetwork)),
    security(("apiKey" = ["viewer"])))]
pub async fn network_get(
    State(app): State<App>,
    PathParams(p): PathParams<NetworkPath>,
) -> Result<Json<VirtualNetwork>> {
    Ok(Json(app.network_get(&p.tenant_id, &p.network_id).await?))
}

#[utoipa::path(put, path = "/tenants/{tenantId}/virtual-networks/{networkId}", tag = "virtual networks",
    params(NetworkPath), request_body = VirtualNetwork,
    responses((status = 200, body = VirtualNetwork)),
    security(("apiKey" = ["admin"])))]
pub async fn network_update(
    State(app): State<App>,
    PathParams(p): PathParams<NetworkPath>,
    JsonBody(body): JsonBody<VirtualNetwork>,
) -> Result<Json<VirtualNetwork>> {
    Ok(Json(
        app.network_update(&p.tenant_id, &p.network_id, body)
            .await?,
    ))
}

/// Starts deleting the network; 409 while instances use it.
#[utoipa::path(delete, path = "/tenants/{tenantId}/virtual-networks/{networkId}", tag = "virtual networks",
    params(NetworkPath),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)),
    security(("apiKey" = ["admin"])))]
pub async fn network_delete(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<NetworkPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.network_delete(&ctx, &p.tenant_id, &p.network_id)
            .await?,
    ))
}
