//! An organization's settings for its hosted pages: the brand they show and the origins
//! they may post window messages to. One row per organization, made on first update.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OrganizationSettings {
    Table,
    OrgId,
    DisplayName,
    LogoUrl,
    AccentColor,
    AllowedOrigins,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `allowed_origins` is a JSON array of serialized origins, like the other JSON
        // columns (text on both databases).
        manager
            .create_table(
                Table::create()
                    .table(OrganizationSettings::Table)
                    .col(uuid(OrganizationSettings::OrgId).primary_key())
                    .col(string_len_null(OrganizationSettings::DisplayName, 100))
                    .col(string_len_null(OrganizationSettings::LogoUrl, 2048))
                    .col(string_len_null(OrganizationSettings::AccentColor, 7))
                    .col(text(OrganizationSettings::AllowedOrigins))
                    .col(timestamp_with_time_zone(OrganizationSettings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrganizationSettings::Table, OrganizationSettings::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(OrganizationSettings::Table).to_owned()).await
    }
}
