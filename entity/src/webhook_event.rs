use sea_orm::entity::prelude::*;

/// One event of the outbox, written in the transaction of the change it reports. `seq`
/// orders the events of a subject; `id` is the `webhook-id` receivers see.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub event_type: String,
    /// The authentication or solution instance the event is about.
    pub subject_id: Uuid,
    /// The exact JSON body that is signed and sent; never holds a secret.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
