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

use super::{PagesConfig, error_page, forms, page, session_cookie, session_token, views};
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

fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "This connection page does not exist. Close this window and try again from the app.",
    )
}

fn session_ended() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This link can no longer be used",
        "It has expired or was already used. Close this window and start again from the app.",
    )
}

fn failed(err: &Error) -> Response {
    match err {
        Error::NotFound(_) | Error::BadInput(_) => not_found(),
        _ => {
            tracing::error!(error = %err, "a hosted page failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Close this window and try again from the app.",
            )
        }
    }
}

pub async fn create_page(
    State(state): State<AppState>,
    Path(partner): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(query) = parse_query(raw.as_deref()) else {
        return not_found();
    };
    let key = query.target.key();
    if let Some(code) = &query.code {
        return match page_sessions::open(&state.unscoped_db, &partner, code, &query.target).await {
            // Straight to the same page without the code, so it leaves the address bar
            // and the history at once.
            Ok(opened) => {
                let location = format!("/external/auth/create/{}?{}", url_path_segment(&partner), query.without_code);
                let mut response = Redirect::to(&location).into_response();
                response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state.pages, &key, &opened.token));
                response
            }
            Err(OpenError::CodeRefused) => session_ended(),
            Err(OpenError::Other(err)) => failed(&err),
        };
    }
    let (scope, token) = match session(&state, &partner, &headers, &query.target).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match show_form(&state, &scope, &token, &query).await {
        Ok(response) => response,
        Err(err) => failed(&err),
    }
}

/// The session behind a request for `target`, with its token (for the CSRF check).
async fn session(
    state: &AppState,
    partner: &str,
    headers: &HeaderMap,
    target: &PageTarget,
) -> Result<(UserScope, SecretString), Response> {
    let Some(token) = session_token(headers, &target.key()) else {
        return Err(session_ended());
    };
    match page_sessions::resume(&state.unscoped_db, partner, token.expose_secret(), target).await {
        Ok(Some(scope)) => Ok((scope, token)),
        Ok(None) => Err(session_ended()),
        Err(err) => Err(failed(&err)),
    }
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

async fn show_form(
    state: &AppState,
    scope: &UserScope,
    token: &SecretString,
    query: &CreateQuery,
) -> Result<Response, Error> {
    let subject = subject(state, scope, &query.target).await?;
    let form = FormState { name: subject.service.title.clone(), scopes: query.scopes.clone(), ..FormState::default() };
    Ok(page(StatusCode::OK, render(&subject, token, &form)))
}

/// Most form fields read from one post; a real form has a few dozen.
const MAX_FORM_PAIRS: usize = 500;

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
    let Some(query) = parse_query(raw.as_deref()) else {
        return not_found();
    };
    let (scope, token) = match session(&state, &partner, &headers, &query.target).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut posted = BTreeMap::new();
    let mut scopes = Vec::new();
    for (key, value) in url::form_urlencoded::parse(&body).take(MAX_FORM_PAIRS) {
        match key.as_ref() {
            "scopes" if scopes.len() < MAX_SCOPES => scopes.push(value.into_owned()),
            _ => {
                posted.insert(key.into_owned(), value.into_owned());
            }
        }
    }
    if !posted.get("_csrf").is_some_and(|submitted| auth_sessions::csrf_matches(&token, submitted)) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "It was not sent from this window's own page. Close this window and start again from the app.",
        );
    }
    match save(&state, &scope, &token, &query, posted, scopes).await {
        Ok(response) => response,
        Err(err) => failed(&err),
    }
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
    match authentications::create(&state.unscoped_db, &keyring, Caller::User(scope), new, Some(&idempotency)).await {
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

impl PagesConfig {
    pub fn new(public_url: &str) -> Self {
        Self { secure_cookies: public_url.starts_with("https://") }
    }
}
