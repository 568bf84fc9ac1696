//! Instances: the records; their lifecycle actions are operations.
//!
//! An instance's stored document is its complete public JSON, so reads
//! return it as it is, without decoding (listing 10,000 instances is a
//! concatenation).

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

    pub async fn instance_create(&self, tenant: &str, mut input: Instance) -> Result<String> {
        self.tenant(tenant).await?;
        input.validate()?;
        self.check_instance_refs(tenant, &input).await?;
        let now = now_ms();
        let id = new_id("inst");
        input.id = Some(id.clone());
        input.created_at = now;
        input.updated_at = now;
        let doc = to_doc(&input)?;
        q::instance_insert(
            &self.store.db,
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
        Ok(doc)
    }

    /// Replaces the instance's settings with the whole JSON given. The
    /// network can't change: an instance stays in the network it was
    /// created in.
    pub async fn instance_update(
        &self,
        tenant: &str,
        id: &str,
        mut input: Instance,
    ) -> Result<String> {
        let m = self.instance_row(tenant, id).await?;
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
        let generation = m.generation + 1;
        q::instance_update(
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
        )
        .await?;
        Ok(doc)
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
