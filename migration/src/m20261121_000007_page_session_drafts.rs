//! A page session's draft: what a multi-step page (the config wizard) has been given so
//! far, and what each of its forms saved, so a reload or a second post finds it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PageSessions {
    Table,
    Draft,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(PageSessions::Table).add_column(text_null(PageSessions::Draft)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(PageSessions::Table).drop_column(PageSessions::Draft).to_owned()).await
    }
}
