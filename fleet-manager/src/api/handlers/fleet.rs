//! Plan and apply, an extension beside the public API: a fleet file's
//! changes, previewed, then made only while the plan still holds.

use crate::api::error::ApiErrorBody;
use crate::api::extract::{Ctx, JsonBody, PathParams};
use crate::api::path::TenantPath;
use crate::app::App;
use crate::error::Result;
use crate::model::fleet::{Applied, ApplyRequest, FleetSpec, Plan};
use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(fleet_plan))
        .routes(routes!(fleet_apply))
}

/// The changes that would make the fleet as the file declares (each
/// checked as the change itself would be), with a fingerprint of the file
/// and of every object read. Nothing is written. An admin's: it compares
/// secrets.
#[utoipa::path(post, path = "/tenants/{tenantId}/fleet/plan", tag = "fleet",
    params(TenantPath), request_body = FleetSpec,
    responses((status = 200, body = Plan), (status = 409, body = ApiErrorBody, description = "a label the file declares names several objects of the fleet, or a change the fleet can't take")),
    security(("apiKey" = ["admin"])))]
pub async fn fleet_plan(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(fleet): JsonBody<FleetSpec>,
) -> Result<Json<Plan>> {
    Ok(Json(app.fleet_plan(&p.tenant_id, &fleet).await?))
}

/// Makes the plan's changes if its fingerprint still holds (412 `Stale`
/// otherwise, before anything changes): networks, templates and instances
/// at once, each update only if the object is still as the plan read it;
/// then one rollout for the instances that need reprovisioning and the
/// deletions, whose rollout and futures it names.
#[utoipa::path(post, path = "/tenants/{tenantId}/fleet/apply", tag = "fleet",
    params(TenantPath), request_body = ApplyRequest,
    responses((status = 200, body = Applied), (status = 409, body = ApiErrorBody), (status = 412, body = ApiErrorBody, description = "the plan is stale: the fleet or the file changed since")),
    security(("apiKey" = ["admin"])))]
pub async fn fleet_apply(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> Result<Json<Applied>> {
    Ok(Json(app.fleet_apply(&ctx, &p.tenant_id, req).await?))
}
