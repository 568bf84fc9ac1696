//! Futures: the operations FM runs, as the public client polls them.

use crate::api::error::ApiErrorBody;
use crate::api::extract::{PathParams, QueryParams, flag};
use crate::api::page::{Listed, page};
use crate::api::path::{FuturePath, TenantPath};
use crate::app::App;
use crate::error::Result;
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
        .routes(routes!(future_list))
        .routes(routes!(future_get, future_abort))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FutureQuery {
    /// `true`: return the state whatever it is. `false` (default): a failed
    /// or aborted future answers with its error (409).
    #[param(schema_with = crate::api::extract::flag_schema)]
    peek: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FutureListQuery {
    /// At most this many futures (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `Next-Page-Token` of the previous page: this page starts after it.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    page_token: Option<String>,
}

/// The futures, newest first: the most recent 50 unless `limit` says
/// otherwise; the `Next-Page-Token` header names the next (older) page.
#[utoipa::path(get, path = "/tenants/{tenantId}/futures", tag = "futures",
    params(TenantPath, FutureListQuery),
    responses((status = 200, body = Vec<FutureState>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn future_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<FutureListQuery>,
) -> Result<Listed<FutureState>> {
    let page = page(q.limit, q.page_token.as_deref(), 50, 500)?;
    Ok(Listed(app.future_list(&p.tenant_id, &page).await?))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/futures/{jobId}", tag = "futures",
    params(FuturePath, FutureQuery),
    responses((status = 200, body = FutureState), (status = 409, body = ApiErrorBody, description = "the future failed or was aborted (without peek)")),
    security(("apiKey" = ["viewer"])))]
pub async fn future_get(
    State(app): State<App>,
    PathParams(p): PathParams<FuturePath>,
    QueryParams(q): QueryParams<FutureQuery>,
) -> Result<Json<FutureState>> {
    let peek = flag("peek", q.peek.as_deref())?;
    Ok(Json(app.future_get(&p.tenant_id, &p.job_id, peek).await?))
}

/// Aborts the future: at once if not started, between steps otherwise.
#[utoipa::path(delete, path = "/tenants/{tenantId}/futures/{jobId}", tag = "futures",
    params(FuturePath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn future_abort(
    State(app): State<App>,
    PathParams(p): PathParams<FuturePath>,
) -> Result<Json<FutureState>> {
    Ok(Json(app.future_abort(&p.tenant_id, &p.job_id).await?))
}
