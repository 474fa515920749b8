//! The outbox. A change calls [`authentication`] or [`instance`] inside its own
//! transaction, after its row is written (or, for a removal, before it is deleted) and
//! while it holds the row's lock: the event then commits or rolls back with the change,
//! and events of one subject are numbered in the order of their changes.
//!
//! A payload holds ids and names only, never a credential or a secret:
//! `{"type", "timestamp", "data": {...}}` (the Standard Webhooks shape).

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::{EventType, deliveries, endpoints};
use crate::{
    error::{Error, Result},
    ids::OrgId,
};
use entity::{authentication, external_user, service, solution_instance, webhook_endpoint, webhook_event};

/// What happened to an authentication.
#[derive(Clone, Debug)]
pub enum AuthenticationChange {
    Created,
    /// Replaced through the API.
    Replaced,
    /// Refreshed from the provider.
    Refreshed,
    Removed,
    /// `reason`: the provider's error code, such as `invalid_grant`.
    RefreshFailed {
        reason: String,
    },
    Expiring {
        expires_at: DateTime<Utc>,
    },
}

/// What happened to a solution instance.
#[derive(Clone, Debug)]
pub enum InstanceChange {
    Created,
    /// Which of `authValues`, `configValues` and `solutionVersion` changed.
    Updated {
        changed: Vec<&'static str>,
    },
    Enabled,
    Disabled,
    Removed,
}

/// The body of every event.
#[derive(Serialize)]
struct Payload<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: T,
}

/// `data` of an `authentication.*` event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationData {
    authentication_id: Uuid,
    name: String,
    service_id: Uuid,
    service_name: String,
    service_environment_id: Uuid,
    /// `null` for an organization-owned authentication.
    user_id: Option<Uuid>,
    external_user_id: Option<String>,
    /// `authentication.updated`: `replaced` or `refreshed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'static str>,
    /// `authentication.refresh_failed`: the provider's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `authentication.expiring`: when it stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

/// `data` of a `solution_instance.*` event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceData {
    solution_instance_id: Uuid,
    name: String,
    solution_id: Uuid,
    solution_version: i32,
    enabled: bool,
    user_id: Uuid,
    external_user_id: Option<String>,
    /// `solution_instance.updated`: what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<Vec<&'static str>>,
}

/// The longest provider error code a `refresh_failed` event carries.
const MAX_REASON: usize = 64;

/// Keeps a provider's error code to the characters OAuth error codes use, bounded, so a
/// provider's answer never carries anything else into a payload.
fn reason_code(reason: &str) -> String {
    let code: String = reason
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(MAX_REASON)
        .collect();
    if code.is_empty() { "unknown".to_owned() } else { code }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn external_user_id(conn: &impl ConnectionTrait, user: Option<Uuid>) -> Result<Option<String>> {
    let Some(user) = user else { return Ok(None) };
    Ok(external_user::Entity::find_by_id(user).one(conn).await?.map(|row| row.external_user_id))
}

/// Writes the event of a change to an authentication, in the change's transaction.
pub async fn authentication(
    conn: &impl ConnectionTrait,
    row: &authentication::Model,
    change: AuthenticationChange,
) -> Result<()> {
    let event = match &change {
        AuthenticationChange::Created => EventType::AuthenticationCreated,
        AuthenticationChange::Replaced | AuthenticationChange::Refreshed => EventType::AuthenticationUpdated,
        AuthenticationChange::Removed => EventType::AuthenticationRemoved,
        AuthenticationChange::RefreshFailed { .. } => EventType::AuthenticationRefreshFailed,
        AuthenticationChange::Expiring { .. } => EventType::AuthenticationExpiring,
    };
    let org_id = OrgId(row.org_id);
    let Some(endpoints) = subscribed(conn, org_id, event).await? else { return Ok(()) };
    let service = service::Entity::find_by_id(row.service_id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("authentication {} lost its service", row.id)))?;
    let data = AuthenticationData {
        authentication_id: row.id,
        name: row.name.clone(),
        service_id: row.service_id,
        service_name: service.name,
        service_environment_id: row.environment_id,
        user_id: row.owner_user_id,
        external_user_id: external_user_id(conn, row.owner_user_id).await?,
        cause: match change {
            AuthenticationChange::Replaced => Some("replaced"),
            AuthenticationChange::Refreshed => Some("refreshed"),
            _ => None,
        },
        reason: match &change {
            AuthenticationChange::RefreshFailed { reason } => Some(reason_code(reason)),
            _ => None,
        },
        expires_at: match change {
            AuthenticationChange::Expiring { expires_at } => Some(timestamp(expires_at)),
            _ => None,
        },
    };
    write(conn, org_id, event, row.id, &data, &endpoints).await
}

