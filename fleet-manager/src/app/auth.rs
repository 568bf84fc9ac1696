//! API keys: creation (admin CLI), listing, revocation, and checking the
//! credentials of every request.

use super::App;
use crate::crypto::{hash_api_secret, new_api_key, verify_api_secret};
use crate::error::{Error, Result};
use crate::store::resources as q;
use serde::Serialize;

/// A newly created key; the secret is shown this once and never stored.
#[derive(Debug, Serialize)]
pub struct NewApiKey {
    pub id: String,
    pub secret: String,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    pub id: String,
    pub label: Option<String>,
    pub created_at: i64,
}

impl App {
    /// Checks an API key id and secret; any mismatch is the same 401.
    pub async fn authenticate(&self, id: &str, secret: &str) -> Result<()> {
        if crate::model::check_id("api key", id).is_err() {
            return Err(Error::Unauthorized);
        }
        match q::api_key_get(&self.store.db, id).await? {
            Some(k) if verify_api_secret(secret, &k.secret_hash) => Ok(()),
            _ => Err(Error::Unauthorized),
        }
    }

    pub async fn api_key_create(&self, label: Option<String>) -> Result<NewApiKey> {
        let (id, secret) = new_api_key();
        q::api_key_insert(&self.store.db, &id, hash_api_secret(&secret), label).await?;
        Ok(NewApiKey { id, secret })
    }

    pub async fn api_key_list(&self) -> Result<Vec<ApiKeyInfo>> {
        Ok(q::api_key_list(&self.store.db)
            .await?
            .into_iter()
            .map(|k| ApiKeyInfo {
                id: k.id,
                label: k.label,
                created_at: k.created_at,
            })
            .collect())
    }

    pub async fn api_key_delete(&self, id: &str) -> Result<()> {
        crate::model::check_id("api key", id)?;
        match q::api_key_delete(&self.store.db, id).await? {
            0 => Err(Error::not_found("api key", id)),
            _ => Ok(()),
        }
    }
}
