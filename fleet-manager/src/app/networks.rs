//! Virtual networks.

use super::changes::{Change, Made, Versioned, etag_of};
use super::{App, StartedFuture, check_body_id, from_doc, to_doc};
use crate::error::{Error, Result};
use crate::model::network::VirtualNetwork;
use crate::model::{check_id, new_id};
use crate::opctx::OpCtx;
use crate::ops::sagas::resource_delete::DeleteNetwork;
use crate::store::entities::{instance, virtual_network};
use crate::store::page::{Page, Paged};
use crate::store::resources as q;

impl App {
    fn network_view(
        &self,
        m: &virtual_network::Model,
        nb_instances: u64,
    ) -> Result<VirtualNetwork> {
        let mut n: VirtualNetwork = from_doc(&m.doc)?;
        n.id = Some(m.id.clone());
        n.nb_instances = nb_instances;
        Ok(n)
    }

    fn network_versioned(
        &self,
        m: &virtual_network::Model,
        nb_instances: u64,
    ) -> Result<Versioned<VirtualNetwork>> {
        Ok(Versioned {
            value: self.network_view(m, nb_instances)?,
            etag: etag_of(&[&m.doc]),
        })
    }

    async fn network_row(&self, tenant: &str, id: &str) -> Result<virtual_network::Model> {
        check_id("virtual network", id)?;
        match q::network_get(&self.store.db, tenant, id).await? {
            Some(m) => Ok(m),
            None => Err(self.missing(tenant, "virtual network", id).await),
        }
    }

    /// A referenced account must exist in the same tenant.
    async fn check_account_ref(&self, tenant: &str, account: Option<&str>) -> Result<()> {
        if let Some(a) = account
            && q::account_get(&self.store.db, tenant, a).await?.is_none()
        {
            return Err(Error::invalid(format!(
                "accountId: cloud account '{a}' does not exist"
            )));
        }
        Ok(())
    }

    pub async fn network_list(&self, tenant: &str, page: &Page) -> Result<Paged<VirtualNetwork>> {
        Ok(self
            .network_list_versioned(tenant, page)
            .await?
            .map(|v| v.value))
    }

    pub async fn network_list_versioned(
        &self,
        tenant: &str,
        page: &Page,
    ) -> Result<Paged<Versioned<VirtualNetwork>>> {
        self.tenant(tenant).await?;
        let counts =
            q::instance_counts_by(&self.store.db, tenant, instance::Column::NetworkId).await?;
        q::network_list(&self.store.db, tenant, page)
            .await?
            .try_map(|m| self.network_versioned(&m, counts.get(&m.id).copied().unwrap_or(0)))
    }

    pub async fn network_get(&self, tenant: &str, id: &str) -> Result<VirtualNetwork> {
        Ok(self.network_get_versioned(tenant, id).await?.value)
    }

    pub async fn network_get_versioned(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Versioned<VirtualNetwork>> {
        let m = self.network_row(tenant, id).await?;
        let n = q::instances_using_network(&self.store.db, id).await?;
        self.network_versioned(&m, n)
    }

    pub async fn network_create(
        &self,
        tenant: &str,
        input: VirtualNetwork,
        use_defaults: bool,
    ) -> Result<VirtualNetwork> {
        let made = self
            .network_create_with(tenant, input, use_defaults, &Change::default())
            .await?;
        Ok(made.value)
    }

    /// Creates a network as `change` says (see [`Change`]); a validated-only
    /// network has no id.
    pub async fn network_create_with(
        &self,
        tenant: &str,
        mut input: VirtualNetwork,
        use_defaults: bool,
        change: &Change,
    ) -> Result<Versioned<VirtualNetwork>> {
        self.tenant(tenant).await?;
        if let Some(earlier) = self.replayed(tenant, change).await? {
            return self.network_get_versioned(tenant, &earlier).await;
        }
        if use_defaults {
            input.apply_defaults(&self.cfg.network_defaults);
        }
        input.validate()?;
        self.check_account_ref(tenant, input.account_id.as_deref())
            .await?;
        self.check_network_in_cloud(tenant, &input).await?;
        input.id = None;
        let doc = to_doc(&input)?;
        if change.validate_only {
            let etag = etag_of(&[&doc]);
            return Ok(Versioned { value: input, etag });
        }
        let id = new_id("vn");
        let txn = match self.begin_create(tenant, change, &id).await? {
            Made::New(txn) => txn,
            Made::Earlier(earlier) => return self.network_get_versioned(tenant, &earlier).await,
        };
        let account = input.account_id.as_deref();
        let m = q::network_insert(&txn, tenant, &id, account, &input.label, doc).await?;
        txn.commit().await?;
        self.network_versioned(&m, 0)
    }

    pub async fn network_update(
        &self,
        tenant: &str,
        id: &str,
        input: VirtualNetwork,
    ) -> Result<VirtualNetwork> {
        let done = self
            .network_update_with(tenant, id, input, &Change::default())
            .await?;
        Ok(done.value)
    }

    /// Replaces the network's settings as `change` says (see [`Change`]).
    pub async fn network_update_with(
        &self,
        tenant: &str,
        id: &str,
        mut input: VirtualNetwork,
        change: &Change,
    ) -> Result<Versioned<VirtualNetwork>> {
        let m = self.network_row(tenant, id).await?;
        let what = format!("virtual network '{id}'");
        change.check_etag(&what, &etag_of(&[&m.doc]))?;
        check_body_id(id, input.id.as_deref())?;
        input.validate()?;
        let before: VirtualNetwork = from_doc(&m.doc)?;
        input.check_immutable(&before)?;
        if input.account_id != before.account_id {
            // The instances' resources live in the old account: they would
            // be out of FM's reach.
            let n = q::instances_using_network(&self.store.db, id).await?;
            if n > 0 {
                return Err(Error::conflict(format!(
                    "the cloud account of virtual network '{id}' can't change while {n} instance(s) use it"
                )));
            }
        }
        self.check_account_ref(tenant, input.account_id.as_deref())
            .await?;
        self.check_network_in_cloud(tenant, &input).await?;
        input.id = None;
        let doc = to_doc(&input)?;
        let n = q::instances_using_network(&self.store.db, id).await?;
        if change.validate_only {
            let would = virtual_network::Model {
                account_id: input.account_id.clone(),
                label: input.label.clone(),
                doc,
                ..m
            };
            return self.network_versioned(&would, n);
        }
        let expect = change.etag.is_some().then_some(m.doc.as_str());
        let account = input.account_id.as_deref();
        let m = q::network_update(
            &self.store.db,
            tenant,
            id,
            account,
            &input.label,
            doc,
            expect,
        )
        .await?
        .ok_or_else(|| Error::stale(&what))?;
        self.network_versioned(&m, n)
    }

    /// The VPC and subnet the network names must exist in its region (on
    /// clouds that have them).
    async fn check_network_in_cloud(&self, tenant: &str, input: &VirtualNetwork) -> Result<()> {
        let svc = self.engine.services();
        let at = crate::ops::placement::for_network(svc, tenant, input).await?;
        svc.cloud.check_network(&at).await
    }

    /// Starts the deletion; refused at once while instances use the network.
    pub async fn network_delete(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
    ) -> Result<StartedFuture> {
        self.network_row(tenant, id).await?;
        let n = q::instances_using_network(&self.store.db, id).await?;
        if n > 0 {
            return Err(Error::conflict(format!(
                "virtual network '{id}' is used by {n} instance(s); delete them first"
            )));
        }
        self.start_operation(ctx, tenant, id, DeleteNetwork {})
            .await
    }
}
