//! The HTTP surface: `/graphql` (POST, GET, GraphiQL), health checks, and the layers that
//! bound every request (body size, time, request id, tracing).

use std::{sync::Arc, time::Duration};

use async_graphql::{
    ErrorExtensions, ServerError,
    http::GraphiQLSource,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
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
    error::{Code, Error},
    graphql::{
        LatchkeySchema,
        document::{self, DocumentLimits, Refusal},
    },
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
    /// The bounds every GraphQL document passes before anything else happens to it.
    pub documents: Arc<DocumentLimits>,
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

/// The HTTP status of an answer carrying `code`, from the one table in [`Code`].
pub fn status_of(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A transport-level GraphQL error body, for failures before execution.
fn graphql_error(code: Code, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "extensions": {"code": code.as_str()}}]});
    (status_of(code), Json(body)).into_response()
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
                graphql_error(Code::PayloadTooLarge, "request body too large")
            }
            async_graphql::ParseRequestError::UnsupportedBatch => {
                graphql_error(Code::BadRequest, "send one operation per request; batches are not supported")
            }
            err => graphql_error(Code::BadRequest, &format!("invalid GraphQL request: {err}")),
        }
    }
}

async fn principal_of(authenticator: &Authenticator, headers: &HeaderMap) -> Result<Principal, Response> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    authenticator.authenticate(authorization).await.map_err(|err| graphql_error(err.code(), &err.public_message()))
}

/// Passes the request's document through the gate and keeps it parsed for execution.
fn admit(limits: &DocumentLimits, request: &mut async_graphql::Request) -> Result<(), Refusal> {
    request.set_parsed_query(document::admit(&request.query, limits)?);
    Ok(())
}

/// A document refused by the gate: a GraphQL response with the reason, its position, and
/// no data.
fn refused(refusal: &Refusal) -> Response {
    let code = match refusal {
        Refusal::TooComplex { .. } => Code::QueryTooComplex,
        Refusal::Syntax { .. } => Code::GraphqlParseFailed,
    };
    let mut error = ServerError::new(refusal.message(), refusal.pos());
    error.extensions = async_graphql::Error::new("").extend_with(|_, ext| ext.set("code", code.as_str())).extensions;
    GraphQLResponse::from(async_graphql::Response::from_errors(vec![error])).into_response()
}

/// Runs an admitted request: authentication, then execution.
async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let principal = match principal_of(&state.authenticator, headers).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let span = tracing::info_span!(
        "graphql",
        operation = request.operation_name.as_deref().unwrap_or("-"),
        principal = principal.kind()
    );
    let mut response = state.schema.execute(request.data(principal)).instrument(span).await;
    response.errors.iter_mut().for_each(add_default_code);
    GraphQLResponse::from(response).into_response()
}

/// Errors raised by async-graphql itself (validation, input coercion) get a code too, so
/// every error a client sees carries `extensions.code`.
fn add_default_code(error: &mut ServerError) {
    let has_code = error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some());
    if !has_code {
        let code = if !error.path.is_empty() {
            Code::BadUserInput
        } else if is_bound_refusal(&error.message) {
            Code::QueryTooComplex
        } else {
            Code::GraphqlValidationFailed
        };
        let extended =
            async_graphql::Error::new(error.message.clone()).extend_with(|_, ext| ext.set("code", code.as_str()));
        error.extensions = extended.extensions;
    }
}

/// async-graphql's own depth, complexity and recursion refusals, by their messages.
fn is_bound_refusal(message: &str) -> bool {
    ["Query is too complex", "Query is nested too deep", "recursion depth of the query", "number of directives"]
        .iter()
        .any(|known| message.contains(known))
}

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest<BadGraphqlRequest>,
) -> Response {
    let mut request = request.into_inner();
    if let Err(refusal) = admit(&state.documents, &mut request) {
        return refused(&refusal);
    }
    execute(&state, &headers, request).await
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
        return graphql_error(Code::BadRequest, "a GET request needs a `query` parameter");
    }
    let mut graphql_request = match get_request(request.uri()) {
        Ok(request) => request,
        Err(message) => return graphql_error(Code::BadRequest, message),
    };
    if let Err(refusal) = admit(&state.documents, &mut graphql_request) {
        return refused(&refusal);
    }
    let operation_name = graphql_request.operation_name.clone();
    if graphql_request.parsed_query().is_ok_and(|document| is_mutation(document, &operation_name)) {
        let mut response = graphql_error(Code::MethodNotAllowed, "mutations must be sent with POST");
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

/// Whether the operation the request would run is a mutation.
fn is_mutation(document: &ExecutableDocument, operation_name: &Option<String>) -> bool {
    let is_mutation = |ty: OperationType| ty == OperationType::Mutation;
    match &document.operations {
        DocumentOperations::Single(operation) => is_mutation(operation.node.ty),
        DocumentOperations::Multiple(operations) => match operation_name {
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
