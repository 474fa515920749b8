use sea_orm::entity::prelude::*;

/// A packaged integration. `draft` is the editable definition (JSON); published versions
/// are immutable rows of `solution_versions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "solutions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub draft: String,
    #[sea_orm(column_type = "Text")]
    pub draft_tags: String,
    #[sea_orm(column_type = "Text")]
    pub published_tags: String,
    /// 0 until the first publish.
    pub latest_version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
