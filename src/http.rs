//! The HTTP surface: `/graphql` (POST, GET, GraphiQL), health checks, and the layers that
//! bound every request (body size, time, request id, tracing).

use std::{sync::Arc, time::Duration};

use async_graphql::{
    ErrorExtensions, ServerError,
    http::GraphiQLSource,
    parser::types::{DocumentOperations, OperationType},
};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Json, Router,
    extract::{FromRef, Query, Request, State},
    http::{HeaderMap, HeaderName, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::{Instrument, Level};

use crate::{
    auth::{Authenticator, Principal},
    crypto::KeyringHandle,
    domain::idempotency::{Fingerprinter, Idempotency, IdempotencyKey},
    error::{Code, Error},
    graphql::LatchkeySchema,
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
    pub db: DatabaseConnection,
    pub keyring: Arc<KeyringHandle>,
    pub fingerprinter: Fingerprinter,
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
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));

    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/core/v1", crate::rest::router())
        .with_state(state)
        .layer(layers)
}

/// A transport-level GraphQL error body, for failures before execution.
fn graphql_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"errors": [{"message": message, "extensions": {"code": code}}]}))).into_response()
}

/// Refusal of a request body that is not a GraphQL request.
pub struct BadGraphqlRequest(async_graphql::ParseRequestError);

impl From<async_graphql::ParseRequestError> for BadGraphqlRequest {
    fn from(err: async_graphql::ParseRequestError) -> Self {
        Self(err)
    }
}

impl IntoResponse for BadGraphqlRequest {
    fn into_response(self) -> Response {
        match self.0 {
            async_graphql::ParseRequestError::PayloadTooLarge => {
                graphql_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "request body too large")
            }
            err => graphql_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &format!("invalid GraphQL request: {err}")),
        }
    }
}

async fn principal_of(authenticator: &Authenticator, headers: &HeaderMap) -> Result<Principal, Response> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    authenticator.authenticate(authorization).await.map_err(|err| {
        let status =
            if err.code() == Code::Internal { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::UNAUTHORIZED };
        graphql_error(status, err.code().as_str(), &err.public_message())
    })
}

async fn execute(state: &AppState, headers: &HeaderMap, mut request: async_graphql::Request) -> Response {
    let principal = match principal_of(&state.authenticator, headers).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    // A bad key refuses the whole request before anything runs: its sender counts on it.
    if let Err(err) = attach_idempotency_key(state, headers, &mut request) {
        return graphql_error(StatusCode::BAD_REQUEST, err.code().as_str(), &err.public_message());
    }
    let span = tracing::info_span!(
        "graphql",
        operation = request.operation_name.as_deref().unwrap_or("-"),
        principal = principal.kind()
    );
    let mut response = state.schema.execute(request.data(principal)).instrument(span).await;
    response.errors.iter_mut().for_each(add_default_code);
    GraphQLResponse::from(response).into_response()
}

/// Errors raised by async-graphql itself (syntax, validation, input coercion) get a code
/// too, so every error a client sees carries `extensions.code`.
fn add_default_code(error: &mut ServerError) {
    let has_code = error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some());
    if !has_code {
        let code = if error.path.is_empty() { "GRAPHQL_VALIDATION_FAILED" } else { Code::BadUserInput.as_str() };
        let extended = async_graphql::Error::new(error.message.clone()).extend_with(|_, ext| ext.set("code", code));
        error.extensions = extended.extensions;
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest<BadGraphqlRequest>,
) -> Response {
    execute(&state, &headers, request.into_inner()).await
}

/// GET serves GraphiQL to a browser and runs queries (never mutations) from the query string.
async fn graphql_get(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let query_string = request.uri().query().unwrap_or_default();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !query_string.contains("query=") {
        if wants_html {
            return Html(GraphiQLSource::build().endpoint("/graphql").title("latchkey").finish()).into_response();
        }
        return graphql_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "a GET request needs a `query` parameter");
    }
    let graphql_request = match get_request(request.uri()) {
        Ok(request) => request,
        Err(message) => return graphql_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message),
    };
    if is_mutation(&graphql_request) {
        let mut response =
            graphql_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "mutations must be sent with POST");
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &headers, graphql_request).await
}

/// The parameters of a GraphQL request sent with GET (GraphQL over HTTP).
#[derive(serde::Deserialize)]
struct GetParams {
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    /// JSON text.
    variables: Option<String>,
}

fn get_request(uri: &axum::http::Uri) -> Result<async_graphql::Request, &'static str> {
    let Query(params) = Query::<GetParams>::try_from_uri(uri).map_err(|_| "invalid query string")?;
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name.filter(|name| !name.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables.filter(|v| !v.is_empty()) {
        let json = serde_json::from_str(&variables).map_err(|_| "`variables` must be a JSON object")?;
        request = request.variables(async_graphql::Variables::from_json(json));
    }
    Ok(request)
}

/// Whether the operation the request would run is a mutation. A document that does not
/// parse is left to execution, which reports the syntax error.
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let is_mutation = |ty: OperationType| ty == OperationType::Mutation;
    match document.operations {
        DocumentOperations::Single(operation) => is_mutation(operation.node.ty),
        DocumentOperations::Multiple(operations) => match &request.operation_name {
            Some(name) => operations.get(name.as_str()).is_some_and(|op| is_mutation(op.node.ty)),
            None => operations.values().any(|op| is_mutation(op.node.ty)),
        },
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
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
fn attach_idempotency_key(
    state: &AppState,
    headers: &HeaderMap,
    request: &mut async_graphql::Request,
) -> Result<(), Error> {
    if let Some(idempotency) = idempotency_key(state, headers)? {
        request.data.insert(idempotency);
    }
    Ok(())
}