/// Writes the event of a change to a solution instance, in the change's transaction.
pub async fn instance(
    conn: &impl ConnectionTrait,
    row: &solution_instance::Model,
    change: InstanceChange,
) -> Result<()> {
    let event = match &change {
        InstanceChange::Created => EventType::SolutionInstanceCreated,
        InstanceChange::Updated { .. } => EventType::SolutionInstanceUpdated,
        InstanceChange::Enabled => EventType::SolutionInstanceEnabled,
        InstanceChange::Disabled => EventType::SolutionInstanceDisabled,
        InstanceChange::Removed => EventType::SolutionInstanceRemoved,
    };
    let org_id = OrgId(row.org_id);
    let Some(endpoints) = subscribed(conn, org_id, event).await? else { return Ok(()) };
    let data = InstanceData {
        solution_instance_id: row.id,
        name: row.name.clone(),
        solution_id: row.solution_id,
        solution_version: row.solution_version,
        enabled: row.enabled,
        user_id: row.owner_user_id,
        external_user_id: external_user_id(conn, Some(row.owner_user_id)).await?,
        changed: match change {
            InstanceChange::Updated { changed } => Some(changed),
            _ => None,
        },
    };
    write(conn, org_id, event, row.id, &data, &endpoints).await
}

/// The organization's enabled endpoints that subscribe to `event`; `None` when there are
/// none, and then nothing is written at all.
async fn subscribed(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    event: EventType,
) -> Result<Option<Vec<webhook_endpoint::Model>>> {
    let endpoints: Vec<_> = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::OrgId.eq(org_id.0))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(conn)
        .await?
        .into_iter()
        .filter(|row| endpoints::subscribes(row, event))
        .collect();
    Ok((!endpoints.is_empty()).then_some(endpoints))
}

async fn write(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    event: EventType,
    subject: Uuid,
    data: &impl Serialize,
    endpoints: &[webhook_endpoint::Model],
) -> Result<()> {
    let now = Utc::now();
    let payload = serde_json::to_string(&Payload { kind: event.as_str(), timestamp: timestamp(now), data })
        .map_err(Error::internal)?;
    let seq = webhook_event::Entity::insert(webhook_event::ActiveModel {
        seq: sea_orm::ActiveValue::NotSet,
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id.0),
        event_type: Set(event.as_str().to_owned()),
        subject_id: Set(subject),
        payload: Set(payload),
        created_at: Set(now),
    })
    .exec(conn)
    .await?
    .last_insert_id;
    for endpoint in endpoints {
        deliveries::enqueue(conn, org_id, endpoint.id, seq, subject, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_keeps_only_the_characters_of_an_error_code() {
        assert_eq!(reason_code("invalid_grant"), "invalid_grant");
        assert_eq!(reason_code(" bad <script> \"token=abc\" "), "badscripttokenabc");
        assert_eq!(reason_code(""), "unknown");
        assert_eq!(reason_code(&"x".repeat(500)).len(), MAX_REASON);
    }

    #[test]
    fn a_payload_has_the_standard_webhooks_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:38:37.757Z").unwrap().with_timezone(&Utc);
        let body = serde_json::to_value(Payload {
            kind: "solution_instance.updated",
            timestamp: timestamp(at),
            data: InstanceData {
                solution_instance_id: Uuid::nil(),
                name: "Ann's sync".into(),
                solution_id: Uuid::nil(),
                solution_version: 2,
                enabled: true,
                user_id: Uuid::nil(),
                external_user_id: Some("ann-1".into()),
                changed: Some(vec!["configValues"]),
            },
        })
        .unwrap();
        assert_eq!(body["type"], "solution_instance.updated");
        assert_eq!(body["timestamp"], "2026-11-20T10:38:37.757Z");
        assert_eq!(body["data"]["externalUserId"], "ann-1");
        assert_eq!(body["data"]["changed"], serde_json::json!(["configValues"]));
    }
}
