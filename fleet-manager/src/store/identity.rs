//! Data access for who acts: users, their API keys, and the audit log.
//! Every function takes any connection, so it runs alone or inside a
//! caller's transaction.

use super::entities::{api_key, audit, user};
use super::page::{Cursor, Order, Page, Paged, finish, keyset};
use crate::error::Result;
use crate::model::now_ms;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};

// ---- users

pub async fn user_insert<C: ConnectionTrait>(c: &C, u: user::Model) -> Result<()> {
    user::ActiveModel {
        id: Set(u.id),
        name: Set(u.name),
        role: Set(u.role),
        password_hash: Set(u.password_hash),
        must_change_password: Set(u.must_change_password),
        disabled: Set(u.disabled),
        created_at: Set(u.created_at),
        updated_at: Set(u.updated_at),
    }
    .insert(c)
    .await?;
    Ok(())
}

pub async fn user_by_name<C: ConnectionTrait>(c: &C, name: &str) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Name.eq(name))
        .one(c)
        .await?)
}

pub async fn user_list<C: ConnectionTrait>(c: &C) -> Result<Vec<user::Model>> {
    Ok(user::Entity::find()
        .order_by_asc(user::Column::CreatedAt)
        .order_by_asc(user::Column::Id)
        .all(c)
        .await?)
}

pub async fn user_count<C: ConnectionTrait>(c: &C) -> Result<u64> {
    Ok(user::Entity::find().count(c).await?)
}

/// What changes on a user; `None` leaves the column as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    pub role: Option<String>,
    pub disabled: Option<bool>,
    /// A new password hash and whether it must be changed at next login.
    pub password: Option<(String, bool)>,
}

