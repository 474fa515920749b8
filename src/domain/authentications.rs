//! Imported third-party authentications. Credentials (`data` / REST `credentials`) and
//! user data (`formData` / REST `userData`) are validated against the environment's
//! schemas, then sealed, each bound to its organization, owner, row and field. Metadata
//! reads never open them; only [`read_full`] does, for the owning end user, where the
//! organization enabled it, and it is audited.

use std::{collections::BTreeSet, sync::Arc};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DerivePartialModel,
    EntityTrait, JoinType, QueryFilter, QuerySelect, RelationTrait,
};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{
    audit,
    catalog::{self, Environment, Service},
    catalog_cache,
    expiry::{self, Lifecycle, Standing, Status, Timing},
    idempotency::{self, Begun, Idempotency},
    json_schema, orgs,
    pagination::{Page, PageRequest},
    refresh::{self, Outcome, Refresher},
    required_text,
    webhooks::{self, events::AuthenticationChange},
};
use crate::{
    auth::{Caller, UserScope},
    crypto::{Keyring, KeyringHandle, Sensitive, envelope},
    error::{Error, Result},
    ids::{AuthenticationId, EnvironmentId, OrgId, ServiceId, UserId},
};
use entity::{authentication, service, service_environment};
use uuid::Uuid;

const MAX_NAME: usize = 256;
const MAX_SCOPES: usize = 200;
const MAX_CUSTOM_FIELDS_BYTES: usize = 16 * 1024;

/// What anyone allowed to see an authentication sees: never a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Authentication {
    pub id: AuthenticationId,
    pub owner: Option<UserId>,
    pub name: String,
    /// Shared by every authentication read with it.
    pub service: Arc<Service>,
    pub environment: Arc<Environment>,
    pub scopes: Vec<String>,
    pub hidden: bool,
    pub custom_fields: Value,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
    pub status: Status,
    /// When the access token expires, where latchkey knows.
    pub expires_at: Option<chrono::DateTime<Utc>>,
}

/// The secrets, opened. Only [`read_full`] makes one.
pub struct FullAuthentication {
    pub authentication: Authentication,
    pub credentials: Sensitive<Value>,
    pub user_data: Sensitive<Value>,
}

pub struct NewAuthentication {
    pub name: String,
    /// The GraphQL API names the service too; it must be the environment's.
    pub service_id: Option<ServiceId>,
    pub environment_id: EnvironmentId,
    pub credentials: Value,
    pub user_data: Option<Value>,
    pub scopes: Option<Vec<String>>,
    pub hidden: Option<bool>,
    pub custom_fields: Option<Value>,
}

/// A full replacement: what is not given is reset (user data to `{}`, scopes to none).
pub struct Replacement {
    pub name: String,
    pub credentials: Value,
    pub user_data: Option<Value>,
    pub scopes: Option<Vec<String>>,
    pub custom_fields: Option<Value>,
}

#[derive(Default)]
pub struct Criteria {
    /// Master token only: whose authentications (default: the organization's own).
    pub owner: Option<UserId>,
    pub service_id: Option<ServiceId>,
}

/// Which sealed field of a row.
#[derive(Clone, Copy)]
pub enum Field {
    Credentials,
    UserData,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Credentials => "credentials",
            Field::UserData => "user_data",
        }
    }
}

/// The binding that ties a sealed field to its row: moved anywhere else, it fails to open.
pub fn binding(row: &authentication::Model, field: Field) -> envelope::Binding<'static> {
    envelope::Binding { org_id: row.org_id, owner: row.owner_user_id, record_id: row.id, field: field.name() }
}

fn binding_for(org_id: OrgId, owner: Option<UserId>, id: AuthenticationId, field: Field) -> envelope::Binding<'static> {
    envelope::Binding { org_id: org_id.0, owner: owner.map(|o| o.0), record_id: id.0, field: field.name() }
}

fn owner_of(caller: Caller<'_>) -> Option<UserId> {
    match caller {
        Caller::Master(_) => None,
        Caller::User(scope) => Some(scope.user_id()),
    }
}

