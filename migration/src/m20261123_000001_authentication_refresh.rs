//! Keeping authentications alive: when each access token expires, whether latchkey can
//! renew it (a refresh token, or the client-credentials grant), the status a metadata read
//! shows, and the bookkeeping of refreshes shared by every replica: a lease that one
//! process claims at a time, and the attempts and the time of the next one. The hard
//! expiry (no refresh can move it) is the webhooks migration's `hard_expires_at`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Authentications {
    Table,
    /// When the access token expires; NULL when unknown.
    ExpiresAt,
    /// When the refresh token expires, where the provider says.
    RefreshExpiresAt,
    /// Added by the webhooks migration; indexed here for the expiry scan.
    HardExpiresAt,
    /// How latchkey renews the access token: `refresh_token`, `client_credentials`, or
    /// NULL (it cannot).
    Renewal,
    /// `ACTIVE`, `REFRESH_FAILED` or `REVOKED`; `EXPIRED` is worked out when read.
    Status,
    /// Bumped by every new credential (create 0, replacement, refresh).
    CredentialsVersion,
    /// When a refresh is next due: ahead of the expiry, after an idle spell, or after a
    /// failed attempt's backoff. NULL: never by itself.
    RefreshDueAt,
    RefreshLeaseUntil,
    RefreshLeaseOwner,
    RefreshAttempts,
    /// The class of the last refresh failure (`unavailable`, `invalid_grant`, ...).
    RefreshError,
    LastUsedAt,
}

fn columns() -> Vec<ColumnDef> {
    vec![
        timestamp_with_time_zone_null(Authentications::ExpiresAt),
        timestamp_with_time_zone_null(Authentications::RefreshExpiresAt),
        string_null(Authentications::Renewal),
        string(Authentications::Status).default("ACTIVE").to_owned(),
        big_integer(Authentications::CredentialsVersion).default(0).to_owned(),
        timestamp_with_time_zone_null(Authentications::RefreshDueAt),
        timestamp_with_time_zone_null(Authentications::RefreshLeaseUntil),
        uuid_null(Authentications::RefreshLeaseOwner),
        integer(Authentications::RefreshAttempts).default(0).to_owned(),
        string_null(Authentications::RefreshError),
        timestamp_with_time_zone_null(Authentications::LastUsedAt),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for mut column in columns() {
            manager
                .alter_table(Table::alter().table(Authentications::Table).add_column(&mut column).to_owned())
                .await?;
        }
        // The two scans: refreshes due (the refresh job), hard expiries ahead (the
        // webhook worker's `authentication.expiring`).
        for (name, column) in [
            ("idx_authentications_refresh_due", Authentications::RefreshDueAt),
            ("idx_authentications_hard_expiry", Authentications::HardExpiresAt),
        ] {
            manager
                .create_index(Index::create().name(name).table(Authentications::Table).col(column).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_authentications_refresh_due", "idx_authentications_hard_expiry"] {
            manager.drop_index(Index::drop().name(name).table(Authentications::Table).to_owned()).await?;
        }
        for column in columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Authentications::Table)
                        .drop_column(Alias::new(column.get_column_name()))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
