//! The image catalog.

use crate::api::extract::{PathParams, QueryParams};
use crate::api::page::{Listed, PageQuery};
use crate::api::path::TenantPath;
use crate::app::App;
use crate::error::Result;
use crate::model::image::Image;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`;
/// one `routes!` per path.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(image_list))
}

/// The node versions FM can deploy.
#[utoipa::path(get, path = "/tenants/{tenantId}/images", tag = "images",
    params(TenantPath, PageQuery),
    responses((status = 200, body = Vec<Image>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn image_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Listed<Image>> {
    Ok(Listed(app.image_list(&p.tenant_id, &q.page()?).await?))
}
