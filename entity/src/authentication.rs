use sea_orm::entity::prelude::*;

/// An imported third-party authentication. `credentials` and `user_data` are sealed
/// envelopes bound to this row; `owner_user_id` is `None` for organization-owned ones.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authentications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub service_id: Uuid,
    pub environment_id: Uuid,
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub scopes: String,
    pub hidden: bool,
    #[sea_orm(column_type = "Text")]
    pub custom_fields: String,
    pub credentials: Vec<u8>,
    pub user_data: Vec<u8>,
    /// The key that sealed both envelopes, for rotation.
    pub key_id: String,
    /// When the authentication stops working whatever refreshes happen (a refresh token's
    /// own lifetime, a long-lived token's end); `None` when unknown or never.
    pub hard_expires_at: Option<DateTimeUtc>,
    /// The hard expiry an `authentication.expiring` event was last written for.
    pub expiry_reported_for: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When the access token expires; `None` when unknown.
    pub expires_at: Option<DateTimeUtc>,
    pub refresh_expires_at: Option<DateTimeUtc>,
    /// `refresh_token`, `client_credentials`, or `None`: how the access token is renewed.
    pub renewal: Option<String>,
    /// `ACTIVE`, `REFRESH_FAILED` or `REVOKED`.
    pub status: String,
    pub credentials_version: i64,
    pub refresh_due_at: Option<DateTimeUtc>,
    pub refresh_lease_until: Option<DateTimeUtc>,
    pub refresh_lease_owner: Option<Uuid>,
    pub refresh_attempts: i32,
    pub refresh_error: Option<String>,
    pub last_used_at: Option<DateTimeUtc>,
}

/// Sealed bytes are never printed, even as ciphertext.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("owner_user_id", &self.owner_user_id)
            .field("environment_id", &self.environment_id)
            .field("key_id", &self.key_id)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .field("refresh_due_at", &self.refresh_due_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::service_environment::Entity",
        from = "Column::EnvironmentId",
        to = "super::service_environment::Column::Id"
    )]
    ServiceEnvironment,
    #[sea_orm(belongs_to = "super::service::Entity", from = "Column::ServiceId", to = "super::service::Column::Id")]
    Service,
}

impl Related<super::service_environment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ServiceEnvironment.def()
    }
}

impl Related<super::service::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Service.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
