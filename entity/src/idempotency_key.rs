use sea_orm::entity::prelude::*;

/// A create made under an idempotency key: who sent the key, an HMAC of the request
/// (never the request: it may hold credentials), and the id of the row it created.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// `master` or the end user's id.
    pub caller: String,
    pub client_key: String,
    pub operation: String,
    pub fingerprint: String,
    pub resource_id: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
