//! Hosted-page sessions: what an authorization code turns into when a page opens. The
//! browser holds the token in an HttpOnly cookie; only its hash is stored.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ExternalUsers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum PageSessions {
    Table,
    Id,
    TokenHash,
    OrgId,
    UserId,
    Target,
    ExpiresAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `target` is the page the session may show, in its canonical text form (page
        // kind and ids): a session opened for one page never serves another.
        manager
            .create_table(
                Table::create()
                    .table(PageSessions::Table)
                    .col(pk_uuid(PageSessions::Id))
                    .col(string_len_uniq(PageSessions::TokenHash, 64))
                    .col(uuid(PageSessions::OrgId))
                    .col(uuid(PageSessions::UserId))
                    .col(text(PageSessions::Target))
                    .col(timestamp_with_time_zone(PageSessions::ExpiresAt))
                    .col(timestamp_with_time_zone(PageSessions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PageSessions::Table, PageSessions::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    // Removing an end user ends their page sessions with them.
                    .foreign_key(
                        ForeignKey::create()
                            .from(PageSessions::Table, PageSessions::UserId)
                            .to(ExternalUsers::Table, ExternalUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_page_sessions_expires_at")
                    .table(PageSessions::Table)
                    .col(PageSessions::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PageSessions::Table).to_owned()).await
    }
}
