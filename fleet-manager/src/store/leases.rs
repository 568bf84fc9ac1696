//! Leader leases: each reconciler runs on one FM replica at a time. A lease
//! is a row in `settings` (`lease:NAME`) naming its owner and expiry; the
//! owner renews it on every pass, and another replica takes it over once it
//! has expired (its owner died).

use super::entities::setting;
use super::{Backend, Store};
use crate::error::{Error, Result};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QuerySelect, Set, TransactionTrait};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Lease {
    owner: String,
    expires_at: i64,
}

impl Store {
    /// Takes or renews the lease `name` for `owner` for `ttl_ms`; false while
    /// another owner holds an unexpired one.
    pub async fn lease_acquire(&self, name: &str, owner: &str, ttl_ms: i64) -> Result<bool> {
        let key = format!("lease:{name}");
        let now = self.clock_ms().await?;
        let txn = self.db.begin().await?;
        let mut find = setting::Entity::find_by_id(key.clone());
        if self.backend() == Backend::Postgres {
            find = find.lock_exclusive();
        }
        let row = find.one(&txn).await?;
        let held_by_other = row
            .as_ref()
            .and_then(|r| serde_json::from_str::<Lease>(&r.value).ok())
            .is_some_and(|l| l.owner != owner && l.expires_at > now);
        if held_by_other {
            return Ok(false);
        }
        let value = serde_json::to_string(&Lease {
            owner: owner.to_string(),
            expires_at: now + ttl_ms,
        })
        .map_err(Error::internal)?;
        let written = match row {
            Some(r) => {
                let mut am = r.into_active_model();
                am.value = Set(value);
                am.updated_at = Set(now);
                am.update(&txn).await.map(|_| ())
            }
            None => setting::ActiveModel {
                key: Set(key),
                value: Set(value),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await
            .map(|_| ()),
        };
        match written.map_err(Error::from) {
            Ok(()) => {
                txn.commit().await?;
                Ok(true)
            }
            // Another replica created it at the same moment: it leads.
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
