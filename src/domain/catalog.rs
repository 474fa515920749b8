//! The service catalog: built-in services (shipped in `data/catalog.json`, visible to
//! every organization, ids stable across releases) and an organization's custom services
//! and environments (such as its own OAuth app, whose client secret is sealed).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    audit,
    catalog_cache::advanced,
    idempotency::{self, Begun, Idempotency},
    json_schema,
    pagination::{Page, PageRequest},
    required_text,
};
use crate::{
    auth::{Caller, MasterScope},
    crypto::{Keyring, envelope},
    error::{Error, Result},
    ids::{EnvironmentId, OrgId, ServiceId},
};
use entity::{authentication, service, service_environment};

const BUILTIN_CATALOG: &str = include_str!("../../data/catalog.json");
pub const DEFAULT_ENVIRONMENT: &str = "Production";

/// How an environment authenticates (the public API's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticationType {
    Token,
    Oauth1,
    Oauth2,
    Oauth2password,
    Oauth2clientCredentials,
    Builtin,
}

impl AuthenticationType {
    pub const ALL: [AuthenticationType; 6] = [
        AuthenticationType::Token,
        AuthenticationType::Oauth1,
        AuthenticationType::Oauth2,
        AuthenticationType::Oauth2password,
        AuthenticationType::Oauth2clientCredentials,
        AuthenticationType::Builtin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticationType::Token => "token",
            AuthenticationType::Oauth1 => "oauth1",
            AuthenticationType::Oauth2 => "oauth2",
            AuthenticationType::Oauth2password => "oauth2password",
            AuthenticationType::Oauth2clientCredentials => "oauth2client_credentials",
            AuthenticationType::Builtin => "builtin",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("unknown authentication type {text:?} in the database")))
    }
}

/// A scope an environment can grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub scope: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub id: ServiceId,
    pub name: String,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    /// Never empty: a custom service without its own icon shows [`DEFAULT_ICON`].
    pub icon: String,
    /// Built-in services are shared by every organization and read-only.
    pub builtin: bool,
}

/// The icon of a custom service that has none: a grey tile with a link (an SVG, so it
/// works offline like the built-in services' icons).
pub const DEFAULT_ICON: &str = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCA2NCA2NCI+PHJlY3Qgd2lkdGg9IjY0IiBoZWlnaHQ9IjY0IiByeD0iMTQiIGZpbGw9IiM2QjcyODAiLz48ZyBmaWxsPSJub25lIiBzdHJva2U9IiNmZmYiIHN0cm9rZS13aWR0aD0iNSIgc3Ryb2tlLWxpbmVjYXA9InJvdW5kIj48Y2lyY2xlIGN4PSIyMyIgY3k9IjQxIiByPSI5Ii8+PGNpcmNsZSBjeD0iNDEiIGN5PSIyMyIgcj0iOSIvPjxwYXRoIGQ9Ik0yOSAzNWw2LTYiLz48L2c+PC9zdmc+";

impl From<service::Model> for Service {
    fn from(row: service::Model) -> Self {
        Self {
            id: ServiceId(row.id),
            name: row.name,
            version: row.version,
            title: row.title,
            description: row.description,
            icon: row.icon.unwrap_or_else(|| DEFAULT_ICON.to_owned()),
            builtin: row.org_id.is_none(),
        }
    }
}

/// The public part of an organization's OAuth app: the client secret never leaves sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthApp {
    pub client_id: String,
    pub authorize_url: String,
    pub token_url: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    pub id: EnvironmentId,
    pub service_id: ServiceId,
    pub title: String,
    pub authentication_type: AuthenticationType,
    pub credentials_schema: Value,
    pub user_data_schema: Value,
    pub scopes: Vec<Scope>,
    pub oauth_app: Option<OAuthApp>,
    pub builtin: bool,
}

impl TryFrom<service_environment::Model> for Environment {
    type Error = Error;

