//! The events latchkey's keep-alive causes, each with one call site, called inside the
//! transaction that records the change it reports. For now each only logs the event (ids
//! and names, never a secret); the webhook outbox takes them from here.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use crate::{
    error::Result,
    ids::{AuthenticationId, OrgId, UserId},
};

/// Which authentication an event is about.
#[derive(Clone, Copy, Debug)]
pub struct AuthenticationRef {
    pub org_id: OrgId,
    pub authentication_id: AuthenticationId,
    /// `None` for the organization's own.
    pub owner: Option<UserId>,
}

/// `authentication.updated`, because a refresh gave the authentication a new credential.
/// Called in the transaction that stores it ([`super::refresh`]).
pub async fn authentication_refreshed(
    _conn: &impl ConnectionTrait,
    about: AuthenticationRef,
    expires_at: Option<DateTime<Utc>>,
) -> Result<()> {
    tracing::info!(
        event = "authentication.updated",
        reason = "refreshed",
        org_id = %about.org_id,
        authentication_id = %about.authentication_id,
        owner = ?about.owner.map(|owner| owner.to_string()),
        expires_at = ?expires_at,
        "authentication event"
    );
    Ok(())
}

/// `authentication.refresh_failed`: the provider refused definitively (`status` is
/// `REFRESH_FAILED` or `REVOKED`, `error` the provider's OAuth error code). Called in the
/// transaction that records the status ([`super::refresh`]).
pub async fn authentication_refresh_failed(
    _conn: &impl ConnectionTrait,
    about: AuthenticationRef,
    status: &str,
    error: &str,
) -> Result<()> {
    tracing::info!(
        event = "authentication.refresh_failed",
        org_id = %about.org_id,
        authentication_id = %about.authentication_id,
        owner = ?about.owner.map(|owner| owner.to_string()),
        status,
        error,
        "authentication event"
    );
    Ok(())
}

/// `authentication.expiring`: a hard expiry (one no refresh can move) is near. Sent once
/// per expiry, in the transaction that marks it sent ([`super::refresh`]).
pub async fn authentication_expiring(
    _conn: &impl ConnectionTrait,
    about: AuthenticationRef,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    tracing::info!(
        event = "authentication.expiring",
        org_id = %about.org_id,
        authentication_id = %about.authentication_id,
        owner = ?about.owner.map(|owner| owner.to_string()),
        expires_at = %expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "authentication event"
    );
    Ok(())
}
