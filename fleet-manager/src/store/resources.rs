//! Data access for the configuration objects: tenants, images,
//! cloud accounts, virtual networks, instance templates, instances, and the
//! event outbox. Every function takes any connection, so it runs alone or
//! inside a caller's transaction.

use super::entities::{
    cloud_account, event, image, instance, instance_template, tenant, virtual_network,
};
use super::page::{Cursor, Order, Page, Paged, finish, keyset};
use crate::error::Result;
use crate::model::now_ms;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Unchanged,
};
use std::collections::HashMap;

/// get / list / delete for a tenant-scoped table with `id`, `tenant_id`,
/// `doc` and `created_at` columns.
macro_rules! tenant_scoped {
    ($ent:ident, $get:ident, $list:ident, $list_docs:ident, $delete:ident) => {
        pub async fn $get<C: ConnectionTrait>(
            c: &C,
            tenant: &str,
            id: &str,
        ) -> Result<Option<$ent::Model>> {
            Ok($ent::Entity::find_by_id(id.to_string())
                .filter($ent::Column::TenantId.eq(tenant))
                .one(c)
                .await?)
        }

        /// A page of the rows, oldest first (then by id).
        pub async fn $list<C: ConnectionTrait>(
            c: &C,
            tenant: &str,
            page: &Page,
        ) -> Result<Paged<$ent::Model>> {
            let query = $ent::Entity::find().filter($ent::Column::TenantId.eq(tenant));
            let rows = keyset(
                query,
                $ent::Column::CreatedAt,
                $ent::Column::Id,
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

        /// A page of the stored public documents, oldest first (then by
        /// id), without the other columns.
        pub async fn $list_docs<C: ConnectionTrait>(
            c: &C,
            tenant: &str,
            page: &Page,
        ) -> Result<Paged<String>> {
            let query = $ent::Entity::find()
                .select_only()
                .column($ent::Column::Doc)
                .column($ent::Column::CreatedAt)
                .column($ent::Column::Id)
                .filter($ent::Column::TenantId.eq(tenant));
            let rows = keyset(
                query,
                $ent::Column::CreatedAt,
                $ent::Column::Id,
                Order::Asc,
                page,
            )
            .into_tuple::<(String, i64, String)>()
            .all(c)
            .await?;
            Ok(finish(rows, page, |(_, key, id)| Cursor {
                key: *key,
                id: id.clone(),
            })
            .map(|(doc, _, _)| doc))
        }

        /// Deletes the row; deleting a row that is already gone is not an error.
        pub async fn $delete<C: ConnectionTrait>(c: &C, tenant: &str, id: &str) -> Result<u64> {
            Ok($ent::Entity::delete_many()
                .filter($ent::Column::Id.eq(id))
                .filter($ent::Column::TenantId.eq(tenant))
                .exec(c)
                .await?
                .rows_affected)
        }
    };
}

tenant_scoped!(
    cloud_account,
    account_get,
    account_list,
    account_list_docs,
    account_delete
);
tenant_scoped!(
    virtual_network,
    network_get,
    network_list,
    network_list_docs,
    network_delete
);
tenant_scoped!(
    instance_template,
    template_get,
    template_list,
    template_list_docs,
    template_delete
);
tenant_scoped!(
    instance,
    instance_get,
    instance_list,
    instance_list_docs,
    instance_delete
);

// ---- writes of the tenant-scoped configuration objects
//
// Creation stamps `created_at` and `updated_at`; an update replaces the
// label, the public document (and the columns drawn from it) and the sealed
// secret, stamps `updated_at`, and returns the row as stored.

pub async fn account_insert<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
    label: &str,
    doc: String,
    sealed_secret: Option<String>,
) -> Result<cloud_account::Model> {
    let now = now_ms();
    Ok(cloud_account::ActiveModel {
        id: Set(id.to_string()),
        tenant_id: Set(tenant.to_string()),
        label: Set(label.to_string()),
        doc: Set(doc),
        secret: Set(sealed_secret),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(c)
    .await?)
}

pub async fn account_update<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
    label: &str,
    doc: String,
    sealed_secret: Option<String>,
    expect: Option<&cloud_account::Model>,
) -> Result<Option<cloud_account::Model>> {
    let am = cloud_account::ActiveModel {
        id: Unchanged(id.to_string()),
        label: Set(label.to_string()),
        doc: Set(doc),
        secret: Set(sealed_secret),
        updated_at: Set(now_ms()),
        ..Default::default()
    };
    let mut q =
        cloud_account::Entity::update(am).filter(cloud_account::Column::TenantId.eq(tenant));
    // Only while the row is as the caller read it (document and secret).
    if let Some(m) = expect {
        q = q.filter(cloud_account::Column::Doc.eq(m.doc.as_str()));
        q = match &m.secret {
            Some(s) => q.filter(cloud_account::Column::Secret.eq(s.as_str())),
            None => q.filter(cloud_account::Column::Secret.is_null()),
        };
    }
    updated(q.exec(c).await)
}

pub async fn network_insert<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
    account_id: Option<&str>,
    label: &str,
    doc: String,
) -> Result<virtual_network::Model> {
    let now = now_ms();
    Ok(virtual_network::ActiveModel {
        id: Set(id.to_string()),
        tenant_id: Set(tenant.to_string()),
        account_id: Set(account_id.map(str::to_string)),
        label: Set(label.to_string()),
        doc: Set(doc),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(c)
    .await?)
}

pub async fn network_update<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
    account_id: Option<&str>,
    label: &str,
    doc: String,
    expect_doc: Option<&str>,
) -> Result<Option<virtual_network::Model>> {
    let am = virtual_network::ActiveModel {
        id: Unchanged(id.to_string()),
        account_id: Set(account_id.map(str::to_string)),
        label: Set(label.to_string()),
        doc: Set(doc),
        updated_at: Set(now_ms()),
        ..Default::default()
    };
    let mut q =
        virtual_network::Entity::update(am).filter(virtual_network::Column::TenantId.eq(tenant));
    if let Some(d) = expect_doc {
        q = q.filter(virtual_network::Column::Doc.eq(d));
    }
    updated(q.exec(c).await)
}