    fn try_from(row: service_environment::Model) -> Result<Self> {
        let json = |text: &str| serde_json::from_str::<Value>(text).map_err(Error::internal);
        let oauth_app = match (row.oauth_client_id, row.oauth_authorize_url, row.oauth_token_url) {
            (Some(client_id), Some(authorize_url), Some(token_url)) => {
                Some(OAuthApp { client_id, authorize_url, token_url })
            }
            _ => None,
        };
        Ok(Self {
            id: EnvironmentId(row.id),
            service_id: ServiceId(row.service_id),
            title: row.title,
            authentication_type: AuthenticationType::parse(&row.authentication_type)?,
            credentials_schema: json(&row.credentials_schema)?,
            user_data_schema: json(&row.user_data_schema)?,
            scopes: serde_json::from_str(&row.scopes).map_err(Error::internal)?,
            oauth_app,
            builtin: row.org_id.is_none(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Built-in catalog

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CatalogFile {
    version: u32,
    services: Vec<CatalogService>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CatalogService {
    id: Uuid,
    name: String,
    version: i32,
    title: String,
    description: Option<String>,
    /// Every built-in service ships its own icon, a `data:` URL so it needs no network.
    icon: String,
    environments: Vec<CatalogEnvironment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CatalogEnvironment {
    id: Uuid,
    title: String,
    authentication_type: AuthenticationType,
    credentials_schema: Value,
    user_data_schema: Value,
    scopes: Vec<Scope>,
}

fn parse_catalog(text: &str) -> anyhow::Result<CatalogFile> {
    let catalog: CatalogFile = serde_json::from_str(text)?;
    anyhow::ensure!(catalog.version == 1, "unknown catalog format version {}", catalog.version);
    for service in &catalog.services {
        for environment in &service.environments {
            for (field, schema) in [
                ("credentialsSchema", &environment.credentials_schema),
                ("userDataSchema", &environment.user_data_schema),
            ] {
                json_schema::compile(field, schema)
                    .map_err(|err| anyhow::anyhow!("{} / {}: {err}", service.name, environment.title))?;
            }
        }
    }
    Ok(catalog)
}

/// Writes the built-in catalog into the database: inserts what is new and updates what
/// changed, by id. Authentications are never touched, and nothing is removed (an
/// authentication may still use a service a later catalog drops).
pub async fn load_builtin(db: &DatabaseConnection) -> anyhow::Result<usize> {
    let catalog = parse_catalog(BUILTIN_CATALOG)?;
    let now = Utc::now();
    let txn = crate::db::write(db).await?;
    for entry in &catalog.services {
        let row = service::ActiveModel {
            id: Set(entry.id),
            org_id: Set(None),
            name: Set(entry.name.clone()),
            version: Set(entry.version),
            title: Set(entry.title.clone()),
            description: Set(entry.description.clone()),
            icon: Set(Some(entry.icon.clone())),
            created_at: Set(now),
            updated_at: Set(now),
        };
        service::Entity::insert(row)
            .on_conflict(
                OnConflict::column(service::Column::Id)
                    .update_columns([
                        service::Column::Name,
                        service::Column::Version,
                        service::Column::Title,
                        service::Column::Description,
                        service::Column::Icon,
                        service::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        for environment in &entry.environments {
            let row = service_environment::ActiveModel {
                id: Set(environment.id),
                service_id: Set(entry.id),
                org_id: Set(None),
                title: Set(environment.title.clone()),
                authentication_type: Set(environment.authentication_type.as_str().to_owned()),
                credentials_schema: Set(environment.credentials_schema.to_string()),
                user_data_schema: Set(environment.user_data_schema.to_string()),
                scopes: Set(serde_json::to_string(&environment.scopes)?),
                oauth_client_id: Set(None),
                oauth_client_secret: Set(None),
                oauth_authorize_url: Set(None),
                oauth_token_url: Set(None),
                key_id: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            };
            service_environment::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(service_environment::Column::Id)
                        .update_columns([
                            service_environment::Column::Title,
                            service_environment::Column::AuthenticationType,
                            service_environment::Column::CredentialsSchema,
                            service_environment::Column::UserDataSchema,
                            service_environment::Column::Scopes,
                            service_environment::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    Ok(catalog.services.len())
}

// ---------------------------------------------------------------------------------------
// Reads: built-in rows and the organization's own

pub(super) fn visible_to(org_id: OrgId, column: impl ColumnTrait) -> Condition {
    Condition::any().add(column.is_null()).add(column.eq(org_id.0))
}

pub async fn list_services(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    page: &PageRequest,
) -> Result<Page<Service>> {
    let select = service::Entity::find().filter(visible_to(caller.org_id(), service::Column::OrgId));
    Ok(page.fetch(conn, select, service::Column::Id, |row| row.id).await?.map(Into::into))
}

/// Every service the caller's organization can use, by name then version (the catalog is small).
pub async fn all_services(conn: &impl ConnectionTrait, caller: Caller<'_>) -> Result<Vec<Service>> {
    let rows = service::Entity::find()
        .filter(visible_to(caller.org_id(), service::Column::OrgId))
        .order_by_asc(service::Column::Name)
        .order_by_asc(service::Column::Version)
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn service(conn: &impl ConnectionTrait, caller: Caller<'_>, id: ServiceId) -> Result<Service> {
    service::Entity::find_by_id(id.0)
        .filter(visible_to(caller.org_id(), service::Column::OrgId))
        .one(conn)
        .await?
        .map(Into::into)
        .ok_or(Error::NotFound("service"))
}

pub async fn service_by_name(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    name: &str,
    version: i32,
) -> Result<Service> {
    // An organization's own service of the same name shadows nothing: names are unique
    // across built-in and custom services (enforced on create).
    service::Entity::find()
        .filter(visible_to(caller.org_id(), service::Column::OrgId))
        .filter(service::Column::Name.eq(name))
        .filter(service::Column::Version.eq(version))
        .one(conn)
        .await?
        .map(Into::into)
        .ok_or(Error::NotFound("service"))
}

/// The environments of a service that the caller's organization can use, `Production` first.
pub async fn environments(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    service_id: ServiceId,
) -> Result<Vec<Environment>> {
    let rows = service_environment::Entity::find()
        .filter(service_environment::Column::ServiceId.eq(service_id.0))
        .filter(visible_to(caller.org_id(), service_environment::Column::OrgId))
        .order_by_asc(service_environment::Column::OrgId)
        .order_by_asc(service_environment::Column::Id)
        .all(conn)
        .await?;
    let mut environments = rows.into_iter().map(Environment::try_from).collect::<Result<Vec<_>>>()?;
    environments.sort_by_key(|environment| environment.title != DEFAULT_ENVIRONMENT || !environment.builtin);
    Ok(environments)
}

pub async fn environment(conn: &impl ConnectionTrait, caller: Caller<'_>, id: EnvironmentId) -> Result<Environment> {
    environment_of(conn, caller.org_id(), id).await
}

/// An environment as `org_id` sees it, for latchkey's own work on the organization's
/// authentications (the keep-alive), which no caller asks for.
pub(super) async fn environment_of(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    id: EnvironmentId,
) -> Result<Environment> {
    service_environment::Entity::find_by_id(id.0)
        .filter(visible_to(org_id, service_environment::Column::OrgId))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("service environment"))?
        .try_into()
}

// ---------------------------------------------------------------------------------------
// Custom services and environments (master token)

pub struct NewService {
    pub name: String,
    pub version: Option<i32>,
    pub title: String,
    pub description: Option<String>,
    pub icon: Option<String>,
}

#[derive(Default)]
pub struct ServicePatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub icon: Option<String>,
}

/// An OAuth app as given by the partner, client secret included.
pub struct OAuthAppInput {
    pub client_id: String,
    pub client_secret: secrecy::SecretString,
    pub authorize_url: String,
    pub token_url: String,
}

pub struct NewEnvironment {
    pub title: String,
    pub authentication_type: AuthenticationType,
    pub credentials_schema: Option<Value>,
    pub user_data_schema: Option<Value>,
    pub scopes: Option<Vec<Scope>>,
    pub oauth_app: Option<OAuthAppInput>,
}

#[derive(Default)]
pub struct EnvironmentPatch {
    pub title: Option<String>,
    pub credentials_schema: Option<Value>,
    pub user_data_schema: Option<Value>,
    pub scopes: Option<Vec<Scope>>,
    pub oauth_app: Option<OAuthAppInput>,
}

fn service_name(name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Error::bad_input("name must be 1 to 64 lowercase letters, digits, '-' or '_'"))
    }
}

fn http_url(field: &str, url: &str) -> Result<String> {
    let url = url.trim();
    let valid = (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2048 && !url.contains(' ');
    if valid { Ok(url.to_owned()) } else { Err(Error::bad_input(format!("{field} must be an http(s) URL"))) }
}

fn scopes_json(scopes: &[Scope]) -> Result<String> {
    for scope in scopes {
        required_text("scope", &scope.scope, 256)?;
    }
    serde_json::to_string(scopes).map_err(Error::internal)
}

fn checked_schema(field: &str, schema: Option<Value>, fallback: &Value) -> Result<String> {
    let schema = schema.unwrap_or_else(|| fallback.clone());
    json_schema::compile(field, &schema)?;
    Ok(schema.to_string())
}

/// An environment the caller's organization can use, with its service, both share-locked
/// until the transaction ends (PostgreSQL): neither can be removed under a row being made
/// to use them. One statement.
pub(crate) async fn held_environment(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    id: EnvironmentId,
) -> Result<(Service, Environment)> {
    let org_id = caller.org_id();
    let (environment, service) = service_environment::Entity::find_by_id(id.0)
        .filter(visible_to(org_id, service_environment::Column::OrgId))
        .inner_join(service::Entity)
        .filter(visible_to(org_id, service::Column::OrgId))
        .select_also(service::Entity)
        .lock_shared()
        .one(conn)
        .await?
        .ok_or(Error::NotFound("service environment"))?;
    let service = service.ok_or(Error::NotFound("service"))?;
    Ok((service.into(), environment.try_into()?))
}

/// A custom service of the organization, or NOT_FOUND (built-in ones are read-only);
/// locked until the transaction ends (PostgreSQL).
async fn own_service(conn: &impl ConnectionTrait, org_id: OrgId, id: ServiceId) -> Result<service::Model> {
    let row = service::Entity::find_by_id(id.0)
        .filter(visible_to(org_id, service::Column::OrgId))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(Error::NotFound("service"))?;
    if row.org_id.is_none() {
        return Err(Error::Forbidden("built-in services cannot be changed"));
    }
    Ok(row)
}

/// An environment of the organization's own, locked until the transaction ends (PostgreSQL).
async fn own_environment(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    id: EnvironmentId,
) -> Result<service_environment::Model> {
    let row = service_environment::Entity::find_by_id(id.0)
        .filter(visible_to(org_id, service_environment::Column::OrgId))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(Error::NotFound("service environment"))?;
    if row.org_id.is_none() {
        return Err(Error::Forbidden("built-in environments cannot be changed"));
    }
    Ok(row)
}

pub async fn create_service(
    db: &DatabaseConnection,
    scope: &MasterScope,
    new: NewService,
    idempotency: Option<&Idempotency>,
) -> Result<Service> {
    let claim = idempotency::claim(idempotency, scope, "service.create", || {
        serde_json::json!({
            "name": new.name,
            "version": new.version,
            "title": new.title,
            "description": new.description,
            "icon": new.icon,
        })
    });
    let name = service_name(new.name.trim())?;
    let version = new.version.unwrap_or(1);
    if !(1..=1000).contains(&version) {
        return Err(Error::bad_input("version must be between 1 and 1000"));
    }
    let title = required_text("title", &new.title, 200)?;
    let icon = new.icon.as_deref().map(|icon| http_url("icon", icon)).transpose()?;
    let id = ServiceId::generate();
    let txn = match idempotency::begin(db, claim.as_ref(), id.0).await? {
        Begun::Fresh(txn) => txn,
        Begun::Replay(id) => return idempotency::replayed(service(db, scope.into(), ServiceId(id)).await, "service"),
    };
    // Names are unique among the services an organization sees, built-in ones included, so
    // no index can say it: creates of one organization take turns on its row (PostgreSQL;
    // SQLite's write transactions already do), and the check below sees every earlier one.
    entity::organization::Entity::find_by_id(scope.org_id().0).lock_exclusive().one(&txn).await?;
    let taken = service::Entity::find()
        .filter(visible_to(scope.org_id(), service::Column::OrgId))
        .filter(service::Column::Name.eq(name.as_str()))
        .filter(service::Column::Version.eq(version))
        .count(&txn)
        .await?;
    if taken > 0 {
        return Err(Error::Conflict(format!("a service named {name:?} with version {version} already exists")));
    }
    let now = Utc::now();
    let row = service::Entity::insert(service::ActiveModel {
        id: Set(id.0),
        org_id: Set(Some(scope.org_id().0)),
        name: Set(name),
        version: Set(version),
        title: Set(title),
        description: Set(new.description),
        icon: Set(icon),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    audit::record(&txn, scope.org_id(), scope.into(), "service.created", Some(row.id)).await?;
    txn.commit().await?;
    Ok(row.into())
}

pub async fn update_service(
    db: &DatabaseConnection,
    scope: &MasterScope,
    id: ServiceId,
    patch: ServicePatch,
) -> Result<Service> {
    let title = patch.title.as_deref().map(|title| required_text("title", title, 200)).transpose()?;
    let icon = patch.icon.as_deref().map(|icon| http_url("icon", icon)).transpose()?;
    let txn = crate::db::write(db).await?;
    let current = own_service(&txn, scope.org_id(), id).await?;
    let stamp = advanced(current.updated_at);
    let mut row: service::ActiveModel = current.into();
    if let Some(title) = title {
        row.title = Set(title);
    }
    if let Some(description) = patch.description {
        row.description = Set(Some(description));
    }
    if let Some(icon) = icon {
        row.icon = Set(Some(icon));
    }
    row.updated_at = Set(stamp);
    let row = row.update(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "service.updated", Some(row.id)).await?;
    txn.commit().await?;
    Ok(row.into())
}

async fn refuse_if_used(
    conn: &impl ConnectionTrait,
    column: authentication::Column,
    id: Uuid,
    what: &str,
) -> Result<()> {
    let used = authentication::Entity::find().filter(column.eq(id)).count(conn).await?;
    if used > 0 {
        return Err(Error::Conflict(format!("the {what} is used by {used} authentication(s); remove them first")));
    }
    Ok(())
}

pub async fn remove_service(db: &DatabaseConnection, scope: &MasterScope, id: ServiceId) -> Result<()> {
    let txn = crate::db::write(db).await?;
    own_service(&txn, scope.org_id(), id).await?;
    refuse_if_used(&txn, authentication::Column::ServiceId, id.0, "service").await?;
    service::Entity::delete_by_id(id.0).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "service.removed", Some(id.0)).await?;
    txn.commit().await?;
    Ok(())
}

/// The sealed-envelope binding of an environment's OAuth client secret.
pub fn client_secret_binding(org_id: OrgId, id: EnvironmentId) -> envelope::Binding<'static> {
    envelope::Binding { org_id: org_id.0, owner: None, record_id: id.0, field: "oauth_client_secret" }
}

/// An environment's OAuth app with its client secret opened, for the token requests made
/// with it; `None` where the environment has no app. Only the caller's organization's
/// environments are found.
pub async fn oauth_app_with_secret(
    conn: &impl ConnectionTrait,
    keyring: &crate::crypto::KeyringHandle,
    caller: Caller<'_>,
    id: EnvironmentId,
) -> Result<Option<(OAuthApp, secrecy::SecretString)>> {
    oauth_app_with_secret_of(conn, keyring, caller.org_id(), id).await
}

/// [`oauth_app_with_secret`] as `org_id` sees it, for the keep-alive.
pub(super) async fn oauth_app_with_secret_of(
    conn: &impl ConnectionTrait,
    keyring: &crate::crypto::KeyringHandle,
    org_id: OrgId,
    id: EnvironmentId,
) -> Result<Option<(OAuthApp, secrecy::SecretString)>> {
    use secrecy::ExposeSecret;
    let row = service_environment::Entity::find_by_id(id.0)
        .filter(visible_to(org_id, service_environment::Column::OrgId))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("service environment"))?;
    let (Some(org_id), Some(sealed)) = (row.org_id, row.oauth_client_secret.clone()) else {
        return Ok(None);
    };
    let opened = keyring.open(&client_secret_binding(OrgId(org_id), id), &sealed).map_err(|err| {
        Error::internal(anyhow::anyhow!("service environment {} oauth_client_secret failed to open: {err}", row.id))
    })?;
    let secret = String::from_utf8(opened.expose_secret().clone())
        .map_err(|_| Error::internal(anyhow::anyhow!("service environment {} client secret is not text", row.id)))?;
    let Some(app) = Environment::try_from(row)?.oauth_app else {
        return Ok(None);
    };
    Ok(Some((app, secret.into())))
}

fn seal_oauth_app(
    keyring: &Keyring,
    org_id: OrgId,
    id: EnvironmentId,
    app: OAuthAppInput,
    row: &mut service_environment::ActiveModel,
) -> Result<()> {
    use secrecy::ExposeSecret;
    let client_id = required_text("oauthApp.clientId", &app.client_id, 512)?;
    let secret = app.client_secret.expose_secret();
    if secret.is_empty() || secret.len() > 4096 {
        return Err(Error::bad_input("oauthApp.clientSecret must be 1 to 4096 characters"));
    }
    row.oauth_client_id = Set(Some(client_id));
    row.oauth_authorize_url = Set(Some(http_url("oauthApp.authorizeUrl", &app.authorize_url)?));
    row.oauth_token_url = Set(Some(http_url("oauthApp.tokenUrl", &app.token_url)?));
    row.oauth_client_secret = Set(Some(envelope::seal(keyring, &client_secret_binding(org_id, id), secret.as_bytes())));
    row.key_id = Set(Some(keyring.active().id().to_owned()));
    Ok(())
}

/// Adds an environment (such as the organization's own OAuth app) to a built-in or own
/// service. Schemas left out are those of the service's `Production` environment.
pub async fn create_environment(
    db: &DatabaseConnection,
    keyring: &Keyring,
    scope: &MasterScope,
    service_id: ServiceId,
    new: NewEnvironment,
    idempotency: Option<&Idempotency>,
) -> Result<Environment> {
    let claim = idempotency::claim(idempotency, scope, "service_environment.create", || {
        use secrecy::ExposeSecret;
        serde_json::json!({
            "serviceId": service_id.to_string(),
            "title": new.title,
            "authenticationType": new.authentication_type.as_str(),
            "credentialsSchema": new.credentials_schema,
            "userDataSchema": new.user_data_schema,
            "scopes": new.scopes,
            "oauthApp": new.oauth_app.as_ref().map(|app| serde_json::json!({
                "clientId": app.client_id,
                "clientSecret": app.client_secret.expose_secret(),
                "authorizeUrl": app.authorize_url,
                "tokenUrl": app.token_url,
            })),
        })
    });
    let title = required_text("title", &new.title, 200)?;
    let id = EnvironmentId::generate();
    let txn = match idempotency::begin(db, claim.as_ref(), id.0).await? {
        Begun::Fresh(txn) => txn,
        Begun::Replay(id) => {
            let environment = environment(db, scope.into(), EnvironmentId(id)).await;
            return idempotency::replayed(environment, "service environment");
        }
    };
    let service: Service = service::Entity::find_by_id(service_id.0)
        .filter(visible_to(scope.org_id(), service::Column::OrgId))
        .lock_shared()
        .one(&txn)
        .await?
        .map(Into::into)
        .ok_or(Error::NotFound("service"))?;
    let template = environments(&txn, scope.into(), service.id).await?.into_iter().next();
    let empty = serde_json::json!({});
    let credentials_schema = checked_schema(
        "credentialsSchema",
        new.credentials_schema,
        template.as_ref().map_or(&empty, |t| &t.credentials_schema),
    )?;
    let user_data_schema = checked_schema(
        "userDataSchema",
        new.user_data_schema,
        template.as_ref().map_or(&empty, |t| &t.user_data_schema),
    )?;
    let scopes = match new.scopes {
        Some(scopes) => scopes,
        None => template.map(|t| t.scopes).unwrap_or_default(),
    };
    let now = Utc::now();
    let mut row = service_environment::ActiveModel {
        id: Set(id.0),
        service_id: Set(service.id.0),
        org_id: Set(Some(scope.org_id().0)),
        title: Set(title),
        authentication_type: Set(new.authentication_type.as_str().to_owned()),
        credentials_schema: Set(credentials_schema),
        user_data_schema: Set(user_data_schema),
        scopes: Set(scopes_json(&scopes)?),
        oauth_client_id: Set(None),
        oauth_client_secret: Set(None),
        oauth_authorize_url: Set(None),
        oauth_token_url: Set(None),
        key_id: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    if let Some(app) = new.oauth_app {
        seal_oauth_app(keyring, scope.org_id(), id, app, &mut row)?;
    }
    let row = service_environment::Entity::insert(row).exec_with_returning(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "service_environment.created", Some(id.0)).await?;
    txn.commit().await?;
    row.try_into()
}

pub async fn update_environment(
    db: &DatabaseConnection,
    keyring: &Keyring,
    scope: &MasterScope,
    id: EnvironmentId,
    patch: EnvironmentPatch,
) -> Result<Environment> {
    let txn = crate::db::write(db).await?;
    let current = own_environment(&txn, scope.org_id(), id).await?;
    let mut row: service_environment::ActiveModel = current.clone().into();
    if let Some(title) = patch.title {
        row.title = Set(required_text("title", &title, 200)?);
    }
    if let Some(schema) = patch.credentials_schema {
        row.credentials_schema = Set(checked_schema("credentialsSchema", Some(schema), &Value::Null)?);
    }
    if let Some(schema) = patch.user_data_schema {
        row.user_data_schema = Set(checked_schema("userDataSchema", Some(schema), &Value::Null)?);
    }
    if let Some(scopes) = patch.scopes {
        row.scopes = Set(scopes_json(&scopes)?);
    }
    if let Some(app) = patch.oauth_app {
        seal_oauth_app(keyring, scope.org_id(), id, app, &mut row)?;
    }
    row.updated_at = Set(advanced(current.updated_at));
    let row = row.update(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "service_environment.updated", Some(id.0)).await?;
    txn.commit().await?;
    row.try_into()
}

pub async fn remove_environment(db: &DatabaseConnection, scope: &MasterScope, id: EnvironmentId) -> Result<()> {
    let txn = crate::db::write(db).await?;
    own_environment(&txn, scope.org_id(), id).await?;
    refuse_if_used(&txn, authentication::Column::EnvironmentId, id.0, "service environment").await?;
    service_environment::Entity::delete_by_id(id.0).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "service_environment.removed", Some(id.0)).await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_catalog_parses_and_every_schema_compiles() {
        let catalog = parse_catalog(BUILTIN_CATALOG).unwrap();
        assert!(catalog.services.len() >= 12);
        let mut ids = std::collections::HashSet::new();
        for service in &catalog.services {
            assert!(ids.insert(service.id), "duplicate id {}", service.id);
            let production = service.environments.iter().filter(|e| e.title == DEFAULT_ENVIRONMENT).count();
            assert_eq!(production, 1, "{} has one Production environment", service.name);
            assert!(service.icon.starts_with("data:image/svg+xml;base64,"), "{} ships an embedded icon", service.name);
            for environment in &service.environments {
                assert!(ids.insert(environment.id), "duplicate id {}", environment.id);
            }
        }
        for name in ["slack", "salesforce", "zendesk", "aws-sqs", "netsuite", "airtable", "stripe", "github"] {
            assert!(catalog.services.iter().any(|s| s.name == name), "{name} is in the catalog");
        }
    }

    /// A vendor format is enforced only where the vendor documents it as fixed, and the
    /// catalog says where: every `pattern` and `format: uuid` sits beside a `$comment` with
    /// the source's URL.
    #[test]
    fn every_format_rule_in_the_catalog_names_its_source() {
        fn walk(service: &str, path: &str, schema: &Value) {
            let Some(object) = schema.as_object() else { return };
            if object.contains_key("pattern") || object.get("format").is_some_and(|f| f == "uuid") {
                let comment = object.get("$comment").and_then(Value::as_str).unwrap_or_default();
                assert!(comment.contains("https://"), "{service} {path}: a format rule without a source");
            }
            for (key, value) in object {
                walk(service, &format!("{path}/{key}"), value);
            }
        }
        let catalog = parse_catalog(BUILTIN_CATALOG).unwrap();
        for service in &catalog.services {
            for environment in &service.environments {
                walk(&service.name, "credentialsSchema", &environment.credentials_schema);
                walk(&service.name, "userDataSchema", &environment.user_data_schema);
            }
        }
    }

    #[test]
    fn authentication_types_round_trip_their_public_names() {
        for kind in AuthenticationType::ALL {
            assert_eq!(AuthenticationType::parse(kind.as_str()).unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn service_names_are_lowercase_identifiers() {
        assert!(service_name("acme-crm_2").is_ok());
        for bad in ["", "Acme", "-x", "a b", &"x".repeat(65)] {
            assert!(service_name(bad).is_err(), "{bad:?}");
        }
    }
}
