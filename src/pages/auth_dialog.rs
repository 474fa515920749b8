//! The auth dialog for one service environment:
//! `GET /external/auth/create/{partner}?code=…&serviceId=…&serviceEnvironmentId=…&scopes[]=…`.

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use secrecy::ExposeSecret;

use super::{PagesConfig, error_page, page, session_cookie, session_token, views};
use crate::{
    auth::{Caller, UserScope},
    domain::{
        catalog, org_settings, orgs,
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
    /// Every parameter but `code`, re-encoded: the URL the page redirects to.
    without_code: String,
}

fn parse_query(raw: Option<&str>) -> Option<CreateQuery> {
    let mut code = None;
    let mut service_id = None;
    let mut environment_id = None;
    let mut scopes = 0;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "code" => {
                code = Some(value.into_owned());
                continue;
            }
            "serviceId" => service_id = ServiceId::parse(&value).ok(),
            "serviceEnvironmentId" => environment_id = EnvironmentId::parse(&value).ok(),
            "scopes[]" | "scopes" if scopes < MAX_SCOPES => scopes += 1,
            "scopes[]" | "scopes" => continue,
            _ => {}
        }
        rest.append_pair(&key, &value);
    }
    Some(CreateQuery {
        code,
        target: PageTarget::CreateAuthentication { service_id: service_id?, environment_id: environment_id? },
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
    let Some(token) = session_token(&headers, &key) else {
        return session_ended();
    };
    let scope = match page_sessions::resume(&state.unscoped_db, &partner, token.expose_secret(), &query.target).await {
        Ok(Some(scope)) => scope,
        Ok(None) => return session_ended(),
        Err(err) => return failed(&err),
    };
    match render_create(&state, &scope, &query).await {
        Ok(markup) => page(StatusCode::OK, markup),
        Err(err) => failed(&err),
    }
}

async fn render_create(state: &AppState, scope: &UserScope, query: &CreateQuery) -> Result<maud::Markup, Error> {
    let PageTarget::CreateAuthentication { service_id, environment_id } = &query.target;
    let db = &state.unscoped_db;
    let caller = Caller::User(scope);
    let environment = catalog::environment(db, caller, *environment_id).await?;
    let service = catalog::service(db, caller, *service_id).await?;
    let org = orgs::own(db, caller).await?;
    let settings = org_settings::of_org(db, org.id).await?;
    Ok(views::create_authentication(&views::Brand::of(&org, settings), &service, &environment))
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
