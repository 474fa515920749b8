//! OAuth 2.0 in the auth dialogs: the protocol's side of every dialog (the one for a
//! service environment, an instance's slot, editing, and the wizard's create form).
//!
//! - Authorization code: the dialog's "Connect to {service}" link starts a flow bound to
//!   the page session ([`start`]) and sends the browser to the provider. The provider
//!   sends it back to [`CALLBACK_PATH`], where the `state` is checked against the session
//!   cookie (`SameSite=Lax` comes back on that top-level navigation), used once, the code
//!   exchanged, and the tokens saved by the dialog that started the flow
//!   ([`auth_dialog::connected`]).
//! - Client credentials: the dialog's form with the client's fields; [`client_credentials`]
//!   fetches a token at once, and the dialog saves nothing unless one comes.

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{Opener, Refusal, Session, auth_dialog, failed, forms, respond, session_token};
use crate::{
    auth::page_sessions as auth_sessions,
    domain::{
        catalog::{self, AuthenticationType, Environment},
        oauth_connect::{self, ConnectError, NewFlow, TakeError},
        page_sessions::PageTarget,
    },
    error::Error,
    http::AppState,
    oauth::{Mapped, OAuthError},
};

/// Where providers send the end user back. The redirect URI is the public URL followed by
/// this path, exactly: each OAuth app registers it.
pub const CALLBACK_PATH: &str = "/external/auth/oauth/callback";

/// More query pairs than a provider's answer has are not read.
const MAX_PAIRS: usize = 500;
/// Longest authorization code read from the provider's answer.
const MAX_CODE: usize = 4096;

/// Whether an environment connects through OAuth rather than a token form.
pub fn handles(environment: &Environment) -> bool {
    matches!(environment.authentication_type, AuthenticationType::Oauth2 | AuthenticationType::Oauth2clientCredentials)
}

// ---------------------------------------------------------------------------------------
// Authorization code: start

/// A flow to start from a dialog.
pub struct Start<'a> {
    /// The session's page target.
    pub target: &'a PageTarget,
    /// What the dialog needs to finish the flow (see [`auth_dialog::Dialog::resumed`]).
    pub origin: String,
    pub environment: &'a Environment,
    pub scopes: Vec<String>,
}

fn refused(status: StatusCode, title: &'static str, message: &'static str) -> Refusal {
    Refusal { status, title, message }
}

/// Starts a flow for the page session and answers `303` to the provider's authorization
/// page.
pub async fn start(state: &AppState, session: &Session, start: Start<'_>) -> Result<Response, Refusal> {
    let url = oauth_connect::start(
        &state.unscoped_db,
        &state.keyring.current(),
        session.scope(),
        NewFlow {
            session_id: session.page.id,
            target: &start.target.key(),
            page: start.origin,
            environment: start.environment,
            scopes: start.scopes,
            redirect_uri: &state.pages.oauth_redirect_uri,
        },
    )
    .await
    .map_err(|err| match err {
        // The scopes asked for: more than any environment has, or ones it does not offer.
        Error::BadInput(_) => refused(
            StatusCode::BAD_REQUEST,
            "This connection cannot be started",
            "The app asked for permissions this service does not offer. Close this window and tell the app's support.",
        ),
        err => failed(err),
    })?;
    Ok(Redirect::to(url.as_str()).into_response())
}

// ---------------------------------------------------------------------------------------
// Authorization code: the provider's answer

/// The provider's answer on the redirect back.
#[derive(Default)]
struct Answer {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn parse_answer(raw: Option<&str>) -> Answer {
    let mut answer = Answer::default();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).take(MAX_PAIRS) {
        let slot = match key.as_ref() {
            "code" => &mut answer.code,
            "state" => &mut answer.state,
            "error" => &mut answer.error,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.into_owned());
        }
    }
    answer
}

fn unknown_state() -> Refusal {
    refused(
        StatusCode::BAD_REQUEST,
        "This sign-in cannot be completed",
        "It does not belong to a connection started here. Close this window and start again from the app.",
    )
}

