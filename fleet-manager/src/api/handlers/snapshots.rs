//! Snapshots of an instance's data volume.

use crate::api::extract::{Ctx, PathParams, QueryParams};
use crate::api::page::{Listed, PageQuery};
use crate::api::path::{InstancePath, SnapshotPath};
use crate::app::App;
use crate::error::Result;
use crate::model::operation::FutureState;
use crate::model::snapshot::Snapshot;
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
        .routes(routes!(snapshot_list, snapshot_create))
        .routes(routes!(snapshot_get, snapshot_delete))
        .routes(routes!(snapshot_reprovision))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// Why the snapshot is taken (kept with it).
    #[param(
        max_length = 1024,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    reason_for_snapshot: Option<String>,
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots", tag = "snapshots",
    params(InstancePath, PageQuery),
    responses((status = 200, body = Vec<Snapshot>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn snapshot_list(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Listed<Snapshot>> {
    Ok(Listed(
        app.snapshot_list(&p.tenant_id, &p.instance_id, &q.page()?)
            .await?,
    ))
}

/// Snapshots the data volume; answers with the snapshot.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots", tag = "snapshots",
    params(InstancePath, SnapshotQuery),
    responses((status = 200, body = Snapshot)),
    security(("apiKey" = ["operator"])))]
pub async fn snapshot_create(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    QueryParams(q): QueryParams<SnapshotQuery>,
) -> Result<Json<Snapshot>> {
    Ok(Json(
        app.snapshot_create(
            &ctx,
            &p.tenant_id,
            &p.instance_id,
            q.reason_for_snapshot.as_deref(),
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}", tag = "snapshots",
    params(SnapshotPath),
    responses((status = 200, body = Snapshot)),
    security(("apiKey" = ["viewer"])))]
pub async fn snapshot_get(
    State(app): State<App>,
    PathParams(p): PathParams<SnapshotPath>,
) -> Result<Json<Snapshot>> {
    Ok(Json(
        app.snapshot_get(&p.tenant_id, &p.instance_id, &p.snapshot_id)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}", tag = "snapshots",
    params(SnapshotPath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn snapshot_delete(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<SnapshotPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.snapshot_delete(&ctx, &p.tenant_id, &p.instance_id, &p.snapshot_id)
            .await?,
    ))
}

/// Reprovisions the instance with its data volume made from this snapshot;
/// the current volume is deleted once the node is healthy on the new one.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}/reprovision", tag = "snapshots",
    params(SnapshotPath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn snapshot_reprovision(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<SnapshotPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.instance_reprovision(
            &ctx,
            &p.tenant_id,
            &p.instance_id,
            false,
            Some(&p.snapshot_id),
        )
        .await?,
    ))
}
