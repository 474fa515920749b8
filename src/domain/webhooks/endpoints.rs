//! An organization's webhook endpoints: where events go, which ones, and the secret that
//! signs them. The secret is generated here, shown once (at creation and at each
//! rotation) in the Standard Webhooks form `whsec_<base64>`, and stored sealed, bound to
//! its row. After a rotation the previous secret keeps signing beside the new one for
//! [`PREVIOUS_SECRET_GRACE`], so receivers can switch without losing an event.

use std::collections::BTreeSet;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect, sea_query::LockType,
};
use secrecy::{ExposeSecret, SecretString};

use super::EventType;
use crate::{
    auth::MasterScope,
    crypto::{Keyring, KeyringHandle, Sensitive, envelope, random_bytes},
    domain::{
        audit,
        pagination::{Page, PageRequest},
    },
    error::{Error, Result},
    ids::{OrgId, WebhookEndpointId},
    outbound::{AddressPolicy, Outbound, OutboundError},
};
use entity::{organization, webhook_endpoint};

/// The most endpoints one organization may register.
pub const MAX_ENDPOINTS: u64 = 20;
pub const MAX_URL: usize = 2048;
pub const MAX_DESCRIPTION: usize = 256;
/// How long a rotated-out secret keeps signing beside the new one.
pub const PREVIOUS_SECRET_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Random bytes in a signing secret (Standard Webhooks asks for 24 to 64).
const SECRET_BYTES: usize = 32;
const SECRET_PREFIX: &str = "whsec_";

/// An endpoint as its organization reads it: never its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: WebhookEndpointId,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewEndpoint {
    pub url: String,
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
}

/// A change: `None` keeps a field; `description: Some(None)` clears it.
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// A signing secret in its `whsec_…` form, handed out once.
pub struct SigningSecret(SecretString);

impl SigningSecret {
    fn from_key(key: &[u8]) -> Self {
        Self(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)).into())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The sealed columns of an endpoint row.
#[derive(Clone, Copy)]
enum SecretField {
    Current,
    Previous,
}

impl SecretField {
    fn name(self) -> &'static str {
        match self {
            SecretField::Current => "secret",
            SecretField::Previous => "previous_secret",
        }
    }
}

fn binding(org_id: uuid::Uuid, id: uuid::Uuid, field: SecretField) -> envelope::Binding<'static> {
    envelope::Binding { org_id, owner: None, record_id: id, field: field.name() }
}

fn to_endpoint(row: webhook_endpoint::Model) -> Result<Endpoint> {
    let names: Vec<String> = serde_json::from_str(&row.event_types)
        .map_err(|_| Error::internal(anyhow::anyhow!("webhook endpoint {} has unreadable event types", row.id)))?;
    Ok(Endpoint {
        id: WebhookEndpointId(row.id),
        url: row.url,
        description: row.description,
        // A name this version does not know is dropped rather than failing the read.
        event_types: names.iter().filter_map(|name| EventType::parse(name)).collect(),
        enabled: row.enabled,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Whether the row subscribes to `event`.
pub(super) fn subscribes(row: &webhook_endpoint::Model, event: EventType) -> bool {
    serde_json::from_str::<Vec<String>>(&row.event_types).is_ok_and(|names| names.iter().any(|n| n == event.as_str()))
}

fn scoped(org_id: OrgId) -> sea_orm::Select<webhook_endpoint::Entity> {
    webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::OrgId.eq(org_id.0))
}

/// The organization's endpoint `id`; another organization's is not found.
pub(super) async fn find_row(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    id: WebhookEndpointId,
    lock: bool,
) -> Result<webhook_endpoint::Model> {
    let mut select = scoped(org_id).filter(webhook_endpoint::Column::Id.eq(id.0));
    if lock {
        select = select.lock_exclusive();
    }
    select.one(conn).await?.ok_or(Error::NotFound("webhook endpoint"))
}

/// An absolute `https` URL (or `http` where outbound calls may reach private addresses,
/// for tests and private networks), without credentials or a fragment, whose host is
/// not an address literal outbound calls refuse. Names are checked again, resolved, at
/// every delivery.
fn checked_url(outbound: &Outbound, value: &str) -> Result<String> {
    let value = value.trim();
    if value.len() > MAX_URL {
        return Err(Error::bad_input(format!("url must be at most {MAX_URL} characters")));
    }
    let invalid = || Error::bad_input("url must be an absolute https URL without credentials or fragment");
    let url = url::Url::parse(value).map_err(|_| invalid())?;
    let scheme_allowed = match url.scheme() {
        "https" => true,
        "http" => outbound.policy() == AddressPolicy::AllowPrivate,
        _ => false,
    };
    if !scheme_allowed || !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(invalid());
    }
    match outbound.check(&url) {
        Ok(()) => Ok(url.to_string()),
        Err(OutboundError::Refused { .. }) => {
            Err(Error::bad_input("url points at a loopback, private or link-local address, which webhooks do not call"))
        }
        Err(_) => Err(invalid()),
    }
}

fn checked_event_types(event_types: Vec<EventType>) -> Result<String> {
    let set: BTreeSet<EventType> = event_types.into_iter().collect();
    if set.is_empty() {
        return Err(Error::bad_input("eventTypes must name at least one event type"));
    }
    let names: Vec<&str> = set.iter().map(|event| event.as_str()).collect();
    serde_json::to_string(&names).map_err(Error::internal)
}

fn checked_description(description: Option<String>) -> Result<Option<String>> {
    let Some(description) = description else { return Ok(None) };
    let description = description.trim();
    if description.is_empty() {
        return Ok(None);
    }
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(Error::bad_input(format!("description must be at most {MAX_DESCRIPTION} characters")));
    }
    Ok(Some(description.to_owned()))
}

