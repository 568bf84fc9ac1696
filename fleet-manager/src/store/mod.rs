//! The store: FM's one data-access layer over sea-orm.
//!
//! PostgreSQL in production, SQLite as the embedded default; the same code
//! and the same migrations serve both. Functions are named resource-first
//! (`instance_list`, `op_claim`) and live in one file per resource.
//! Multi-row writes run in one transaction each.

pub mod backup;
pub mod entities;
pub mod identity;
pub mod leases;
pub mod lifecycle;
pub mod operations;
pub mod overview;
pub mod page;
pub mod requests;
pub mod resources;
pub mod rollouts;
pub mod sealed;
pub mod sessions;

pub use operations::{ClaimedOp, NewOperation, OpOutcome};

use crate::error::{Error, Result};
use fm_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, SqlxSqliteConnector, TransactionTrait,
};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// What a [`Store::transaction`] body returns.
pub(crate) type TxFuture<'t, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 't>>;

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    /// The database clock's offset from this host's, and when it was read.
    clock: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, i64)>>>,
}

/// How long a reading of the database clock's offset is used.
const CLOCK_REREAD: Duration = Duration::from_secs(10);

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`) and applies
    /// pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let db = if url.starts_with("sqlite:") {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(|e| Error::internal(format!("bad SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // One connection: SQLite has one writer, and a single connection
            // makes every transaction serializable without busy retries.
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .map_err(|e| Error::internal(format!("can't open SQLite database: {e}")))?;
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut opts = ConnectOptions::new(url.to_string());
            opts.max_connections(16)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(10))
                .sqlx_logging(false);
            Database::connect(opts)
                .await
                .map_err(|e| Error::internal(format!("can't connect to PostgreSQL: {e}")))?
        } else {
            return Err(Error::invalid(format!(
                "unsupported database URL '{}': use sqlite://PATH or postgres://...",
                redact_url(url)
            )));
        };
        Migrator::up(&db, None)
            .await
            .map_err(|e| Error::internal(format!("migrations failed: {e}")))?;
        Ok(Store {
            db,
            clock: Default::default(),
        })
    }

    /// The SQLite URL for a database file in `data_dir`.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("fleet-manager.db").display())
    }

    /// The file of a SQLite URL (`None` for another database or memory).
    pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.starts_with(":memory:")).then(|| path.into())
    }

    /// The connection, for data-access functions and transactions.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Runs `f` in one transaction, committed when `f` succeeds and rolled
    /// back when it fails (or is dropped midway). The one way the store
    /// writes several rows together.
    pub(crate) async fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> TxFuture<'t, T> + Send,
    {
        let txn = self.db.begin().await?;
        let out = f(&txn).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// The time leases are reckoned in, in milliseconds since the epoch:
    /// the database's clock on PostgreSQL (replicas whose clocks differ
    /// still agree on when a lease runs out), the host's with SQLite (the
    /// database is on this host).
    ///
    /// The offset between the two clocks is read at most every few seconds,
    /// so a claim costs no extra round trip.
    pub async fn clock_ms(&self) -> Result<i64> {
        let local = crate::model::now_ms();
        if self.backend() == Backend::Sqlite {
            return Ok(local);
        }
        let cached = *self.clock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, offset)) = cached
            && at.elapsed() < CLOCK_REREAD
        {
            return Ok(local + offset);
        }
        let db = self.db_clock_ms().await?;
        let offset = db - crate::model::now_ms();
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), offset));
        Ok(db)
    }

    async fn db_clock_ms(&self) -> Result<i64> {
        match self.backend() {
            Backend::Sqlite => Ok(crate::model::now_ms()),
            Backend::Postgres => {
                let row = self
                    .db
                    .query_one(sea_orm::Statement::from_string(
                        DatabaseBackend::Postgres,
                        "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint AS now",
                    ))
                    .await?
                    .ok_or_else(|| Error::internal("the database did not say what time it is"))?;
                Ok(row.try_get::<i64>("", "now")?)
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self.db.get_database_backend() {
            DatabaseBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    pub async fn close(self) {
        let _ = self.db.close().await;
    }
}

/// A database URL with any password replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact_url("postgres://fm:hunter2@db:5432/fm"),
            "postgres://fm:***@db:5432/fm"
        );
        assert_eq!(super::redact_url("sqlite:///x/fm.db"), "sqlite:///x/fm.db");
    }
}