pub async fn template_insert<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
    label: &str,
    doc: String,
    sealed_secret: Option<String>,
) -> Result<instance_template::Model> {
    let now = now_ms();
    Ok(instance_template::ActiveModel {
        id: Set(id.to_string()),
        tenant_id: Set(tenant.to_string()),
        label: Set(label.to_string()),
        doc: Set(doc),
        secret: Set(sealed_secret),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(c)
    .await?)
}

pub async fn template_update<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
    label: &str,
    doc: String,
    sealed_secret: Option<String>,
    expect_doc: Option<&str>,
) -> Result<Option<instance_template::Model>> {
    let am = instance_template::ActiveModel {
        id: Unchanged(id.to_string()),
        label: Set(label.to_string()),
        doc: Set(doc),
        secret: Set(sealed_secret),
        updated_at: Set(now_ms()),
        ..Default::default()
    };
    let mut q = instance_template::Entity::update(am)
        .filter(instance_template::Column::TenantId.eq(tenant));
    if let Some(d) = expect_doc {
        q = q.filter(instance_template::Column::Doc.eq(d));
    }
    updated(q.exec(c).await)
}

/// The row an update wrote; none when its conditions matched no row.
fn updated<M>(r: std::result::Result<M, sea_orm::DbErr>) -> Result<Option<M>> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(sea_orm::DbErr::RecordNotUpdated) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Stores a new instance record as given (its document carries the same
/// timestamps).
pub async fn instance_insert<C: ConnectionTrait>(c: &C, m: instance::Model) -> Result<()> {
    instance::ActiveModel {
        id: Set(m.id),
        tenant_id: Set(m.tenant_id),
        label: Set(m.label),
        template_id: Set(m.template_id),
        network_id: Set(m.network_id),
        image_id: Set(m.image_id),
        doc: Set(m.doc),
        generation: Set(m.generation),
        created_at: Set(m.created_at),
        updated_at: Set(m.updated_at),
    }
    .insert(c)
    .await?;
    Ok(())
}

/// Replaces an instance's settings with those of `m`: label, template,
/// image, document, generation and `updated_at` (its network, tenant and
/// creation time stay). With `expect_generation`, only if the stored row
/// is still that generation; false when it was not.
pub async fn instance_update<C: ConnectionTrait>(
    c: &C,
    m: instance::Model,
    expect_generation: Option<i64>,
) -> Result<bool> {
    let am = instance::ActiveModel {
        id: Unchanged(m.id),
        label: Set(m.label),
        template_id: Set(m.template_id),
        image_id: Set(m.image_id),
        doc: Set(m.doc),
        generation: Set(m.generation),
        updated_at: Set(m.updated_at),
        ..Default::default()
    };
    let mut q = instance::Entity::update(am).filter(instance::Column::TenantId.eq(m.tenant_id));
    if let Some(g) = expect_generation {
        q = q.filter(instance::Column::Generation.eq(g));
    }
    Ok(updated(q.exec(c).await)?.is_some())
}

/// Whether a virtual network with this id exists, in any tenant.
pub async fn network_exists<C: ConnectionTrait>(c: &C, id: &str) -> Result<bool> {
    Ok(virtual_network::Entity::find_by_id(id.to_string())
        .one(c)
        .await?
        .is_some())
}

// ---- tenants

pub async fn tenant_get<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<tenant::Model>> {
    Ok(tenant::Entity::find_by_id(id.to_string()).one(c).await?)
}

pub async fn tenant_list<C: ConnectionTrait>(c: &C) -> Result<Vec<tenant::Model>> {
    Ok(tenant::Entity::find().all(c).await?)
}

/// Creates the tenant if it does not exist yet; never touches an existing one.
pub async fn tenant_ensure<C: ConnectionTrait>(c: &C, t: tenant::Model) -> Result<()> {
    tenant::Entity::insert(tenant::ActiveModel {
        id: Set(t.id),
        cloud_credentials: Set(t.cloud_credentials),
        cloud_tags: Set(t.cloud_tags),
        created_at: Set(t.created_at),
    })
    .on_conflict(
        OnConflict::column(tenant::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Replaces the tenant's stored cloud credentials document.
pub async fn tenant_set_cloud_credentials<C: ConnectionTrait>(
    c: &C,
    id: &str,
    doc: String,
) -> Result<()> {
    let am = tenant::ActiveModel {
        id: Unchanged(id.to_string()),
        cloud_credentials: Set(doc),
        ..Default::default()
    };
    am.update(c).await?;
    Ok(())
}

/// Replaces the tenant's stored cloud tags document.
pub async fn tenant_set_cloud_tags<C: ConnectionTrait>(c: &C, id: &str, doc: String) -> Result<()> {
    let am = tenant::ActiveModel {
        id: Unchanged(id.to_string()),
        cloud_tags: Set(doc),
        ..Default::default()
    };
    am.update(c).await?;
    Ok(())
}

// ---- images

/// A page of the image catalog, in version order (then by id).
pub async fn image_list<C: ConnectionTrait>(c: &C, page: &Page) -> Result<Paged<image::Model>> {
    let rows = keyset(
        image::Entity::find(),
        image::Column::SortKey,
        image::Column::Id,
        Order::Asc,
        page,
    )
    .all(c)
    .await?;
    Ok(finish(rows, page, |m| Cursor {
        key: m.sort_key,
        id: m.id.clone(),
    }))
}

pub async fn image_get<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<image::Model>> {
    Ok(image::Entity::find_by_id(id.to_string()).one(c).await?)
}

/// Adds catalog entries that are missing; existing ones are left as they are.
pub async fn image_ensure<C: ConnectionTrait>(c: &C, m: image::Model) -> Result<()> {
    image::Entity::insert(image::ActiveModel {
        id: Set(m.id),
        label: Set(m.label),
        node_version: Set(m.node_version),
        sort_key: Set(m.sort_key),
        created_at: Set(m.created_at),
        kit_file: Set(m.kit_file),
        kit_sha256: Set(m.kit_sha256),
    })
    .on_conflict(
        OnConflict::column(image::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Adds a catalog entry or replaces the label, version and kit of an
/// existing one (its sort key and creation time stay).
pub async fn image_upsert<C: ConnectionTrait>(c: &C, m: image::Model) -> Result<()> {
    image::Entity::insert(image::ActiveModel {
        id: Set(m.id),
        label: Set(m.label),
        node_version: Set(m.node_version),
        sort_key: Set(m.sort_key),
        created_at: Set(m.created_at),
        kit_file: Set(m.kit_file),
        kit_sha256: Set(m.kit_sha256),
    })
    .on_conflict(
        OnConflict::column(image::Column::Id)
            .update_columns([
                image::Column::Label,
                image::Column::NodeVersion,
                image::Column::KitFile,
                image::Column::KitSha256,
            ])
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

// ---- reference counts

pub async fn networks_using_account<C: ConnectionTrait>(c: &C, account_id: &str) -> Result<u64> {
    Ok(virtual_network::Entity::find()
        .filter(virtual_network::Column::AccountId.eq(account_id))
        .count(c)
        .await?)
}

pub async fn instances_using_network<C: ConnectionTrait>(c: &C, network_id: &str) -> Result<u64> {
    Ok(instance::Entity::find()
        .filter(instance::Column::NetworkId.eq(network_id))
        .count(c)
        .await?)
}

pub async fn instances_using_template<C: ConnectionTrait>(c: &C, template_id: &str) -> Result<u64> {
    Ok(instance::Entity::find()
        .filter(instance::Column::TemplateId.eq(template_id))
        .count(c)
        .await?)
}

/// Networks per account, for one tenant.
pub async fn network_counts_by_account<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
) -> Result<HashMap<String, u64>> {
    let rows: Vec<(Option<String>, i64)> = virtual_network::Entity::find()
        .select_only()
        .column(virtual_network::Column::AccountId)
        .column_as(virtual_network::Column::Id.count(), "n")
        .filter(virtual_network::Column::TenantId.eq(tenant))
        .group_by(virtual_network::Column::AccountId)
        .into_tuple()
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, n)| k.map(|k| (k, n as u64)))
        .collect())
}

/// Instances per network or per template, for one tenant.
pub async fn instance_counts_by<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    column: instance::Column,
) -> Result<HashMap<String, u64>> {
    let rows: Vec<(String, i64)> = instance::Entity::find()
        .select_only()
        .column(column)
        .column_as(instance::Column::Id.count(), "n")
        .filter(instance::Column::TenantId.eq(tenant))
        .group_by(column)
        .into_tuple()
        .all(c)
        .await?;
    Ok(rows.into_iter().map(|(k, n)| (k, n as u64)).collect())
}

// ---- events (the outbox)

pub async fn event_insert<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    operation_id: Option<&str>,
    kind: &str,
    target_id: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    event::Entity::insert(event::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(tenant.to_string()),
        operation_id: Set(operation_id.map(str::to_string)),
        kind: Set(kind.to_string()),
        target_id: Set(target_id.to_string()),
        at: Set(crate::model::now_ms()),
        detail: Set(detail.to_string()),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Up to `limit` of the tenant's events after the one with id `after`,
/// oldest first.
pub async fn events_after<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::TenantId.eq(tenant))
        .filter(event::Column::Id.gt(after))
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(c)
        .await?)
}

/// The id of the latest event of any tenant (0 when there is none): a
/// cursor from which only new events follow.
pub async fn event_latest<C: ConnectionTrait>(c: &C) -> Result<i64> {
    let last: Option<i64> = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .order_by_desc(event::Column::Id)
        .limit(1)
        .into_tuple()
        .one(c)
        .await?;
    Ok(last.unwrap_or(0))
}

pub async fn events_for_operation<C: ConnectionTrait>(
    c: &C,
    operation_id: &str,
) -> Result<Vec<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::OperationId.eq(operation_id))
        .order_by_asc(event::Column::Id)
        .all(c)
        .await?)
}

