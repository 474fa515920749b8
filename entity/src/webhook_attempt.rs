use sea_orm::entity::prelude::*;

/// One try of a delivery: when, how long, and what came back (a status, or why none
/// did), with at most a short excerpt of the answer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub number: i32,
    pub attempted_at: DateTimeUtc,
    pub duration_ms: i64,
    pub http_status: Option<i32>,
    pub error_class: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub response_excerpt: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
