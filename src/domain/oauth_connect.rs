//! Connecting an OAuth 2.0 service from a hosted page.
//!
//! The authorization code flow: [`start`] stores a flow bound to the page session that
//! started it (only the hash of its `state`, and its PKCE verifier sealed) and gives the
//! authorization URL; when the provider sends the end user back, [`find`] looks the flow
//! up by `state`, [`take`] uses it once, for that same session only, and [`exchange`]
//! trades the code for tokens mapped into the environment's documents. What becomes of
//! them (a new authentication, a slot's value) is the page's business.
//!
//! The client-credentials check: [`client_credentials`] fetches a token with the client id
//! and secret an end user gave, so nothing is saved that does not work.

use chrono::{Duration, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use super::{
    authentications,
    catalog::{self, AuthenticationType, Environment},
};
use crate::{
    auth::{Caller, UserScope, page_sessions::PageSession},
    crypto::{self, Keyring, KeyringHandle, envelope},
    error::{Error, Result},
    ids::{EnvironmentId, OrgId},
    oauth::{self, Mapped, OAuthClient, OAuthError, Previous},
    outbound::Outbound,
};
use entity::oauth_flow;

/// Long enough to sign in and consent at the provider, short enough that a `state` is
/// not left lying around.
pub const LIFETIME: Duration = Duration::minutes(10);
/// Longest `state` looked up; latchkey's own are 43 characters.
pub const MAX_STATE: usize = 128;
/// Longest [`NewFlow::page`] kept.
pub const MAX_PAGE: usize = 4096;
/// Expired flows removed per flow started, so the table stays the size of the flows in use.
const PURGE_BATCH: u64 = 100;

fn verifier_binding(row: &oauth_flow::Model) -> envelope::Binding<'static> {
    envelope::Binding { org_id: row.org_id, owner: Some(row.user_id), record_id: row.id, field: "pkce_verifier" }
}

/// Why a connection did not come about: the provider's side, or latchkey's.
#[derive(Debug)]
pub enum ConnectError {
    OAuth(OAuthError),
    Other(Error),
}

impl From<Error> for ConnectError {
    fn from(err: Error) -> Self {
        ConnectError::Other(err)
    }
}

impl From<OAuthError> for ConnectError {
    fn from(err: OAuthError) -> Self {
        ConnectError::OAuth(err)
    }
}

/// A flow to start from a page session.
pub struct NewFlow<'a> {
    /// The page session the provider's answer must come back to.
    pub session_id: Uuid,
    /// The session's page target, by its key.
    pub target: &'a str,
    /// What the page that starts the flow needs to finish it, as it writes it (text, at
    /// most [`MAX_PAGE`] bytes): kept with the flow, never shown.
    pub page: String,
    pub environment: &'a Environment,
    pub scopes: Vec<String>,
    /// latchkey's callback URL, registered with the OAuth app.
    pub redirect_uri: &'a str,
}

