//! OAuth 2.0 environments in the hosted pages.
//!
//! - Authorization code: the dialog shows a "Connect to {service}" link to
//!   `GET /external/auth/oauth/start/{partner}?target=…&scope=…&_csrf=…`, which starts a
//!   flow bound to the page session and sends the browser to the provider. The provider
//!   sends it back to [`CALLBACK_PATH`], where the `state` is checked against the session
//!   cookie (`SameSite=Lax` comes back on that top-level navigation), used once, and the
//!   code exchanged.
//! - Client credentials: the dialog shows a client id and secret form that posts to
//!   `POST /external/auth/oauth/client-credentials/{partner}?target=…`; a token is fetched
//!   at once, and nothing is saved unless one comes.
//!
//! Both end in [`complete`], which hands the mapped credentials to the page's target.

use axum::{
    body::Bytes,
    extract::{Path, Query, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{
    Refusal,
    auth_dialog::{failed, not_found, session_ended},
    forms, oauth_views, page, respond, session_token, views,
};
use crate::{
    auth::{Caller, UserScope, page_sessions as auth_sessions},
    domain::{
        authentications::{self, NewAuthentication},
        catalog::{self, AuthenticationType, Environment},
        oauth_connect::{self, ConnectError, NewFlow, TakeError},
        org_settings, orgs,
        page_sessions::{self, PageTarget},
    },
    error::Error,
    http::AppState,
    ids::AuthenticationId,
    oauth::{Mapped, OAuthError},
};

/// Where providers send the end user back. The redirect URI is the public URL followed by
/// this path, exactly: each OAuth app registers it.
pub const CALLBACK_PATH: &str = "/external/auth/oauth/callback";

/// More query or form pairs than a real request has are not read.
const MAX_PAIRS: usize = 500;
/// More scopes than any environment has are not read.
const MAX_SCOPES: usize = 200;
/// Longest authorization code read from the provider's answer.
const MAX_CODE: usize = 4096;

// ---------------------------------------------------------------------------------------
// The hook: what a page target connects, and where the connection goes

/// The environment a page target connects.
async fn environment_of(state: &AppState, scope: &UserScope, target: &PageTarget) -> Result<Environment, Error> {
    match target {
        PageTarget::CreateAuthentication { environment_id, .. } => {
            catalog::environment(&state.unscoped_db, Caller::User(scope), *environment_id).await
        }
    }
}

/// Where a connection made on a page goes, by the page's target: the one function a page
/// that connects OAuth services adds its arm to. It gets the session's end user, the
/// target and the credentials mapped from the provider's answer, and returns the
/// authentication that now holds them (sealed).
async fn complete(
    state: &AppState,
    scope: &UserScope,
    target: &PageTarget,
    mapped: Mapped,
) -> Result<AuthenticationId, Error> {
    match target {
        PageTarget::CreateAuthentication { service_id, environment_id } => {
            let caller = Caller::User(scope);
            let service = catalog::service(&state.unscoped_db, caller, *service_id).await?;
            let new = NewAuthentication {
                name: service.title,
                service_id: Some(*service_id),
                environment_id: *environment_id,
                credentials: mapped.credentials.expose().clone(),
                user_data: Some(mapped.user_data),
                scopes: Some(mapped.scopes),
                hidden: None,
                custom_fields: None,
            };
            let keyring = state.keyring.current();
            // One flow or one client-credentials check makes one authentication: the flow's
            // state is single use, and the check runs once per post.
            Ok(authentications::create(&state.unscoped_db, &keyring, state.refresher.timing(), caller, new, None)
                .await?
                .id)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The dialog's view

/// Whether this module shows the dialog of `environment`.
pub fn handles(environment: &Environment) -> bool {
    matches!(environment.authentication_type, AuthenticationType::Oauth2 | AuthenticationType::Oauth2clientCredentials)
}

/// What the auth dialog knows when it hands an OAuth environment over.
pub struct Dialog<'a> {
    pub partner: &'a str,
    pub target: &'a PageTarget,
    pub brand: &'a views::Brand,
    pub service: &'a catalog::Service,
    pub environment: &'a Environment,
    /// The session's token, for the CSRF token.
    pub token: &'a SecretString,
    /// Requested by the partner (`scopes[]`).
    pub scopes: &'a [String],
}

/// The dialog of an OAuth environment: the connect link, the client-credentials form, or,
/// where the organization has not set up its OAuth app, a plain word saying so.
pub fn dialog(dialog: &Dialog<'_>) -> Response {
    let csrf = auth_sessions::csrf_token(dialog.token);
    if dialog.environment.oauth_app.is_none() {
        let message = match dialog.environment.authentication_type {
            AuthenticationType::Oauth2clientCredentials => format!(
                "{} has not set up the token URL for {} yet, so it cannot be connected here. Please let {} know.",
                dialog.brand.name, dialog.service.title, dialog.brand.name
            ),
            _ => format!(
                "{} has not set up its OAuth app for {} yet, so it cannot be connected here. Please let {} know.",
                dialog.brand.name, dialog.service.title, dialog.brand.name
            ),
        };
        return page(StatusCode::OK, views::error(Some(dialog.brand), "This service is not set up yet", &message));
    }
    let target = dialog.target.key();
    let subject =
        oauth_views::Subject { brand: dialog.brand, service: dialog.service, environment: dialog.environment };
    if dialog.environment.authentication_type == AuthenticationType::Oauth2clientCredentials {
        let fields = client_credentials_fields(dialog.environment);
        let form = CredentialsForm { scopes: dialog.scopes.to_vec(), ..CredentialsForm::default() };
        let action = client_credentials_action(dialog.partner, &target);
        return page(StatusCode::OK, render_credentials(&subject, &fields, &action, &csrf, &form));
    }
    let mut link = url::form_urlencoded::Serializer::new(String::new());
    link.append_pair("target", &target);
    for scope in dialog.scopes {
        link.append_pair("scope", scope);
    }
    link.append_pair("_csrf", &csrf);
    let start_url = format!("/external/auth/oauth/start/{}?{}", path_segment(dialog.partner), link.finish());
    page(StatusCode::OK, oauth_views::connect(&subject, dialog.scopes, &start_url))
}

/// `partner` as one path segment.
fn path_segment(partner: &str) -> String {
    url::form_urlencoded::byte_serialize(partner.as_bytes()).collect::<String>().replace('+', "%20")
}

/// The session behind a request for `target`: its id, its end user and its token.
async fn session(
    state: &AppState,
    partner: &str,
    headers: &HeaderMap,
    target: &PageTarget,
) -> Result<(Uuid, UserScope, SecretString), Refusal> {
    let token = session_token(headers, &target.key()).ok_or_else(session_ended)?;
    let resumed = page_sessions::resume_session(&state.unscoped_db, partner, token.expose_secret(), target).await?;
    let (id, scope) = resumed.ok_or_else(session_ended)?;
    Ok((id, scope, token))
}

// ---------------------------------------------------------------------------------------
// Authorization code: start

/// `GET /external/auth/oauth/start/{partner}?target=…&scope=…&_csrf=…`: starts a flow for
/// the page session and sends the browser to the provider's authorization page.
pub async fn start(
    State(state): State<AppState>,
    Path(partner): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let outcome = start_flow(&state, &partner, raw.as_deref(), &headers).await;
    respond(&state, &partner, outcome).await
}

async fn start_flow(
    state: &AppState,
    partner: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let mut target = None;
    let mut csrf = None;
    let mut scopes = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).take(MAX_PAIRS) {
        match key.as_ref() {
            "target" => target = PageTarget::from_key(&value),
            "_csrf" => csrf = Some(value.into_owned()),
            "scope" if scopes.len() < MAX_SCOPES => scopes.push(value.into_owned()),
            _ => {}
        }
    }
    let target = target.ok_or_else(not_found)?;
    let (session_id, scope, token) = session(state, partner, headers, &target).await?;
    if !csrf.is_some_and(|csrf| auth_sessions::csrf_matches(&token, &csrf)) {
        return Err(super::form_expired());
    }
    let environment = environment_of(state, &scope, &target).await?;
    let url = oauth_connect::start(
        &state.unscoped_db,
        &state.keyring.current(),
        &scope,
        NewFlow {
            session_id,
            target: &target.key(),
            environment: &environment,
            scopes,
            redirect_uri: &state.pages.oauth_redirect_uri,
        },
    )
    .await
    .map_err(|err| match err {
        // The scopes asked for: the environment declares others.
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

fn refused(status: StatusCode, title: &'static str, message: &'static str) -> Refusal {
    Refusal { status, title, message }
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
/// the authorization code flow.
pub async fn callback(State(state): State<AppState>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    let answer = parse_answer(raw.as_deref());
    let found = match answer.state.as_deref() {
        Some(given) => oauth_connect::find(&state.unscoped_db, given).await,
        None => Ok(None),
    };
    // The organization the page speaks for: the flow's, or else that of a page session
    // the browser holds, so the opener hears of the failure either way.
    let org_id = match &found {
        Ok(Some(found)) => Some(found.org_id()),
        _ => auth_sessions::org_of_any(&state.unscoped_db, &super::all_session_tokens(&headers)).await.ok().flatten(),
    };
    let outcome = match found {
        Ok(Some(found)) => finish(&state, &headers, &found, answer).await,
        Ok(None) => Err(unknown_state()),
        Err(err) => Err(failed(err)),
    };
    match org_id {
        Some(org_id) => respond(&state, &org_id.to_string(), outcome).await,
        None => respond(&state, "", outcome).await,
    }
}

async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    found: &oauth_connect::Found,
    answer: Answer,
) -> Result<Response, Refusal> {
    let db = &state.unscoped_db;
    let session = match session_token(headers, found.target()) {
        Some(token) => {
            auth_sessions::resolve_session(db, found.org_id(), token.expose_secret(), found.target()).await?
        }
        None => None,
    };
    let taken = oauth_connect::take(db, &state.keyring, found, session).await.map_err(take_refused)?;
    let target = PageTarget::from_key(found.target())
        .ok_or_else(|| failed(Error::internal(anyhow::anyhow!("an OAuth flow holds an unknown page target"))))?;
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
    let (environment, mapped) = match exchanged {
        Ok(done) => done,
        Err(ConnectError::OAuth(err)) => {
            tracing::warn!(error = %err, "an OAuth code exchange failed");
            return Err(provider_refusal(&err));
        }
        Err(ConnectError::Other(err)) => return Err(failed(err)),
    };
    let id = match complete(state, &taken.scope, &target, mapped).await {
        Ok(id) => id,
        Err(Error::BadInput(message)) => {
            // Schema violations name fields and JSON pointers, never values.
            tracing::warn!(%message, "a provider's token answer does not fit its environment's schemas");
            return Err(refused(
                StatusCode::BAD_GATEWAY,
                "The service's answer does not fit this connection",
                "The service gave tokens this connection cannot hold, so nothing was saved. Please tell the app's support.",
            ));
        }
        Err(err) => return Err(failed(err)),
    };
    finished(state, &taken.scope, &environment, id).await
}

/// The page that tells the opener the authentication is there, then closes.
async fn finished(
    state: &AppState,
    scope: &UserScope,
    environment: &Environment,
    id: AuthenticationId,
) -> Result<Response, Refusal> {
    let db = &state.unscoped_db;
    let caller = Caller::User(scope);
    let org = orgs::own(db, caller).await?;
    let brand = views::Brand::of(&org, org_settings::of_org(db, org.id).await?);
    let service = catalog::service(db, caller, environment.service_id).await?;
    Ok(page(StatusCode::OK, views::finished(&brand, &service, &id.to_string())))
}

// ---------------------------------------------------------------------------------------
// Client credentials

/// Fields of a token answer, which the end user does not type.
const TOKEN_FIELDS: &[&str] =
    &["access_token", "refresh_token", "token_type", "expires_in", "expires_at", "scope", "id_token"];

/// The form's fields: the environment's credentials but the token's own, with a client id
/// and secret where the schema names none, then its user data.
fn client_credentials_fields(environment: &Environment) -> Vec<forms::Field> {
    let mut fields: Vec<forms::Field> = forms::fields(forms::Document::Credentials, &environment.credentials_schema)
        .into_iter()
        .filter(|field| !TOKEN_FIELDS.contains(&field.property.as_str()))
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
    fields.extend(forms::fields(forms::Document::UserData, &environment.user_data_schema));
    fields
}

fn client_credentials_action(partner: &str, target: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("target", target).finish();
    format!("/external/auth/oauth/client-credentials/{}?{query}", path_segment(partner))
}

#[derive(Default)]
struct CredentialsForm {
    scopes: Vec<String>,
    values: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
    form_error: Option<String>,
}

fn render_credentials(
    subject: &oauth_views::Subject<'_>,
    fields: &[forms::Field],
    action: &str,
    csrf: &str,
    form: &CredentialsForm,
) -> maud::Markup {
    oauth_views::client_credentials(
        subject,
        &oauth_views::ClientCredentials {
            fields,
            action,
            csrf,
            scopes: &form.scopes,
            values: &form.values,
            errors: &form.errors,
            form_error: form.form_error.as_deref(),
        },
    )
}

/// The query of the client-credentials form's post.
#[derive(serde::Deserialize)]
pub struct CredentialsTarget {
    /// The session's page target, by its key.
    target: String,
}

/// `POST /external/auth/oauth/client-credentials/{partner}?target=…`: checks the CSRF
/// token, fetches a token with the client id and secret given, and saves them with it.
/// A refusal shows on the form and saves nothing.
pub async fn client_credentials_submit(
    State(state): State<AppState>,
    Path(partner): Path<String>,
    Query(query): Query<CredentialsTarget>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = check_client_credentials(&state, &partner, &query.target, &headers, &body).await;
    respond(&state, &partner, outcome).await
}

async fn check_client_credentials(
    state: &AppState,
    partner: &str,
    target_key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let target = PageTarget::from_key(target_key).ok_or_else(not_found)?;
    let (_, scope, token) = session(state, partner, headers, &target).await?;
    let (posted, scopes) = forms::posted(body);
    if !posted.get("_csrf").is_some_and(|submitted| auth_sessions::csrf_matches(&token, submitted)) {
        return Err(super::form_expired());
    }
    let db = &state.unscoped_db;
    let caller = Caller::User(&scope);
    let environment = environment_of(state, &scope, &target).await?;
    if environment.authentication_type != AuthenticationType::Oauth2clientCredentials {
        return Err(not_found());
    }
    let service = catalog::service(db, caller, environment.service_id).await?;
    let org = orgs::own(db, caller).await?;
    let brand = views::Brand::of(&org, org_settings::of_org(db, org.id).await?);
    let fields = client_credentials_fields(&environment);
    let subject = oauth_views::Subject { brand: &brand, service: &service, environment: &environment };
    let (credential_fields, user_data_fields): (Vec<_>, Vec<_>) =
        fields.iter().cloned().partition(|field| field.document == forms::Document::Credentials);
    let (credentials, mut errors) = forms::read(&credential_fields, &posted);
    let (user_data, user_data_errors) = forms::read(&user_data_fields, &posted);
    errors.extend(user_data_errors);
    for field in fields.iter().filter(|field| field.required) {
        if posted.get(&field.name()).is_none_or(|value| value.trim().is_empty()) {
            errors.entry(field.name()).or_insert_with(|| "is required".to_owned());
        }
    }
    let mut form = CredentialsForm {
        scopes: scopes.clone(),
        // Secrets never go back into the page.
        values: posted.into_iter().filter(|(key, _)| !fields.iter().any(|f| f.secret() && &f.name() == key)).collect(),
        errors,
        form_error: None,
    };
    let action = client_credentials_action(partner, target_key);
    let csrf = auth_sessions::csrf_token(&token);
    let refuse = |status: StatusCode, form: &CredentialsForm| {
        Ok(page(status, render_credentials(&subject, &fields, &action, &csrf, form)))
    };
    if !form.errors.is_empty() {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, &form);
    }
    let mapped = match oauth_connect::client_credentials(
        &state.outbound,
        &environment,
        &credentials,
        &user_data,
        scopes,
    )
    .await
    {
        Ok(mapped) => mapped,
        Err(ConnectError::OAuth(err)) => {
            tracing::info!(error = %err, "a client-credentials check failed");
            let (status, message) = match &err {
                OAuthError::Refused { error } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{} refused this client ID and secret ({error}). Check them and try again.", service.title),
                ),
                OAuthError::Unavailable(_) => (
                    StatusCode::BAD_GATEWAY,
                    format!("{} could not be reached. Nothing was saved; try again in a moment.", service.title),
                ),
                OAuthError::Failed(_) => (
                    StatusCode::BAD_GATEWAY,
                    format!("{}'s answer could not be used, so nothing was saved.", service.title),
                ),
            };
            form.form_error = Some(message);
            return refuse(status, &form);
        }
        Err(ConnectError::Other(Error::BadInput(message))) => {
            form.form_error = Some(message);
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, &form);
        }
        Err(ConnectError::Other(err)) => return Err(failed(err)),
    };
    match complete(state, &scope, &target, mapped).await {
        Ok(id) => Ok(page(StatusCode::OK, views::finished(&brand, &service, &id.to_string()))),
        // The schemas' checks: their messages name fields, never values.
        Err(Error::BadInput(message)) => {
            form.form_error = Some(message);
            refuse(StatusCode::UNPROCESSABLE_ENTITY, &form)
        }
        Err(err) => Err(failed(err)),
    }
}
