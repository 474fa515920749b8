//! The auth dialog for one service environment:
//! `GET /external/auth/create/{partner}?code=…&serviceId=…&serviceEnvironmentId=…&scopes[]=…`.

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use secrecy::ExposeSecret;

use std::collections::BTreeMap;

use axum::body::Bytes;
use secrecy::SecretString;

use super::{Refusal, forms, oauth, page, respond, session_cookie, session_token, views};
use crate::{
    auth::{Caller, UserScope, page_sessions as auth_sessions},
    domain::{
        authentications::{self, NewAuthentication},
        catalog,
        idempotency::{Idempotency, IdempotencyKey},
        json_schema, org_settings, orgs,
        page_sessions::{self, OpenError, PageTarget},
    },
    error::Error,
    http::AppState,
    ids::{EnvironmentId, ServiceId},
};

/// More scopes than any environment has are not read.
const MAX_SCOPES: usize = 200;

/// The page's query string, read by hand: `scopes[]` repeats.
struct CreateQuery {
    code: Option<String>,
    target: PageTarget,
    /// Pre-selected in the form.
    scopes: Vec<String>,
    /// Every parameter but `code`, re-encoded: the URL the page redirects to.
    without_code: String,
}

fn parse_query(raw: Option<&str>) -> Option<CreateQuery> {
    let mut code = None;
    let mut service_id = None;
    let mut environment_id = None;
    let mut scopes = Vec::new();
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "code" => {
                code = Some(value.into_owned());
                continue;
            }
            "serviceId" => service_id = ServiceId::parse(&value).ok(),
            "serviceEnvironmentId" => environment_id = EnvironmentId::parse(&value).ok(),
            "scopes[]" | "scopes" if scopes.len() < MAX_SCOPES => scopes.push(value.to_string()),
            "scopes[]" | "scopes" => continue,
            _ => {}
        }
        rest.append_pair(&key, &value);
    }
    Some(CreateQuery {
        code,
        target: PageTarget::CreateAuthentication { service_id: service_id?, environment_id: environment_id? },
        scopes,
        without_code: rest.finish(),
    })
}

pub(super) fn not_found() -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        title: "Page not found",
        message: "This connection page does not exist. Close this window and try again from the app.",
    }
}

pub(super) fn session_ended() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        title: "This link can no longer be used",
        message: "It has expired or was already used. Close this window and start again from the app.",
    }
}

pub(super) fn failed(err: Error) -> Refusal {
    match err {
        Error::NotFound(_) | Error::BadInput(_) => not_found(),
        _ => {
            tracing::error!(error = %err, "a hosted page failed");
            Refusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                title: "Something went wrong",
                message: "Close this window and try again from the app.",
            }
        }
    }
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        failed(err)
    }
}

pub async fn create_page(
    State(state): State<AppState>,
    Path(partner): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let outcome = show(&state, &partner, raw.as_deref(), &headers).await;
    respond(&state, &partner, outcome).await
}

async fn show(state: &AppState, partner: &str, raw: Option<&str>, headers: &HeaderMap) -> Result<Response, Refusal> {
    let query = parse_query(raw).ok_or_else(not_found)?;
    if let Some(code) = &query.code {
        let opened =
            page_sessions::open(&state.unscoped_db, partner, code, &query.target).await.map_err(|err| match err {
                OpenError::CodeRefused => session_ended(),
                OpenError::Other(err) => failed(err),
            })?;
        // Straight to the same page without the code, so it leaves the address bar and
        // the history at once.
        let location = format!("/external/auth/create/{}?{}", url_path_segment(partner), query.without_code);
        let mut response = Redirect::to(&location).into_response();
        let cookie = session_cookie(&state.pages, &query.target.key(), &opened.token);
        response.headers_mut().insert(header::SET_COOKIE, cookie);
        return Ok(response);
    }
    let (scope, token) = session(state, partner, headers, &query.target).await?;
    let subject = subject(state, &scope, &query.target).await?;
    if oauth::handles(&subject.environment) {
        return Ok(oauth::dialog(&oauth::Dialog {
            partner,
            target: &query.target,
            brand: &subject.brand,
            service: &subject.service,
            environment: &subject.environment,
            token: &token,
            scopes: &query.scopes,
        }));
    }
    let form = FormState { name: subject.service.title.clone(), scopes: query.scopes.clone(), ..FormState::default() };
    Ok(page(StatusCode::OK, render(&subject, &token, &form)))
}

