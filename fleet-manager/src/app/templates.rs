//! Instance templates.

use super::changes::{Change, Made, Versioned, etag_of};
use super::{App, StartedFuture, check_body_id, from_doc, to_doc};
use crate::crypto::Place;
use crate::error::{Error, Result};
use crate::model::setup_action::{MASK, SEALED_PREFIX};
use crate::model::template::InstanceTemplate;
use crate::model::{check_id, new_id};
use crate::opctx::OpCtx;
use crate::ops::sagas::resource_delete::DeleteTemplate;
use crate::store::entities::{instance, instance_template};
use crate::store::page::{Page, Paged};
use crate::store::resources as q;
use serde_json::Value;
use sha2::{Digest, Sha256};

impl App {
    fn template_view(
        &self,
        m: &instance_template::Model,
        nb_instances: u64,
    ) -> Result<InstanceTemplate> {
        let mut t: InstanceTemplate = from_doc(&m.doc)?;
        mask_secret_params(&mut t);
        t.id = Some(m.id.clone());
        t.has_dataiku_aws_secret_access_key = m.secret.is_some();
        t.nb_instances = nb_instances;
        Ok(t)
    }

    fn template_versioned(
        &self,
        m: &instance_template::Model,
        nb_instances: u64,
    ) -> Result<Versioned<InstanceTemplate>> {
        Ok(Versioned {
            value: self.template_view(m, nb_instances)?,
            etag: template_etag(m),
        })
    }

    async fn template_row(&self, tenant: &str, id: &str) -> Result<instance_template::Model> {
        check_id("instance template", id)?;
        match q::template_get(&self.store.db, tenant, id).await? {
            Some(m) => Ok(m),
            None => Err(self.missing(tenant, "instance template", id).await),
        }
    }

    /// Seals the secret parameters of setup actions. A mask here has no
    /// stored value behind it (a new template): it must be given.
    fn seal_secret_params(&self, id: &str, input: &mut InstanceTemplate) -> Result<()> {
        for (i, a) in input.setup_actions.iter_mut().enumerate() {
            let keys = a.secret_params();
            let Some(params) = a.params.as_mut() else {
                continue;
            };
            for key in keys {
                let Some(v) = params.get(*key).filter(|v| !v.is_null()) else {
                    continue;
                };
                if v.as_str() == Some(MASK) {
                    return Err(give_again(i, key));
                }
                let sealed = format!(
                    "{SEALED_PREFIX}{}",
                    self.secrets
                        .seal(&Place::template_param(id, key), &v.to_string())?
                );
                params.insert((*key).to_string(), serde_json::Value::String(sealed));
            }
        }
        Ok(())
    }

    /// Replaces masked secret parameters by the values stored for the same
    /// action (same position and type) in `old`.
    fn unmask_secret_params(
        &self,
        id: &str,
        input: &InstanceTemplate,
        old: &InstanceTemplate,
    ) -> Result<InstanceTemplate> {
        let mut t = input.clone();
        for (i, a) in t.setup_actions.iter_mut().enumerate() {
            let keys = a.secret_params();
            let ty = a.action_type;
            let Some(params) = a.params.as_mut() else {
                continue;
            };
            for key in keys {
                if params.get(*key).and_then(|v| v.as_str()) != Some(MASK) {
                    continue;
                }
                let stored = old
                    .setup_actions
                    .get(i)
                    .filter(|o| o.action_type == ty)
                    .and_then(|o| o.params.as_ref()?.get(*key)?.as_str().map(str::to_string));
                let sealed = stored
                    .as_deref()
                    .and_then(|s| s.strip_prefix(SEALED_PREFIX))
                    .ok_or_else(|| give_again(i, key))?;
                let v: serde_json::Value = serde_json::from_str(
                    &self.secrets.open(&Place::template_param(id, key), sealed)?,
                )
                .map_err(Error::internal)?;
                params.insert((*key).to_string(), v);
            }
        }
        Ok(t)
    }

    fn template_secret(
        &self,
        id: &str,
        input: &mut InstanceTemplate,
        old: Option<String>,
        creating: bool,
    ) -> Result<Option<String>> {
        if !input.needs_inline_secret() {
            return Ok(None);
        }
        match (input.dataiku_aws_secret_access_key.take(), old) {
            (Some(s), _) => Ok(Some(self.secrets.seal(&Place::template_secret(id), &s)?)),
            (None, Some(old)) => Ok(Some(old)),
            (None, None) if creating => Err(Error::invalid(
                "dataikuAwsSecretAccessKey is required with INLINE_ENCRYPTED storage",
            )),
            // A well-formed update that the stored template can't take.
            (None, None) => Err(Error::conflict(
                "dataikuAwsSecretAccessKey is required with INLINE_ENCRYPTED storage: the template has none stored",
            )),
        }
    }

