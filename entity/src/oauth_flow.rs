use sea_orm::entity::prelude::*;

/// An OAuth 2.0 authorization code flow started from a hosted page: single use, bound to
/// the page session that started it. Only the hash of its `state` is stored, and the PKCE
/// verifier is a sealed envelope bound to this row.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub state_hash: String,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub page_session_id: Uuid,
    /// The page target of the session, in its canonical text form.
    #[sea_orm(column_type = "Text")]
    pub target: String,
    /// What the page that started it needs to finish it, as that page wrote it.
    #[sea_orm(column_type = "Text")]
    pub page: String,
    pub environment_id: Uuid,
    /// The scopes requested, as a JSON array.
    #[sea_orm(column_type = "Text")]
    pub scopes: String,
    pub pkce_verifier: Vec<u8>,
    pub key_id: String,
    /// Set when the provider's answer arrived: a state is used once.
    pub used_at: Option<DateTimeUtc>,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

/// Sealed bytes are never printed, even as ciphertext.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthFlow")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("user_id", &self.user_id)
            .field("environment_id", &self.environment_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
