//! FM's own backup: every table of the store as JSON rows in one file, taken
//! in one read-only transaction, restorable into an empty database of either
//! backend (so it also moves FM from SQLite to PostgreSQL).
//!
//! Sealed values (cloud secrets, the CA's key) stay sealed in the file: a
//! restored FM needs the same secrets key (`FM_SECRETS_KEY` or
//! `DATA_DIR/secrets.key`). The file holds API key hashes and agents'
//! enrollment history, so it is written with mode 0600.

use super::entities::*;
use super::{Backend, Store};
use crate::error::{Error, Result};
use crate::model::now_ms;
use fm_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ConnectionTrait, EntityTrait, IntoActiveModel, IsolationLevel, PaginatorTrait,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const FORMAT: &str = "fleet-manager-backup/1";

/// A backup file's contents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    pub created_at: i64,
    /// The migrations the source store had applied.
    pub migrations: Vec<String>,
    /// Rows by table, in restore order.
    pub tables: BTreeMap<String, Vec<Value>>,
}

/// Calls `$mac!(entity_module, "table", args...)` once per table, parents
/// before children.
macro_rules! each_table {
    ($mac:ident, $($args:tt)*) => {
        $mac!(tenant, "tenants", $($args)*);
        $mac!(user, "users", $($args)*);
        $mac!(api_key, "api_keys", $($args)*);
        $mac!(image, "images", $($args)*);
        $mac!(setting, "settings", $($args)*);
        $mac!(cloud_account, "cloud_accounts", $($args)*);
        $mac!(virtual_network, "virtual_networks", $($args)*);
        $mac!(instance_template, "instance_templates", $($args)*);
        $mac!(instance, "instances", $($args)*);
        $mac!(instance_runtime, "instance_runtimes", $($args)*);
        $mac!(snapshot, "snapshots", $($args)*);
        $mac!(backup, "backups", $($args)*);
        $mac!(enrollment_token, "enrollment_tokens", $($args)*);
        $mac!(operation, "operations", $($args)*);
        $mac!(operation_log, "operation_logs", $($args)*);
        $mac!(event, "events", $($args)*);
        $mac!(audit, "audit_log", $($args)*);
        $mac!(rollout, "rollouts", $($args)*);
        $mac!(rollout_target, "rollout_targets", $($args)*);
        $mac!(request_id, "request_ids", $($args)*);
    };
}

async fn applied_migrations<C: ConnectionTrait>(c: &C) -> Result<Vec<String>> {
    Ok(Migrator::get_applied_migrations(c)
        .await
        .map_err(Error::internal)?
        .iter()
        .map(|m| m.name().to_string())
        .collect())
}

impl Store {
    /// Reads the whole store in one consistent, read-only transaction.
    pub async fn backup(&self) -> Result<Backup> {
        // Read first, outside the read-only transaction: looking migrations up
        // may create their bookkeeping table.
        let migrations = applied_migrations(&self.db).await?;
        let txn = self
            .db
            .begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?;
        let mut tables = BTreeMap::new();
        macro_rules! dump {
            ($ent:ident, $name:literal, $txn:expr, $tables:expr) => {
                let rows = $ent::Entity::find().all($txn).await?;
                let rows: Vec<Value> = rows
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(Error::internal)?;
                $tables.insert($name.to_string(), rows);
            };
        }
        each_table!(dump, &txn, tables);
        txn.commit().await?;
        Ok(Backup {
            format: FORMAT.into(),
            created_at: now_ms(),
            migrations,
            tables,
        })
    }

