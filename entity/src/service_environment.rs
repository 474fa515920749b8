use sea_orm::entity::prelude::*;

/// One way to authenticate with a service (its default `Production`, or an
/// organization's own OAuth app). Schemas and scopes are JSON text; the OAuth client
/// secret is a sealed envelope.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "service_environments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub service_id: Uuid,
    pub org_id: Option<Uuid>,
    pub title: String,
    pub authentication_type: String,
    #[sea_orm(column_type = "Text")]
    pub credentials_schema: String,
    #[sea_orm(column_type = "Text")]
    pub user_data_schema: String,
    #[sea_orm(column_type = "Text")]
    pub scopes: String,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret: Option<Vec<u8>>,
    pub oauth_authorize_url: Option<String>,
    pub oauth_token_url: Option<String>,
    /// The key that sealed `oauth_client_secret`, for rotation.
    pub key_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Sealed bytes are never printed, even as ciphertext.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceEnvironment")
            .field("id", &self.id)
            .field("service_id", &self.service_id)
            .field("org_id", &self.org_id)
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::service::Entity",
        from = "Column::ServiceId",
        to = "super::service::Column::Id",
        on_delete = "Cascade"
    )]
    Service,
}

impl Related<super::service::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Service.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