    pub async fn template_list(
        &self,
        tenant: &str,
        page: &Page,
    ) -> Result<Paged<InstanceTemplate>> {
        Ok(self
            .template_list_versioned(tenant, page)
            .await?
            .map(|v| v.value))
    }

    pub async fn template_list_versioned(
        &self,
        tenant: &str,
        page: &Page,
    ) -> Result<Paged<Versioned<InstanceTemplate>>> {
        self.tenant(tenant).await?;
        let counts =
            q::instance_counts_by(&self.store.db, tenant, instance::Column::TemplateId).await?;
        q::template_list(&self.store.db, tenant, page)
            .await?
            .try_map(|m| self.template_versioned(&m, counts.get(&m.id).copied().unwrap_or(0)))
    }

    pub async fn template_get(&self, tenant: &str, id: &str) -> Result<InstanceTemplate> {
        Ok(self.template_get_versioned(tenant, id).await?.value)
    }

    pub async fn template_get_versioned(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Versioned<InstanceTemplate>> {
        let m = self.template_row(tenant, id).await?;
        let n = q::instances_using_template(&self.store.db, id).await?;
        self.template_versioned(&m, n)
    }

    pub async fn template_create(
        &self,
        tenant: &str,
        input: InstanceTemplate,
    ) -> Result<InstanceTemplate> {
        let made = self
            .template_create_with(tenant, input, &Change::default())
            .await?;
        Ok(made.value)
    }

    /// Creates a template as `change` says (see [`Change`]); a
    /// validated-only template has no id.
    pub async fn template_create_with(
        &self,
        tenant: &str,
        mut input: InstanceTemplate,
        change: &Change,
    ) -> Result<Versioned<InstanceTemplate>> {
        self.tenant(tenant).await?;
        if let Some(earlier) = self.replayed(tenant, change).await? {
            return self.template_get_versioned(tenant, &earlier).await;
        }
        input.validate()?;
        let id = new_id("ist");
        self.seal_secret_params(&id, &mut input)?;
        let secret = self.template_secret(&id, &mut input, None, true)?;
        input.id = None;
        let doc = to_doc(&input)?;
        let now = crate::model::now_ms();
        let row = instance_template::Model {
            id: id.clone(),
            tenant_id: tenant.to_string(),
            label: input.label.clone(),
            doc,
            secret,
            created_at: now,
            updated_at: now,
        };
        if change.validate_only {
            let mut v = self.template_versioned(&row, 0)?;
            v.value.id = None;
            return Ok(v);
        }
        let txn = match self.begin_create(tenant, change, &id).await? {
            Made::New(txn) => txn,
            Made::Earlier(earlier) => return self.template_get_versioned(tenant, &earlier).await,
        };
        let m = q::template_insert(&txn, tenant, &id, &row.label, row.doc, row.secret).await?;
        txn.commit().await?;
        self.template_versioned(&m, 0)
    }

    pub async fn template_update(
        &self,
        tenant: &str,
        id: &str,
        input: InstanceTemplate,
    ) -> Result<InstanceTemplate> {
        let done = self
            .template_update_with(tenant, id, input, &Change::default())
            .await?;
        Ok(done.value)
    }

    /// Replaces the template's settings as `change` says (see [`Change`]).
    pub async fn template_update_with(
        &self,
        tenant: &str,
        id: &str,
        input: InstanceTemplate,
        change: &Change,
    ) -> Result<Versioned<InstanceTemplate>> {
        let m = self.template_row(tenant, id).await?;
        let what = format!("instance template '{id}'");
        change.check_etag(&what, &template_etag(&m))?;
        check_body_id(id, input.id.as_deref())?;
        let old: InstanceTemplate = from_doc(&m.doc)?;
        // Masked secrets stand for the stored values: validate and store
        // with those (a mask that can't be matched is refused when sealing).
        let mut input = self.unmask_secret_params(id, &input, &old)?;
        input.validate()?;
        self.seal_secret_params(id, &mut input)?;
        let secret = self.template_secret(id, &mut input, m.secret.clone(), false)?;
        input.id = None;
        let doc = to_doc(&input)?;
        let n = q::instances_using_template(&self.store.db, id).await?;
        if change.validate_only {
            let would = instance_template::Model {
                label: input.label.clone(),
                doc,
                secret,
                ..m
            };
            return self.template_versioned(&would, n);
        }
        let expect = change.etag.is_some().then_some(m.doc.as_str());
        let m = q::template_update(
            &self.store.db,
            tenant,
            id,
            &input.label,
            doc,
            secret,
            expect,
        )
        .await?
        .ok_or_else(|| Error::stale(&what))?;
        self.template_versioned(&m, n)
    }

    /// Starts the deletion; refused at once while instances use the template.
    pub async fn template_delete(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
    ) -> Result<StartedFuture> {
        self.template_row(tenant, id).await?;
        let n = q::instances_using_template(&self.store.db, id).await?;
        if n > 0 {
            return Err(Error::conflict(format!(
                "instance template '{id}' is used by {n} instance(s); delete them first"
            )));
        }
        self.start_operation(ctx, tenant, id, DeleteTemplate {})
            .await
    }
    /// A stored template as a plan compares it: its document with every
    /// secret replaced by [`sensitive`] of its value, read-only fields left
    /// out.
    pub(super) fn template_compared(&self, m: &instance_template::Model) -> Result<Value> {
        let mut t: InstanceTemplate = from_doc(&m.doc)?;
        for a in &mut t.setup_actions {
            let keys = a.secret_params();
            for (key, v) in a.params.iter_mut().flat_map(|p| p.iter_mut()) {
                let Some(sealed) = v.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX)) else {
                    continue;
                };
                if keys.contains(&key.as_str()) {
                    let plain = self
                        .secrets
                        .open(&Place::template_param(&m.id, key), sealed)?;
                    *v = Value::String(sensitive(&plain));
                }
            }
        }
        let secret = match &m.secret {
            Some(sealed) => Some(sensitive(
                &self.secrets.open(&Place::template_secret(&m.id), sealed)?,
            )),
            None => None,
        };
        compared_doc(&t, secret)
    }
}

