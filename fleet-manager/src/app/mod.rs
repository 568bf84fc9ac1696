//! The application layer: every operation on tenants, accounts, networks,
//! templates, instances, images, futures and API keys. Validation lives here,
//! once, for every surface; handlers only parse, call one method, render.

mod accounts;
pub mod audit;
mod auth;
pub mod backups;
mod changes;
mod drift;
mod fleet;
mod futures;
mod images;
mod instances;
mod lifecycle;
mod networks;
pub mod overview;
pub mod rollouts;
mod schedules;
pub mod sessions;
mod templates;
mod tenants;
mod users;

use crate::crypto::SecretBox;
use crate::error::{Error, Result};
use crate::model::network::NetworkDefaults;
use crate::model::{check_id, now_ms};
use crate::ops::Engine;
use crate::store::Store;
use crate::store::entities::{image, tenant};
use crate::store::resources as q;
use std::time::Duration;

pub use changes::{Change, ClientRequest, Versioned, etag_of};
pub use drift::DriftReport;
pub use futures::StartedFuture;
pub use images::file_sha256;
pub use lifecycle::Action;
pub use schedules::ScheduleReport;
pub use users::FIRST_PASSWORD_FILE;

/// Settings the application layer needs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Where `?useDefaultValues=true` puts a network.
    pub network_defaults: NetworkDefaults,
    /// How long a call that starts an operation waits for it before it
    /// answers with a running future.
    pub future_wait: Duration,
    /// Where node kits are kept and served to agents.
    pub kits_dir: std::path::PathBuf,
    /// The stand-in node binary that packages the seeded kits.
    pub standin_bin: Option<std::path::PathBuf>,
    /// An agent silent for longer than this is shown unreachable.
    pub agent_timeout: Duration,
    /// How long the in-memory table of API keys is trusted.
    pub auth_cache: Duration,
}

/// The application; cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    pub store: Store,
    pub engine: Engine,
    secrets: SecretBox,
    cfg: AppConfig,
    keys: std::sync::Arc<auth::KeyTable>,
    logins: std::sync::Arc<sessions::Throttle>,
    /// Wakes the rollout reconciler (a rollout created or moved).
    rollout_wake: std::sync::Arc<tokio::sync::Notify>,
}

impl App {
    pub fn new(store: Store, secrets: SecretBox, engine: Engine, cfg: AppConfig) -> App {
        let keys = std::sync::Arc::new(auth::KeyTable::new(cfg.auth_cache));
        App {
            store,
            engine,
            secrets,
            cfg,
            keys,
            logins: Default::default(),
            rollout_wake: Default::default(),
        }
    }

    /// Makes what must exist after the first start: tenant `main` and the
    /// image catalog. Safe to run on every start.
    pub async fn bootstrap(&self) -> Result<()> {
        let now = now_ms();
        q::tenant_ensure(
            &self.store.db,
            tenant::Model {
                id: crate::model::tenant::DEFAULT_TENANT.to_string(),
                cloud_credentials: tenants::empty_credentials_doc(),
                cloud_tags: "{}".to_string(),
                created_at: now,
            },
        )
        .await?;
        for (i, img) in crate::model::image::seed_catalog().into_iter().enumerate() {
            q::image_ensure(
                &self.store.db,
                image::Model {
                    id: img.id,
                    label: img.label,
                    node_version: img.node_version,
                    sort_key: i as i64,
                    created_at: now,
                    kit_file: None,
                    kit_sha256: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Fails with 404 unless the tenant exists.
    async fn tenant(&self, tenant: &str) -> Result<tenant::Model> {
        check_id("tenant", tenant)?;
        q::tenant_get(&self.store.db, tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant", tenant))
    }

    /// The not-found error for an object missing from a tenant, or the
    /// tenant's own when the tenant is the one missing.
    async fn missing(&self, tenant: &str, kind: &'static str, id: &str) -> Error {
        match self.tenant(tenant).await {
            Ok(_) => Error::not_found(kind, id),
            Err(e) => e,
        }
    }

    /// Publishes the seeded node kits; run once at server start.
    pub async fn publish_kits(&self) -> Result<()> {
        self.publish_standin_kits().await
    }

    pub async fn image_list(
        &self,
        tenant: &str,
        page: &crate::store::page::Page,
    ) -> Result<crate::store::page::Paged<crate::model::image::Image>> {
        self.tenant(tenant).await?;
        Ok(q::image_list(&self.store.db, page)
            .await?
            .map(|m| crate::model::image::Image {
                id: m.id,
                label: m.label,
                node_version: m.node_version,
            }))
    }
}

/// Serializes a stored document.
fn to_doc<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

/// Reads a stored document.
fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| Error::internal(format!("corrupt stored document: {e}")))
}

/// Checks that a body's `id`, if present, matches the path's.
fn check_body_id(path_id: &str, body_id: Option<&str>) -> Result<()> {
    match body_id {
        Some(b) if b != path_id => Err(Error::invalid(format!(
            "the body's id '{}' does not match the path's id '{path_id}'",
            b.escape_debug()
        ))),
        _ => Ok(()),
    }
}
