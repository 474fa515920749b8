//! The hosted pages under `/external`: the partner's front end opens them in a popup with
//! a fresh authorization code. Every page answers with the same strict headers (no inline
//! script or style, no framing, no referrer, no caching), every string reaches HTML
//! through the template engine's escaping, and every asset is embedded in the binary.

mod auth_dialog;
mod forms;
mod oauth;
mod views;
mod wizard;

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Path, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use cookie::{Cookie, SameSite};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    auth::{Caller, UserScope, page_sessions},
    domain::{
        org_settings, orgs,
        page_sessions::{self as sessions, OpenError, PageSession, PageTarget},
    },
    error::Error,
    http::AppState,
};

/// What the pages need from the configuration.
#[derive(Clone, Debug)]
pub struct PagesConfig {
    /// Cookies get `Secure` when the public URL is `https` (directly or behind a proxy).
    pub secure_cookies: bool,
    /// Where OAuth providers send the end user back: `{LATCHKEY_PUBLIC_URL}` followed by
    /// [`oauth::CALLBACK_PATH`], exactly as each OAuth app registers it.
    pub oauth_redirect_uri: String,
}

impl PagesConfig {
    pub fn new(public_url: &str) -> Self {
        Self {
            secure_cookies: public_url.starts_with("https://"),
            oauth_redirect_uri: format!("{}{}", public_url.trim_end_matches('/'), oauth::CALLBACK_PATH),
        }
    }
}

/// `'self'` only: scripts and styles come from the embedded assets; the logo is the one
/// outside resource, and the organization's setting only takes `https` URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/external/auth/create/{partner}", get(auth_dialog::handle).post(auth_dialog::handle))
        .route("/external/auth/create/{partner}/{instance}/{slot}", get(auth_dialog::handle).post(auth_dialog::handle))
        .route("/external/auth/edit/{partner}/{authentication}", get(auth_dialog::handle).post(auth_dialog::handle))
        .route("/external/solutions/{partner}/configure/{instance}", get(wizard::handle).post(wizard::handle))
        .route(
            "/external/solutions/{partner}/configure/{instance}/auth/{slot}",
            get(auth_dialog::handle).post(auth_dialog::handle),
        )
        .route(oauth::CALLBACK_PATH, get(oauth::callback))
        .route("/external/assets/{name}", get(asset))
        .route("/external/assets/accent/{colour}", get(accent))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // The first URL of a page holds the authorization code: it must not leak onward.
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        // No Cross-Origin-Opener-Policy: it would cut the popup off from its opener.
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

const STYLESHEET: &str = include_str!("assets/page.css");
const SCRIPT: &str = include_str!("assets/popup.js");
const ICON: &str = include_str!("assets/icon.svg");

async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "page.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "popup.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// The organization's accent colour as a stylesheet, so no page needs an inline style.
async fn accent(Path(colour): Path<String>) -> Response {
    let Some(hex) =
        colour.strip_suffix(".css").filter(|hex| hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=86400")],
        format!(":root {{ --accent: #{}; --on-accent: {}; }}\n", hex.to_ascii_lowercase(), text_on(hex)),
    )
        .into_response()
}

/// Black or white, whichever reads better on the colour `hex` (WCAG relative luminance).
fn text_on(hex: &str) -> &'static str {
    let channel = |at: usize| {
        let value = f64::from(u8::from_str_radix(&hex[at..at + 2], 16).unwrap_or(0)) / 255.0;
        if value <= 0.04045 { value / 12.92 } else { ((value + 0.055) / 1.055).powf(2.4) }
    };
    let luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
    // Contrast with white is 1.05 / (L + 0.05), with black (L + 0.05) / 0.05; they are
    // equal at L ≈ 0.179.
    if luminance > 0.179 { "#000" } else { "#fff" }
}

/// A session cookie per page target, so pages open side by side (the wizard and the auth
/// dialog it opens) keep their own sessions.
fn cookie_name(target_key: &str) -> String {
    format!("lk_page_{}", &crate::crypto::sha256_hex(target_key.as_bytes())[..16])
}

