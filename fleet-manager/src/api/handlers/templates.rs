//! Instance settings templates.

use crate::api::error::ApiErrorBody;
use crate::api::extract::{Ctx, JsonBody, PathParams, QueryParams};
use crate::api::page::{Listed, PageQuery};
use crate::api::path::{TemplatePath, TenantPath};
use crate::app::App;
use crate::error::Result;
use crate::model::operation::FutureState;
use crate::model::template::InstanceTemplate;
use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`;
/// one `routes!` per path.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(template_list, template_create))
        .routes(routes!(template_get, template_update, template_delete))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instance-settings-templates", tag = "instance templates",
    params(TenantPath, PageQuery),
    responses((status = 200, body = Vec<InstanceTemplate>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn template_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Listed<InstanceTemplate>> {
    Ok(Listed(app.template_list(&p.tenant_id, &q.page()?).await?))
}

#[utoipa::path(post, path = "/tenants/{tenantId}/instance-settings-templates", tag = "instance templates",
    params(TenantPath), request_body = InstanceTemplate,
    responses((status = 200, body = InstanceTemplate)),
    security(("apiKey" = ["admin"])))]
pub async fn template_create(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(body): JsonBody<InstanceTemplate>,
) -> Result<Json<InstanceTemplate>> {
    Ok(Json(app.template_create(&p.tenant_id, body).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instance-settings-templates/{templateId}", tag = "instance templates",
    params(TemplatePath),
    responses((status = 200, body = InstanceTemplate)),
    security(("apiKey" = ["viewer"])))]
pub async fn template_get(
    State(app): State<App>,
    PathParams(p): PathParams<TemplatePath>,
) -> Result<Json<InstanceTemplate>> {
    Ok(Json(app.template_get(&p.tenant_id, &p.template_id).await?))
}

#[utoipa::path(put, path = "/tenants/{tenantId}/instance-settings-templates/{templateId}", tag = "instance templates",
    params(TemplatePath), request_body = InstanceTemplate,
    responses((status = 200, body = InstanceTemplate)),
    security(("apiKey" = ["admin"])))]
pub async fn template_update(
    State(app): State<App>,
    PathParams(p): PathParams<TemplatePath>,
    JsonBody(body): JsonBody<InstanceTemplate>,
) -> Result<Json<InstanceTemplate>> {
    Ok(Json(
        app.template_update(&p.tenant_id, &p.template_id, body)
            .await?,
    ))
}

/// Starts deleting the template; 409 while instances use it.
#[utoipa::path(delete, path = "/tenants/{tenantId}/instance-settings-templates/{templateId}", tag = "instance templates",
    params(TemplatePath),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody)),
    security(("apiKey" = ["admin"])))]
pub async fn template_delete(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<TemplatePath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.template_delete(&ctx, &p.tenant_id, &p.template_id)
            .await?,
    ))
}
