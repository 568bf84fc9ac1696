//! Fleet Manager's schema as sea-orm migrations.
//!
//! Every migration is written with sea-query's schema builder (or SQL valid on
//! both backends), so the same list applies to PostgreSQL and to SQLite. The
//! server applies pending migrations at start.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_initial;
mod m20261121_000002_lifecycle;
mod m20261121_000003_automated_snapshots;
mod m20261121_000004_enrollment_key;
mod m20261121_000005_backups;
mod m20261202_000006_identity;
mod m20261203_000007_sessions;
mod m20261203_000008_runtime_state_index;
mod m20261204_000009_rollouts;
mod m20261204_000010_request_ids;

/// The ordered list of migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_initial::Migration),
            Box::new(m20261121_000002_lifecycle::Migration),
            Box::new(m20261121_000003_automated_snapshots::Migration),
            Box::new(m20261121_000004_enrollment_key::Migration),
            Box::new(m20261121_000005_backups::Migration),
            Box::new(m20261202_000006_identity::Migration),
            Box::new(m20261203_000007_sessions::Migration),
            Box::new(m20261203_000008_runtime_state_index::Migration),
            Box::new(m20261204_000009_rollouts::Migration),
            Box::new(m20261204_000010_request_ids::Migration),
        ]
    }
}
