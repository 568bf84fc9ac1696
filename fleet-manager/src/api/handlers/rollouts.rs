//! Rollouts, an extension beside the public API: one action over a
//! selection of instances, canaries first, a few at a time, stopped when
//! too many fail.

use crate::api::extract::{Ctx, JsonBody, PathParams, QueryParams};
use crate::api::page::{Listed, page};
use crate::api::path::{RolloutPath, TenantPath};
use crate::app::App;
use crate::error::Result;
use crate::model::rollout::{Rollout, RolloutSpec};
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
        .routes(routes!(rollout_list, rollout_create))
        .routes(routes!(rollout_get))
        .routes(routes!(rollout_pause))
        .routes(routes!(rollout_resume))
        .routes(routes!(rollout_cancel))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RolloutListQuery {
    /// At most this many rollouts (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `Next-Page-Token` of the previous page: this page starts after it.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    page_token: Option<String>,
}

/// The rollouts, newest first, with their counts (not their targets): the
/// most recent 50 unless `limit` says otherwise.
#[utoipa::path(get, path = "/tenants/{tenantId}/rollouts", tag = "rollouts",
    params(TenantPath, RolloutListQuery),
    responses((status = 200, body = Vec<Rollout>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn rollout_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<RolloutListQuery>,
) -> Result<Listed<Rollout>> {
    let page = page(q.limit, q.page_token.as_deref(), 50, 500)?;
    Ok(Listed(app.rollout_list(&p.tenant_id, &page).await?))
}

/// Starts a rollout over the instances the selector takes now. It answers
/// at once; targets start as `canaries`, `maxInFlight` and `maxErrors`
/// allow. When the meltdown guard trips, the rollout is answered failed
/// with every target skipped.
#[utoipa::path(post, path = "/tenants/{tenantId}/rollouts", tag = "rollouts",
    params(TenantPath), request_body = RolloutSpec,
    responses((status = 200, body = Rollout)),
    security(("apiKey" = ["operator"])))]
pub async fn rollout_create(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParams(p): PathParams<TenantPath>,
    JsonBody(spec): JsonBody<RolloutSpec>,
) -> Result<Json<Rollout>> {
    Ok(Json(app.rollout_create(&ctx, &p.tenant_id, spec).await?))
}

/// The rollout with every target, in the order they go.
#[utoipa::path(get, path = "/tenants/{tenantId}/rollouts/{rolloutId}", tag = "rollouts",
    params(RolloutPath),
    responses((status = 200, body = Rollout)),
    security(("apiKey" = ["viewer"])))]
pub async fn rollout_get(
    State(app): State<App>,
    PathParams(p): PathParams<RolloutPath>,
) -> Result<Json<Rollout>> {
    Ok(Json(app.rollout_get(&p.tenant_id, &p.rollout_id).await?))
}

/// Starts no more targets until resumed; those in flight go on.
#[utoipa::path(post, path = "/tenants/{tenantId}/rollouts/{rolloutId}/actions/pause", tag = "rollouts",
    params(RolloutPath),
    responses((status = 200, body = Rollout)),
    security(("apiKey" = ["operator"])))]
pub async fn rollout_pause(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParams(p): PathParams<RolloutPath>,
) -> Result<Json<Rollout>> {
    Ok(Json(
        app.rollout_pause(&ctx, &p.tenant_id, &p.rollout_id).await?,
    ))
}

/// Starts targets again after a pause.
#[utoipa::path(post, path = "/tenants/{tenantId}/rollouts/{rolloutId}/actions/resume", tag = "rollouts",
    params(RolloutPath),
    responses((status = 200, body = Rollout)),
    security(("apiKey" = ["operator"])))]
pub async fn rollout_resume(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParams(p): PathParams<RolloutPath>,
) -> Result<Json<Rollout>> {
    Ok(Json(
        app.rollout_resume(&ctx, &p.tenant_id, &p.rollout_id)
            .await?,
    ))
}

/// Skips every target not started; the rollout ends cancelled once those
/// in flight have finished.
#[utoipa::path(post, path = "/tenants/{tenantId}/rollouts/{rolloutId}/actions/cancel", tag = "rollouts",
    params(RolloutPath),
    responses((status = 200, body = Rollout)),
    security(("apiKey" = ["operator"])))]
pub async fn rollout_cancel(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParams(p): PathParams<RolloutPath>,
) -> Result<Json<Rollout>> {
    Ok(Json(
        app.rollout_cancel(&ctx, &p.tenant_id, &p.rollout_id)
            .await?,
    ))
}
