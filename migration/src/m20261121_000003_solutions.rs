//! Solutions (an editable draft plus immutable published versions) and end users'
//! solution instances with their auth and config values.

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
enum Authentications {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Solutions {
    Table,
    Id,
    OrgId,
    Draft,
    DraftTags,
    PublishedTags,
    LatestVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SolutionVersions {
    Table,
    SolutionId,
    Version,
    Definition,
    PublishedAt,
}

#[derive(DeriveIden)]
enum SolutionInstances {
    Table,
    Id,
    OrgId,
    OwnerUserId,
    SolutionId,
    SolutionVersion,
    Name,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InstanceAuthValues {
    Table,
    InstanceId,
    ExternalId,
    AuthenticationId,
}

#[derive(DeriveIden)]
enum InstanceConfigValues {
    Table,
    InstanceId,
    ExternalId,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `latest_version` 0: never published. Tags are stored `|a|b|` so a tag filter is
        // a portable LIKE.
        manager
            .create_table(
                Table::create()
                    .table(Solutions::Table)
                    .col(pk_uuid(Solutions::Id))
                    .col(uuid(Solutions::OrgId))
                    .col(text(Solutions::Draft))
                    .col(text(Solutions::DraftTags))
                    .col(text(Solutions::PublishedTags))
                    .col(integer(Solutions::LatestVersion).default(0))
                    .col(timestamp_with_time_zone(Solutions::CreatedAt))
                    .col(timestamp_with_time_zone(Solutions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Solutions::Table, Solutions::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_solutions_org")
                    .table(Solutions::Table)
                    .col(Solutions::OrgId)
                    .col(Solutions::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SolutionVersions::Table)
                    .col(uuid(SolutionVersions::SolutionId))
                    .col(integer(SolutionVersions::Version))
                    .col(text(SolutionVersions::Definition))
                    .col(timestamp_with_time_zone(SolutionVersions::PublishedAt))
                    .primary_key(Index::create().col(SolutionVersions::SolutionId).col(SolutionVersions::Version))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SolutionVersions::Table, SolutionVersions::SolutionId)
                            .to(Solutions::Table, Solutions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // Instances go with their owner; a solution with instances cannot be removed.
        manager
            .create_table(
                Table::create()
                    .table(SolutionInstances::Table)
                    .col(pk_uuid(SolutionInstances::Id))
                    .col(uuid(SolutionInstances::OrgId))
                    .col(uuid(SolutionInstances::OwnerUserId))
                    .col(uuid(SolutionInstances::SolutionId))
                    .col(integer(SolutionInstances::SolutionVersion))
                    .col(string(SolutionInstances::Name))
                    .col(boolean(SolutionInstances::Enabled).default(false))
                    .col(timestamp_with_time_zone(SolutionInstances::CreatedAt))
                    .col(timestamp_with_time_zone(SolutionInstances::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SolutionInstances::Table, SolutionInstances::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SolutionInstances::Table, SolutionInstances::OwnerUserId)
                            .to(ExternalUsers::Table, ExternalUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SolutionInstances::Table, SolutionInstances::SolutionId)
                            .to(Solutions::Table, Solutions::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_solution_instances_org_owner",
                vec![SolutionInstances::OrgId, SolutionInstances::OwnerUserId, SolutionInstances::Id],
            ),
            ("idx_solution_instances_org_id", vec![SolutionInstances::OrgId, SolutionInstances::Id]),
            ("idx_solution_instances_solution", vec![SolutionInstances::SolutionId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(SolutionInstances::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        // An authentication in use cannot be removed (RESTRICT); the service answers
        // CONFLICT, naming the instances, before the database would refuse.
        manager
            .create_table(
                Table::create()
                    .table(InstanceAuthValues::Table)
                    .col(uuid(InstanceAuthValues::InstanceId))
                    .col(string(InstanceAuthValues::ExternalId))
                    .col(uuid(InstanceAuthValues::AuthenticationId))
                    .primary_key(
                        Index::create().col(InstanceAuthValues::InstanceId).col(InstanceAuthValues::ExternalId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(InstanceAuthValues::Table, InstanceAuthValues::InstanceId)
                            .to(SolutionInstances::Table, SolutionInstances::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(InstanceAuthValues::Table, InstanceAuthValues::AuthenticationId)
                            .to(Authentications::Table, Authentications::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_instance_auth_values_authentication")
                    .table(InstanceAuthValues::Table)
                    .col(InstanceAuthValues::AuthenticationId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InstanceConfigValues::Table)
                    .col(uuid(InstanceConfigValues::InstanceId))
                    .col(string(InstanceConfigValues::ExternalId))
                    .col(text(InstanceConfigValues::Value))
                    .primary_key(
                        Index::create().col(InstanceConfigValues::InstanceId).col(InstanceConfigValues::ExternalId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(InstanceConfigValues::Table, InstanceConfigValues::InstanceId)
                            .to(SolutionInstances::Table, SolutionInstances::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            InstanceConfigValues::Table.into_iden(),
            InstanceAuthValues::Table.into_iden(),
            SolutionInstances::Table.into_iden(),
            SolutionVersions::Table.into_iden(),
            Solutions::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
