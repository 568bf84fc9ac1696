//! API keys: creation (admin CLI), listing, revocation, and checking the
//! credentials of every request. A key belongs to a user and acts with a
//! role no higher than the user's; a key of a disabled user, or past its
//! expiry, is refused like a wrong one.

use super::App;
use crate::crypto::{hash_api_secret, new_api_key, verify_api_secret};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::model::user::Role;
use crate::opctx::OpCtx;
use crate::store::identity as q;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
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
    /// The user the key acts as.
    pub user: Option<String>,
    /// The role the key acts with now: its own, at most its user's.
    pub role: Option<Role>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// Why credentials were refused: for the audit log only; the caller always
/// gets the same 401.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The key presented, when it exists.
    pub key_id: Option<String>,
    /// Its user, when it has one.
    pub actor: Option<String>,
    pub reason: &'static str,
}

impl Refused {
    fn unknown() -> Refused {
        Refused {
            key_id: None,
            actor: None,
            reason: "no such key",
        }
    }
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
    /// When each key's last use was last written.
    touched: std::sync::Mutex<HashMap<String, Instant>>,
}

/// A key's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

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
            touched: Default::default(),
        }
    }

    /// Whether the key's last use should be written now.
    fn due(&self, id: &str) -> bool {
        let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match t.get(id) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                if t.len() > 100_000 {
                    t.clear();
                }
                t.insert(id.to_string(), now);
                true
            }
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the table: the next check reads the keys again.
    pub(super) fn forget(&self) {
        self.set(None);
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
    /// Checks an API key id and secret; the context of the request they
    /// allow, or why they are refused (any refusal is the same 401 to the
    /// caller).
    pub async fn authenticate(&self, id: &str, secret: &str) -> Result<Result<OpCtx, Refused>> {
        if crate::model::check_id("api key", id).is_err() {
            return Ok(Err(Refused::unknown()));
        }
        let table = self.keys.for_id(&self.store, id).await?;
        if !table.ids.contains(id) {
            // The same hashing as for a known id, so the answer's timing
            // doesn't tell which ids exist.
            let _ = verify_api_secret(secret, UNKNOWN_ID_HASH);
            return Ok(Err(Refused::unknown()));
        }
        let Some((k, user)) = q::api_key_with_user(&self.store.db, id).await? else {
            // The keys changed behind this table (a revocation by another
            // process, a restore): read them again on the next unknown id.
            self.keys.set(None);
            return Ok(Err(Refused::unknown()));
        };
        let refused = |reason, actor: Option<&str>| {
            Ok(Err(Refused {
                key_id: Some(k.id.clone()),
                actor: actor.map(str::to_owned),
                reason,
            }))
        };
        if !verify_api_secret(secret, &k.secret_hash) {
            return refused("wrong secret", user.as_ref().map(|u| u.name.as_str()));
        }
        let Some(user) = user else {
            return refused("the key belongs to no user", None);
        };
        if user.disabled {
            return refused("the key's user is disabled", Some(&user.name));
        }
        let now = now_ms();
        if k.expires_at.is_some_and(|e| e <= now) {
            return refused("the key has expired", Some(&user.name));
        }
        let user_role = Role::parse(&user.role).map_err(Error::internal)?;
        let role = match &k.role {
            Some(r) => Role::parse(r).map_err(Error::internal)?.min(user_role),
            None => user_role,
        };
        if self.keys.due(&k.id) {
            let db = self.store.db.clone();
            let key = k.id.clone();
            tokio::spawn(async move {
                if let Err(e) = q::api_key_touch(&db, &key, now).await {
                    tracing::warn!(key = %key, error = %e, "could not record the key's last use");
                }
            });
        }
        Ok(Ok(OpCtx::user(user.id, user.name, Some(k.id), role)))
    }

    /// How many times authentication has read the API keys from the store.
    pub fn auth_store_reads(&self) -> u64 {
        self.keys.reads.load(Ordering::Relaxed)
    }

    /// A new key of user `user`, acting with `role` (at most the user's;
    /// the user's own when none), valid for `ttl` (forever when none).
    pub async fn api_key_create(
        &self,
        user: &str,
        role: Option<Role>,
        ttl: Option<Duration>,
        label: Option<String>,
    ) -> Result<NewApiKey> {
        let u = self.user_named(user).await?;
        let user_role = Role::parse(&u.role).map_err(Error::internal)?;
        if let Some(r) = role
            && r > user_role
        {
            return Err(Error::invalid(format!(
                "a key's role can't be above its user's: '{user}' is {user_role}, the key asks for {r}"
            )));
        }
        if u.disabled {
            return Err(Error::conflict(format!(
                "user '{user}' is disabled; enable it before giving it keys"
            )));
        }
        let expires_at = match ttl {
            Some(t) if t.is_zero() => {
                return Err(Error::invalid("a key's lifetime must be longer than zero"));
            }
            Some(t) => Some(now_ms().saturating_add(t.as_millis().min(i64::MAX as u128) as i64)),
            None => None,
        };
        let (id, secret) = new_api_key();
        q::api_key_insert(
            &self.store.db,
            q::NewKey {
                id: id.clone(),
                secret_hash: hash_api_secret(&secret),
                label,
                user_id: u.id,
                role: role.map(|r| r.as_str().to_string()),
                expires_at,
            },
        )
        .await?;
        self.keys.set(None);
        Ok(NewApiKey { id, secret })
    }

    pub async fn api_key_list(&self) -> Result<Vec<ApiKeyInfo>> {
        let users: HashMap<String, crate::store::entities::user::Model> =
            q::user_list(&self.store.db)
                .await?
                .into_iter()
                .map(|u| (u.id.clone(), u))
                .collect();
        Ok(q::api_key_list(&self.store.db)
            .await?
            .into_iter()
            .map(|k| {
                let u = k.user_id.as_ref().and_then(|id| users.get(id));
                let user_role = u.and_then(|u| Role::parse(&u.role).ok());
                let own = k.role.as_deref().and_then(|r| Role::parse(r).ok());
                ApiKeyInfo {
                    id: k.id,
                    label: k.label,
                    user: u.map(|u| u.name.clone()),
                    role: match (own, user_role) {
                        (Some(o), Some(u)) => Some(o.min(u)),
                        (None, u) => u,
                        (Some(_), None) => None,
                    },
                    expires_at: k.expires_at,
                    last_used_at: k.last_used_at,
                    created_at: k.created_at,
                }
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
