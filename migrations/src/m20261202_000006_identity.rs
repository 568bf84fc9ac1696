//! Who did what: local users with a role, API keys that belong to a user
//! (with a role no higher than the user's, an optional expiry and the time
//! of their last use), the initiator of every operation, and the audit log
//! (one row per mutating or refused request, written before the action runs
//! and completed after).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Role,
    PasswordHash,
    MustChangePassword,
    Disabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    UserId,
    Role,
    ExpiresAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Operations {
    Table,
    InitiatedBy,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    TenantId,
    Actor,
    KeyId,
    Role,
    Source,
    Method,
    Path,
    Object,
    Outcome,
    Status,
    Error,
    DurationMs,
    OperationId,
    RequestId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(
                        ColumnDef::new(Users::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Users::Name)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Users::Role).string_len(16).not_null())
                    .col(ColumnDef::new(Users::PasswordHash).string_len(256))
                    .col(
                        ColumnDef::new(Users::MustChangePassword)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Users::Disabled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Users::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Users::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        for col in [
            ColumnDef::new(ApiKeys::UserId).string_len(64).to_owned(),
            ColumnDef::new(ApiKeys::Role).string_len(16).to_owned(),
            ColumnDef::new(ApiKeys::ExpiresAt).big_integer().to_owned(),
            ColumnDef::new(ApiKeys::LastUsedAt).big_integer().to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_user")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Operations::Table)
                    .add_column(ColumnDef::new(Operations::InitiatedBy).string_len(64))
                    .to_owned(),
            )
            .await?;
        let s = |c: AuditLog, n: u32| ColumnDef::new(c).string_len(n).to_owned();
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(
                        ColumnDef::new(AuditLog::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuditLog::At).big_integer().not_null())
                    .col(s(AuditLog::TenantId, 64))
                    .col(s(AuditLog::Actor, 64))
                    .col(s(AuditLog::KeyId, 64))
                    .col(s(AuditLog::Role, 16))
                    .col(s(AuditLog::Source, 64))
                    .col(s(AuditLog::Method, 16).not_null())
                    .col(ColumnDef::new(AuditLog::Path).text().not_null())
                    .col(s(AuditLog::Object, 64))
                    .col(s(AuditLog::Outcome, 16).not_null())
                    .col(ColumnDef::new(AuditLog::Status).integer())
                    .col(ColumnDef::new(AuditLog::Error).text())
                    .col(ColumnDef::new(AuditLog::DurationMs).big_integer())
                    .col(s(AuditLog::OperationId, 64))
                    .col(s(AuditLog::RequestId, 64).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_at")
                    .table(AuditLog::Table)
                    .col(AuditLog::At)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Operations::Table)
                    .drop_column(Operations::InitiatedBy)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_api_keys_user")
                    .table(ApiKeys::Table)
                    .to_owned(),
            )
            .await?;
        for col in [
            ApiKeys::UserId,
            ApiKeys::Role,
            ApiKeys::ExpiresAt,
            ApiKeys::LastUsedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
