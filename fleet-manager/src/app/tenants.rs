//! Tenant settings: cloud credentials and cloud tags.

use super::{App, from_doc, to_doc};
use crate::crypto::Place;
use crate::error::Result;
use crate::model::check_cloud_tags;
use crate::model::tenant::{CloudCredentials, CredentialSecrets, LicenseMode, TenantAuthMode};
use crate::store::entities::tenant;
use crate::store::resources as q;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How credentials are stored: the public document, and the secrets sealed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredCredentials {
    doc: CloudCredentials,
    sealed: Option<String>,
}

pub(super) fn empty_credentials_doc() -> String {
    serde_json::to_string(&StoredCredentials::default()).unwrap_or_else(|_| "{}".into())
}

impl App {
    fn stored_credentials(
        &self,
        t: &tenant::Model,
    ) -> Result<(CloudCredentials, CredentialSecrets)> {
        let stored: StoredCredentials = from_doc(&t.cloud_credentials)?;
        let secrets = match &stored.sealed {
            Some(s) => from_doc(&self.secrets.open(&Place::tenant_credentials(&t.id), s)?)?,
            None => CredentialSecrets::default(),
        };
        Ok((stored.doc, secrets))
    }

    pub async fn cloud_credentials_get(&self, tenant: &str) -> Result<CloudCredentials> {
        let t = self.tenant(tenant).await?;
        let (mut doc, secrets) = self.stored_credentials(&t)?;
        doc.has_aws_secret_access_key = secrets.aws_secret_access_key.is_some();
        doc.has_license_token = secrets.license_token.is_some();
        Ok(doc)
    }

    /// Replaces the credentials. Secrets left out are kept while the mode
    /// that uses them stays.
    pub async fn cloud_credentials_put(
        &self,
        tenant: &str,
        mut input: CloudCredentials,
    ) -> Result<CloudCredentials> {
        let t = self.tenant(tenant).await?;
        input.validate()?;
        let (_, old) = self.stored_credentials(&t)?;
        let mut secrets = CredentialSecrets {
            aws_secret_access_key: input
                .aws_secret_access_key
                .take()
                .or(old.aws_secret_access_key),
            license_token: input.license_token.take().or(old.license_token),
        };
        if input.aws_authentication_mode != TenantAuthMode::Keypair {
            secrets.aws_secret_access_key = None;
        } else if secrets.aws_secret_access_key.is_none() {
            // Well-formed, but the stored credentials can't take it.
            return Err(crate::error::Error::conflict(
                "awsSecretAccessKey is required when awsAuthenticationMode is KEYPAIR: none is stored",
            ));
        }
        if input.license_mode != LicenseMode::AutoUpdate {
            secrets.license_token = None;
        } else if secrets.license_token.is_none() {
            return Err(crate::error::Error::conflict(
                "licenseToken is required when licenseMode is AUTO_UPDATE: none is stored",
            ));
        }
        if input.license_mode != LicenseMode::Static {
            input.license = None;
        }
        let sealed = if secrets.aws_secret_access_key.is_some() || secrets.license_token.is_some() {
            Some(
                self.secrets
                    .seal(&Place::tenant_credentials(&t.id), &to_doc(&secrets)?)?,
            )
        } else {
            None
        };
        input.has_aws_secret_access_key = secrets.aws_secret_access_key.is_some();
        input.has_license_token = secrets.license_token.is_some();
        let stored = StoredCredentials {
            doc: input.clone(),
            sealed,
        };
        q::tenant_set_cloud_credentials(&self.store.db, &t.id, to_doc(&stored)?).await?;
        Ok(input)
    }

    pub async fn cloud_tags_get(&self, tenant: &str) -> Result<BTreeMap<String, String>> {
        let t = self.tenant(tenant).await?;
        from_doc(&t.cloud_tags)
    }

    pub async fn cloud_tags_put(
        &self,
        tenant: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let t = self.tenant(tenant).await?;
        check_cloud_tags("cloud tags", &tags)?;
        q::tenant_set_cloud_tags(&self.store.db, &t.id, to_doc(&tags)?).await?;
        Ok(tags)
    }
}
