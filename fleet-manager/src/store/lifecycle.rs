//! Data access for the instance lifecycle: runtimes (VM, volume, agent
//! reports) and their named transitions, enrollment tokens, snapshots and
//! the backup catalogue.

use super::Store;
use super::entities::{backup, enrollment_token, instance_runtime, snapshot};
use super::page::{Cursor, Order, Page, Paged, finish, keyset};
use crate::error::Result;
use crate::model::now_ms;
use crate::model::state::{NodeState, RuntimeState};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

pub async fn runtime_get<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
) -> Result<Option<instance_runtime::Model>> {
    Ok(
        instance_runtime::Entity::find_by_id(instance_id.to_string())
            .one(c)
            .await?,
    )
}

/// The runtime row of an instance, made (state `none`) if missing.
pub async fn runtime_ensure<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    instance_id: &str,
) -> Result<instance_runtime::Model> {
    instance_runtime::Entity::insert(instance_runtime::ActiveModel {
        instance_id: Set(instance_id.to_string()),
        tenant_id: Set(tenant.to_string()),
        state: Set(RuntimeState::None.as_str().into()),
        vm_id: Set(None),
        volume_id: Set(None),
        port: Set(None),
        public_url: Set(None),
        node_version: Set(None),
        initial_password: Set(None),
        initial_password_taken: Set(false),
        admin_api_key: Set(None),
        agent_generation: Set(0),
        agent_version: Set(None),
        node_state: Set(None),
        last_heartbeat_at: Set(None),
        heartbeat: Set(None),
        updated_at: Set(now_ms()),
    })
    .on_conflict(
        OnConflict::column(instance_runtime::Column::InstanceId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    runtime_get(c, instance_id)
        .await?
        .ok_or_else(|| crate::error::Error::internal("runtime row vanished"))
}

/// Sets columns of a runtime row.
pub async fn runtime_set<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    sets: Vec<(instance_runtime::Column, sea_orm::Value)>,
) -> Result<()> {
    let mut q = instance_runtime::Entity::update_many()
        .col_expr(instance_runtime::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(instance_runtime::Column::InstanceId.eq(instance_id));
    for (col, v) in sets {
        q = q.col_expr(col, Expr::value(v));
    }
    q.exec(c).await?;
    Ok(())
}

pub async fn runtime_delete<C: ConnectionTrait>(c: &C, instance_id: &str) -> Result<()> {
    instance_runtime::Entity::delete_by_id(instance_id.to_string())
        .exec(c)
        .await?;
    Ok(())
}

/// The ports already given to instances.
pub async fn runtime_ports<C: ConnectionTrait>(c: &C) -> Result<Vec<i32>> {
    Ok(instance_runtime::Entity::find()
        .select_only()
        .column(instance_runtime::Column::Port)
        .filter(instance_runtime::Column::Port.is_not_null())
        .into_tuple::<Option<i32>>()
        .all(c)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

impl Store {
    /// Applies an agent heartbeat if its generation is newer than the last
    /// one applied; returns whether it was applied.
    pub async fn runtime_heartbeat(
        &self,
        instance_id: &str,
        vm_id: &str,
        generation: i64,
        hb: &fm_proto::agent::Heartbeat,
    ) -> Result<bool> {
        let node_state = fm_proto::agent::NodeState::try_from(hb.node_state)
            .map(NodeState::from_proto)
            .unwrap_or(NodeState::Unknown)
            .as_str();
        let detail = serde_json::json!({
            "nodeVersion": hb.node_version,
            "dataDiskUsedBytes": hb.data_disk_used_bytes,
            "dataDiskTotalBytes": hb.data_disk_total_bytes,
            "osDiskUsedBytes": hb.os_disk_used_bytes,
            "osDiskTotalBytes": hb.os_disk_total_bytes,
            "memoryUsedBytes": hb.memory_used_bytes,
            "memoryTotalBytes": hb.memory_total_bytes,
            "cpuLoad": hb.cpu_load,
        });
        let res = instance_runtime::Entity::update_many()
            .col_expr(
                instance_runtime::Column::AgentGeneration,
                Expr::value(generation),
            )
            .col_expr(
                instance_runtime::Column::AgentVersion,
                Expr::value(hb.agent_version.clone()),
            )
            .col_expr(instance_runtime::Column::NodeState, Expr::value(node_state))
            .col_expr(
                instance_runtime::Column::LastHeartbeatAt,
                Expr::value(now_ms()),
            )
            .col_expr(
                instance_runtime::Column::Heartbeat,
                Expr::value(detail.to_string()),
            )
            .filter(instance_runtime::Column::InstanceId.eq(instance_id))
            .filter(instance_runtime::Column::VmId.eq(vm_id))
            .filter(instance_runtime::Column::AgentGeneration.lt(generation))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Stores an enrollment token (its hash); the same token again is a
    /// no-op.
    pub async fn token_insert(
        &self,
        token_hash: &str,
        instance_id: &str,
        vm_id: &str,
        ttl_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        enrollment_token::Entity::insert(enrollment_token::ActiveModel {
            token_hash: Set(token_hash.to_string()),
            instance_id: Set(instance_id.to_string()),
            vm_id: Set(vm_id.to_string()),
            expires_at: Set(now + ttl_ms),
            used_at: Set(None),
            created_at: Set(now),
            public_key_sha256: Set(None),
        })
        // Issued already by an earlier run of the same step: kept as it is
        // (used or not, with its first expiry).
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(enrollment_token::Column::TokenHash)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Uses a token for `instance_id` and the key `public_key_sha256`: valid
    /// while unexpired and either unused or used before with the same key
    /// (an agent whose answer was lost asks again). Returns the VM the token
    /// was issued for when accepted. Also resets the agent's generation: a
    /// new VM's agent counts from the start again.
    /// Whether `token_hash` is a token FM issued for `instance_id` (used or
    /// expired now, or not).
    pub async fn token_issued(&self, token_hash: &str, instance_id: &str) -> Result<bool> {
        Ok(enrollment_token::Entity::find_by_id(token_hash.to_string())
            .filter(enrollment_token::Column::InstanceId.eq(instance_id))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// The VM and tenant of `token_hash` while it can still enroll an agent
    /// for `instance_id`: unexpired, and unused or used by the key
    /// `public_key_sha256` (an agent retrying).
    pub async fn token_target(
        &self,
        token_hash: &str,
        instance_id: &str,
        public_key_sha256: &str,
    ) -> Result<Option<(String, String)>> {
        let Some(t) = enrollment_token::Entity::find_by_id(token_hash.to_string())
            .filter(enrollment_token::Column::InstanceId.eq(instance_id))
            .filter(enrollment_token::Column::ExpiresAt.gt(now_ms()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if t.used_at.is_some() && t.public_key_sha256.as_deref() != Some(public_key_sha256) {
            return Ok(None);
        }
        // No runtime row: an empty tenant, which no placement matches.
        let tenant = runtime_get(&self.db, instance_id)
            .await?
            .map(|r| r.tenant_id)
            .unwrap_or_default();
        Ok(Some((t.vm_id, tenant)))
    }

    pub async fn token_consume(
        &self,
        token_hash: &str,
        instance_id: &str,
        public_key_sha256: &str,
    ) -> Result<Option<String>> {
        use sea_orm::Condition;
        let now = now_ms();
        let (token_hash, instance_id, key) = (
            token_hash.to_string(),
            instance_id.to_string(),
            public_key_sha256.to_string(),
        );
        self.transaction(move |txn| {
            Box::pin(async move {
                let public_key_sha256 = key.as_str();
                let (token_hash, instance_id) = (token_hash.as_str(), instance_id.as_str());
                let res = enrollment_token::Entity::update_many()
                    .col_expr(enrollment_token::Column::UsedAt, Expr::value(now))
                    .col_expr(
                        enrollment_token::Column::PublicKeySha256,
                        Expr::value(public_key_sha256),
                    )
                    .filter(enrollment_token::Column::TokenHash.eq(token_hash))
                    .filter(enrollment_token::Column::InstanceId.eq(instance_id))
                    .filter(
                        Condition::any()
                            .add(enrollment_token::Column::UsedAt.is_null())
                            .add(enrollment_token::Column::PublicKeySha256.eq(public_key_sha256)),
                    )
                    .filter(enrollment_token::Column::ExpiresAt.gt(now))
                    .exec(txn)
                    .await?;
                if res.rows_affected != 1 {
                    return Ok(None);
                }
                let vm = enrollment_token::Entity::find_by_id(token_hash.to_string())
                    .one(txn)
                    .await?
                    .map(|t| t.vm_id);
                runtime_set(
                    txn,
                    instance_id,
                    vec![(instance_runtime::Column::AgentGeneration, 0i64.into())],
                )
                .await?;
                Ok(vm)
            })
        })
        .await
    }
}

pub async fn snapshot_list<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
) -> Result<Vec<snapshot::Model>> {
    Ok(snapshot::Entity::find()
        .filter(snapshot::Column::InstanceId.eq(instance_id))
        .order_by_asc(snapshot::Column::CreatedAt)
        .all(c)
        .await?)
}

/// A page of the instance's snapshots, oldest first (then by id).
pub async fn snapshot_page<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    page: &Page,
) -> Result<Paged<snapshot::Model>> {
    let query = snapshot::Entity::find().filter(snapshot::Column::InstanceId.eq(instance_id));
    let rows = keyset(
        query,
        snapshot::Column::CreatedAt,
        snapshot::Column::Id,
        Order::Asc,
        page,
    )
    .all(c)
    .await?;
    Ok(finish(rows, page, |m| Cursor {
        key: m.created_at,
        id: m.id.clone(),
    }))
}

pub async fn snapshot_get<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    id: &str,
) -> Result<Option<snapshot::Model>> {
    Ok(snapshot::Entity::find_by_id(id.to_string())
        .filter(snapshot::Column::InstanceId.eq(instance_id))
        .one(c)
        .await?)
}

/// The snapshot recorded for cloud snapshot `cloud_ref`, if any.
pub async fn snapshot_find_by_cloud_ref<C: ConnectionTrait>(
    c: &C,
    cloud_ref: &str,
) -> Result<Option<snapshot::Model>> {
    Ok(snapshot::Entity::find()
        .filter(snapshot::Column::CloudRef.eq(cloud_ref))
        .one(c)
        .await?)
}

pub async fn snapshot_delete<C: ConnectionTrait>(c: &C, id: &str) -> Result<()> {
    snapshot::Entity::delete_by_id(id.to_string())
        .exec(c)
        .await?;
    Ok(())
}

pub async fn backup_list<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
) -> Result<Vec<backup::Model>> {
    Ok(backup::Entity::find()
        .filter(backup::Column::InstanceId.eq(instance_id))
        .order_by_asc(backup::Column::CreatedAt)
        .all(c)
        .await?)
}

/// A page of the instance's backups, oldest first (then by id).
pub async fn backup_page<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    page: &Page,
) -> Result<Paged<backup::Model>> {
    let query = backup::Entity::find().filter(backup::Column::InstanceId.eq(instance_id));
    let rows = keyset(
        query,
        backup::Column::CreatedAt,
        backup::Column::Id,
        Order::Asc,
        page,
    )
    .all(c)
    .await?;
    Ok(finish(rows, page, |m| Cursor {
        key: m.created_at,
        id: m.id.clone(),
    }))
}

pub async fn backup_get<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    id: &str,
) -> Result<Option<backup::Model>> {
    Ok(backup::Entity::find_by_id(id.to_string())
        .filter(backup::Column::InstanceId.eq(instance_id))
        .one(c)
        .await?)
}

pub async fn backup_delete<C: ConnectionTrait>(c: &C, id: &str) -> Result<()> {
    backup::Entity::delete_by_id(id.to_string()).exec(c).await?;
    Ok(())
}

pub async fn snapshot_insert<C: ConnectionTrait>(c: &C, s: snapshot::Model) -> Result<()> {
    snapshot::Entity::insert(snapshot::ActiveModel::from(s))
        .exec_without_returning(c)
        .await?;
    Ok(())
}

pub async fn backup_insert<C: ConnectionTrait>(c: &C, b: backup::Model) -> Result<()> {
    backup::Entity::insert(backup::ActiveModel::from(b))
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// Records a verification of backup `id` (`failure` is `None` when it
/// passed) and returns the backup as it is then.
pub async fn backup_set_verified<C: ConnectionTrait>(
    c: &C,
    id: &str,
    at: i64,
    failure: Option<String>,
) -> Result<backup::Model> {
    backup::Entity::update_many()
        .col_expr(backup::Column::VerifiedAt, Expr::value(Some(at)))
        .col_expr(
            backup::Column::VerifyOk,
            Expr::value(Some(failure.is_none())),
        )
        .col_expr(backup::Column::VerifyMessage, Expr::value(failure))
        .filter(backup::Column::Id.eq(id))
        .exec(c)
        .await?;
    backup::Entity::find_by_id(id.to_string())
        .one(c)
        .await?
        .ok_or_else(|| crate::error::Error::not_found("backup", id))
}

// ---- named transitions of a runtime row

/// The provisioning has started: no VM yet.
pub async fn runtime_mark_provisioning<C: ConnectionTrait>(c: &C, instance_id: &str) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![
            (
                instance_runtime::Column::VmId,
                Option::<String>::None.into(),
            ),
            (
                instance_runtime::Column::State,
                RuntimeState::Provisioning.as_str().into(),
            ),
        ],
    )
    .await
}

/// The node runs; at `url` when given.
pub async fn runtime_mark_running<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    url: Option<&str>,
) -> Result<()> {
    let mut sets = vec![(
        instance_runtime::Column::State,
        RuntimeState::Running.as_str().into(),
    )];
    if let Some(u) = url {
        sets.push((
            instance_runtime::Column::PublicUrl,
            Some(u.to_string()).into(),
        ));
    }
    runtime_set(c, instance_id, sets).await
}

/// The VM is gone; the data volume stays.
pub async fn runtime_mark_deprovisioned<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![
            (
                instance_runtime::Column::VmId,
                Option::<String>::None.into(),
            ),
            (
                instance_runtime::Column::State,
                RuntimeState::Deprovisioned.as_str().into(),
            ),
            (
                instance_runtime::Column::PublicUrl,
                Option::<String>::None.into(),
            ),
        ],
    )
    .await
}

