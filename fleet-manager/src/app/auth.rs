//! API keys: creation (admin CLI), listing, revocation, and checking the
//! credentials of every request.

use super::App;
use crate::crypto::{hash_api_secret, new_api_key, verify_api_secret};
use crate::error::{Error, Result};
use crate::store::resources as q;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// What a secret presented with an unknown key id is compared with.
const UNKNOWN_ID_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// API keys are few: FM keeps their ids in memory, so a flood of unknown
/// ids costs no database round trip; a known id is checked against its
/// stored row, so a key revoked (by any process, or by a restore of FM's
/// backup) stops working at once. The table is read again when it is older than its
/// TTL, or when an unknown id is presented and the table is older than a
/// second (a key another process just created); reads are single-flight.
pub(crate) struct KeyTable {
    ttl: Duration,
    snapshot: std::sync::RwLock<Option<Arc<Snapshot>>>,
    reload: tokio::sync::Mutex<()>,
    reads: AtomicU64,
}

struct Snapshot {
    /// The ids of the keys; secrets are checked against the stored row.
    ids: HashSet<String>,
    loaded: Instant,
}

impl KeyTable {
    pub(crate) fn new(ttl: Duration) -> KeyTable {
        KeyTable {
            ttl,
            snapshot: Default::default(),
            reload: Default::default(),
            reads: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, s: Option<Arc<Snapshot>>) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// The table to check `id` against, read again if it may be stale.
    async fn for_id(&self, store: &crate::store::Store, id: &str) -> Result<Arc<Snapshot>> {
        let usable = |s: &Snapshot| {
            let age = s.loaded.elapsed();
            age < self.ttl && (s.ids.contains(id) || age < MISS_REREAD.min(self.ttl))
        };
        if let Some(s) = self.current().filter(|s| usable(s)) {
            return Ok(s);
        }
        let asked = Instant::now();
        let _one = self.reload.lock().await;
        // Another caller may have read it while this one waited.
        if let Some(s) = self.current().filter(|s| s.loaded >= asked) {
            return Ok(s);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let ids = q::api_key_list(&store.db)
            .await?
            .into_iter()
            .map(|k| k.id)
            .collect();
        let s = Arc::new(Snapshot {
            ids,
            loaded: Instant::now(),
        });
        self.set(Some(s.clone()));
        Ok(s)
    }
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyTable(..)")
    }
}

/// An unknown key id makes FM reread its keys at most this often.
const MISS_REREAD: Duration = Duration::from_secs(1);

impl App {
    /// Checks an API key id and secret; any mismatch is the same 401.
    pub async fn authenticate(&self, id: &str, secret: &str) -> Result<()> {
        if crate::model::check_id("api key", id).is_err() {
            return Err(Error::Unauthorized);
        }
        let table = self.keys.for_id(&self.store, id).await?;
        if !table.ids.contains(id) {
            // The same hashing as for a known id, so the answer's timing
            // doesn't tell which ids exist.
            let _ = verify_api_secret(secret, UNKNOWN_ID_HASH);
            return Err(Error::Unauthorized);
        }
        match q::api_key_get(&self.store.db, id).await? {
            Some(k) if verify_api_secret(secret, &k.secret_hash) => Ok(()),
            Some(_) => Err(Error::Unauthorized),
            None => {
                // The keys changed behind this table (a revocation by another
                // process, a restore): read them again on the next unknown id.
                self.keys.set(None);
                Err(Error::Unauthorized)
            }
        }
    }

    /// How many times authentication has read the API keys from the store.
    pub fn auth_store_reads(&self) -> u64 {
        self.keys.reads.load(Ordering::Relaxed)
    }

    pub async fn api_key_create(&self, label: Option<String>) -> Result<NewApiKey> {
        let (id, secret) = new_api_key();
        q::api_key_insert(&self.store.db, &id, hash_api_secret(&secret), label).await?;
        self.keys.set(None);
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
        let deleted = q::api_key_delete(&self.store.db, id).await?;
        self.keys.set(None);
        match deleted {
            0 => Err(Error::not_found("api key", id)),
            _ => Ok(()),
        }
    }
}
