//! OAuth 2.0 authorization code flows started from a hosted page: one row per click on
//! "Connect", bound to the page session that started it, single use and short-lived. Only
//! the hash of the `state` is stored; the PKCE verifier is sealed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthFlows {
    Table,
    Id,
    StateHash,
    OrgId,
    UserId,
    PageSessionId,
    Target,
    Page,
    EnvironmentId,
    Scopes,
    PkceVerifier,
    KeyId,
    UsedAt,
    ExpiresAt,
    CreatedAt,
}

/// A foreign key from `column` to `table`'s `id`, removed with the row it names.
fn owned_by(column: OauthFlows, table: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(OauthFlows::Table, column)
        .to(Alias::new(table), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// One row per flow; the state's hash is unique, so a state finds one flow at most.
fn oauth_flows() -> TableCreateStatement {
    Table::create()
        .table(OauthFlows::Table)
        .col(pk_uuid(OauthFlows::Id))
        .col(string_len_uniq(OauthFlows::StateHash, 64))
        .col(uuid(OauthFlows::OrgId))
        .col(uuid(OauthFlows::UserId))
        .col(uuid(OauthFlows::PageSessionId))
        .col(text(OauthFlows::Target))
        .col(text(OauthFlows::Page))
        .col(uuid(OauthFlows::EnvironmentId))
        .col(text(OauthFlows::Scopes))
        .col(blob(OauthFlows::PkceVerifier))
        .col(string(OauthFlows::KeyId))
        .col(timestamp_with_time_zone_null(OauthFlows::UsedAt))
        .col(timestamp_with_time_zone(OauthFlows::ExpiresAt))
        .col(timestamp_with_time_zone(OauthFlows::CreatedAt))
        // A flow ends with its organization, its end user, its page session and
        // its environment.
        .foreign_key(&mut owned_by(OauthFlows::OrgId, "organizations"))
        .foreign_key(&mut owned_by(OauthFlows::UserId, "external_users"))
        .foreign_key(&mut owned_by(OauthFlows::PageSessionId, "page_sessions"))
        .foreign_key(&mut owned_by(OauthFlows::EnvironmentId, "service_environments"))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(oauth_flows()).await?;
        for (name, column) in
            [("idx_oauth_flows_expires_at", OauthFlows::ExpiresAt), ("idx_oauth_flows_key", OauthFlows::KeyId)]
        {
            manager.create_index(Index::create().name(name).table(OauthFlows::Table).col(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(OauthFlows::Table).to_owned()).await
    }
}
