use sea_orm::entity::prelude::*;

/// A single-use, short-lived code for hosted pages. Only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authorization_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    #[sea_orm(unique)]
    pub code_hash: String,
    pub expires_at: DateTimeUtc,
    pub consumed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::external_user::Entity",
        from = "Column::UserId",
        to = "super::external_user::Column::Id",
        on_delete = "Cascade"
    )]
    ExternalUser,
}

impl Related<super::external_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ExternalUser.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
