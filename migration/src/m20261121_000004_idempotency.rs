//! Idempotency keys: one row per (organization, caller, key), written in the same
//! transaction as the row a create makes, so a retried create finds it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Id,
    OrgId,
    Caller,
    ClientKey,
    Operation,
    Fingerprint,
    ResourceId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `caller` is `master` (any master token of the organization) or the end user's
        // id; `fingerprint` is an HMAC of the request, never the request itself.
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(pk_uuid(IdempotencyKeys::Id))
                    .col(uuid(IdempotencyKeys::OrgId))
                    .col(string_len(IdempotencyKeys::Caller, 64))
                    .col(string_len(IdempotencyKeys::ClientKey, 255))
                    .col(string_len(IdempotencyKeys::Operation, 64))
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    .col(uuid(IdempotencyKeys::ResourceId))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdempotencyKeys::Table, IdempotencyKeys::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The constraint that makes a concurrent duplicate lose instead of creating twice.
        manager
            .create_index(
                Index::create()
                    .name("uq_idempotency_keys_scope_key")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::OrgId)
                    .col(IdempotencyKeys::Caller)
                    .col(IdempotencyKeys::ClientKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Purging expired keys walks this index, a bounded batch at a time.
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_keys_created_at")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned()).await
    }
}