fn session_cookie(config: &PagesConfig, target_key: &str, token: &SecretString) -> HeaderValue {
    let cookie = Cookie::build((cookie_name(target_key), token.expose_secret().to_owned()))
        .path("/external")
        .http_only(true)
        .secure(config.secure_cookies)
        // Lax: the cookie must come back on the top-level return from an OAuth provider.
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(page_sessions::LIFETIME.num_seconds()))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie of base64url and hex is a valid header")
}

/// The cookies the browser sent.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'static>> + '_ {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| Cookie::split_parse(value.to_owned()))
        .filter_map(Result::ok)
}

/// The session token the browser sent for `target_key`, if any.
fn session_token(headers: &HeaderMap, target_key: &str) -> Option<SecretString> {
    let name = cookie_name(target_key);
    cookies(headers).find(|cookie| cookie.name() == name).map(|cookie| SecretString::from(cookie.value().to_owned()))
}

/// Page sessions a browser holds at most that a page looks through.
const MAX_SESSION_COOKIES: usize = 20;

/// Every page-session token the browser sent, whatever its page.
fn all_session_tokens(headers: &HeaderMap) -> Vec<SecretString> {
    cookies(headers)
        .filter(|cookie| cookie.name().starts_with("lk_page_"))
        .take(MAX_SESSION_COOKIES)
        .map(|cookie| SecretString::from(cookie.value().to_owned()))
        .collect()
}

/// Why a page is not shown: a status, a heading and a sentence a person can act on.
pub struct Refusal {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: &'static str,
}

fn not_found() -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        title: "Page not found",
        message: "This page does not exist. Close this window and try again from the app.",
    }
}

fn session_ended() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        title: "This link can no longer be used",
        message: "It has expired or was already used. Close this window and start again from the app.",
    }
}

fn failed(err: Error) -> Refusal {
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

/// The window message an error page sends the opener: the auth dialogs' or the wizard's.
#[derive(Clone, Copy)]
pub enum Opener {
    AuthDialog,
    Wizard,
}

impl Opener {
    fn error_message(self) -> &'static str {
        match self {
            Opener::AuthDialog => "tray.authPopup.error",
            Opener::Wizard => "tray.configPopup.error",
        }
    }
}

/// A page's answer, or its refusal as an error page. Where the URL names an organization,
/// the error page wears its brand and tells the opener at its allowed origins, so the
/// partner's front end stops waiting.
async fn respond(state: &AppState, partner: &str, opener: Opener, outcome: Result<Response, Refusal>) -> Response {
    let refusal = match outcome {
        Ok(response) => return response,
        Err(refusal) => refusal,
    };
    let brand = match orgs::by_name_or_id(&state.unscoped_db, partner).await {
        Ok(org) => {
            org_settings::of_org(&state.unscoped_db, org.id).await.ok().map(|settings| views::Brand::of(&org, settings))
        }
        Err(_) => None,
    };
    page(refusal.status, views::error(brand.as_ref(), opener.error_message(), refusal.title, refusal.message))
}

fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, axum::response::Html(markup.into_string())).into_response()
}

/// Most query parameters read from a page's URL.
const MAX_QUERY_PAIRS: usize = 300;

/// A page's query string: the authorization code, and every other parameter.
struct Query {
    code: Option<String>,
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        let mut code = None;
        let mut pairs = Vec::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).take(MAX_QUERY_PAIRS) {
            if key == "code" {
                code = Some(value.into_owned());
            } else {
                pairs.push((key.into_owned(), value.into_owned()));
            }
        }
        Self { code, pairs }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }

    /// `path` with every parameter but `code`: where a page goes once the code is redeemed.
    fn without_code(&self, path: &str) -> String {
        if self.pairs.is_empty() {
            return path.to_owned();
        }
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        rest.extend_pairs(&self.pairs);
        format!("{path}?{}", rest.finish())
    }
}

