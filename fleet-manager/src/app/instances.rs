//! Instances: the records; their lifecycle actions are operations.
//!
//! An instance's stored document is its complete public JSON, so reads
//! return it as it is, without decoding (listing 10,000 instances is a
//! concatenation).

use super::changes::{Change, Made, Versioned, etag_of};
use super::{App, StartedFuture, check_body_id, from_doc, to_doc};
use crate::error::{Error, Result};
use crate::model::instance::Instance;
use crate::model::{check_id, new_id, now_ms};
use crate::opctx::OpCtx;
use crate::ops::sagas::instance_delete;
use crate::store::entities::instance;
use crate::store::page::{Page, Paged};
use crate::store::resources as q;

impl App {
    async fn instance_row(&self, tenant: &str, id: &str) -> Result<instance::Model> {
        check_id("instance", id)?;
        match q::instance_get(&self.store.db, tenant, id).await? {
            Some(m) => Ok(m),
            None => Err(self.missing(tenant, "instance", id).await),
        }
    }

    /// The instance's public JSON.
    pub async fn instance_get_json(&self, tenant: &str, id: &str) -> Result<String> {
        Ok(self.instance_row(tenant, id).await?.doc)
    }

    pub async fn instance_get(&self, tenant: &str, id: &str) -> Result<Instance> {
        from_doc(&self.instance_row(tenant, id).await?.doc)
    }

    /// A page of the tenant's instances as their stored JSON documents,
    /// oldest first.
    pub async fn instance_list_json(&self, tenant: &str, page: &Page) -> Result<Paged<String>> {
        self.tenant(tenant).await?;
        q::instance_list_docs(&self.store.db, tenant, page).await
    }

    /// The template, network and image an instance names must exist.
    async fn check_instance_refs(&self, tenant: &str, i: &Instance) -> Result<()> {
        if q::template_get(&self.store.db, tenant, &i.instance_settings_template_id)
            .await?
            .is_none()
        {
            return Err(Error::invalid(format!(
                "instanceSettingsTemplateId: instance template '{}' does not exist",
                i.instance_settings_template_id
            )));
        }
        if q::network_get(&self.store.db, tenant, &i.virtual_network_id)
            .await?
            .is_none()
        {
            return Err(Error::invalid(format!(
                "virtualNetworkId: virtual network '{}' does not exist",
                i.virtual_network_id
            )));
        }
        if q::image_get(&self.store.db, &i.image_id).await?.is_none() {
            return Err(Error::invalid(format!(
                "imageId: image '{}' does not exist (see GET /images)",
                i.image_id
            )));
        }
        Ok(())
    }

    pub async fn instance_create(&self, tenant: &str, input: Instance) -> Result<String> {
        let made = self
            .instance_create_with(tenant, input, &Change::default())
            .await?;
        Ok(made.value)
    }

    /// The instance's public JSON with its etag.
    pub async fn instance_get_versioned(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Versioned<String>> {
        let doc = self.instance_row(tenant, id).await?.doc;
        let etag = etag_of(&[&doc]);
        Ok(Versioned { value: doc, etag })
    }

    /// Creates an instance record as `change` says (see [`Change`]) and
    /// answers its public JSON; a validated-only instance has no id.
    pub async fn instance_create_with(
        &self,
        tenant: &str,
        mut input: Instance,
        change: &Change,
    ) -> Result<Versioned<String>> {
        self.tenant(tenant).await?;
        if let Some(earlier) = self.replayed(tenant, change).await? {
            return self.instance_get_versioned(tenant, &earlier).await;
        }
        input.validate()?;
        self.check_instance_refs(tenant, &input).await?;
        let now = now_ms();
        input.created_at = now;
        input.updated_at = now;
        if change.validate_only {
            input.id = None;
            let doc = to_doc(&input)?;
            let etag = etag_of(&[&doc]);
            return Ok(Versioned { value: doc, etag });
        }
        let id = new_id("inst");
        input.id = Some(id.clone());
        let doc = to_doc(&input)?;
        let txn = match self.begin_create(tenant, change, &id).await? {
            Made::New(txn) => txn,
            Made::Earlier(earlier) => return self.instance_get_versioned(tenant, &earlier).await,
        };
        q::instance_insert(
            &txn,
            instance::Model {
                id,
                tenant_id: tenant.to_string(),
                label: input.label.clone(),
                template_id: input.instance_settings_template_id.clone(),
                network_id: input.virtual_network_id.clone(),
                image_id: input.image_id.clone(),
                doc: doc.clone(),
                generation: 1,
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
        txn.commit().await?;
        let etag = etag_of(&[&doc]);
        Ok(Versioned { value: doc, etag })
    }

    /// Replaces the instance's settings with the whole JSON given. The
    /// network can't change: an instance stays in the network it was
    /// created in.
    pub async fn instance_update(&self, tenant: &str, id: &str, input: Instance) -> Result<String> {
        let done = self
            .instance_update_with(tenant, id, input, &Change::default())
            .await?;
        Ok(done.value)
    }

    /// [`App::instance_update`] as `change` says (see [`Change`]).
    pub async fn instance_update_with(
        &self,
        tenant: &str,
        id: &str,
        mut input: Instance,
        change: &Change,
    ) -> Result<Versioned<String>> {
        let m = self.instance_row(tenant, id).await?;
        let what = format!("instance '{id}'");
        change.check_etag(&what, &etag_of(&[&m.doc]))?;
        check_body_id(id, input.id.as_deref())?;
        input.validate()?;
        if input.virtual_network_id != m.network_id {
            return Err(Error::invalid(
                "virtualNetworkId can't be changed after creation",
            ));
        }
        self.check_instance_refs(tenant, &input).await?;
        let now = now_ms();
        input.id = Some(id.to_string());
        input.created_at = m.created_at;
        input.updated_at = now;
        let doc = to_doc(&input)?;
        let etag = etag_of(&[&doc]);
        if change.validate_only {
            return Ok(Versioned { value: doc, etag });
        }
        let expect = change.etag.is_some().then_some(m.generation);
        let generation = m.generation + 1;
        let written = q::instance_update(
            &self.store.db,
            instance::Model {
                label: input.label.clone(),
                template_id: input.instance_settings_template_id.clone(),
                image_id: input.image_id.clone(),
                doc: doc.clone(),
                generation,
                updated_at: now,
                ..m
            },
            expect,
        )
        .await?;
        if !written {
            return Err(Error::stale(&what));
        }
        Ok(Versioned { value: doc, etag })
    }

    /// Starts the deletion of an instance and everything it owns.
    pub async fn instance_delete(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
    ) -> Result<StartedFuture> {
        self.instance_row(tenant, id).await?;
        self.start_operation(ctx, tenant, id, instance_delete::Params {})
            .await
    }
}