pub async fn runtime_set_state<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    state: RuntimeState,
) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![(instance_runtime::Column::State, state.as_str().into())],
    )
    .await
}

/// Names the instance's VM and data volume (only that VM's agent is let in).
pub async fn runtime_set_vm<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    vm_id: Option<&str>,
    volume_id: &str,
) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![
            (
                instance_runtime::Column::VmId,
                vm_id.map(str::to_string).into(),
            ),
            (
                instance_runtime::Column::VolumeId,
                Some(volume_id.to_string()).into(),
            ),
        ],
    )
    .await
}

/// The instance has no VM (and so no address).
pub async fn runtime_clear_vm<C: ConnectionTrait>(c: &C, instance_id: &str) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![
            (
                instance_runtime::Column::VmId,
                Option::<String>::None.into(),
            ),
            (
                instance_runtime::Column::PublicUrl,
                Option::<String>::None.into(),
            ),
        ],
    )
    .await
}

pub async fn runtime_set_volume<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    volume_id: Option<&str>,
) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![(
            instance_runtime::Column::VolumeId,
            volume_id.map(str::to_string).into(),
        )],
    )
    .await
}

/// Gives the instance a port block (a unique index refuses one already
/// given: `Conflict`), or takes it back.
pub async fn runtime_set_port<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    port: Option<u16>,
) -> Result<()> {
    runtime_set(
        c,
        instance_id,
        vec![(instance_runtime::Column::Port, port.map(i32::from).into())],
    )
    .await
}