/// The session behind a request for `target`, with its token (for the CSRF check).
async fn session(
    state: &AppState,
    partner: &str,
    headers: &HeaderMap,
    target: &PageTarget,
) -> Result<(UserScope, SecretString), Refusal> {
    let token = session_token(headers, &target.key()).ok_or_else(session_ended)?;
    let scope = page_sessions::resume(&state.unscoped_db, partner, token.expose_secret(), target).await?;
    Ok((scope.ok_or_else(session_ended)?, token))
}

/// What the dialog is about, as the session's end user sees it.
struct Subject {
    brand: views::Brand,
    service: catalog::Service,
    environment: catalog::Environment,
    fields: Vec<forms::Field>,
}

async fn subject(state: &AppState, scope: &UserScope, target: &PageTarget) -> Result<Subject, Error> {
    let PageTarget::CreateAuthentication { service_id, environment_id } = target;
    let db = &state.unscoped_db;
    let caller = Caller::User(scope);
    let environment = catalog::environment(db, caller, *environment_id).await?;
    let service = catalog::service(db, caller, *service_id).await?;
    let org = orgs::own(db, caller).await?;
    let settings = org_settings::of_org(db, org.id).await?;
    let mut fields = forms::fields(forms::Document::Credentials, &environment.credentials_schema);
    fields.extend(forms::fields(forms::Document::UserData, &environment.user_data_schema));
    Ok(Subject { brand: views::Brand::of(&org, settings), service, environment, fields })
}

/// A form's state: what was posted (or the defaults) and what was wrong with it.
#[derive(Default)]
struct FormState {
    name: String,
    values: BTreeMap<String, String>,
    scopes: Vec<String>,
    extra_scopes: String,
    errors: BTreeMap<String, String>,
    form_error: Option<String>,
}

fn render(subject: &Subject, token: &SecretString, state: &FormState) -> maud::Markup {
    views::create_authentication(&views::AuthForm {
        brand: &subject.brand,
        service: &subject.service,
        environment: &subject.environment,
        fields: &subject.fields,
        csrf: &auth_sessions::csrf_token(token),
        name: &state.name,
        values: &state.values,
        scopes: &state.scopes,
        extra_scopes: &state.extra_scopes,
        errors: &state.errors,
        form_error: state.form_error.as_deref(),
    })
}

/// `POST /external/auth/create/{partner}?…`: checks the CSRF token, reads the fields as the
/// schemas type them, shows schema violations on their fields, and saves through the same
/// create as the import. The session's id is the create's idempotency key, so a post sent
/// twice (a double click, a reload) saves one authentication.
pub async fn create_submit(
    State(state): State<AppState>,
    Path(partner): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = submit(&state, &partner, raw.as_deref(), &headers, &body).await;
    respond(&state, &partner, outcome).await
}

async fn submit(
    state: &AppState,
    partner: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let query = parse_query(raw).ok_or_else(not_found)?;
    let (scope, token) = session(state, partner, headers, &query.target).await?;
    let (posted, scopes) = forms::posted(body);
    if !posted.get("_csrf").is_some_and(|submitted| auth_sessions::csrf_matches(&token, submitted)) {
        return Err(super::form_expired());
    }
    Ok(save(state, &scope, &token, &query, posted, scopes).await?)
}

