use sea_orm::entity::prelude::*;

/// A third-party service. `org_id` is `None` for built-in services (visible to all).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "services")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub name: String,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::service_environment::Entity")]
    ServiceEnvironment,
}

impl Related<super::service_environment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ServiceEnvironment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