/// What stands for a secret's value in the documents a plan compares: a
/// digest of it behind [`SENSITIVE`], never shown.
pub(super) fn sensitive(plain: &str) -> String {
    let d = Sha256::digest(plain.as_bytes());
    format!("{SENSITIVE}{}", hex::encode(d))
}

/// Marks the stand-ins of secrets (see [`sensitive`]).
pub(super) const SENSITIVE: &str = "\u{1}sensitive:";

/// A template as given, validated, as a plan compares it with
/// [`App::template_compared`]: an inline secret not given stands for the
/// stored one (`stored`), as an update keeps it.
pub(super) fn template_desired(input: &InstanceTemplate, stored: Option<&Value>) -> Result<Value> {
    let mut t = input.clone();
    t.validate()?;
    for a in &mut t.setup_actions {
        let keys = a.secret_params();
        for (key, v) in a.params.iter_mut().flat_map(|p| p.iter_mut()) {
            if keys.contains(&key.as_str()) && !v.is_null() {
                *v = Value::String(sensitive(&v.to_string()));
            }
        }
    }
    let secret = match t.dataiku_aws_secret_access_key.take() {
        Some(s) if t.needs_inline_secret() => Some(sensitive(&s)),
        None if t.needs_inline_secret() => stored
            .and_then(|s| s.get("dataikuAwsSecretAccessKey")?.as_str())
            .map(str::to_string),
        _ => None,
    };
    compared_doc(&t, secret)
}

/// The document without what FM sets (id, counts), with the stand-in of
/// its inline secret (a write-only field, so not in the document).
fn compared_doc(t: &InstanceTemplate, secret: Option<String>) -> Result<Value> {
    let mut v = serde_json::to_value(t).map_err(Error::internal)?;
    if let Some(m) = v.as_object_mut() {
        for k in ["id", "nbInstances", "hasDataikuAwsSecretAccessKey"] {
            m.remove(k);
        }
        if let Some(s) = secret {
            m.insert("dataikuAwsSecretAccessKey".into(), Value::String(s));
        }
    }
    Ok(v)
}

/// A template's etag: its document and its sealed secret.
pub(super) fn template_etag(m: &instance_template::Model) -> String {
    etag_of(&[&m.doc, m.secret.as_deref().unwrap_or("")])
}

/// Replaces sealed setup-action parameters by the mask.
fn mask_secret_params(t: &mut InstanceTemplate) {
    for a in &mut t.setup_actions {
        for v in a.params.iter_mut().flat_map(|p| p.values_mut()) {
            if v.as_str().is_some_and(|s| s.starts_with(SEALED_PREFIX)) {
                *v = serde_json::Value::String(MASK.into());
            }
        }
    }
}

/// A masked secret with no stored value behind it: the body is well formed
/// but the stored template can't fill it in.
fn give_again(index: usize, key: &str) -> Error {
    Error::conflict(format!(
        "setupActions[{index}].params.{key}: give the value again (the mask stands for a stored value only at the same position and type)"
    ))
}
