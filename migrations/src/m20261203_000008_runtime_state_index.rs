//! An index of instance runtimes by tenant and state: the console's
//! dashboard (the running instances' heartbeats) and its instance list
//! filtered by state read them without a scan of the tenant's runtimes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum InstanceRuntimes {
    Table,
    TenantId,
    State,
}

const NAME: &str = "idx_runtime_tenant_state";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(InstanceRuntimes::Table)
                    .col(InstanceRuntimes::TenantId)
                    .col(InstanceRuntimes::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NAME)
                    .table(InstanceRuntimes::Table)
                    .to_owned(),
            )
            .await
    }
}