/// The caller's view of the table: the master token sees the whole organization, an
/// end user only their own rows.
fn scoped(caller: Caller<'_>) -> sea_orm::Select<authentication::Entity> {
    let select = authentication::Entity::find().filter(authentication::Column::OrgId.eq(caller.org_id().0));
    match caller {
        Caller::Master(_) => select,
        Caller::User(scope) => select.filter(authentication::Column::OwnerUserId.eq(scope.user_id().0)),
    }
}

async fn find_row(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    id: AuthenticationId,
) -> Result<authentication::Model> {
    scoped(caller).filter(authentication::Column::Id.eq(id.0)).one(conn).await?.ok_or(Error::NotFound("authentication"))
}

/// The row, locked until the transaction ends (PostgreSQL): replacements and removals of
/// one authentication take turns, and a removal waits for instance writes that use it.
async fn row_for_update(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    id: AuthenticationId,
) -> Result<authentication::Model> {
    scoped(caller)
        .filter(authentication::Column::Id.eq(id.0))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(Error::NotFound("authentication"))
}

fn object(field: &str, value: Value) -> Result<Value> {
    if value.is_object() { Ok(value) } else { Err(Error::bad_input(format!("{field} must be a JSON object"))) }
}

/// Scopes trimmed, without duplicates, bounded, and where the environment declares its
/// scopes, only those.
pub(super) fn checked_scopes(environment: &Environment, scopes: Option<Vec<String>>) -> Result<Vec<String>> {
    let scopes: BTreeSet<String> = scopes.unwrap_or_default().into_iter().map(|s| s.trim().to_owned()).collect();
    if scopes.len() > MAX_SCOPES {
        return Err(Error::bad_input(format!("at most {MAX_SCOPES} scopes")));
    }
    if !environment.scopes.is_empty() {
        let unknown: Vec<&str> = scopes
            .iter()
            .filter(|s| !environment.scopes.iter().any(|known| &known.scope == *s))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(Error::bad_input(format!(
                "unknown scopes for this service environment: {}",
                unknown.join(", ")
            )));
        }
    }
    Ok(scopes.into_iter().collect())
}

fn checked_custom_fields(custom_fields: Option<Value>) -> Result<String> {
    let custom_fields = object("customFields", custom_fields.unwrap_or_else(|| serde_json::json!({})))?;
    let text = custom_fields.to_string();
    if text.len() > MAX_CUSTOM_FIELDS_BYTES {
        return Err(Error::bad_input(format!("customFields must be at most {MAX_CUSTOM_FIELDS_BYTES} bytes of JSON")));
    }
    Ok(text)
}

/// Validated, ready-to-seal contents of a create or a replacement.
struct Contents {
    name: String,
    credentials: Value,
    user_data: Value,
    scopes: String,
    custom_fields: String,
}

fn checked_contents(
    environment: &Environment,
    name: &str,
    credentials: Value,
    user_data: Option<Value>,
    scopes: Option<Vec<String>>,
    custom_fields: Option<Value>,
) -> Result<Contents> {
    let name = required_text("name", name, MAX_NAME)?;
    let credentials = object("credentials", credentials)?;
    let user_data = object("userData", user_data.unwrap_or_else(|| serde_json::json!({})))?;
    // Both documents are checked before answering, so one answer lists every violation.
    let violations: Vec<String> = [
        json_schema::validate("credentials", &environment.credentials_schema, &credentials),
        json_schema::validate("userData", &environment.user_data_schema, &user_data),
    ]
    .into_iter()
    .filter_map(Result::err)
    .map(|err| err.to_string())
    .collect();
    if !violations.is_empty() {
        return Err(Error::bad_input(violations.join("; ")));
    }
    let scopes = serde_json::to_string(&checked_scopes(environment, scopes)?).map_err(Error::internal)?;
    Ok(Contents { name, credentials, user_data, scopes, custom_fields: checked_custom_fields(custom_fields)? })
}