fn take_refused(err: TakeError) -> Refusal {
    match err {
        TakeError::Used => refused(
            StatusCode::CONFLICT,
            "This sign-in was already used",
            "Each sign-in completes once. Close this window and start again from the app.",
        ),
        TakeError::Expired => refused(
            StatusCode::BAD_REQUEST,
            "This sign-in took too long",
            "It expired before the service sent you back. Close this window and start again from the app.",
        ),
        TakeError::OtherSession => refused(
            StatusCode::FORBIDDEN,
            "This sign-in belongs to another window",
            "It was not started from this browser's connection page. Close this window and start again from the app.",
        ),
        TakeError::Other(err) => failed(err),
    }
}

/// How a failed call to the provider reads on a page; the cause is logged without secrets.
fn provider_refusal(err: &OAuthError) -> Refusal {
    match err {
        OAuthError::Refused { error } if error == "access_denied" => refused(
            StatusCode::FORBIDDEN,
            "Access was not allowed",
            "The service says access was not allowed, so nothing was connected. Close this window, or start again from the app.",
        ),
        OAuthError::Refused { .. } => refused(
            StatusCode::BAD_GATEWAY,
            "The service refused the connection",
            "It answered with an error, so nothing was connected. Close this window and try again from the app.",
        ),
        OAuthError::Unavailable(_) => refused(
            StatusCode::BAD_GATEWAY,
            "The service could not be reached",
            "Nothing was connected. Close this window and try again in a moment.",
        ),
        OAuthError::Failed(_) => refused(
            StatusCode::BAD_GATEWAY,
            "The connection could not be completed",
            "The service's answer could not be used, so nothing was connected. Close this window and try again from the app.",
        ),
    }
}

/// `GET /external/auth/oauth/callback?code=…&state=…` (or `?error=…&state=…`): the end of
/// the authorization code flow, in the dialog that started it.
pub async fn callback(State(state): State<AppState>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    let answer = parse_answer(raw.as_deref());
    let found = match answer.state.as_deref() {
        Some(given) => oauth_connect::find(&state.unscoped_db, given).await,
        None => Ok(None),
    };
    let (org_id, outcome, opener) = match found {
        Ok(Some(found)) => {
            let resumed = auth_dialog::Dialog::resumed(found.target(), found.page());
            let opener = resumed.as_ref().map_or(Opener::AuthDialog, |(dialog, _)| dialog.opener());
            let outcome = match resumed {
                Some((dialog, form_key)) => finish(&state, &headers, &found, &dialog, &form_key, answer).await,
                None => Err(failed(Error::internal(anyhow::anyhow!("an OAuth flow holds an unknown page")))),
            };
            (Some(found.org_id()), outcome, opener)
        }
        // The organization the page speaks for is then that of a page session the browser
        // holds, so the opener hears of the failure either way.
        other => {
            let tokens = super::all_session_tokens(&headers);
            let org_id = auth_sessions::org_of_any(&state.unscoped_db, &tokens).await.ok().flatten();
            let outcome = match other {
                Err(err) => Err(failed(err)),
                _ => Err(unknown_state()),
            };
            (org_id, outcome, Opener::AuthDialog)
        }
    };
    let partner = org_id.map(|org_id| org_id.to_string()).unwrap_or_default();
    respond(&state, &partner, opener, outcome).await
}