/// What a page handler reads from a request besides its path.
struct Incoming {
    query: Query,
    post: bool,
    /// The path as sent: where a page reloads itself.
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = Query::parse(request.uri().query());
        let post = request.method() == Method::POST;
        let path = request.uri().path().to_owned();
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        Ok(Self { query, post, path, headers, body })
    }
}

/// A page's live session: its row and end user, and the cookie's token (for CSRF).
struct Session {
    page: PageSession,
    token: SecretString,
}

impl Session {
    fn scope(&self) -> &UserScope {
        &self.page.scope
    }

    fn csrf(&self) -> String {
        page_sessions::csrf_token(&self.token)
    }

    /// Whether `submitted` is this session's CSRF token.
    fn csrf_matches(&self, submitted: &str) -> bool {
        page_sessions::csrf_matches(&self.token, submitted)
    }
}

/// How a page request starts.
enum Entry {
    /// The URL held a code: it opened a session, and the page is reloaded without it.
    Redirect(Response),
    Page(Session),
}

/// What every page does first. A `code` is redeemed for a session of `target`, and the
/// answer is `303` to the same page without the code, so it leaves the address bar and
/// the history at once; otherwise the cookie's session is resumed.
async fn enter(
    state: &AppState,
    partner: &str,
    target: &PageTarget,
    query: &Query,
    path: &str,
    headers: &HeaderMap,
) -> Result<Entry, Refusal> {
    let Some(code) = &query.code else {
        return Ok(Entry::Page(session(state, partner, headers, target).await?));
    };
    let opened = sessions::open(&state.unscoped_db, partner, code, target).await.map_err(|err| match err {
        OpenError::CodeRefused => session_ended(),
        OpenError::Other(err) => failed(err),
    })?;
    let mut response = Redirect::to(&query.without_code(path)).into_response();
    let cookie = session_cookie(&state.pages, &target.key(), &opened.token);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(Entry::Redirect(response))
}

/// The session behind a request for `target`.
async fn session(
    state: &AppState,
    partner: &str,
    headers: &HeaderMap,
    target: &PageTarget,
) -> Result<Session, Refusal> {
    let token = session_token(headers, &target.key()).ok_or_else(session_ended)?;
    let page = sessions::resume(&state.unscoped_db, partner, token.expose_secret(), target).await?;
    Ok(Session { page: page.ok_or_else(session_ended)?, token })
}

/// Most form fields read from one post; a real form has a few dozen.
const MAX_FORM_PAIRS: usize = 500;
/// More scopes than any environment has are not read.
const MAX_SCOPES: usize = 200;

/// A form post: its fields by name, and the checked scope boxes (the one repeated name).
struct Posted {
    fields: BTreeMap<String, String>,
    scopes: Vec<String>,
}

impl Posted {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Reads a form post of `session`, refusing it unless it carries the session's CSRF token.
fn posted(session: &Session, body: &[u8]) -> Result<Posted, Refusal> {
    let mut fields = BTreeMap::new();
    let mut scopes = Vec::new();
    for (key, value) in url::form_urlencoded::parse(body).take(MAX_FORM_PAIRS) {
        match key.as_ref() {
            "scopes" if scopes.len() < MAX_SCOPES => scopes.push(value.into_owned()),
            "scopes" => {}
            _ => {
                fields.insert(key.into_owned(), value.into_owned());
            }
        }
    }
    if !fields.get("_csrf").is_some_and(|submitted| session.csrf_matches(submitted)) {
        return Err(form_expired());
    }
    Ok(Posted { fields, scopes })
}

/// A form post or a link without its session's CSRF token.
fn form_expired() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        title: "This form has expired",
        message: "It was not sent from this window's own page. Close this window and start again from the app.",
    }
}

/// The brand of the session's organization.
async fn brand(state: &AppState, scope: &UserScope) -> Result<views::Brand, Error> {
    let org = orgs::own(&state.unscoped_db, Caller::User(scope)).await?;
    let settings = org_settings::of_org(&state.unscoped_db, org.id).await?;
    Ok(views::Brand::of(&org, settings))
}
