//! The service catalog (built-in and custom services and environments) and end users'
//! authentications, whose secrets are stored only as sealed envelopes.

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
enum Services {
    Table,
    Id,
    OrgId,
    Name,
    Version,
    Title,
    Description,
    Icon,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ServiceEnvironments {
    Table,
    Id,
    ServiceId,
    OrgId,
    Title,
    AuthenticationType,
    CredentialsSchema,
    UserDataSchema,
    Scopes,
    OauthClientId,
    OauthClientSecret,
    OauthAuthorizeUrl,
    OauthTokenUrl,
    KeyId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Authentications {
    Table,
    Id,
    OrgId,
    OwnerUserId,
    ServiceId,
    EnvironmentId,
    Name,
    Scopes,
    Hidden,
    CustomFields,
    Credentials,
    UserData,
    KeyId,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `org_id` NULL: a built-in service, visible to every organization.
        manager
            .create_table(
                Table::create()
                    .table(Services::Table)
                    .col(pk_uuid(Services::Id))
                    .col(uuid_null(Services::OrgId))
                    .col(string(Services::Name))
                    .col(integer(Services::Version))
                    .col(string(Services::Title))
                    .col(text_null(Services::Description))
                    .col(string_null(Services::Icon))
                    .col(timestamp_with_time_zone(Services::CreatedAt))
                    .col(timestamp_with_time_zone(Services::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Services::Table, Services::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_services_name_version")
                    .table(Services::Table)
                    .col(Services::Name)
                    .col(Services::Version)
                    .to_owned(),
            )
            .await?;

        // `org_id` NULL: a built-in environment; otherwise an organization's own (such
        // as its OAuth app), possibly of a built-in service.
        manager
            .create_table(
                Table::create()
                    .table(ServiceEnvironments::Table)
                    .col(pk_uuid(ServiceEnvironments::Id))
                    .col(uuid(ServiceEnvironments::ServiceId))
                    .col(uuid_null(ServiceEnvironments::OrgId))
                    .col(string(ServiceEnvironments::Title))
                    .col(string(ServiceEnvironments::AuthenticationType))
                    .col(text(ServiceEnvironments::CredentialsSchema))
                    .col(text(ServiceEnvironments::UserDataSchema))
                    .col(text(ServiceEnvironments::Scopes))
                    .col(string_null(ServiceEnvironments::OauthClientId))
                    .col(blob_null(ServiceEnvironments::OauthClientSecret))
                    .col(string_null(ServiceEnvironments::OauthAuthorizeUrl))
                    .col(string_null(ServiceEnvironments::OauthTokenUrl))
                    .col(string_null(ServiceEnvironments::KeyId))
                    .col(timestamp_with_time_zone(ServiceEnvironments::CreatedAt))
                    .col(timestamp_with_time_zone(ServiceEnvironments::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ServiceEnvironments::Table, ServiceEnvironments::ServiceId)
                            .to(Services::Table, Services::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ServiceEnvironments::Table, ServiceEnvironments::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_service_environments_service")
                    .table(ServiceEnvironments::Table)
                    .col(ServiceEnvironments::ServiceId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_service_environments_key")
                    .table(ServiceEnvironments::Table)
                    .col(ServiceEnvironments::KeyId)
                    .to_owned(),
            )
            .await?;

        // `owner_user_id` NULL: owned by the organization itself. An environment in use
        // cannot be removed (RESTRICT); the service layer answers CONFLICT first.
        manager
            .create_table(
                Table::create()
                    .table(Authentications::Table)
                    .col(pk_uuid(Authentications::Id))
                    .col(uuid(Authentications::OrgId))
                    .col(uuid_null(Authentications::OwnerUserId))
                    .col(uuid(Authentications::ServiceId))
                    .col(uuid(Authentications::EnvironmentId))
                    .col(string(Authentications::Name))
                    .col(text(Authentications::Scopes))
                    .col(boolean(Authentications::Hidden).default(false))
                    .col(text(Authentications::CustomFields))
                    .col(blob(Authentications::Credentials))
                    .col(blob(Authentications::UserData))
                    .col(string(Authentications::KeyId))
                    .col(timestamp_with_time_zone(Authentications::CreatedAt))
                    .col(timestamp_with_time_zone(Authentications::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Authentications::Table, Authentications::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Authentications::Table, Authentications::OwnerUserId)
                            .to(ExternalUsers::Table, ExternalUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Authentications::Table, Authentications::ServiceId)
                            .to(Services::Table, Services::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Authentications::Table, Authentications::EnvironmentId)
                            .to(ServiceEnvironments::Table, ServiceEnvironments::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_authentications_org_owner",
                vec![Authentications::OrgId, Authentications::OwnerUserId, Authentications::Id],
            ),
            ("idx_authentications_environment", vec![Authentications::EnvironmentId]),
            ("idx_authentications_key", vec![Authentications::KeyId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Authentications::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in
            [Authentications::Table.into_iden(), ServiceEnvironments::Table.into_iden(), Services::Table.into_iden()]
        {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
