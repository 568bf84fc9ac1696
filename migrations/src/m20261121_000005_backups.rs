//! Agent backups of instances' data dirs kept in object storage: one row
//! per complete backup (its manifest written), with what restoring it needs
//! to check (the manifest's hash) and the outcome of its last verification.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Backups {
    Table,
    Id,
    TenantId,
    InstanceId,
    LocationUrl,
    NodeVersion,
    CreatedAt,
    ArchiveBytes,
    DataBytes,
    Files,
    ManifestSha256,
    Encrypted,
    Automated,
    Reason,
    VerifiedAt,
    VerifyOk,
    VerifyMessage,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let s = |c: Backups, n: u32| ColumnDef::new(c).string_len(n).not_null().to_owned();
        let big = |c: Backups| ColumnDef::new(c).big_integer().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(Backups::Table)
                    .col(s(Backups::Id, 64).primary_key())
                    .col(s(Backups::TenantId, 64))
                    .col(s(Backups::InstanceId, 64))
                    .col(ColumnDef::new(Backups::LocationUrl).text().not_null())
                    .col(s(Backups::NodeVersion, 64))
                    .col(big(Backups::CreatedAt))
                    .col(big(Backups::ArchiveBytes))
                    .col(big(Backups::DataBytes))
                    .col(big(Backups::Files))
                    .col(s(Backups::ManifestSha256, 64))
                    .col(
                        ColumnDef::new(Backups::Encrypted)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Backups::Automated)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Backups::Reason).text())
                    .col(ColumnDef::new(Backups::VerifiedAt).big_integer())
                    .col(ColumnDef::new(Backups::VerifyOk).boolean())
                    .col(ColumnDef::new(Backups::VerifyMessage).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_backups_instance")
                    .table(Backups::Table)
                    .col(Backups::InstanceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Backups::Table).to_owned())
            .await
    }
}