/// Seals a new value of one field of an existing row.
pub(super) fn seal_field(keyring: &Keyring, row: &authentication::Model, field: Field, value: &Value) -> Vec<u8> {
    envelope::seal(keyring, &binding(row, field), value.to_string().as_bytes())
}

fn seal(
    keyring: &Keyring,
    org_id: OrgId,
    owner: Option<UserId>,
    id: AuthenticationId,
    field: Field,
    value: &Value,
) -> Vec<u8> {
    envelope::seal(keyring, &binding_for(org_id, owner, id, field), value.to_string().as_bytes())
}

/// What an authentication's metadata is made of from its own row: never the sealed
/// envelopes, and of the keep-alive's bookkeeping only what its status is read from.
#[derive(DerivePartialModel)]
#[sea_orm(entity = "authentication::Entity")]
struct Own {
    id: Uuid,
    owner_user_id: Option<Uuid>,
    name: String,
    scopes: String,
    hidden: bool,
    custom_fields: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    hard_expires_at: Option<DateTime<Utc>>,
    renewal: Option<String>,
    status: String,
    refresh_attempts: i32,
}

impl From<authentication::Model> for Own {
    fn from(row: authentication::Model) -> Self {
        Self {
            id: row.id,
            owner_user_id: row.owner_user_id,
            name: row.name,
            scopes: row.scopes,
            hidden: row.hidden,
            custom_fields: row.custom_fields,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
            hard_expires_at: row.hard_expires_at,
            renewal: row.renewal,
            status: row.status,
            refresh_attempts: row.refresh_attempts,
        }
    }
}

