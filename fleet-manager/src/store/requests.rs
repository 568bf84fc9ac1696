//! Client request ids (AIP-155). A create that carries one records it in
//! its own transaction with the id of the object it made; a retry finds
//! the record and answers that object. Records older than a day are
//! forgotten.

use super::entities::request_id;
use crate::error::Result;
use crate::model::now_ms;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

/// How long a request id is remembered.
pub const KEEP_MS: i64 = 24 * 3600 * 1000;

/// The record of an earlier request with this id, if one is remembered.
pub async fn request_find<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    request_id: &str,
) -> Result<Option<request_id::Model>> {
    Ok(
        request_id::Entity::find_by_id((tenant.to_string(), request_id.to_string()))
            .filter(request_id::Column::CreatedAt.gt(now_ms() - KEEP_MS))
            .one(c)
            .await?,
    )
}

/// Records the request as the one that makes `object_id`; false when
/// another request with the same id got there first (the caller's
/// transaction must then be rolled back). Forgets expired records first.
pub async fn request_claim<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    request_id: &str,
    method: &str,
    fingerprint: &str,
    object_id: &str,
) -> Result<bool> {
    let now = now_ms();
    request_id::Entity::delete_many()
        .filter(request_id::Column::CreatedAt.lte(now - KEEP_MS))
        .exec(c)
        .await?;
    let inserted = request_id::Entity::insert(request_id::ActiveModel {
        tenant_id: Set(tenant.to_string()),
        request_id: Set(request_id.to_string()),
        method: Set(method.to_string()),
        fingerprint: Set(fingerprint.to_string()),
        object_id: Set(object_id.to_string()),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([request_id::Column::TenantId, request_id::Column::RequestId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(inserted == 1)
}
