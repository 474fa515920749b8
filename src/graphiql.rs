//! GraphiQL, served entirely from the binary: operators paste master tokens into this
//! page, so it loads no script from any other origin and runs under a strict
//! Content-Security-Policy. The third-party files are pinned in `assets/graphiql/`.

use std::sync::LazyLock;

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::crypto::sha256_hex;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset { name: $name, content_type: $content_type, bytes: include_bytes!(concat!("../assets/graphiql/", $name)) }
    };
}

/// In the order the page loads them.
const ASSETS: &[Asset] = &[
    asset!("graphiql.min.css", CSS),
    asset!("page.css", CSS),
    asset!("react.production.min.js", JS),
    asset!("react-dom.production.min.js", JS),
    asset!("graphiql.min.js", JS),
    asset!("init.js", JS),
];

/// No inline script, nothing from elsewhere; the page may only talk to latchkey itself.
/// Inline styles stay allowed: GraphiQL's components set some at run time.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Assets are addressed by a hash of their contents, so a new build never meets a stale
/// cached file and browsers may keep them for a year.
static PREFIX: LazyLock<String> = LazyLock::new(|| {
    let all: Vec<u8> = ASSETS.iter().flat_map(|asset| asset.bytes.iter().copied()).collect();
    format!("/graphiql/{}", &sha256_hex(&all)[..16])
});

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let mut head = String::new();
    let mut body = String::new();
    for asset in ASSETS {
        if asset.content_type == CSS {
            head.push_str(&format!("    <link rel=\"stylesheet\" href=\"{}/{}\">\n", *PREFIX, asset.name));
        } else {
            body.push_str(&format!("    <script src=\"{}/{}\"></script>\n", *PREFIX, asset.name));
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n  <head>\n    <meta charset=\"utf-8\">\n    \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n    \
         <title>latchkey GraphiQL</title>\n{head}  </head>\n  <body>\n    <div id=\"graphiql\">Loading GraphiQL…</div>\n{body}  </body>\n</html>\n"
    )
});

/// The GraphiQL page.
pub fn page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, PAGE.as_str()).into_response()
}

/// The routes of the page's files.
pub fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/graphiql/{hash}/{name}", get(asset))
}

async fn asset(Path((hash, name)): Path<(String, String)>) -> Response {
    let current = PREFIX.rsplit('/').next().unwrap_or_default();
    match ASSETS.iter().find(|asset| asset.name == name).filter(|_| hash == current) {
        Some(asset) => {
            let headers = [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ];
            (headers, asset.bytes).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
