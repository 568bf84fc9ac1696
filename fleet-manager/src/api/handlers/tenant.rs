//! The tenant's cloud credentials and cloud tags.

use crate::api::extract::{JsonBody, PathParams};
use crate::api::path::TenantPath;
use crate::app::App;
use crate::error::Result;
use crate::model::tenant::{CloudCredentials, CloudTags, CloudTagsEnvelope};
use axum::Json;
use axum::extract::State;
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`;
/// one `routes!` per path.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(cloud_credentials_get, cloud_credentials_put))
        .routes(routes!(cloud_tags_get, cloud_tags_put))
}

/// The tenant's cloud credentials (secrets are never returned).
#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-credentials", tag = "tenant",
    params(TenantPath),
    responses((status = 200, body = CloudCredentials)),
    security(("apiKey" = ["viewer"])))]
pub async fn cloud_credentials_get(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
) -> Result<Json<CloudCredentials>> {
    Ok(Json(app.cloud_credentials_get(&p.tenant_id).await?))
}

/// Replaces the tenant's cloud credentials; secrets left out are kept.
#[utoipa::path(put, path = "/tenants/{tenantId}/cloud-credentials", tag = "tenant",
    params(TenantPath), request_body = CloudCredentials,
    responses((status = 200, body = CloudCredentials)),
    security(("apiKey" = ["admin"])))]
pub async fn cloud_credentials_put(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(body): JsonBody<CloudCredentials>,
) -> Result<Json<CloudCredentials>> {
    Ok(Json(app.cloud_credentials_put(&p.tenant_id, body).await?))
}

/// The tenant's cloud tags, as `{"msg": "<JSON object as a string>"}`.
#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-tags", tag = "tenant",
    params(TenantPath),
    responses((status = 200, body = CloudTagsEnvelope)),
    security(("apiKey" = ["viewer"])))]
pub async fn cloud_tags_get(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
) -> Result<Json<CloudTagsEnvelope>> {
    let tags = app.cloud_tags_get(&p.tenant_id).await?;
    let msg = serde_json::to_string(&tags).map_err(crate::error::Error::internal)?;
    Ok(Json(CloudTagsEnvelope { msg }))
}

/// Replaces the tenant's cloud tags with the JSON object given.
#[utoipa::path(put, path = "/tenants/{tenantId}/cloud-tags", tag = "tenant",
    params(TenantPath), request_body = CloudTags,
    responses((status = 200, body = CloudTags)),
    security(("apiKey" = ["admin"])))]
pub async fn cloud_tags_put(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(body): JsonBody<BTreeMap<String, String>>,
) -> Result<Json<BTreeMap<String, String>>> {
    Ok(Json(app.cloud_tags_put(&p.tenant_id, body).await?))
}
