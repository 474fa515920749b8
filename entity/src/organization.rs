use sea_orm::entity::prelude::*;

/// A tenant. Every other row belongs to exactly one organization.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "organizations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    /// Whether end users may read their own credentials back (`/full`).
    pub full_reads_enabled: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::master_token::Entity")]
    MasterToken,
    #[sea_orm(has_many = "super::external_user::Entity")]
    ExternalUser,
}

impl Related<super::master_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MasterToken.def()
    }
}

impl Related<super::external_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ExternalUser.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
