//! Client request ids (AIP-155): a create retried with the same
//! `request_id` finds the object the first attempt made instead of making a
//! second one. One row per (tenant, request id), written in the same
//! transaction as the object, with a fingerprint of the request so the same
//! id reused for a different request is refused.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RequestIds {
    Table,
    TenantId,
    RequestId,
    Method,
    Fingerprint,
    ObjectId,
    CreatedAt,
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
                    .table(RequestIds::Table)
                    .col(
                        ColumnDef::new(RequestIds::TenantId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::RequestId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::Method)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::Fingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::ObjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RequestIds::TenantId)
                            .col(RequestIds::RequestId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_request_ids_tenant")
                            .from(RequestIds::Table, RequestIds::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_request_ids_created")
                    .table(RequestIds::Table)
                    .col(RequestIds::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestIds::Table).to_owned())
            .await
    }
}