async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    found: &oauth_connect::Found,
    dialog: &auth_dialog::Dialog,
    form_key: &str,
    answer: Answer,
) -> Result<Response, Refusal> {
    let db = &state.unscoped_db;
    let token = session_token(headers, found.target());
    let page = match &token {
        Some(token) => auth_sessions::resolve(db, found.org_id(), token.expose_secret(), found.target()).await?,
        None => None,
    };
    let taken = oauth_connect::take(db, &state.keyring, found, page).await.map_err(take_refused)?;
    let code = match (answer.error, answer.code) {
        (Some(error), _) => {
            let err = OAuthError::refused(&error);
            tracing::info!(error = %err, "the end user came back from the OAuth provider without a code");
            return Err(provider_refusal(&err));
        }
        (None, Some(code)) if !code.is_empty() && code.len() <= MAX_CODE => code,
        (None, _) => {
            tracing::warn!("the OAuth provider sent the end user back without a code or an error");
            return Err(provider_refusal(&OAuthError::Failed("no code".to_owned())));
        }
    };
    let exchanged =
        oauth_connect::exchange(db, &state.keyring, &state.outbound, &taken, &code, &state.pages.oauth_redirect_uri)
            .await;
    let mapped = match exchanged {
        Ok((_, mapped)) => mapped,
        Err(ConnectError::OAuth(err)) => {
            tracing::warn!(error = %err, "an OAuth code exchange failed");
            return Err(provider_refusal(&err));
        }
        Err(ConnectError::Other(err)) => return Err(failed(err)),
    };
    // `take` found the session by this very token.
    let token = token.ok_or_else(|| take_refused(TakeError::OtherSession))?;
    let session = Session { page: taken.session, token };
    match auth_dialog::connected(state, &session, dialog, form_key, mapped).await {
        Ok(response) => Ok(response),
        Err(Error::BadInput(message)) => {
            // Schema violations name fields and JSON pointers, never values.
            tracing::warn!(%message, "a provider's token answer does not fit its environment's schemas");
            Err(refused(
                StatusCode::BAD_GATEWAY,
                "The service's answer does not fit this connection",
                "The service gave tokens this connection cannot hold, so nothing was saved. Please tell the app's support.",
            ))
        }
        Err(err) => Err(failed(err)),
    }
}

// ---------------------------------------------------------------------------------------
// Client credentials

/// Fields of a token answer, which the end user does not type.
const TOKEN_FIELDS: &[&str] =
    &["access_token", "refresh_token", "token_type", "expires_in", "expires_at", "scope", "id_token"];

/// Whether a credentials property is the token answer's to fill.
pub fn is_token_field(property: &str) -> bool {
    TOKEN_FIELDS.contains(&property)
}

/// The credentials fields of a client-credentials form: the environment's but the token's
/// own, with a client id and secret where the schema names none.
pub fn client_credentials_fields(environment: &Environment) -> Vec<forms::Field> {
    let mut fields: Vec<forms::Field> = forms::fields(forms::Document::Credentials, &environment.credentials_schema)
        .into_iter()
        .filter(|field| !is_token_field(&field.property))
        .collect();
    for (property, label, kind) in [
        ("client_secret", "Client secret", forms::Kind::Input("password")),
        ("client_id", "Client ID", forms::Kind::Input("text")),
    ] {
        if !fields.iter().any(|field| field.property == property) {
            let fixed = forms::Field {
                document: forms::Document::Credentials,
                property: property.to_owned(),
                label: label.to_owned(),
                description: None,
                required: true,
                kind,
            };
            fields.insert(0, fixed);
        }
    }
    fields
}

/// Why a client-credentials form saves nothing.
pub enum Refused {
    /// Shown on the form: its status and what to do.
    Form(StatusCode, String),
    /// latchkey's failure: an error page.
    Page(Error),
}

/// Fetches a token with the client id and secret of `credentials` from the environment's
/// token URL, and maps it into the documents the form filled.
pub async fn client_credentials(
    state: &AppState,
    environment: &Environment,
    service: &catalog::Service,
    credentials: &Value,
    user_data: &Value,
    scopes: Vec<String>,
) -> Result<Mapped, Refused> {
    let err =
        match oauth_connect::client_credentials(&state.outbound, environment, credentials, user_data, scopes).await {
            Ok(mapped) => return Ok(mapped),
            Err(err) => err,
        };
    let service = &service.title;
    Err(match err {
        ConnectError::OAuth(err) => {
            tracing::info!(error = %err, "a client-credentials check failed");
            match &err {
                OAuthError::Refused { error } => Refused::Form(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{service} refused this client ID and secret ({error}). Check them and try again."),
                ),
                OAuthError::Unavailable(_) => Refused::Form(
                    StatusCode::BAD_GATEWAY,
                    format!("{service} could not be reached. Nothing was saved; try again in a moment."),
                ),
                OAuthError::Failed(_) => Refused::Form(
                    StatusCode::BAD_GATEWAY,
                    format!("{service}'s answer could not be used, so nothing was saved."),
                ),
            }
        }
        // The scopes' and the client's own checks: their messages name fields, never values.
        ConnectError::Other(Error::BadInput(message)) => Refused::Form(StatusCode::UNPROCESSABLE_ENTITY, message),
        ConnectError::Other(err) => Refused::Page(err),
    })
}
