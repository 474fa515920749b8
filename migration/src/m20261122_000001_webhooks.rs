//! Webhooks: the endpoints an organization registers, the outbox of events written in the
//! transaction of the change they report, one delivery per event and endpoint, and the
//! log of every attempt. Also the hard expiry of an authentication (one no refresh can
//! fix) and the expiry last reported for it, for the `authentication.expiring` scan.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Authentications {
    Table,
    HardExpiresAt,
    ExpiryReportedFor,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    OrgId,
    Url,
    Description,
    EventTypes,
    Enabled,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    KeyId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Seq,
    Id,
    OrgId,
    EventType,
    SubjectId,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    OrgId,
    EndpointId,
    EventSeq,
    SubjectId,
    State,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LeaseToken,
    DeliveredAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    Number,
    AttemptedAt,
    DurationMs,
    HttpStatus,
    ErrorClass,
    ResponseExcerpt,
}

fn cascade(from: (impl IntoIden, impl IntoIden), to: (impl IntoIden, impl IntoIden)) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(from.0, from.1).to(to.0, to.1).on_delete(ForeignKeyAction::Cascade).take()
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    columns: Vec<DynIden>,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for column in [Authentications::HardExpiresAt, Authentications::ExpiryReportedFor] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Authentications::Table)
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }

        // `secret` (and `previous_secret`, kept for a day after a rotation) are sealed;
        // `event_types` is a JSON array of event type names.
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(pk_uuid(WebhookEndpoints::Id))
                    .col(uuid(WebhookEndpoints::OrgId))
                    .col(text(WebhookEndpoints::Url))
                    .col(text_null(WebhookEndpoints::Description))
                    .col(text(WebhookEndpoints::EventTypes))
                    .col(boolean(WebhookEndpoints::Enabled))
                    .col(blob(WebhookEndpoints::Secret))
                    .col(blob_null(WebhookEndpoints::PreviousSecret))
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::PreviousSecretUntil))
                    .col(string(WebhookEndpoints::KeyId))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoints::UpdatedAt))
                    .foreign_key(&mut cascade(
                        (WebhookEndpoints::Table, WebhookEndpoints::OrgId),
                        (Organizations::Table, Organizations::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_webhook_endpoints_org",
            WebhookEndpoints::Table,
            vec![WebhookEndpoints::OrgId.into_iden(), WebhookEndpoints::Id.into_iden()],
        )
        .await?;
        index(manager, "idx_webhook_endpoints_key", WebhookEndpoints::Table, vec![WebhookEndpoints::KeyId.into_iden()])
            .await?;

        // `seq` orders events: changes to one subject hold its row lock (or SQLite's write
        // lock) until they commit, so a later change of a subject always gets a larger seq.
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(big_pk_auto(WebhookEvents::Seq))
                    .col(uuid_uniq(WebhookEvents::Id))
                    .col(uuid(WebhookEvents::OrgId))
                    .col(string_len(WebhookEvents::EventType, 64))
                    .col(uuid(WebhookEvents::SubjectId))
                    .col(text(WebhookEvents::Payload))
                    .col(timestamp_with_time_zone(WebhookEvents::CreatedAt))
                    .foreign_key(&mut cascade(
                        (WebhookEvents::Table, WebhookEvents::OrgId),
                        (Organizations::Table, Organizations::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        index(manager, "idx_webhook_events_created", WebhookEvents::Table, vec![WebhookEvents::CreatedAt.into_iden()])
            .await?;

        // `state`: pending, delivered or failed. A pending row is leased by the replica
        // sending it until `lease_until`; `lease_token` names that replica's claim.
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(pk_uuid(WebhookDeliveries::Id))
                    .col(uuid(WebhookDeliveries::OrgId))
                    .col(uuid(WebhookDeliveries::EndpointId))
                    .col(big_integer(WebhookDeliveries::EventSeq))
                    .col(uuid(WebhookDeliveries::SubjectId))
                    .col(string_len(WebhookDeliveries::State, 16))
                    .col(integer(WebhookDeliveries::Attempts))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::LeaseUntil))
                    .col(uuid_null(WebhookDeliveries::LeaseToken))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::DeliveredAt))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookDeliveries::UpdatedAt))
                    .foreign_key(&mut cascade(
                        (WebhookDeliveries::Table, WebhookDeliveries::OrgId),
                        (Organizations::Table, Organizations::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (WebhookDeliveries::Table, WebhookDeliveries::EndpointId),
                        (WebhookEndpoints::Table, WebhookEndpoints::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (WebhookDeliveries::Table, WebhookDeliveries::EventSeq),
                        (WebhookEvents::Table, WebhookEvents::Seq),
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_webhook_deliveries_due",
            WebhookDeliveries::Table,
            vec![WebhookDeliveries::State.into_iden(), WebhookDeliveries::NextAttemptAt.into_iden()],
        )
        .await?;
        index(
            manager,
            "idx_webhook_deliveries_subject",
            WebhookDeliveries::Table,
            vec![
                WebhookDeliveries::EndpointId.into_iden(),
                WebhookDeliveries::SubjectId.into_iden(),
                WebhookDeliveries::State.into_iden(),
                WebhookDeliveries::EventSeq.into_iden(),
            ],
        )
        .await?;
        index(
            manager,
            "idx_webhook_deliveries_endpoint",
            WebhookDeliveries::Table,
            vec![WebhookDeliveries::EndpointId.into_iden(), WebhookDeliveries::Id.into_iden()],
        )
        .await?;
        index(
            manager,
            "idx_webhook_deliveries_event",
            WebhookDeliveries::Table,
            vec![WebhookDeliveries::EventSeq.into_iden()],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(pk_uuid(WebhookAttempts::Id))
                    .col(uuid(WebhookAttempts::DeliveryId))
                    .col(integer(WebhookAttempts::Number))
                    .col(timestamp_with_time_zone(WebhookAttempts::AttemptedAt))
                    .col(big_integer(WebhookAttempts::DurationMs))
                    .col(integer_null(WebhookAttempts::HttpStatus))
                    .col(string_len_null(WebhookAttempts::ErrorClass, 32))
                    .col(text_null(WebhookAttempts::ResponseExcerpt))
                    .foreign_key(&mut cascade(
                        (WebhookAttempts::Table, WebhookAttempts::DeliveryId),
                        (WebhookDeliveries::Table, WebhookDeliveries::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_webhook_attempts_delivery",
            WebhookAttempts::Table,
            vec![WebhookAttempts::DeliveryId.into_iden(), WebhookAttempts::Number.into_iden()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            WebhookEvents::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        for column in [Authentications::HardExpiresAt, Authentications::ExpiryReportedFor] {
            manager.alter_table(Table::alter().table(Authentications::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