/// Changes a user; whether the user exists.
pub async fn user_update<C: ConnectionTrait>(c: &C, id: &str, ch: UserChange) -> Result<bool> {
    let mut q = user::Entity::update_many()
        .col_expr(user::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(user::Column::Id.eq(id));
    if let Some(r) = ch.role {
        q = q.col_expr(user::Column::Role, Expr::value(r));
    }
    if let Some(d) = ch.disabled {
        q = q.col_expr(user::Column::Disabled, Expr::value(d));
    }
    if let Some((hash, must_change)) = ch.password {
        q = q
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .col_expr(user::Column::MustChangePassword, Expr::value(must_change));
    }
    Ok(q.exec(c).await?.rows_affected > 0)
}

// ---- API keys

/// A new key's row.
#[derive(Debug)]
pub struct NewKey {
    pub id: String,
    pub secret_hash: String,
    pub label: Option<String>,
    pub user_id: String,
    pub role: Option<String>,
    pub expires_at: Option<i64>,
}

pub async fn api_key_insert<C: ConnectionTrait>(c: &C, k: NewKey) -> Result<()> {
    api_key::ActiveModel {
        id: Set(k.id),
        secret_hash: Set(k.secret_hash),
        label: Set(k.label),
        created_at: Set(now_ms()),
        user_id: Set(Some(k.user_id)),
        role: Set(k.role),
        expires_at: Set(k.expires_at),
        last_used_at: Set(None),
    }
    .insert(c)
    .await?;
    Ok(())
}

pub async fn api_key_get<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<api_key::Model>> {
    Ok(api_key::Entity::find_by_id(id.to_string()).one(c).await?)
}

/// A key and the user it acts as, in one read.
pub async fn api_key_with_user<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<(api_key::Model, Option<user::Model>)>> {
    let Some(k) = api_key_get(c, id).await? else {
        return Ok(None);
    };
    let u = match &k.user_id {
        Some(uid) => user::Entity::find_by_id(uid.clone()).one(c).await?,
        None => None,
    };
    Ok(Some((k, u)))
}

pub async fn api_key_list<C: ConnectionTrait>(c: &C) -> Result<Vec<api_key::Model>> {
    Ok(api_key::Entity::find()
        .order_by_asc(api_key::Column::CreatedAt)
        .order_by_asc(api_key::Column::Id)
        .all(c)
        .await?)
}

pub async fn api_key_delete<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64> {
    Ok(api_key::Entity::delete_by_id(id.to_string())
        .exec(c)
        .await?
        .rows_affected)
}

/// Makes the keys that belong to no user (made before users existed) keys
/// of `user_id`; how many.
pub async fn api_keys_adopt<C: ConnectionTrait>(c: &C, user_id: &str) -> Result<u64> {
    Ok(api_key::Entity::update_many()
        .col_expr(api_key::Column::UserId, Expr::value(user_id))
        .filter(api_key::Column::UserId.is_null())
        .exec(c)
        .await?
        .rows_affected)
}

/// Records that a key was used at `at`.
pub async fn api_key_touch<C: ConnectionTrait>(c: &C, id: &str, at: i64) -> Result<()> {
    api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, Expr::value(at))
        .filter(api_key::Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

// ---- the audit log

/// Writes an audit row as the request starts (outcome `started`), or one
/// already complete (a refused request).
pub async fn audit_insert<C: ConnectionTrait>(c: &C, row: audit::Model) -> Result<()> {
    audit::ActiveModel {
        id: Set(row.id),
        at: Set(row.at),
        tenant_id: Set(row.tenant_id),
        actor: Set(row.actor),
        key_id: Set(row.key_id),
        role: Set(row.role),
        source: Set(row.source),
        method: Set(row.method),
        path: Set(row.path),
        object: Set(row.object),
        outcome: Set(row.outcome),
        status: Set(row.status),
        error: Set(row.error),
        duration_ms: Set(row.duration_ms),
        operation_id: Set(row.operation_id),
        request_id: Set(row.request_id),
    }
    .insert(c)
    .await?;
    Ok(())
}

/// How a request ended.
#[derive(Debug)]
pub struct AuditEnd {
    pub outcome: &'static str,
    pub status: i32,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub operation_id: Option<String>,
}

/// Completes a `started` row; a complete row never changes again.
pub async fn audit_complete<C: ConnectionTrait>(c: &C, id: &str, end: AuditEnd) -> Result<()> {
    audit::Entity::update_many()
        .col_expr(audit::Column::Outcome, Expr::value(end.outcome))
        .col_expr(audit::Column::Status, Expr::value(end.status))
        .col_expr(audit::Column::Error, Expr::value(end.error))
        .col_expr(audit::Column::DurationMs, Expr::value(end.duration_ms))
        .col_expr(audit::Column::OperationId, Expr::value(end.operation_id))
        .filter(audit::Column::Id.eq(id))
        .filter(audit::Column::Outcome.eq("started"))
        .exec(c)
        .await?;
    Ok(())
}

/// Which audit rows to list.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub actor: Option<String>,
}

/// A page of audit rows, newest first.
pub async fn audit_list<C: ConnectionTrait>(
    c: &C,
    f: &AuditFilter,
    page: &Page,
) -> Result<Paged<audit::Model>> {
    let mut q = audit::Entity::find();
    if let Some(t) = &f.tenant {
        // Rows of requests that named no tenant (refused before routing)
        // belong to every tenant's log.
        q = q.filter(
            sea_orm::Condition::any()
                .add(audit::Column::TenantId.eq(t.as_str()))
                .add(audit::Column::TenantId.is_null()),
        );
    }
    if let Some(s) = f.since {
        q = q.filter(audit::Column::At.gte(s));
    }
    if let Some(u) = f.until {
        q = q.filter(audit::Column::At.lt(u));
    }
    if let Some(a) = &f.actor {
        q = q.filter(audit::Column::Actor.eq(a.as_str()));
    }
    let rows = keyset(q, audit::Column::At, audit::Column::Id, Order::Desc, page)
        .all(c)
        .await?;
    Ok(finish(rows, page, |r| Cursor {
        key: r.at,
        id: r.id.clone(),
    }))
}

/// Deletes the complete rows older than `before`; how many.
pub async fn audit_prune<C: ConnectionTrait>(c: &C, before: i64) -> Result<u64> {
    Ok(audit::Entity::delete_many()
        .filter(audit::Column::At.lt(before))
        .filter(audit::Column::Outcome.ne("started"))
        .exec(c)
        .await?
        .rows_affected)
}
