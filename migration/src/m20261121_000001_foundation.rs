//! Organizations, master tokens, end users, authorization codes, audit events and
//! installation state.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    FullReadsEnabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MasterTokens {
    Table,
    Id,
    OrgId,
    Label,
    TokenHash,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ExternalUsers {
    Table,
    Id,
    OrgId,
    ExternalUserId,
    Name,
    IsTestUser,
    TokenVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    Id,
    OrgId,
    UserId,
    CodeHash,
    ExpiresAt,
    ConsumedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OrgId,
    ActorKind,
    ActorId,
    Action,
    TargetId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum ServerState {
    Table,
    Key,
    Value,
}

/// A foreign key from `table.org_id` to the organization, removed with it.
fn org_fk(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Organizations::Table, Organizations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(pk_uuid(Organizations::Id))
                    .col(string_uniq(Organizations::Name))
                    .col(boolean(Organizations::FullReadsEnabled).default(false))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MasterTokens::Table)
                    .col(pk_uuid(MasterTokens::Id))
                    .col(uuid(MasterTokens::OrgId))
                    .col(string(MasterTokens::Label))
                    .col(string_uniq(MasterTokens::TokenHash))
                    .col(timestamp_with_time_zone(MasterTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(MasterTokens::RevokedAt))
                    .foreign_key(&mut org_fk(MasterTokens::Table, MasterTokens::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_master_tokens_org")
                    .table(MasterTokens::Table)
                    .col(MasterTokens::OrgId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ExternalUsers::Table)
                    .col(pk_uuid(ExternalUsers::Id))
                    .col(uuid(ExternalUsers::OrgId))
                    .col(string(ExternalUsers::ExternalUserId))
                    .col(string(ExternalUsers::Name))
                    .col(boolean(ExternalUsers::IsTestUser).default(false))
                    .col(big_integer(ExternalUsers::TokenVersion).default(0))
                    .col(timestamp_with_time_zone(ExternalUsers::CreatedAt))
                    .col(timestamp_with_time_zone(ExternalUsers::UpdatedAt))
                    .foreign_key(&mut org_fk(ExternalUsers::Table, ExternalUsers::OrgId))
                    .to_owned(),
            )
            .await?;
        // Uniqueness of the partner's id within an organization; also the index that
        // keyset pagination over (org_id, id) and lookups by external id use.
        manager
            .create_index(
                Index::create()
                    .name("uq_external_users_org_external_id")
                    .table(ExternalUsers::Table)
                    .col(ExternalUsers::OrgId)
                    .col(ExternalUsers::ExternalUserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_external_users_org_id")
                    .table(ExternalUsers::Table)
                    .col(ExternalUsers::OrgId)
                    .col(ExternalUsers::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(pk_uuid(AuthorizationCodes::Id))
                    .col(uuid(AuthorizationCodes::OrgId))
                    .col(uuid(AuthorizationCodes::UserId))
                    .col(string_uniq(AuthorizationCodes::CodeHash))
                    .col(timestamp_with_time_zone(AuthorizationCodes::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AuthorizationCodes::ConsumedAt))
                    .col(timestamp_with_time_zone(AuthorizationCodes::CreatedAt))
                    .foreign_key(&mut org_fk(AuthorizationCodes::Table, AuthorizationCodes::OrgId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuthorizationCodes::Table, AuthorizationCodes::UserId)
                            .to(ExternalUsers::Table, ExternalUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_authorization_codes_user")
                    .table(AuthorizationCodes::Table)
                    .col(AuthorizationCodes::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    .col(uuid(AuditEvents::OrgId))
                    .col(string(AuditEvents::ActorKind))
                    .col(uuid_null(AuditEvents::ActorId))
                    .col(string(AuditEvents::Action))
                    .col(uuid_null(AuditEvents::TargetId))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .foreign_key(&mut org_fk(AuditEvents::Table, AuditEvents::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_org_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrgId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ServerState::Table)
                    .col(string(ServerState::Key).primary_key())
                    .col(text(ServerState::Value))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ServerState::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            AuthorizationCodes::Table.into_iden(),
            ExternalUsers::Table.into_iden(),
            MasterTokens::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
