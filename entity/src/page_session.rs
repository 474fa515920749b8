use sea_orm::entity::prelude::*;

/// A hosted page opened with an authorization code: one end user, one page. Only the
/// hash of the cookie's token is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "page_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub org_id: Uuid,
    pub user_id: Uuid,
    /// The page it may show, in canonical text form.
    #[sea_orm(column_type = "Text")]
    pub target: String,
    /// A multi-step page's values so far and what its forms saved (JSON), if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub draft: Option<String>,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
