//! The initial schema: tenants, API keys, the image catalog, cloud accounts,
//! virtual networks, instance templates, instances, and the operations engine
//! (operations, their log lines, and the event outbox).
//!
//! Timestamps are milliseconds since the Unix epoch (`BIGINT`), which reads
//! the same on both backends. Public documents are stored as JSON text.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    CloudCredentials,
    CloudTags,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    SecretHash,
    Label,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Images {
    Table,
    Id,
    Label,
    NodeVersion,
    SortKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CloudAccounts {
    Table,
    Id,
    TenantId,
    Label,
    Doc,
    Secret,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum VirtualNetworks {
    Table,
    Id,
    TenantId,
    AccountId,
    Label,
    Doc,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InstanceTemplates {
    Table,
    Id,
    TenantId,
    Label,
    Doc,
    Secret,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Instances {
    Table,
    Id,
    TenantId,
    Label,
    TemplateId,
    NetworkId,
    ImageId,
    Doc,
    Generation,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Operations {
    Table,
    Id,
    TenantId,
    Kind,
    TargetId,
    State,
    Params,
    Saga,
    NextStep,
    TotalSteps,
    CurrentStep,
    Result,
    ErrorType,
    ErrorMessage,
    AbortRequested,
    LeaseOwner,
    LeaseExpiresAt,
    Attempts,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OperationLogs {
    Table,
    Id,
    OperationId,
    At,
    Line,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    TenantId,
    OperationId,
    Kind,
    TargetId,
    At,
    Detail,
}

fn id_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn fk(
    from_table: impl IntoIden + 'static,
    from_col: impl IntoIden + 'static,
    to_table: impl IntoIden + 'static,
    to_col: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(id_col(Tenants::Id))
                    .col(ColumnDef::new(Tenants::CloudCredentials).text().not_null())
                    .col(ColumnDef::new(Tenants::CloudTags).text().not_null())
                    .col(ColumnDef::new(Tenants::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(id_col(ApiKeys::Id))
                    .col(
                        ColumnDef::new(ApiKeys::SecretHash)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::Label).text())
                    .col(ColumnDef::new(ApiKeys::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Images::Table)
                    .col(id_col(Images::Id))
                    .col(ColumnDef::new(Images::Label).text().not_null())
                    .col(
                        ColumnDef::new(Images::NodeVersion)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Images::SortKey).big_integer().not_null())
                    .col(ColumnDef::new(Images::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CloudAccounts::Table)
                    .col(id_col(CloudAccounts::Id))
                    .col(
                        ColumnDef::new(CloudAccounts::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CloudAccounts::Label).text().not_null())
                    .col(ColumnDef::new(CloudAccounts::Doc).text().not_null())
                    .col(ColumnDef::new(CloudAccounts::Secret).text())
                    .col(
                        ColumnDef::new(CloudAccounts::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CloudAccounts::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(&mut fk(
                        CloudAccounts::Table,
                        CloudAccounts::TenantId,
                        Tenants::Table,
                        Tenants::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VirtualNetworks::Table)
                    .col(id_col(VirtualNetworks::Id))
                    .col(
                        ColumnDef::new(VirtualNetworks::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(VirtualNetworks::AccountId).string_len(64))
                    .col(ColumnDef::new(VirtualNetworks::Label).text().not_null())
                    .col(ColumnDef::new(VirtualNetworks::Doc).text().not_null())
                    .col(
                        ColumnDef::new(VirtualNetworks::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(VirtualNetworks::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(&mut fk(
                        VirtualNetworks::Table,
                        VirtualNetworks::TenantId,
                        Tenants::Table,
                        Tenants::Id,
                    ))
                    .foreign_key(&mut fk(
                        VirtualNetworks::Table,
                        VirtualNetworks::AccountId,
                        CloudAccounts::Table,
                        CloudAccounts::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InstanceTemplates::Table)
                    .col(id_col(InstanceTemplates::Id))
                    .col(
                        ColumnDef::new(InstanceTemplates::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(InstanceTemplates::Label).text().not_null())
                    .col(ColumnDef::new(InstanceTemplates::Doc).text().not_null())
                    .col(ColumnDef::new(InstanceTemplates::Secret).text())
                    .col(
                        ColumnDef::new(InstanceTemplates::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(InstanceTemplates::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(&mut fk(
                        InstanceTemplates::Table,
                        InstanceTemplates::TenantId,
                        Tenants::Table,
                        Tenants::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Instances::Table)
                    .col(id_col(Instances::Id))
                    .col(
                        ColumnDef::new(Instances::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Instances::Label).text().not_null())
                    .col(
                        ColumnDef::new(Instances::TemplateId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Instances::NetworkId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Instances::ImageId).string_len(64).not_null())
                    .col(ColumnDef::new(Instances::Doc).text().not_null())
                    .col(
                        ColumnDef::new(Instances::Generation)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Instances::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Instances::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(&mut fk(
                        Instances::Table,
                        Instances::TenantId,
                        Tenants::Table,
                        Tenants::Id,
                    ))
                    .foreign_key(&mut fk(
                        Instances::Table,
                        Instances::TemplateId,
                        InstanceTemplates::Table,
                        InstanceTemplates::Id,
                    ))
                    .foreign_key(&mut fk(
                        Instances::Table,
                        Instances::NetworkId,
                        VirtualNetworks::Table,
                        VirtualNetworks::Id,
                    ))
                    .foreign_key(&mut fk(
                        Instances::Table,
                        Instances::ImageId,
                        Images::Table,
                        Images::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, table, col) in [
            (
                "idx_instances_tenant_created",
                Instances::Table,
                Instances::TenantId,
            ),
            (
                "idx_instances_template",
                Instances::Table,
                Instances::TemplateId,
            ),
            (
                "idx_instances_network",
                Instances::Table,
                Instances::NetworkId,
            ),
        ] {
            manager
                .create_index(Index::create().name(name).table(table).col(col).to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_networks_account")
                    .table(VirtualNetworks::Table)
                    .col(VirtualNetworks::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Operations::Table)
                    .col(id_col(Operations::Id))
                    .col(
                        ColumnDef::new(Operations::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Operations::Kind).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Operations::TargetId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Operations::State).string_len(16).not_null())
                    .col(ColumnDef::new(Operations::Params).text().not_null())
                    .col(ColumnDef::new(Operations::Saga).text().not_null())
                    .col(ColumnDef::new(Operations::NextStep).integer().not_null())
                    .col(ColumnDef::new(Operations::TotalSteps).integer().not_null())
                    .col(ColumnDef::new(Operations::CurrentStep).string_len(64))
                    .col(ColumnDef::new(Operations::Result).text())
                    .col(ColumnDef::new(Operations::ErrorType).string_len(64))
                    .col(ColumnDef::new(Operations::ErrorMessage).text())
                    .col(
                        ColumnDef::new(Operations::AbortRequested)
                            .boolean()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Operations::LeaseOwner).string_len(64))
                    .col(ColumnDef::new(Operations::LeaseExpiresAt).big_integer())
                    .col(ColumnDef::new(Operations::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(Operations::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Operations::StartedAt).big_integer())
                    .col(ColumnDef::new(Operations::FinishedAt).big_integer())
                    .col(
                        ColumnDef::new(Operations::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operations_state_created")
                    .table(Operations::Table)
                    .col(Operations::State)
                    .col(Operations::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // At most one unfinished operation per target object: two deletions of
        // one template can't both run. Partial indexes read the same on both
        // backends.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_operations_one_active_per_target \
                 ON operations (target_id) WHERE state IN ('pending', 'running')",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OperationLogs::Table)
                    .col(
                        ColumnDef::new(OperationLogs::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OperationLogs::OperationId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(OperationLogs::At).big_integer().not_null())
                    .col(ColumnDef::new(OperationLogs::Line).text().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(OperationLogs::Table, OperationLogs::OperationId)
                            .to(Operations::Table, Operations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operation_logs_op")
                    .table(OperationLogs::Table)
                    .col(OperationLogs::OperationId)
                    .col(OperationLogs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(
                        ColumnDef::new(Events::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Events::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Events::OperationId).string_len(64))
                    .col(ColumnDef::new(Events::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(Events::TargetId).string_len(64).not_null())
                    .col(ColumnDef::new(Events::At).big_integer().not_null())
                    .col(ColumnDef::new(Events::Detail).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_operation")
                    .table(Events::Table)
                    .col(Events::OperationId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Events::Table.into_iden(),
            OperationLogs::Table.into_iden(),
            Operations::Table.into_iden(),
            Instances::Table.into_iden(),
            InstanceTemplates::Table.into_iden(),
            VirtualNetworks::Table.into_iden(),
            CloudAccounts::Table.into_iden(),
            Images::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
