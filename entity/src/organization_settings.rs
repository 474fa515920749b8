use sea_orm::entity::prelude::*;

/// How an organization's hosted pages look and whom they may talk to.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "organization_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: Uuid,
    pub display_name: Option<String>,
    /// An `https` URL.
    pub logo_url: Option<String>,
    /// `#rrggbb`, lower case.
    pub accent_color: Option<String>,
    /// A JSON array of serialized origins (`scheme://host[:port]`).
    #[sea_orm(column_type = "Text")]
    pub allowed_origins: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