async fn save(
    state: &AppState,
    scope: &UserScope,
    token: &SecretString,
    query: &CreateQuery,
    posted: BTreeMap<String, String>,
    mut scopes: Vec<String>,
) -> Result<Response, Error> {
    let subject = subject(state, scope, &query.target).await?;
    let extra_scopes = posted.get("extraScopes").cloned().unwrap_or_default();
    scopes.extend(extra_scopes.split_whitespace().take(MAX_SCOPES).map(str::to_owned));
    let credential_fields: Vec<forms::Field> =
        subject.fields.iter().filter(|f| f.document == forms::Document::Credentials).cloned().collect();
    let user_data_fields: Vec<forms::Field> =
        subject.fields.iter().filter(|f| f.document == forms::Document::UserData).cloned().collect();
    let (credentials, mut errors) = forms::read(&credential_fields, &posted);
    let (user_data, user_data_errors) = forms::read(&user_data_fields, &posted);
    errors.extend(user_data_errors);
    for (document, schema, value, prefix) in [
        ("credentials", &subject.environment.credentials_schema, &credentials, "credentials."),
        ("userData", &subject.environment.user_data_schema, &user_data, "userData."),
    ] {
        for violation in json_schema::violations(document, schema, value)? {
            let control = violation.property().map(|property| format!("{prefix}{property}"));
            if let Some(control) = control.filter(|control| subject.fields.iter().any(|f| &f.name() == control)) {
                errors.entry(control).or_insert(violation.message);
            } else {
                errors
                    .entry(String::new())
                    .or_insert(format!("{document}{}: {}", violation.pointer, violation.message));
            }
        }
    }
    let name = posted.get("name").cloned().unwrap_or_default();
    let mut form = FormState {
        name: name.clone(),
        // Secrets never go back into the page.
        values: posted
            .into_iter()
            .filter(|(key, _)| !subject.fields.iter().any(|f| f.secret() && &f.name() == key))
            .collect(),
        scopes: scopes.clone(),
        extra_scopes,
        errors,
        form_error: None,
    };
    if let Some(general) = form.errors.remove("") {
        form.form_error = Some(general);
    }
    if form.form_error.is_some() || !form.errors.is_empty() {
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render(&subject, token, &form)));
    }
    let PageTarget::CreateAuthentication { service_id, environment_id } = query.target;
    let new = NewAuthentication {
        name,
        service_id: Some(service_id),
        environment_id,
        credentials,
        user_data: Some(user_data),
        scopes: Some(scopes),
        hidden: None,
        custom_fields: None,
    };
    let key = IdempotencyKey::parse(&format!(
        "page-session:{}",
        &crate::crypto::sha256_hex(token.expose_secret().as_bytes())[..32]
    ))?;
    let idempotency = Idempotency::new(key, state.fingerprinter.clone());
    let keyring = state.keyring.current();
    match authentications::create(
        &state.unscoped_db,
        &keyring,
        state.refresher.timing(),
        Caller::User(scope),
        new,
        Some(&idempotency),
    )
    .await
    {
        Ok(authentication) => {
            Ok(page(StatusCode::OK, views::finished(&subject.brand, &subject.service, &authentication.id.to_string())))
        }
        // The import's own checks (name, scopes, …): their messages name fields, never values.
        Err(Error::BadInput(message)) => {
            form.form_error = Some(message);
            Ok(page(StatusCode::UNPROCESSABLE_ENTITY, render(&subject, token, &form)))
        }
        Err(Error::Conflict(_)) => {
            form.form_error =
                Some("This window already saved a connection. Close it and start again from the app.".to_owned());
            Ok(page(StatusCode::CONFLICT, render(&subject, token, &form)))
        }
        Err(err) => Err(err),
    }
}

/// `partner` as one path segment of the redirect.
fn url_path_segment(partner: &str) -> String {
    url::form_urlencoded::byte_serialize(partner.as_bytes()).collect::<String>().replace('+', "%20")
}
