//! Cloud accounts.

use super::changes::{Change, Made, Versioned, etag_of};
use super::{App, StartedFuture, check_body_id, from_doc, to_doc};
use crate::crypto::Place;
use crate::error::{Error, Result};
use crate::model::account::{AwsAccountAuthMode, CloudAccount};
use crate::model::{check_id, new_id};
use crate::opctx::OpCtx;
use crate::ops::sagas::resource_delete::DeleteAccount;
use crate::store::entities::cloud_account;
use crate::store::page::{Page, Paged};
use crate::store::resources as q;

impl App {
    fn account_view(&self, m: &cloud_account::Model, nb_networks: u64) -> Result<CloudAccount> {
        let mut a: CloudAccount = from_doc(&m.doc)?;
        a.id = Some(m.id.clone());
        a.has_aws_secret_access_key = m.secret.is_some();
        a.nb_networks = nb_networks;
        Ok(a)
    }

    async fn account_row(&self, tenant: &str, id: &str) -> Result<cloud_account::Model> {
        check_id("cloud account", id)?;
        match q::account_get(&self.store.db, tenant, id).await? {
            Some(m) => Ok(m),
            None => Err(self.missing(tenant, "cloud account", id).await),
        }
    }

    fn account_versioned(
        &self,
        m: &cloud_account::Model,
        nb_networks: u64,
    ) -> Result<Versioned<CloudAccount>> {
        Ok(Versioned {
            value: self.account_view(m, nb_networks)?,
            etag: account_etag(m),
        })
    }

    pub async fn account_list(&self, tenant: &str, page: &Page) -> Result<Paged<CloudAccount>> {
        Ok(self
            .account_list_versioned(tenant, page)
            .await?
            .map(|v| v.value))
    }

    pub async fn account_list_versioned(
        &self,
        tenant: &str,
        page: &Page,
    ) -> Result<Paged<Versioned<CloudAccount>>> {
        self.tenant(tenant).await?;
        let counts = q::network_counts_by_account(&self.store.db, tenant).await?;
        q::account_list(&self.store.db, tenant, page)
            .await?
            .try_map(|m| self.account_versioned(&m, counts.get(&m.id).copied().unwrap_or(0)))
    }

    pub async fn account_get(&self, tenant: &str, id: &str) -> Result<CloudAccount> {
        Ok(self.account_get_versioned(tenant, id).await?.value)
    }

    pub async fn account_get_versioned(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Versioned<CloudAccount>> {
        let m = self.account_row(tenant, id).await?;
        let n = q::networks_using_account(&self.store.db, id).await?;
        self.account_versioned(&m, n)
    }

    /// The sealed secret to store: the new one if given, else the old one
    /// while the mode still needs it.
    fn account_secret(
        &self,
        id: &str,
        input: &mut CloudAccount,
        old: Option<String>,
        creating: bool,
    ) -> Result<Option<String>> {
        if input.aws_authentication_mode != AwsAccountAuthMode::Keypair {
            return Ok(None);
        }
        match (input.aws_secret_access_key.take(), old) {
            (Some(s), _) => Ok(Some(self.secrets.seal(&Place::account_secret(id), &s)?)),
            (None, Some(old)) => Ok(Some(old)),
            (None, None) if creating => Err(Error::invalid(
                "awsSecretAccessKey is required when awsAuthenticationMode is KEYPAIR",
            )),
            // A well-formed update that the stored account can't take.
            (None, None) => Err(Error::conflict(
                "awsSecretAccessKey is required when awsAuthenticationMode is KEYPAIR: the account has none stored",
            )),
        }
    }

    pub async fn account_create(&self, tenant: &str, input: CloudAccount) -> Result<CloudAccount> {
        let made = self
            .account_create_with(tenant, input, &Change::default())
            .await?;
        Ok(made.value)
    }

    /// Makes an account as `change` says (see [`Change`]).
    pub async fn account_create_with(
        &self,
        tenant: &str,
        mut input: CloudAccount,
        change: &Change,
    ) -> Result<Versioned<CloudAccount>> {
        self.tenant(tenant).await?;
        if let Some(earlier) = self.replayed(tenant, change).await? {
            return self.account_get_versioned(tenant, &earlier).await;
        }
        input.validate()?;
        let id = new_id("ca");
        let secret = self.account_secret(&id, &mut input, None, true)?;
        input.id = None;
        let doc = to_doc(&input)?;
        if change.validate_only {
            let would = cloud_account::Model {
                id: String::new(),
                tenant_id: tenant.to_string(),
                label: input.label.clone(),
                doc,
                secret,
                created_at: 0,
                updated_at: 0,
            };
            return self.account_versioned(&would, 0);
        }
        let txn = match self.begin_create(tenant, change, &id).await? {
            Made::New(txn) => txn,
            Made::Earlier(earlier) => return self.account_get_versioned(tenant, &earlier).await,
        };
        let m = q::account_insert(&txn, tenant, &id, &input.label, doc, secret).await?;
        txn.commit().await?;
        self.account_versioned(&m, 0)
    }

    pub async fn account_update(
        &self,
        tenant: &str,
        id: &str,
        input: CloudAccount,
    ) -> Result<CloudAccount> {
        let done = self
            .account_update_with(tenant, id, input, &Change::default())
            .await?;
        Ok(done.value)
    }

    /// Replaces the account's settings as `change` says (see [`Change`]);
    /// a secret left out keeps the stored one.
    pub async fn account_update_with(
        &self,
        tenant: &str,
        id: &str,
        mut input: CloudAccount,
        change: &Change,
    ) -> Result<Versioned<CloudAccount>> {
        let m = self.account_row(tenant, id).await?;
        let what = format!("cloud account '{id}'");
        change.check_etag(&what, &account_etag(&m))?;
        check_body_id(id, input.id.as_deref())?;
        input.validate()?;
        let secret = self.account_secret(id, &mut input, m.secret.clone(), false)?;
        input.id = None;
        let doc = to_doc(&input)?;
        let n = q::networks_using_account(&self.store.db, id).await?;
        if change.validate_only {
            let would = cloud_account::Model {
                label: input.label.clone(),
                doc,
                secret,
                ..m
            };
            return self.account_versioned(&would, n);
        }
        let expect = change.etag.is_some().then_some(&m);
        let m = q::account_update(
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
        self.account_versioned(&m, n)
    }

    /// Starts the deletion; refused at once while networks use the account.
    pub async fn account_delete(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
    ) -> Result<StartedFuture> {
        self.account_row(tenant, id).await?;
        let n = q::networks_using_account(&self.store.db, id).await?;
        if n > 0 {
            return Err(Error::conflict(format!(
                "cloud account '{id}' is used by {n} virtual network(s); delete them first"
            )));
        }
        self.start_operation(ctx, tenant, id, DeleteAccount {})
            .await
    }
}

/// An account's etag: its document and its stored secret.
fn account_etag(m: &cloud_account::Model) -> String {
    etag_of(&[&m.doc, m.secret.as_deref().unwrap_or("")])
}