    /// Loads a backup into this store, which must hold no data (a fresh
    /// database, migrated) unless `replace`, which first deletes everything.
    /// All or nothing: one transaction.
    pub async fn restore(&self, b: &Backup, replace: bool) -> Result<()> {
        if b.format != FORMAT {
            return Err(Error::invalid(format!(
                "not a backup of this FM (format '{}')",
                b.format
            )));
        }
        let here = applied_migrations(&self.db).await?;
        if here != b.migrations {
            return Err(Error::invalid(format!(
                "the backup's schema ({} migrations) differs from this FM's ({}): restore with the FM version that took it",
                b.migrations.len(),
                here.len()
            )));
        }
        let txn = self.db.begin().await?;
        let mut existing = 0u64;
        macro_rules! count {
            ($ent:ident, $name:literal, $txn:expr, $n:expr) => {
                $n += $ent::Entity::find().count($txn).await?;
            };
        }
        each_table!(count, &txn, existing);
        if existing > 0 && !replace {
            return Err(Error::conflict(format!(
                "the target database holds {existing} rows: restore into an empty database, or pass --replace"
            )));
        }
        if existing > 0 {
            // Children first.
            macro_rules! wipe {
                ($ent:ident, $name:literal, $txn:expr, $unused:expr) => {
                    $ent::Entity::delete_many().exec($txn).await?;
                };
            }
            wipe!(request_id, "request_ids", &txn, ());
            wipe!(rollout_target, "rollout_targets", &txn, ());
            wipe!(rollout, "rollouts", &txn, ());
            wipe!(audit, "audit_log", &txn, ());
            wipe!(event, "events", &txn, ());
            wipe!(operation_log, "operation_logs", &txn, ());
            wipe!(operation, "operations", &txn, ());
            wipe!(enrollment_token, "enrollment_tokens", &txn, ());
            wipe!(backup, "backups", &txn, ());
            wipe!(snapshot, "snapshots", &txn, ());
            wipe!(instance_runtime, "instance_runtimes", &txn, ());
            wipe!(instance, "instances", &txn, ());
            wipe!(instance_template, "instance_templates", &txn, ());
            wipe!(virtual_network, "virtual_networks", &txn, ());
            wipe!(cloud_account, "cloud_accounts", &txn, ());
            wipe!(setting, "settings", &txn, ());
            wipe!(image, "images", &txn, ());
            // Sessions are not kept in a backup: a restore signs everyone out.
            wipe!(session, "sessions", &txn, ());
            wipe!(api_key, "api_keys", &txn, ());
            wipe!(user, "users", &txn, ());
            wipe!(tenant, "tenants", &txn, ());
        }
        macro_rules! load {
            ($ent:ident, $name:literal, $txn:expr, $b:expr) => {
                let rows = $b.tables.get($name).map(Vec::as_slice).unwrap_or_default();
                for chunk in rows.chunks(200) {
                    let models = chunk
                        .iter()
                        .map(|v| {
                            serde_json::from_value::<$ent::Model>(v.clone())
                                .map(|m| m.into_active_model())
                                .map_err(|e| Error::invalid(format!("table {}: {e}", $name)))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    $ent::Entity::insert_many(models)
                        .exec_without_returning($txn)
                        .await?;
                }
            };
        }
        each_table!(load, &txn, b);
        if self.backend() == Backend::Postgres {
            for t in ["operation_logs", "events"] {
                txn.execute_unprepared(&format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false)"
                ))
                .await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }
}

/// Writes a backup to `path` (mode 0600), through a temporary file.
pub fn write_file(b: &Backup, path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("partial");
    // A file (or a symlink) left there is removed, never written through
    // nor its mode kept: the new one is made fresh, 0600.
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let f = opts
        .open(&tmp)
        .map_err(|e| Error::invalid(format!("can't write {}: {e}", tmp.display())))?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer(&mut w, b).map_err(Error::internal)?;
    w.flush().map_err(Error::internal)?;
    w.into_inner()
        .map_err(|e| Error::internal(e.to_string()))?
        .sync_all()
        .map_err(Error::internal)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::invalid(format!("can't write {}: {e}", path.display())))
}

pub fn read_file(path: &std::path::Path) -> Result<Backup> {
    let f = std::fs::File::open(path)
        .map_err(|e| Error::invalid(format!("can't read {}: {e}", path.display())))?;
    serde_json::from_reader(std::io::BufReader::new(f))
        .map_err(|e| Error::invalid(format!("{} is not a readable backup: {e}", path.display())))
}