/// Starts an authorization code flow for the end user of `scope` and returns the URL of
/// the provider's authorization page.
pub async fn start(
    db: &DatabaseConnection,
    keyring: &Keyring,
    scope: &UserScope,
    new: NewFlow<'_>,
) -> Result<url::Url> {
    let environment = new.environment;
    if environment.authentication_type != AuthenticationType::Oauth2 {
        return Err(Error::bad_input("the service environment does not use the OAuth 2.0 authorization code flow"));
    }
    let app = environment.oauth_app.as_ref().ok_or(Error::NotFound("OAuth app of the service environment"))?;
    if new.page.len() > MAX_PAGE {
        return Err(Error::bad_input(format!("a page's part of a flow is at most {MAX_PAGE} bytes")));
    }
    let scopes = authentications::checked_scopes(environment, Some(new.scopes))?;
    let client = OAuthClient {
        client_id: app.client_id.clone(),
        client_secret: None,
        authorize_url: Some(app.authorize_url.clone()),
        token_url: app.token_url.clone(),
    };
    let state = crypto::random_token("");
    let authorization = oauth::authorization_url(&client, new.redirect_uri, &scopes, &state).map_err(|err| {
        // The URLs were checked when the app was saved; one oauth2 refuses is latchkey's bug.
        Error::internal(anyhow::anyhow!("environment {}: {err}", environment.id))
    })?;
    let now = Utc::now();
    let mut row = oauth_flow::Model {
        id: Uuid::now_v7(),
        state_hash: crypto::sha256_hex(state.as_bytes()),
        org_id: scope.org_id().0,
        user_id: scope.user_id().0,
        page_session_id: new.session_id,
        target: new.target.to_owned(),
        page: new.page,
        environment_id: environment.id.0,
        scopes: serde_json::to_string(&scopes).map_err(Error::internal)?,
        pkce_verifier: Vec::new(),
        key_id: keyring.active().id().to_owned(),
        used_at: None,
        expires_at: now + LIFETIME,
        created_at: now,
    };
    row.pkce_verifier =
        envelope::seal(keyring, &verifier_binding(&row), authorization.pkce_verifier.expose_secret().as_bytes());
    let txn = crate::db::write(db).await?;
    purge_expired(&txn).await?;
    oauth_flow::Entity::insert(oauth_flow::ActiveModel {
        id: Set(row.id),
        state_hash: Set(row.state_hash),
        org_id: Set(row.org_id),
        user_id: Set(row.user_id),
        page_session_id: Set(row.page_session_id),
        target: Set(row.target),
        page: Set(row.page),
        environment_id: Set(row.environment_id),
        scopes: Set(row.scopes),
        pkce_verifier: Set(row.pkce_verifier),
        key_id: Set(row.key_id),
        used_at: Set(None),
        expires_at: Set(row.expires_at),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(authorization.url)
}

async fn purge_expired(conn: &impl ConnectionTrait) -> Result<()> {
    let expired: Vec<Uuid> = oauth_flow::Entity::find()
        .select_only()
        .column(oauth_flow::Column::Id)
        .filter(oauth_flow::Column::ExpiresAt.lte(Utc::now()))
        .order_by_asc(oauth_flow::Column::ExpiresAt)
        .limit(PURGE_BATCH)
        .into_tuple()
        .all(conn)
        .await?;
    if !expired.is_empty() {
        oauth_flow::Entity::delete_many().filter(oauth_flow::Column::Id.is_in(expired)).exec(conn).await?;
    }
    Ok(())
}

/// A flow found by its `state`, used or not, live or not.
pub struct Found {
    row: oauth_flow::Model,
}

impl Found {
    pub fn org_id(&self) -> OrgId {
        OrgId(self.row.org_id)
    }

    /// The page target of the session that started it, by its key.
    pub fn target(&self) -> &str {
        &self.row.target
    }

    /// What the page that started it kept with it ([`NewFlow::page`]).
    pub fn page(&self) -> &str {
        &self.row.page
    }
}

/// The flow whose `state` this is, if latchkey started one (and has not purged it).
pub async fn find(conn: &impl ConnectionTrait, state: &str) -> Result<Option<Found>> {
    if state.is_empty() || state.len() > MAX_STATE {
        return Ok(None);
    }
    let row = oauth_flow::Entity::find()
        .filter(oauth_flow::Column::StateHash.eq(crypto::sha256_hex(state.as_bytes())))
        .one(conn)
        .await?;
    Ok(row.map(|row| Found { row }))
}

/// Why a found flow cannot be used.
#[derive(Debug)]
pub enum TakeError {
    /// Its `state` came back before (a reload, a replay).
    Used,
    Expired,
    /// The browser's session is not the one that started it.
    OtherSession,
    Other(Error),
}

impl<E: Into<Error>> From<E> for TakeError {
    fn from(err: E) -> Self {
        TakeError::Other(err.into())
    }
}

/// A flow used: the page session it came back to, and what the code exchange needs.
pub struct Taken {
    pub session: PageSession,
    pub environment_id: EnvironmentId,
    pub scopes: Vec<String>,
    pub pkce_verifier: SecretString,
}

/// Uses the flow, once, for the page session `session` (the one the browser's cookie
/// holds, if any, with its end user). A flow is used even when the provider's answer is a refusal, so its
/// `state` never serves twice; a flow that comes back to another session is left alone.
pub async fn take(
    db: &DatabaseConnection,
    keyring: &KeyringHandle,
    found: &Found,
    session: Option<PageSession>,
) -> std::result::Result<Taken, TakeError> {
    let row = &found.row;
    let now = Utc::now();
    if row.expires_at <= now {
        return Err(TakeError::Expired);
    }
    if row.used_at.is_some() {
        return Err(TakeError::Used);
    }
    let Some(session) = session.filter(|session| session.id == row.page_session_id) else {
        return Err(TakeError::OtherSession);
    };
    // One statement, so two answers racing for one state cannot both win.
    let used = oauth_flow::Entity::update_many()
        .col_expr(oauth_flow::Column::UsedAt, sea_orm::sea_query::Expr::value(now))
        .filter(oauth_flow::Column::Id.eq(row.id))
        .filter(oauth_flow::Column::UsedAt.is_null())
        .filter(oauth_flow::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    if used.rows_affected != 1 {
        return Err(TakeError::Used);
    }
    let verifier = keyring
        .open(&verifier_binding(row), &row.pkce_verifier)
        .map_err(|err| Error::internal(anyhow::anyhow!("OAuth flow {} pkce_verifier failed to open: {err}", row.id)))?;
    let verifier = String::from_utf8(verifier.expose_secret().clone())
        .map_err(|_| Error::internal(anyhow::anyhow!("OAuth flow {} verifier is not text", row.id)))?;
    Ok(Taken {
        session,
        environment_id: EnvironmentId(row.environment_id),
        scopes: serde_json::from_str(&row.scopes).map_err(Error::internal)?,
        pkce_verifier: verifier.into(),
    })
}

/// Trades the code the provider sent back for tokens at the environment's token URL, and
/// maps them into its documents.
pub async fn exchange(
    db: &DatabaseConnection,
    keyring: &KeyringHandle,
    outbound: &Outbound,
    taken: &Taken,
    code: &str,
    redirect_uri: &str,
) -> std::result::Result<(Environment, Mapped), ConnectError> {
    let caller = Caller::User(&taken.session.scope);
    let environment = catalog::environment(db, caller, taken.environment_id).await?;
    let (app, secret) = catalog::oauth_app_with_secret(db, keyring, caller, taken.environment_id)
        .await?
        .ok_or(Error::NotFound("OAuth app of the service environment"))?;
    let client = OAuthClient::of_app(&app, secret);
    let tokens = oauth::exchange_code(outbound, &client, redirect_uri, code, &taken.pkce_verifier).await?;
    let mapped = oauth::map(&tokens, &environment, &taken.scopes, None);
    Ok((environment, mapped))
}

/// Fetches a token with the client id and secret an end user gave (`client_id` and
/// `client_secret` of `credentials`) from the environment's token URL, and maps it into
/// the documents they filled. A refusal means the pair does not work.
pub async fn client_credentials(
    outbound: &Outbound,
    environment: &Environment,
    credentials: &Value,
    user_data: &Value,
    scopes: Vec<String>,
) -> std::result::Result<Mapped, ConnectError> {
    if environment.authentication_type != AuthenticationType::Oauth2clientCredentials {
        return Err(Error::bad_input("the service environment does not use the client-credentials grant").into());
    }
    let app = environment.oauth_app.as_ref().ok_or(Error::NotFound("token URL of the service environment"))?;
    let text = |field: &str| credentials[field].as_str().filter(|value| !value.is_empty()).map(str::to_owned);
    let (Some(client_id), Some(client_secret)) = (text("client_id"), text("client_secret")) else {
        return Err(Error::bad_input("client_id and client_secret are required").into());
    };
    let scopes = authentications::checked_scopes(environment, Some(scopes))?;
    let client = OAuthClient {
        client_id,
        client_secret: Some(client_secret.into()),
        authorize_url: None,
        token_url: app.token_url.clone(),
    };
    let tokens = oauth::client_credentials(outbound, &client, &scopes).await?;
    Ok(oauth::map(&tokens, environment, &scopes, Some(Previous { credentials, user_data })))
}