/// The node of version `version` is installed; the sealed admin key and
/// initial password it answered with are kept when given.
pub async fn runtime_mark_installed<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
    version: &str,
    admin_api_key_sealed: Option<String>,
    initial_password_sealed: Option<String>,
) -> Result<()> {
    let mut sets = vec![(
        instance_runtime::Column::NodeVersion,
        Some(version.to_string()).into(),
    )];
    if let Some(k) = admin_api_key_sealed {
        sets.push((instance_runtime::Column::AdminApiKey, Some(k).into()));
    }
    if let Some(p) = initial_password_sealed {
        sets.push((instance_runtime::Column::InitialPassword, Some(p).into()));
    }
    runtime_set(c, instance_id, sets).await
}

/// Marks the initial password as given out; false if it already was (it is
/// given only once).
pub async fn runtime_take_initial_password<C: ConnectionTrait>(
    c: &C,
    instance_id: &str,
) -> Result<bool> {
    let res = instance_runtime::Entity::update_many()
        .col_expr(
            instance_runtime::Column::InitialPasswordTaken,
            Expr::value(true),
        )
        .filter(instance_runtime::Column::InstanceId.eq(instance_id))
        .filter(instance_runtime::Column::InitialPasswordTaken.eq(false))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Runtimes recorded as running with a VM, in no particular order.
pub async fn runtime_list_running<C: ConnectionTrait>(
    c: &C,
) -> Result<Vec<instance_runtime::Model>> {
    Ok(instance_runtime::Entity::find()
        .filter(instance_runtime::Column::State.eq(RuntimeState::Running.as_str()))
        .filter(instance_runtime::Column::VmId.is_not_null())
        .all(c)
        .await?)
}

/// Runtimes of instances that have a VM.
pub async fn runtime_list_with_vm<C: ConnectionTrait>(
    c: &C,
) -> Result<Vec<instance_runtime::Model>> {
    Ok(instance_runtime::Entity::find()
        .filter(instance_runtime::Column::VmId.is_not_null())
        .order_by_asc(instance_runtime::Column::InstanceId)
        .all(c)
        .await?)
}

/// Runtimes of instances that have a data volume.
pub async fn runtime_list_with_volume<C: ConnectionTrait>(
    c: &C,
) -> Result<Vec<instance_runtime::Model>> {
    Ok(instance_runtime::Entity::find()
        .filter(instance_runtime::Column::VolumeId.is_not_null())
        .order_by_asc(instance_runtime::Column::InstanceId)
        .all(c)
        .await?)
}

/// The runtimes of these instances (those that have one), in no order.
pub async fn runtimes_of<C: ConnectionTrait>(
    c: &C,
    instance_ids: &[String],
) -> Result<Vec<instance_runtime::Model>> {
    let mut out = Vec::with_capacity(instance_ids.len());
    // Chunks keep each statement under the backends' parameter limits.
    for chunk in instance_ids.chunks(500) {
        out.extend(
            instance_runtime::Entity::find()
                .filter(instance_runtime::Column::InstanceId.is_in(chunk.iter().cloned()))
                .all(c)
                .await?,
        );
    }
    Ok(out)
}
