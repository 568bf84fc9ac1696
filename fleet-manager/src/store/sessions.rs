//! Data access for console sessions. A session is found by the hash of its
//! token, with its user, in one read; it ends when deleted, when its user's
//! other sessions are ended, or when it expires (pruned).

use super::entities::{session, user};
use crate::error::Result;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

pub async fn session_insert<C: ConnectionTrait>(c: &C, s: session::Model) -> Result<()> {
    session::ActiveModel {
        id_hash: Set(s.id_hash),
        user_id: Set(s.user_id),
        created_at: Set(s.created_at),
        last_seen_at: Set(s.last_seen_at),
        expires_at: Set(s.expires_at),
        source: Set(s.source),
    }
    .insert(c)
    .await?;
    Ok(())
}

/// A session and its user.
pub async fn session_with_user<C: ConnectionTrait>(
    c: &C,
    id_hash: &str,
) -> Result<Option<(session::Model, user::Model)>> {
    let Some(s) = session::Entity::find_by_id(id_hash.to_string())
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    let Some(u) = user::Entity::find_by_id(s.user_id.clone()).one(c).await? else {
        return Ok(None);
    };
    Ok(Some((s, u)))
}

/// Records that a session was used at `at`.
pub async fn session_touch<C: ConnectionTrait>(c: &C, id_hash: &str, at: i64) -> Result<()> {
    session::Entity::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(at))
        .filter(session::Column::IdHash.eq(id_hash))
        .exec(c)
        .await?;
    Ok(())
}

pub async fn session_delete<C: ConnectionTrait>(c: &C, id_hash: &str) -> Result<u64> {
    Ok(session::Entity::delete_by_id(id_hash.to_string())
        .exec(c)
        .await?
        .rows_affected)
}

/// Ends every session of a user but `keep`; how many.
pub async fn sessions_end_for_user<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    keep: Option<&str>,
) -> Result<u64> {
    let mut q = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(k) = keep {
        q = q.filter(session::Column::IdHash.ne(k));
    }
    Ok(q.exec(c).await?.rows_affected)
}

/// Deletes the sessions past their absolute end, or idle since before
/// `idle_before`; how many.
pub async fn sessions_prune<C: ConnectionTrait>(c: &C, now: i64, idle_before: i64) -> Result<u64> {
    Ok(session::Entity::delete_many()
        .filter(
            session::Column::ExpiresAt
                .lte(now)
                .or(session::Column::LastSeenAt.lt(idle_before)),
        )
        .exec(c)
        .await?
        .rows_affected)
}
