//! Agent backups of an instance's data dir (an extension beside the
//! public API).

use crate::api::extract::{Ctx, JsonBody, PathParams, QueryParams};
use crate::api::page::{Listed, PageQuery};
use crate::api::path::{BackupPath, InstancePath};
use crate::app::App;
use crate::app::backups::CloneRequest;
use crate::error::Result;
use crate::model::backup::Backup;
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
        .routes(routes!(backup_list, backup_take))
        .routes(routes!(backup_get, backup_delete))
        .routes(routes!(backup_restore))
        .routes(routes!(backup_verify))
        .routes(routes!(backup_clone))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Why the backup is taken (kept with it).
    #[param(
        max_length = 1024,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    reason: Option<String>,
}

/// The instance's agent backups (in object storage), oldest first.
#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/backups", tag = "backups",
    params(InstancePath, PageQuery),
    responses((status = 200, body = Vec<Backup>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["viewer"])))]
pub async fn backup_list(
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Listed<Backup>> {
    Ok(Listed(
        app.backup_list(&p.tenant_id, &p.instance_id, &q.page()?)
            .await?,
    ))
}

/// Backs up the data dir to object storage (the node stopped meanwhile
/// unless `backupPolicy.consistency` is NONE); the future's result is the
/// backup.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups", tag = "backups",
    params(InstancePath, BackupQuery),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn backup_take(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<InstancePath>,
    QueryParams(q): QueryParams<BackupQuery>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.backup_take(&ctx, &p.tenant_id, &p.instance_id, q.reason.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}", tag = "backups",
    params(BackupPath),
    responses((status = 200, body = Backup)),
    security(("apiKey" = ["viewer"])))]
pub async fn backup_get(
    State(app): State<App>,
    PathParams(p): PathParams<BackupPath>,
) -> Result<Json<Backup>> {
    Ok(Json(
        app.backup_get(&p.tenant_id, &p.instance_id, &p.backup_id)
            .await?,
    ))
}

/// Deletes the backup's objects, then its record.
#[utoipa::path(delete, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}", tag = "backups",
    params(BackupPath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn backup_delete(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<BackupPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.backup_delete(&ctx, &p.tenant_id, &p.instance_id, &p.backup_id)
            .await?,
    ))
}

/// Replaces the instance's data dir with the backup: the node is stopped,
/// the backup extracted and checked file by file beside the current data
/// (which stays untouched if anything is wrong), swapped in, upgraded by
/// the kit if the backup is older, and started. A backup newer than the
/// instance's image is refused (409).
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/restore", tag = "backups",
    params(BackupPath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn backup_restore(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<BackupPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.backup_restore(&ctx, &p.tenant_id, &p.instance_id, &p.backup_id)
            .await?,
    ))
}

/// Restores the backup into a scratch dir on the instance, compares every
/// file with the manifest, removes the scratch dir; the outcome is kept as
/// the backup's `lastVerification`.
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/verify", tag = "backups",
    params(BackupPath),
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn backup_verify(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<BackupPath>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.backup_verify(&ctx, &p.tenant_id, &p.instance_id, &p.backup_id)
            .await?,
    ))
}

/// Creates a new instance with the source's settings and provisions it with
/// the backup restored into its data dir; the future's result names the
/// new instance (`instanceId`).
#[utoipa::path(post, path = "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/clone", tag = "backups",
    params(BackupPath),
    request_body = CloneRequest,
    responses((status = 200, body = FutureState)),
    security(("apiKey" = ["operator"])))]
pub async fn backup_clone(
    Ctx(ctx): Ctx,
    State(app): State<App>,
    PathParams(p): PathParams<BackupPath>,
    JsonBody(req): JsonBody<CloneRequest>,
) -> Result<Json<FutureState>> {
    Ok(Json(
        app.backup_clone(&ctx, &p.tenant_id, &p.instance_id, &p.backup_id, req)
            .await?,
    ))
}