impl Own {
    fn shown(self, service: Arc<Service>, environment: Arc<Environment>, now: DateTime<Utc>) -> Result<Authentication> {
        let standing = Standing {
            stored: &self.status,
            renewal: self.renewal.as_deref(),
            refresh_attempts: self.refresh_attempts,
            expires_at: self.expires_at,
            hard_expires_at: self.hard_expires_at,
        };
        Ok(Authentication {
            status: expiry::status(standing, now),
            expires_at: self.expires_at,
            id: AuthenticationId(self.id),
            owner: self.owner_user_id.map(UserId),
            name: self.name,
            service,
            environment,
            scopes: serde_json::from_str(&self.scopes).map_err(Error::internal)?,
            hidden: self.hidden,
            custom_fields: serde_json::from_str(&self.custom_fields).map_err(Error::internal)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A catalog row's id and stamp, read with the authentications that use it.
#[derive(DerivePartialModel)]
#[sea_orm(entity = "service::Entity")]
struct ServiceStamp {
    id: Uuid,
    updated_at: DateTime<Utc>,
}

#[derive(DerivePartialModel)]
#[sea_orm(entity = "service_environment::Entity")]
struct EnvironmentStamp {
    id: Uuid,
    updated_at: DateTime<Utc>,
}

/// An authentication's own row with the stamps of its service and environment: everything
/// a metadata read needs, in one statement, with the catalog itself from
/// [`catalog_cache`] (read again only when a stamp has moved).
#[derive(DerivePartialModel)]
#[sea_orm(entity = "authentication::Entity")]
struct Metadata {
    #[sea_orm(nested)]
    own: Own,
    #[sea_orm(nested)]
    service: ServiceStamp,
    #[sea_orm(nested)]
    service_environment: EnvironmentStamp,
}

/// The caller's authentications with the stamps [`Metadata`] reads. Another
/// organization's custom services and environments are left out, as missing ones are.
fn with_catalog(caller: Caller<'_>) -> sea_orm::Select<authentication::Entity> {
    let org_id = caller.org_id();
    scoped(caller)
        .join(JoinType::InnerJoin, authentication::Relation::Service.def())
        .join(JoinType::InnerJoin, authentication::Relation::ServiceEnvironment.def())
        .filter(catalog::visible_to(org_id, service::Column::OrgId))
        .filter(catalog::visible_to(org_id, service_environment::Column::OrgId))
}

/// Rows to authentications, each service and environment shared by the rows that use it.
async fn to_authentications(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    rows: Vec<Metadata>,
) -> Result<Vec<Authentication>> {
    let stamp = |id, updated_at| catalog_cache::Stamp { id, updated_at };
    let services: Vec<_> = rows.iter().map(|row| stamp(row.service.id, row.service.updated_at)).collect();
    let environments: Vec<_> =
        rows.iter().map(|row| stamp(row.service_environment.id, row.service_environment.updated_at)).collect();
    let services = catalog_cache::services(conn, caller, &services).await?;
    let environments = catalog_cache::environments(conn, caller, &environments).await?;
    let now = Utc::now();
    rows.into_iter()
        .map(|row| {
            let missing = || Error::internal(anyhow::anyhow!("authentication {} lost its catalog entry", row.own.id));
            let service = services.get(&row.service.id).cloned().ok_or_else(missing)?;
            let environment = environments.get(&row.service_environment.id).cloned().ok_or_else(missing)?;
            row.own.shown(service, environment, now)
        })
        .collect()
}

/// One authentication's metadata, as the caller sees it (inside the caller's
/// transaction, where there is one).
async fn metadata(conn: &impl ConnectionTrait, caller: Caller<'_>, id: AuthenticationId) -> Result<Authentication> {
    let row = with_catalog(caller)
        .filter(authentication::Column::Id.eq(id.0))
        .into_partial_model::<Metadata>()
        .one(conn)
        .await?
        .ok_or(Error::NotFound("authentication"))?;
    to_authentications(conn, caller, vec![row])
        .await?
        .pop()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("row vanished")))
}

/// Imports an authentication: the end user's own with a user token, the organization's
/// own with the master token.
pub async fn create(
    db: &DatabaseConnection,
    keyring: &Keyring,
    timing: Timing,
    caller: Caller<'_>,
    new: NewAuthentication,
    idempotency: Option<&Idempotency>,
) -> Result<Authentication> {
    let claim = idempotency::claim(idempotency, caller, "authentication.create", || {
        serde_json::json!({
            "name": new.name,
            "serviceId": new.service_id.map(|id| id.to_string()),
            "environmentId": new.environment_id.to_string(),
            "credentials": new.credentials,
            "userData": new.user_data,
            "scopes": new.scopes,
            "hidden": new.hidden,
            "customFields": new.custom_fields,
        })
    });
    let id = AuthenticationId::generate();
    let txn = match idempotency::begin(db, claim.as_ref(), id.0).await? {
        Begun::Fresh(txn) => txn,
        Begun::Replay(id) => {
            return idempotency::replayed(get(db, caller, AuthenticationId(id)).await, "authentication");
        }
    };
    let authentication = insert(&txn, keyring, timing, caller, id, new).await?;
    txn.commit().await?;
    Ok(authentication)
}

/// Checks a new authentication and inserts it as `id` inside `txn`, so a use case can
/// make it together with other writes (an instance's slot value) or not at all.
pub(crate) async fn insert(
    txn: &DatabaseTransaction,
    keyring: &Keyring,
    timing: Timing,
    caller: Caller<'_>,
    id: AuthenticationId,
    new: NewAuthentication,
) -> Result<Authentication> {
    let org_id = caller.org_id();
    let (service, environment) = catalog::held_environment(txn, caller, new.environment_id).await?;
    if new.service_id.is_some_and(|id| id != environment.service_id) {
        return Err(Error::bad_input("serviceId is not the service of serviceEnvironmentId"));
    }
    let contents =
        checked_contents(&environment, &new.name, new.credentials, new.user_data, new.scopes, new.custom_fields)?;
    let owner = owner_of(caller);
    let now = Utc::now();
    let lifecycle = Lifecycle::of(&environment, &contents.credentials, now);
    let mut row = authentication::ActiveModel {
        id: Set(id.0),
        org_id: Set(org_id.0),
        owner_user_id: Set(owner.map(|o| o.0)),
        service_id: Set(environment.service_id.0),
        environment_id: Set(environment.id.0),
        name: Set(contents.name),
        scopes: Set(contents.scopes),
        hidden: Set(new.hidden.unwrap_or(false)),
        custom_fields: Set(contents.custom_fields),
        credentials: Set(seal(keyring, org_id, owner, id, Field::Credentials, &contents.credentials)),
        user_data: Set(seal(keyring, org_id, owner, id, Field::UserData, &contents.user_data)),
        key_id: Set(keyring.active().id().to_owned()),
        expiry_reported_for: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        credentials_version: Set(0),
        last_used_at: Set(None),
        ..Default::default()
    };
    refresh::reset(&mut row, &lifecycle, now, timing);
    if let Some(owner) = owner {
        super::users::hold(txn, org_id, owner).await?;
    }
    let row = authentication::Entity::insert(row).exec_with_returning(txn).await?;
    audit::record(txn, org_id, caller.into(), "authentication.created", Some(id.0)).await?;
    webhooks::events::authentication(txn, &row, AuthenticationChange::Created).await?;
    Own::from(row).shown(Arc::new(service), Arc::new(environment), now)
}

pub async fn get(conn: &impl ConnectionTrait, caller: Caller<'_>, id: AuthenticationId) -> Result<Authentication> {
    metadata(conn, caller, id).await
}

/// A page of authentications: an end user's own; for the master token the organization's
/// own, or a given end user's.
pub async fn list(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    criteria: Criteria,
    page: &PageRequest,
) -> Result<Page<Authentication>> {
    let mut select = with_catalog(caller);
    select = match (caller, criteria.owner) {
        (Caller::User(_), Some(_)) => return Err(Error::Forbidden("only the master token may filter by owner")),
        (Caller::User(_), None) => select,
        (Caller::Master(_), Some(owner)) => select.filter(authentication::Column::OwnerUserId.eq(owner.0)),
        (Caller::Master(_), None) => select.filter(authentication::Column::OwnerUserId.is_null()),
    };
    if let Some(service_id) = criteria.service_id {
        select = select.filter(authentication::Column::ServiceId.eq(service_id.0));
    }
    let rows = page.window(select, authentication::Column::Id).into_partial_model::<Metadata>().all(conn).await?;
    let mut page = page.page_of(rows, |row| row.own.id);
    let items = to_authentications(conn, caller, std::mem::take(&mut page.items)).await?;
    Ok(page.with_items(items))
}

/// Replaces name, credentials, user data, scopes and custom fields; the environment stays.
pub async fn replace(
    db: &DatabaseConnection,
    keyring: &Keyring,
    timing: Timing,
    caller: Caller<'_>,
    id: AuthenticationId,
    replacement: Replacement,
) -> Result<Authentication> {
    let txn = crate::db::write(db).await?;
    let row = row_for_update(&txn, caller, id).await?;
    let authentication = rewrite(&txn, keyring, timing, caller, row, replacement).await?;
    txn.commit().await?;
    Ok(authentication)
}

/// An edit from a form: the documents as sent, where a secret field left blank keeps its
/// stored value.
pub struct Edit {
    pub name: String,
    pub credentials: Value,
    pub user_data: Value,
    /// Top-level properties of the credentials that, left out, keep their stored value.
    pub keep_credentials: Vec<String>,
    /// The same for the user data.
    pub keep_user_data: Vec<String>,
    pub scopes: Vec<String>,
}

/// Edits an authentication inside `txn`: opens the sealed documents, keeps the stored
/// value of each kept property left out, checks the result as the import does, and seals
/// it again. The row is locked (`FOR UPDATE` on PostgreSQL) from the read to the commit.
/// The custom fields stay.
pub(crate) async fn edit(
    txn: &DatabaseTransaction,
    keyring: &KeyringHandle,
    timing: Timing,
    caller: Caller<'_>,
    id: AuthenticationId,
    edit: Edit,
) -> Result<Authentication> {
    let row = row_for_update(txn, caller, id).await?;
    edit_locked(txn, keyring, timing, caller, row, edit).await
}

/// [`edit`] of a row the caller has already locked in `txn`.
async fn edit_locked(
    txn: &DatabaseTransaction,
    keyring: &KeyringHandle,
    timing: Timing,
    caller: Caller<'_>,
    row: authentication::Model,
    edit: Edit,
) -> Result<Authentication> {
    let credentials =
        keep_stored(edit.credentials, &open_json(keyring, &row, Field::Credentials)?, &edit.keep_credentials);
    let user_data = keep_stored(edit.user_data, &open_json(keyring, &row, Field::UserData)?, &edit.keep_user_data);
    let custom_fields = serde_json::from_str(&row.custom_fields).map_err(Error::internal)?;
    let replacement = Replacement {
        name: edit.name,
        credentials,
        user_data: Some(user_data),
        scopes: Some(edit.scopes),
        custom_fields: Some(custom_fields),
    };
    rewrite(txn, &keyring.current(), timing, caller, row, replacement).await
}

/// New tokens from a provider for an authentication (an OAuth reconnect): the
/// credentials replace the stored ones, the user data's properties replace theirs (the
/// others stay), and the scopes are set. The id, name, owner and custom fields stay.
pub struct Reconnect {
    pub credentials: Value,
    pub user_data: Value,
    pub scopes: Vec<String>,
}

/// Reconnects an authentication inside `txn`: the [`edit`] that keeps its name and every
/// stored property of its user data the provider does not restate.
pub(crate) async fn reconnect(
    txn: &DatabaseTransaction,
    keyring: &KeyringHandle,
    timing: Timing,
    caller: Caller<'_>,
    id: AuthenticationId,
    reconnect: Reconnect,
) -> Result<Authentication> {
    let row = row_for_update(txn, caller, id).await?;
    let stored = open_json(keyring, &row, Field::UserData)?;
    let keep_user_data = stored.expose().as_object().map(|kept| kept.keys().cloned().collect()).unwrap_or_default();
    let edit_keeping = Edit {
        name: row.name.clone(),
        credentials: reconnect.credentials,
        user_data: reconnect.user_data,
        keep_credentials: Vec::new(),
        keep_user_data,
        scopes: reconnect.scopes,
    };
    edit_locked(txn, keyring, timing, caller, row, edit_keeping).await
}

/// `document` with the stored value of each of `keep` that it leaves out.
fn keep_stored(mut document: Value, stored: &Sensitive<Value>, keep: &[String]) -> Value {
    if let (Some(document), Some(stored)) = (document.as_object_mut(), stored.expose().as_object()) {
        for property in keep {
            if let (false, Some(value)) = (document.contains_key(property), stored.get(property)) {
                document.insert(property.clone(), value.clone());
            }
        }
    }
    document
}

/// Checks `replacement` against the row's environment and writes it over the locked `row`.
async fn rewrite(
    txn: &DatabaseTransaction,
    keyring: &Keyring,
    timing: Timing,
    caller: Caller<'_>,
    row: authentication::Model,
    replacement: Replacement,
) -> Result<Authentication> {
    let id = AuthenticationId(row.id);
    let org_id = OrgId(row.org_id);
    let owner = row.owner_user_id.map(UserId);
    let environment = catalog::environment(txn, caller, EnvironmentId(row.environment_id)).await?;
    let contents = checked_contents(
        &environment,
        &replacement.name,
        replacement.credentials,
        replacement.user_data,
        replacement.scopes,
        replacement.custom_fields,
    )?;
    let version = row.credentials_version;
    let now = Utc::now();
    let lifecycle = Lifecycle::of(&environment, &contents.credentials, now);
    let mut active: authentication::ActiveModel = row.into();
    // New credentials: a refresh of the old ones still under way loses its lease, so its
    // answer cannot overwrite them.
    refresh::reset(&mut active, &lifecycle, now, timing);
    active.credentials_version = Set(version + 1);
    active.name = Set(contents.name);
    active.scopes = Set(contents.scopes);
    active.custom_fields = Set(contents.custom_fields);
    active.credentials = Set(seal(keyring, org_id, owner, id, Field::Credentials, &contents.credentials));
    active.user_data = Set(seal(keyring, org_id, owner, id, Field::UserData, &contents.user_data));
    active.key_id = Set(keyring.active().id().to_owned());
    active.updated_at = Set(now);
    let row = authentication::Entity::update(active).exec(txn).await?;
    audit::record(txn, org_id, caller.into(), "authentication.updated", Some(id.0)).await?;
    webhooks::events::authentication(txn, &row, AuthenticationChange::Replaced).await?;
    metadata(txn, caller, id).await
}

pub async fn remove(db: &DatabaseConnection, caller: Caller<'_>, id: AuthenticationId) -> Result<()> {
    let txn = crate::db::write(db).await?;
    let row = row_for_update(&txn, caller, id).await?;
    let users = super::instances::using_authentication(&txn, caller, id).await?;
    if !users.is_empty() {
        return Err(Error::Conflict(format!("the authentication is used by solution instances: {}", users.join(", "))));
    }
    webhooks::events::authentication(&txn, &row, AuthenticationChange::Removed).await?;
    authentication::Entity::delete_by_id(row.id).exec(&txn).await?;
    audit::record(&txn, caller.org_id(), caller.into(), "authentication.removed", Some(id.0)).await?;
    txn.commit().await?;
    Ok(())
}

/// Writes `authentication.removed` for each of an end user's authentications, which the
/// database removes with the user; their rows are locked first, so a change in flight
/// reports before the removal does.
pub(crate) async fn removing_user(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<()> {
    let rows = authentication::Entity::find()
        .filter(authentication::Column::OrgId.eq(org_id.0))
        .filter(authentication::Column::OwnerUserId.eq(user_id.0))
        .lock_exclusive()
        .all(conn)
        .await?;
    for row in &rows {
        webhooks::events::authentication(conn, row, AuthenticationChange::Removed).await?;
    }
    Ok(())
}

pub(super) fn open_json(
    keyring: &KeyringHandle,
    row: &authentication::Model,
    field: Field,
) -> Result<Sensitive<Value>> {
    let sealed = match field {
        Field::Credentials => &row.credentials,
        Field::UserData => &row.user_data,
    };
    let plaintext = keyring.open(&binding(row, field), sealed).map_err(|err| {
        Error::internal(anyhow::anyhow!("authentication {} {} failed to open: {err}", row.id, field.name()))
    })?;
    let value = serde_json::from_slice(plaintext.expose_secret())
        .map_err(|_| Error::internal(anyhow::anyhow!("authentication {} {} is not JSON", row.id, field.name())))?;
    Ok(Sensitive::new(value))
}

/// The named top-level properties of an authentication's credentials and user data, for
/// pre-filling a form with the values it shows. Callers name only what is not secret
/// (an edit form never shows a secret back); everything else stays sealed.
pub async fn shown_values(
    conn: &impl ConnectionTrait,
    keyring: &KeyringHandle,
    caller: Caller<'_>,
    id: AuthenticationId,
    credentials: &[String],
    user_data: &[String],
) -> Result<(Value, Value)> {
    let row = find_row(conn, caller, id).await?;
    let pick = |field: Field, names: &[String]| -> Result<Value> {
        if names.is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        let opened = open_json(keyring, &row, field)?;
        let picked = names
            .iter()
            .filter_map(|name| opened.expose().get(name).map(|value| (name.clone(), value.clone())))
            .collect();
        Ok(Value::Object(picked))
    };
    Ok((pick(Field::Credentials, credentials)?, pick(Field::UserData, user_data)?))
}

/// The one path by which secrets leave: the owning end user, where the organization has
/// enabled full reads. Every read is audited. A credential due for a refresh is refreshed
/// first (or the refresh another process is running is waited for), so what leaves is
/// fresh; whatever the provider answers, the read goes on with the best credential there is.
pub async fn read_full(
    db: &DatabaseConnection,
    keyring: &KeyringHandle,
    refresher: &Refresher,
    scope: &UserScope,
    id: AuthenticationId,
) -> Result<FullAuthentication> {
    let caller = Caller::User(scope);
    let org = orgs::own(db, caller).await?;
    if !org.full_reads_enabled {
        return Err(Error::Forbidden("full reads of authentications are not enabled for this organization"));
    }
    let mut row = find_row(db, caller, id).await?;
    if refresh::is_due(&row, Utc::now()) {
        refresher.when_due(&row).await?;
        row = find_row(db, caller, id).await?;
    }
    authentication::Entity::update_many()
        .col_expr(authentication::Column::LastUsedAt, sea_orm::sea_query::Expr::value(Utc::now()))
        .filter(authentication::Column::Id.eq(row.id))
        .exec(db)
        .await?;
    let credentials = open_json(keyring, &row, Field::Credentials)?;
    let user_data = open_json(keyring, &row, Field::UserData)?;
    audit::record(db, scope.org_id(), scope.into(), "authentication.read_full", Some(id.0)).await?;
    let authentication = metadata(db, caller, id).await?;
    Ok(FullAuthentication { authentication, credentials, user_data })
}

/// Refreshes an authentication now (the master token's organization, or the owning end
/// user), whatever its due time; see [`Refresher::force`]. Returns its metadata after.
pub async fn refresh(
    db: &DatabaseConnection,
    refresher: &Refresher,
    caller: Caller<'_>,
    id: AuthenticationId,
) -> Result<(Authentication, Outcome)> {
    let row = find_row(db, caller, id).await?;
    audit::record(db, caller.org_id(), caller.into(), "authentication.refresh_forced", Some(id.0)).await?;
    let outcome = refresher.force(&row).await?;
    Ok((metadata(db, caller, id).await?, outcome))
}

// ---------------------------------------------------------------------------------------
// Hooks for whatever keeps authentications alive (refresh, expiry). Each takes the row as
// the caller read it and runs in the caller's transaction, which must hold the row's lock
// (`SELECT … FOR UPDATE` on PostgreSQL; any write transaction on SQLite): the audit event
// and the webhook then commit or roll back with the caller's own change, in order.

/// Records a refresh that renewed the credentials (already written by the caller):
/// audit `authentication.refreshed` and the webhook `authentication.updated` with
/// `cause: "refreshed"`.
pub async fn record_refreshed(conn: &impl ConnectionTrait, row: &authentication::Model) -> Result<()> {
    audit::record(conn, OrgId(row.org_id), audit::Actor::System, "authentication.refreshed", Some(row.id)).await?;
    webhooks::events::authentication(conn, row, AuthenticationChange::Refreshed).await
}

/// Records a definitive refusal to refresh (such as `invalid_grant`): audit
/// `authentication.refresh_failed` and the webhook of the same name. `reason` is the
/// provider's error code; it is cut to the characters of one (letters, digits, `_-.`)
/// and 64 of them, so nothing else of a provider's answer reaches a payload.
pub async fn record_refresh_failed(
    conn: &impl ConnectionTrait,
    row: &authentication::Model,
    reason: &str,
) -> Result<()> {
    audit::record(conn, OrgId(row.org_id), audit::Actor::System, "authentication.refresh_failed", Some(row.id)).await?;
    let change = AuthenticationChange::RefreshFailed { reason: reason.to_owned() };
    webhooks::events::authentication(conn, row, change).await
}

/// Sets when the authentication stops working whatever refreshes happen (`None`: unknown
/// or never). The expiry scan ([`webhooks::expiry::scan`]) warns with
/// `authentication.expiring` once per distinct hard expiry, within
/// `LATCHKEY_WEBHOOK_EXPIRING_DAYS` of it.
pub async fn set_hard_expiry(
    conn: &impl ConnectionTrait,
    row: &authentication::Model,
    hard_expires_at: Option<chrono::DateTime<Utc>>,
) -> Result<()> {
    authentication::Entity::update_many()
        .col_expr(authentication::Column::HardExpiresAt, sea_orm::sea_query::Expr::value(hard_expires_at))
        .filter(authentication::Column::Id.eq(row.id))
        .exec(conn)
        .await?;
    Ok(())
}
