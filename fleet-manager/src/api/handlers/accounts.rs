//! Cloud accounts.

use crate::api::error::ApiErrorBody;
use crate::api::extract::{Ctx, JsonBody, PathParams, QueryParams};
use crate::api::page::{Listed, PageQuery};
use crate::api::path::{AccountPath, TenantPath};
use crate::app::App;
use crate::error::Result;
use crate::model::account::CloudAccount;
use crate::model::operation::FutureState;
use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`;
/// one `routes!` per path.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(account_list, account_create))
        .routes(routes!(account_get, account_update, account_delete))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-accounts", tag = "cloud accounts",
    params(TenantPath, PageQuery),
    responses((status = 200, body = Vec<CloudAccount>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn account_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Listed<CloudAccount>> {
    Ok(Listed(app.account_list(&p.tenant_id, &q.page()?).await?))
}

#[utoipa::path(post, path = "/tenants/{tenantId}/cloud-accounts", tag = "cloud accounts",
    params(TenantPath), request_body = CloudAccount,
    responses((status = 200, body = CloudAccount)),
    security(("apiKey" = ["admin"])))]
pub async fn account_create(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(body): JsonBody<CloudAccount>,
) -> Result<Json<CloudAccount>> {
    Ok(Json(app.account_create(&p.tenant_id, body).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/cloud-accounts/{accountId}", tag = "cloud accounts",
    params(AccountPath),
    responses((status = 200, body = CloudAccount)),
    security(("apiKey" = ["viewer"])))]
pub async fn account_get(
    State(app): State<App>,
    PathParams(p): PathParams<AccountPath>,
) -> Result<Json<CloudAccount>> {
    Ok(Json(app.account_get(&p.tenant_id, &p.account_id).await?))
}

#[utoipa::path(put, path = "/tenants/{tenantId}/cloud-accounts/{accountId}", tag = "cloud accounts",
    params(AccountPath), request_body = CloudAccount,
    responses((status = 200, body = CloudAccount)),
    security(("apiKey" = ["admin"])))]
pub async fn account_update(
    State(app): State<App>,
    PathParams(p): PathParams<AccountPath>,
    JsonBody(body): JsonBody<CloudAccount>,
) -> Result<Json<CloudAccount>> {
    Ok(Json(
        app.account_update(&p.tenant_id, &p.account_id, body)
            .await?,
    ))
}

/// Starts deleting the account; 409 while virtual networks use it.
#[utoipa::path(delete, path = "/tenants/{tenantId}/cloud-accounts/{accountId}", tag = "cloud accounts",
    params(AccountPath),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)),
    security(("apiKey" = ["admin"])))]
pub async fn account_delete(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<AccountPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.account_delete(&ctx, &p.tenant_id, &p.account_id)
            .await?,
    ))
}
