//! Rollouts: one action over a selection of instances, a few at a time.
//! `rollouts` holds what was asked (the spec as JSON) and where it stands;
//! `rollout_targets` one row per selected instance, in the order they go,
//! with the operation FM started for it, so a rollout resumed after a crash
//! redoes no finished target and counts what is in flight from the rows.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rollouts {
    Table,
    Id,
    TenantId,
    Label,
    Spec,
    State,
    Reason,
    InitiatedBy,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum RolloutTargets {
    Table,
    RolloutId,
    Seq,
    InstanceId,
    Canary,
    State,
    OperationId,
    Error,
    StartedAt,
    WatchSince,
    HealthySince,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rollouts::Table)
                    .col(
                        ColumnDef::new(Rollouts::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Rollouts::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Rollouts::Label).string_len(255).not_null())
                    .col(ColumnDef::new(Rollouts::Spec).text().not_null())
                    .col(ColumnDef::new(Rollouts::State).string_len(32).not_null())
                    .col(ColumnDef::new(Rollouts::Reason).text())
                    .col(ColumnDef::new(Rollouts::InitiatedBy).string_len(255))
                    .col(ColumnDef::new(Rollouts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Rollouts::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Rollouts::FinishedAt).big_integer())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_rollouts_tenant")
                            .from(Rollouts::Table, Rollouts::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rollouts_tenant_created")
                    .table(Rollouts::Table)
                    .col(Rollouts::TenantId)
                    .col(Rollouts::CreatedAt)
                    .col(Rollouts::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rollouts_state")
                    .table(Rollouts::Table)
                    .col(Rollouts::State)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RolloutTargets::Table)
                    .col(
                        ColumnDef::new(RolloutTargets::RolloutId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RolloutTargets::Seq).integer().not_null())
                    .col(
                        ColumnDef::new(RolloutTargets::InstanceId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RolloutTargets::Canary).boolean().not_null())
                    .col(
                        ColumnDef::new(RolloutTargets::State)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RolloutTargets::OperationId).string_len(64))
                    .col(ColumnDef::new(RolloutTargets::Error).text())
                    .col(ColumnDef::new(RolloutTargets::StartedAt).big_integer())
                    .col(ColumnDef::new(RolloutTargets::WatchSince).big_integer())
                    .col(ColumnDef::new(RolloutTargets::HealthySince).big_integer())
                    .col(ColumnDef::new(RolloutTargets::FinishedAt).big_integer())
                    .primary_key(
                        Index::create()
                            .col(RolloutTargets::RolloutId)
                            .col(RolloutTargets::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_rollout_targets_rollout")
                            .from(RolloutTargets::Table, RolloutTargets::RolloutId)
                            .to(Rollouts::Table, Rollouts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RolloutTargets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Rollouts::Table).to_owned())
            .await
    }
}
