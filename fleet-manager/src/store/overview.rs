//! Read models of the whole fleet for the console: instances with their
//! provisioning state in one paged read, and counts that stay one query
//! each at any fleet size.

use super::entities::{instance, instance_runtime, operation};
use super::page::{Cursor, Order, Page, Paged, finish, keyset};
use crate::error::Result;
use sea_orm::sea_query::{Expr, Func, JoinType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
};

/// An instance as the console lists it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct InstanceRow {
    pub id: String,
    pub label: String,
    pub template_id: String,
    pub network_id: String,
    pub image_id: String,
    pub created_at: i64,
    /// Provisioning state; none before the first provisioning.
    pub state: Option<String>,
    pub public_url: Option<String>,
    pub node_state: Option<String>,
    pub last_heartbeat_at: Option<i64>,
}

fn runtime_join() -> sea_orm::RelationDef {
    instance::Entity::belongs_to(instance_runtime::Entity)
        .from(instance::Column::Id)
        .to(instance_runtime::Column::InstanceId)
        .into()
}

/// What the instance list is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Provisioning state (`none` for never provisioned).
    pub state: Option<String>,
    /// Part of the label or the id.
    pub text: Option<String>,
}

/// A page of the tenant's instances with their state, oldest first.
pub async fn instance_rows<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    filter: &InstanceFilter,
    page: &Page,
) -> Result<Paged<InstanceRow>> {
    let mut q = instance::Entity::find()
        .select_only()
        .columns([
            instance::Column::Id,
            instance::Column::Label,
            instance::Column::TemplateId,
            instance::Column::NetworkId,
            instance::Column::ImageId,
            instance::Column::CreatedAt,
        ])
        .column_as(instance_runtime::Column::State, "state")
        .column_as(instance_runtime::Column::PublicUrl, "public_url")
        .column_as(instance_runtime::Column::NodeState, "node_state")
        .column_as(
            instance_runtime::Column::LastHeartbeatAt,
            "last_heartbeat_at",
        )
        .join(JoinType::LeftJoin, runtime_join())
        .filter(instance::Column::TenantId.eq(tenant));
    match filter.state.as_deref() {
        Some("none") => {
            q = q.filter(
                Condition::any()
                    .add(instance_runtime::Column::State.is_null())
                    .add(instance_runtime::Column::State.eq("none")),
            )
        }
        Some(s) => q = q.filter(instance_runtime::Column::State.eq(s)),
        None => {}
    }
    if let Some(t) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        // The backends escape differently, so a wildcard (or an escape)
        // in the text stands for any one character, which matches itself.
        // Case-insensitive on both.
        let t: String = t
            .chars()
            .map(|c| {
                if matches!(c, '%' | '_' | '\\') {
                    '_'
                } else {
                    c
                }
            })
            .flat_map(char::to_lowercase)
            .collect();
        let like = format!("%{t}%");
        let lower = |col| Expr::expr(Func::lower(Expr::col((instance::Entity, col))));
        q = q.filter(
            Condition::any()
                .add(lower(instance::Column::Label).like(like.clone()))
                .add(lower(instance::Column::Id).like(like)),
        );
    }
    let rows = keyset(
        q,
        instance::Column::CreatedAt,
        instance::Column::Id,
        Order::Asc,
        page,
    )
    .into_model::<InstanceRow>()
    .all(c)
    .await?;
    Ok(finish(rows, page, |r| Cursor {
        key: r.created_at,
        id: r.id.clone(),
    }))
}

#[derive(Debug, FromQueryResult)]
struct Count {
    key: Option<String>,
    n: i64,
}

/// How many of the tenant's instances are in each provisioning state
/// (`none` for never provisioned).
pub async fn instance_state_counts<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
) -> Result<Vec<(String, u64)>> {
    let rows = instance::Entity::find()
        .select_only()
        .column_as(instance_runtime::Column::State, "key")
        .column_as(instance::Column::Id.count(), "n")
        .join(JoinType::LeftJoin, runtime_join())
        .filter(instance::Column::TenantId.eq(tenant))
        .group_by(instance_runtime::Column::State)
        .into_model::<Count>()
        .all(c)
        .await?;
    let mut out: Vec<(String, u64)> = Vec::new();
    for r in rows {
        let k = r.key.unwrap_or_else(|| "none".into());
        match out.iter_mut().find(|(s, _)| *s == k) {
            Some((_, n)) => *n += r.n as u64,
            None => out.push((k, r.n as u64)),
        }
    }
    out.sort();
    Ok(out)
}

/// The heartbeats of the tenant's running instances: (id, label, when,
/// the heartbeat's JSON).
pub async fn running_heartbeats<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
) -> Result<Vec<(String, Option<i64>, Option<String>)>> {
    Ok(instance_runtime::Entity::find()
        .select_only()
        .columns([
            instance_runtime::Column::InstanceId,
            instance_runtime::Column::LastHeartbeatAt,
            instance_runtime::Column::Heartbeat,
        ])
        .filter(instance_runtime::Column::TenantId.eq(tenant))
        .filter(instance_runtime::Column::State.eq("running"))
        .into_tuple()
        .all(c)
        .await?)
}

/// How many of the tenant's operations are in each state.
pub async fn operation_state_counts<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
) -> Result<Vec<(String, u64)>> {
    let rows = operation::Entity::find()
        .select_only()
        .column_as(operation::Column::State, "key")
        .column_as(operation::Column::Id.count(), "n")
        .filter(operation::Column::TenantId.eq(tenant))
        .group_by(operation::Column::State)
        .into_model::<Count>()
        .all(c)
        .await?;
    let mut out: Vec<(String, u64)> = rows
        .into_iter()
        .map(|r| (r.key.unwrap_or_default(), r.n as u64))
        .collect();
    out.sort();
    Ok(out)
}

/// The tenant's operations on one object, newest first.
pub async fn operations_of<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    target: &str,
    page: &Page,
) -> Result<Paged<operation::Model>> {
    let q = operation::Entity::find()
        .filter(operation::Column::TenantId.eq(tenant))
        .filter(operation::Column::TargetId.eq(target));
    let rows = keyset(
        q,
        operation::Column::CreatedAt,
        operation::Column::Id,
        Order::Desc,
        page,
    )
    .all(c)
    .await?;
    Ok(finish(rows, page, |m| Cursor {
        key: m.created_at,
        id: m.id.clone(),
    }))
}