/// A fresh secret, sealed for the row, and its `whsec_` form.
fn new_secret(keyring: &Keyring, org_id: OrgId, id: uuid::Uuid) -> (Vec<u8>, SigningSecret) {
    let key = random_bytes::<SECRET_BYTES>();
    let sealed = envelope::seal(keyring, &binding(org_id.0, id, SecretField::Current), &key);
    (sealed, SigningSecret::from_key(&key))
}

/// Registers an endpoint; answers it with its signing secret, which is never shown again.
pub async fn create(
    db: &DatabaseConnection,
    keyring: &Keyring,
    outbound: &Outbound,
    scope: &MasterScope,
    new: NewEndpoint,
) -> Result<(Endpoint, SigningSecret)> {
    let url = checked_url(outbound, &new.url)?;
    let event_types = checked_event_types(new.event_types)?;
    let description = checked_description(new.description)?;
    let org_id = scope.org_id();
    let id = WebhookEndpointId::generate();
    let (secret, signing_secret) = new_secret(keyring, org_id, id.0);
    let txn = crate::db::write(db).await?;
    // The organization's row, locked (PostgreSQL) so concurrent creates count in turn;
    // `NO KEY UPDATE` leaves inserts that reference the organization free to proceed.
    organization::Entity::find_by_id(org_id.0).lock(LockType::NoKeyUpdate).one(&txn).await?;
    if scoped(org_id).count(&txn).await? >= MAX_ENDPOINTS {
        return Err(Error::Conflict(format!("an organization has at most {MAX_ENDPOINTS} webhook endpoints")));
    }
    let now = Utc::now();
    let row = webhook_endpoint::Entity::insert(webhook_endpoint::ActiveModel {
        id: Set(id.0),
        org_id: Set(org_id.0),
        url: Set(url),
        description: Set(description),
        event_types: Set(event_types),
        enabled: Set(true),
        secret: Set(secret),
        previous_secret: Set(None),
        previous_secret_until: Set(None),
        key_id: Set(keyring.active().id().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    audit::record(&txn, org_id, scope.into(), "webhook_endpoint.created", Some(id.0)).await?;
    txn.commit().await?;
    Ok((to_endpoint(row)?, signing_secret))
}

pub async fn update(
    db: &DatabaseConnection,
    outbound: &Outbound,
    scope: &MasterScope,
    id: WebhookEndpointId,
    patch: EndpointPatch,
) -> Result<Endpoint> {
    let url = patch.url.map(|url| checked_url(outbound, &url)).transpose()?;
    let event_types = patch.event_types.map(checked_event_types).transpose()?;
    let description = patch.description.map(checked_description).transpose()?;
    let txn = crate::db::write(db).await?;
    let row = find_row(&txn, scope.org_id(), id, true).await?;
    let mut active: webhook_endpoint::ActiveModel = row.into();
    if let Some(url) = url {
        active.url = Set(url);
    }
    if let Some(event_types) = event_types {
        active.event_types = Set(event_types);
    }
    if let Some(description) = description {
        active.description = Set(description);
    }
    if let Some(enabled) = patch.enabled {
        active.enabled = Set(enabled);
    }
    active.updated_at = Set(Utc::now());
    let row = webhook_endpoint::Entity::update(active).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "webhook_endpoint.updated", Some(id.0)).await?;
    txn.commit().await?;
    to_endpoint(row)
}

/// Removes an endpoint with its deliveries and their log.
pub async fn remove(db: &DatabaseConnection, scope: &MasterScope, id: WebhookEndpointId) -> Result<()> {
    let txn = crate::db::write(db).await?;
    find_row(&txn, scope.org_id(), id, true).await?;
    webhook_endpoint::Entity::delete_by_id(id.0).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "webhook_endpoint.removed", Some(id.0)).await?;
    txn.commit().await?;
    Ok(())
}

/// Replaces the signing secret and answers the new one, shown once. The old secret keeps
/// signing beside it for [`PREVIOUS_SECRET_GRACE`]; a second rotation within that time
/// ends the oldest at once.
pub async fn rotate_secret(
    db: &DatabaseConnection,
    keyring: &Keyring,
    scope: &MasterScope,
    id: WebhookEndpointId,
) -> Result<(Endpoint, SigningSecret)> {
    let org_id = scope.org_id();
    let txn = crate::db::write(db).await?;
    let row = find_row(&txn, org_id, id, true).await?;
    // The current secret moves to the previous column, sealed anew: its binding names
    // its column.
    let current = envelope::open(keyring, &binding(org_id.0, id.0, SecretField::Current), &row.secret)
        .map_err(|err| Error::internal(anyhow::anyhow!("webhook endpoint {id} secret failed to open: {err}")))?;
    let previous = envelope::seal(keyring, &binding(org_id.0, id.0, SecretField::Previous), current.expose_secret());
    let (secret, signing_secret) = new_secret(keyring, org_id, id.0);
    let now = Utc::now();
    let mut active: webhook_endpoint::ActiveModel = row.into();
    active.secret = Set(secret);
    active.previous_secret = Set(Some(previous));
    active.previous_secret_until = Set(Some(now + PREVIOUS_SECRET_GRACE));
    active.key_id = Set(keyring.active().id().to_owned());
    active.updated_at = Set(now);
    let row = webhook_endpoint::Entity::update(active).exec(&txn).await?;
    audit::record(&txn, org_id, scope.into(), "webhook_endpoint.secret_rotated", Some(id.0)).await?;
    txn.commit().await?;
    Ok((to_endpoint(row)?, signing_secret))
}

pub async fn get(conn: &impl ConnectionTrait, scope: &MasterScope, id: WebhookEndpointId) -> Result<Endpoint> {
    to_endpoint(find_row(conn, scope.org_id(), id, false).await?)
}

/// A page of the organization's endpoints, oldest first.
pub async fn list(conn: &impl ConnectionTrait, scope: &MasterScope, page: &PageRequest) -> Result<Page<Endpoint>> {
    let page = page.fetch(conn, scoped(scope.org_id()), webhook_endpoint::Column::Id, |row| row.id).await?;
    let items = page.items.iter().cloned().map(to_endpoint).collect::<Result<Vec<_>>>()?;
    Ok(page.with_items(items))
}

/// The keys that sign a delivery to `row` now: the current secret, and the previous one
/// while its grace lasts.
pub(super) fn signing_keys(
    keyring: &KeyringHandle,
    row: &webhook_endpoint::Model,
    now: DateTime<Utc>,
) -> Result<Vec<Sensitive<Vec<u8>>>> {
    let open = |field: SecretField, sealed: &[u8]| {
        keyring
            .open(&binding(row.org_id, row.id, field), sealed)
            .map(|key| Sensitive::new(key.expose_secret().clone()))
            .map_err(|err| {
                Error::internal(anyhow::anyhow!("webhook endpoint {} {} failed to open: {err}", row.id, field.name()))
            })
    };
    let mut keys = vec![open(SecretField::Current, &row.secret)?];
    if let (Some(previous), Some(until)) = (&row.previous_secret, row.previous_secret_until)
        && until > now
    {
        keys.push(open(SecretField::Previous, previous)?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_secret_has_the_standard_webhooks_form() {
        let secret = SigningSecret::from_key(&[7u8; SECRET_BYTES]);
        let body = secret.expose().strip_prefix("whsec_").expect("the whsec_ prefix");
        assert_eq!(STANDARD.decode(body).unwrap().len(), SECRET_BYTES);
        assert!(standardwebhooks::Webhook::new(secret.expose()).is_ok());
    }

    #[test]
    fn urls_must_be_https_unless_private_addresses_are_allowed() {
        let public = Outbound::new(AddressPolicy::PublicOnly);
        assert_eq!(
            checked_url(&public, " https://hooks.example.com/in?x=1 ").unwrap(),
            "https://hooks.example.com/in?x=1"
        );
        for bad in [
            "http://hooks.example.com/in",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#f",
            "ftp://hooks.example.com/",
            "hooks.example.com",
            "https://127.0.0.1/in",
            "https://[::1]/in",
            "https://169.254.169.254/latest",
        ] {
            assert!(checked_url(&public, bad).is_err(), "{bad} was accepted");
        }
        let private = Outbound::new(AddressPolicy::AllowPrivate);
        assert!(checked_url(&private, "http://127.0.0.1:9/in").is_ok());
    }

    #[test]
    fn event_types_are_deduplicated_and_never_empty() {
        let text = checked_event_types(vec![
            EventType::AuthenticationCreated,
            EventType::AuthenticationCreated,
            EventType::SolutionInstanceRemoved,
        ])
        .unwrap();
        assert_eq!(text, r#"["authentication.created","solution_instance.removed"]"#);
        assert!(checked_event_types(Vec::new()).is_err());
    }
}
