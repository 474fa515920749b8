//! The hosted pages under `/external`: the partner's front end opens them in a popup with
//! a fresh authorization code. Every page answers with the same strict headers (no inline
//! script or style, no framing, no referrer, no caching), every string reaches HTML
//! through the template engine's escaping, and every asset is embedded in the binary.

mod auth_dialog;
mod forms;
mod oauth;
mod oauth_views;
mod views;

use axum::{
    Router,
    extract::{Path, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use cookie::{Cookie, SameSite};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    auth::page_sessions,
    domain::{org_settings, orgs},
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
        .route("/external/auth/create/{partner}", get(auth_dialog::create_page).post(auth_dialog::create_submit))
        .route("/external/auth/oauth/start/{partner}", get(oauth::start))
        .route(oauth::CALLBACK_PATH, get(oauth::callback))
        .route("/external/auth/oauth/client-credentials/{partner}", post(oauth::client_credentials_submit))
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

async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "page.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "popup.js" => (SCRIPT, "text/javascript; charset=utf-8"),
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

/// A page's answer, or its refusal as an error page. Where the URL names an organization,
/// the error page wears its brand and tells the opener (`tray.authPopup.error`) at its
/// allowed origins, so the partner's front end stops waiting.
async fn respond(state: &AppState, partner: &str, outcome: Result<Response, Refusal>) -> Response {
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
    page(refusal.status, views::error(brand.as_ref(), refusal.title, refusal.message))
}

/// A form post without its session's CSRF token.
fn form_expired() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        title: "This form has expired",
        message: "It was not sent from this window's own page. Close this window and start again from the app.",
    }
}

fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, axum::response::Html(markup.into_string())).into_response()
}