// ---- objects others refer to

/// The objects other objects refer to, which can only be deleted when
/// nothing uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referenced {
    Account,
    Network,
    Template,
}

impl Referenced {
    pub fn name(self) -> &'static str {
        match self {
            Referenced::Account => "cloud account",
            Referenced::Network => "virtual network",
            Referenced::Template => "instance template",
        }
    }

    /// What refers to it.
    pub fn users_name(self) -> &'static str {
        match self {
            Referenced::Account => "virtual network(s)",
            Referenced::Network | Referenced::Template => "instance(s)",
        }
    }

    async fn users<C: ConnectionTrait>(self, c: &C, id: &str) -> Result<u64> {
        match self {
            Referenced::Account => networks_using_account(c, id).await,
            Referenced::Network => instances_using_network(c, id).await,
            Referenced::Template => instances_using_template(c, id).await,
        }
    }

    async fn delete<C: ConnectionTrait>(self, c: &C, tenant: &str, id: &str) -> Result<u64> {
        match self {
            Referenced::Account => account_delete(c, tenant, id).await,
            Referenced::Network => network_delete(c, tenant, id).await,
            Referenced::Template => template_delete(c, tenant, id).await,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(crate::error::Error::internal)
}

impl super::Store {
    /// How many objects refer to `id`.
    pub async fn users_of(&self, what: Referenced, id: &str) -> Result<u64> {
        what.users(&self.db, id).await
    }

    /// Deletes `id` if nothing refers to it, re-counting in the deleting
    /// transaction (the foreign keys refuse an orphan too); returns the
    /// number of users found, 0 when it was deleted (or already gone).
    pub async fn delete_if_unused(&self, what: Referenced, tenant: &str, id: &str) -> Result<u64> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.transaction(move |tx| {
            Box::pin(async move {
                let n = what.users(tx, &id).await?;
                if n == 0 {
                    what.delete(tx, &tenant, &id).await?;
                }
                Ok(n)
            })
        })
        .await
    }

    /// The instance's public document (404 when it does not exist).
    pub async fn instance_doc<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<T> {
        let row = instance_get(&self.db, tenant, id)
            .await?
            .ok_or_else(|| crate::error::Error::not_found("instance", id))?;
        decode(&row.doc)
    }

    /// The template's public document (404 when it does not exist).
    pub async fn template_doc<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<T> {
        let row = template_get(&self.db, tenant, id)
            .await?
            .ok_or_else(|| crate::error::Error::not_found("instance template", id))?;
        decode(&row.doc)
    }

    /// The network with its id, if it exists.
    pub async fn network_doc_if(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<crate::model::network::VirtualNetwork>> {
        let Some(row) = network_get(&self.db, tenant, id).await? else {
            return Ok(None);
        };
        let mut net: crate::model::network::VirtualNetwork = decode(&row.doc)?;
        net.id = Some(row.id);
        Ok(Some(net))
    }

    /// Deletes an instance's records (runtime and instance) together.
    pub async fn instance_records_delete(&self, tenant: &str, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.transaction(move |tx| {
            Box::pin(async move {
                super::lifecycle::runtime_delete(tx, &id).await?;
                instance_delete(tx, &tenant, &id).await?;
                Ok(())
            })
        })
        .await
    }

    /// Backup `backup_id` of instance `instance_id` in this tenant (404
    /// otherwise).
    pub async fn backup_of_tenant(
        &self,
        tenant: &str,
        instance_id: &str,
        backup_id: &str,
    ) -> Result<super::entities::backup::Model> {
        super::lifecycle::backup_get(&self.db, instance_id, backup_id)
            .await?
            .filter(|row| row.tenant_id == tenant)
            .ok_or_else(|| crate::error::Error::not_found("backup", backup_id))
    }
}
