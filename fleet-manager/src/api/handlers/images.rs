//! The image catalog.

use crate::api::extract::PathParams;
use crate::api::path::TenantPath;
use crate::app::App;
use crate::error::Result;
use crate::model::image::Image;
use axum::Json;
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
    params(TenantPath),
    responses((status = 200, body = Vec<Image>)))]
pub async fn image_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
) -> Result<Json<Vec<Image>>> {
    Ok(Json(app.image_list(&p.tenant_id).await?))
}
