//! The HTTP surface: `/graphql` (POST, GET, GraphiQL; see [`graphql`]), `/core/v1`, health
//! checks, and the layers that bound every request (body size, time, request id, tracing).

use std::{sync::Arc, time::Duration};

mod graphql;

use axum::{
    Json, Router,
    body::Body,
    extract::{FromRef, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::{
    auth::Authenticator,
    crypto::KeyringHandle,
    domain::idempotency::{Fingerprinter, Idempotency, IdempotencyKey},
    error::{Code, Error},
    graphiql,
    graphql::{LatchkeySchema, document::DocumentLimits},
    rate_limit::RateLimiter,
};

/// Largest request body accepted, checked before parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest a request may take before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub schema: LatchkeySchema,
    pub authenticator: Authenticator,
    /// The raw connection, which filters nothing: REST handlers hand it only to a use case
    /// in [`crate::domain`] together with the caller's scope.
    pub unscoped_db: DatabaseConnection,
    pub keyring: Arc<KeyringHandle>,
    /// The bounds every GraphQL document passes before anything else happens to it.
    pub documents: Arc<DocumentLimits>,
    pub rate_limiter: RateLimiter,
    /// GraphiQL is served only where introspection is on; without it the page is useless.
    pub graphiql: bool,
    pub fingerprinter: Fingerprinter,
    pub pages: Arc<crate::pages::PagesConfig>,
    /// Calls to other servers (token URLs, webhook endpoints), pinned to allowed addresses.
    pub outbound: crate::outbound::Outbound,
    /// Keeps OAuth credentials alive: lazily, when forced, and in the background.
    pub refresher: crate::domain::refresh::Refresher,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.authenticator.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    // Path only: query strings and headers may carry secrets.
                    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(middleware::from_fn(read_body));

    let graphiql = state.graphiql;
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .merge(if graphiql { graphiql::assets() } else { Router::new() })
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/core/v1", crate::rest::router())
        .merge(crate::pages::router())
        .with_state(state)
        .layer(layers)
}

/// The HTTP status of an answer carrying `code`, from the one table in [`Code`].
pub fn status_of(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Headers an error answer carries because of its code, on every transport.
pub fn add_error_headers(code: Code, headers: &mut HeaderMap) {
    if code == Code::Unauthenticated {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"latchkey\""));
    }
}

/// Headers an answer refusing `err` carries, on every transport: those of its code, and
/// the retry hint of a rate limit.
pub fn add_refusal_headers(err: &Error, headers: &mut HeaderMap) {
    add_error_headers(err.code(), headers);
    if let Error::RateLimited { retry_after_secs } = err {
        headers.insert(header::RETRY_AFTER, (*retry_after_secs).into());
    }
}

/// Reads the whole body before any handler, up to [`MAX_BODY_BYTES`]: a body over the
/// limit is refused with 413 whether it declares its length or comes in chunks. Inside
/// the timeout, so a body sent slowly ends with 408.
async fn read_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let refuse = |err: Error| {
        if parts.uri.path() == "/graphql" {
            graphql::refusal(graphql::Media::negotiate(&parts.headers), &err)
        } else {
            crate::rest::RestError::from(err).into_response()
        }
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return refuse(Error::PayloadTooLarge { limit_bytes: MAX_BODY_BYTES });
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => next.run(Request::from_parts(parts, Body::from(collected.to_bytes()))).await,
        Err(err) if err.is::<LengthLimitError>() => refuse(Error::PayloadTooLarge { limit_bytes: MAX_BODY_BYTES }),
        Err(_) => refuse(Error::bad_input("the request body could not be read")),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.unscoped_db.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(err) => {
            tracing::warn!(error = %Error::from(err), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Idempotency-Key

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The request's `Idempotency-Key` header, for the creates to record. A malformed or
/// repeated header is refused rather than ignored: a client that sent one counts on it.
pub fn idempotency_key(state: &AppState, headers: &HeaderMap) -> Result<Option<Idempotency>, Error> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::bad_input("send at most one Idempotency-Key header"));
    }
    // Bytes outside visible ASCII fail `to_str`; the empty text then fails the key's own check.
    let key = IdempotencyKey::parse(value.to_str().unwrap_or_default())?;
    Ok(Some(Idempotency::new(key, state.fingerprinter.clone())))
}

/// Hands the key to the GraphQL create mutations.
pub(crate) fn attach_idempotency_key(
    state: &AppState,
    headers: &HeaderMap,
    request: &mut async_graphql::Request,
) -> Result<(), Error> {
    if let Some(idempotency) = idempotency_key(state, headers)? {
        request.data.insert(idempotency);
    }
    Ok(())
}
