//! Remembers which key an enrollment token was used with, so an agent whose
//! enrollment answer was lost can ask again with the same token and key.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EnrollmentTokens {
    Table,
    PublicKeySha256,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(EnrollmentTokens::Table)
                    .add_column(ColumnDef::new(EnrollmentTokens::PublicKeySha256).string_len(64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(EnrollmentTokens::Table)
                    .drop_column(EnrollmentTokens::PublicKeySha256)
                    .to_owned(),
            )
            .await
    }
}
