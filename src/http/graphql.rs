//! GraphQL over HTTP, as its spec says, with the rules it keeps for legacy clients:
//!
//! - the answer's media type follows `Accept`: `application/json` when it is absent, `*/*`
//!   or `application/json`, `application/graphql-response+json` when the client prefers it;
//! - under `application/json` every well-formed request answers 200; under
//!   `application/graphql-response+json` a request error (a document that does not parse,
//!   validate or pass the gate; variables that do not coerce) answers 4xx, without `data`;
//! - whatever the media type, a refused token answers 401 with `WWW-Authenticate`, and a
//!   request that is not GraphQL over HTTP answers the status of its code.
//!
//! The document passes [`crate::graphql::document`]'s gate before the token is checked.

use async_graphql::{
    ErrorExtensions, ServerError,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use tracing::Instrument;

use super::{AppState, add_error_headers, add_refusal_headers, attach_idempotency_key, status_of};
use crate::{
    error::{Code, Error},
    graphiql,
    graphql::document::{self, DocumentLimits, Refusal},
    rate_limit::ClientAddr,
};

/// The media type of an answer, chosen from the request's `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/json`: legacy clients parse only this.
    Json,
    /// `application/graphql-response+json`.
    GraphqlResponse,
}

impl Media {
    /// The media type the client prefers: the highest `q`, the first listed on a tie.
    /// Anything else, and no `Accept` at all, gets `application/json`.
    pub fn negotiate(headers: &HeaderMap) -> Media {
        let mut best: Option<(f32, Media)> = None;
        for (media_range, q) in accepted(headers) {
            let media = match media_range.essence_str() {
                "application/graphql-response+json" => Media::GraphqlResponse,
                "application/json" | "application/*" | "*/*" => Media::Json,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, media));
            }
        }
        best.map_or(Media::Json, |(_, media)| media)
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::Json => "application/json; charset=utf-8",
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        })
    }
}

/// The media ranges of `Accept` with their `q` weights; unparseable entries are skipped.
fn accepted(headers: &HeaderMap) -> impl Iterator<Item = (mime::Mime, f32)> + '_ {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|item| item.trim().parse::<mime::Mime>().ok())
        .map(|media_range| {
            let q = media_range.get_param("q").and_then(|q| q.as_str().parse::<f32>().ok()).unwrap_or(1.0);
            (media_range, q)
        })
}

fn accepts_html(headers: &HeaderMap) -> bool {
    accepted(headers).any(|(media_range, q)| q > 0.0 && media_range.essence_str() == "text/html")
}

/// A GraphQL answer in the negotiated media type. `status` is forced for failures that
/// are not GraphQL results (a refused token, a request that is not GraphQL over HTTP);
/// otherwise the media type's rules decide.
fn answer(media: Media, response: &async_graphql::Response, forced: Option<Code>) -> Response {
    let codes = || response.errors.iter().filter_map(error_code);
    // An anonymous caller that reached a guarded field: the gateway's 401.
    let forced = forced.or_else(|| codes().find(|code| *code == Code::Unauthenticated));
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty());
    let status = match forced {
        Some(code) => status_of(code),
        None if request_error && media == Media::GraphqlResponse => {
            codes().next().map_or(StatusCode::BAD_REQUEST, status_of)
        }
        None => StatusCode::OK,
    };
    // A request error has no `data` at all, under either media type. Written straight to
    // bytes: no intermediate JSON tree.
    #[derive(serde::Serialize)]
    struct Errors<'a> {
        errors: &'a [ServerError],
    }
    let errors_only = || serde_json::to_vec(&Errors { errors: &response.errors });
    let body = match if request_error { errors_only() } else { serde_json::to_vec(response) } {
        Ok(body) => body,
        // Only a map with non-string keys fails, which a GraphQL answer never holds.
        Err(err) => {
            tracing::error!(error = %err, "cannot write a GraphQL answer");
            return failure(media, Code::Internal, "the answer could not be written");
        }
    };
    let mut http = (status, body).into_response();
    http.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
    if let Some(code) = forced {
        add_error_headers(code, http.headers_mut());
    }
    http
}

fn error_code(error: &ServerError) -> Option<Code> {
    let extensions = error.extensions.as_ref()?;
    let async_graphql::Value::String(name) = extensions.get("code")? else {
        return None;
    };
    Code::ALL.iter().copied().find(|code| code.as_str() == name)
}

fn coded(message: impl Into<String>, pos: Option<async_graphql::Pos>, code: Code) -> ServerError {
    let mut error = ServerError::new(message, pos);
    error.extensions =
        async_graphql::Error::new("").extend_with(|_, extensions| extensions.set("code", code.as_str())).extensions;
    error
}

/// A failure before execution, answered with its code's status.
pub fn failure(media: Media, code: Code, message: &str) -> Response {
    answer(media, &async_graphql::Response::from_errors(vec![coded(message, None, code)]), Some(code))
}

/// A request refused before execution for `err`, with its retry hint when it has one
/// (`extensions.retryAfter` in seconds, and the `Retry-After` header).
pub fn refusal(media: Media, err: &Error) -> Response {
    let code = err.code();
    let mut error = coded(err.public_message(), None, code);
    if let (Error::RateLimited { retry_after_secs }, Some(extensions)) = (err, error.extensions.as_mut()) {
        extensions.set("retryAfter", *retry_after_secs);
    }
    let mut response = answer(media, &async_graphql::Response::from_errors(vec![error]), Some(code));
    add_refusal_headers(err, response.headers_mut());
    response
}

/// Passes the request's document through the gate and keeps it parsed for execution.
fn admit(limits: &DocumentLimits, request: &mut async_graphql::Request) -> Result<(), Refusal> {
    request.set_parsed_query(document::admit(&request.query, limits)?);
    Ok(())
}

/// A document refused by the gate: a request error with the reason and its position.
fn refused(media: Media, refusal: &Refusal) -> Response {
    let code = match refusal {
        Refusal::TooComplex { .. } => Code::QueryTooComplex,
        Refusal::Syntax { .. } => Code::GraphqlParseFailed,
    };
    answer(media, &async_graphql::Response::from_errors(vec![coded(refusal.message(), refusal.pos(), code)]), None)
}

/// Runs an admitted request: authentication, the caller's rate limit, then execution.
async fn execute(
    state: &AppState,
    media: Media,
    headers: &HeaderMap,
    client: ClientAddr,
    mut request: async_graphql::Request,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let authenticated = state.authenticator.authenticate(authorization).await;
    // Charged as soon as the caller is known, refused tokens included, before execution.
    if let Err(limited) = state.rate_limiter.admit(authenticated.as_ref().ok(), client) {
        return refusal(media, &limited);
    }
    let principal = match authenticated {
        Ok(principal) => principal,
        Err(err) => return refusal(media, &err),
    };
    // A bad key refuses the whole request before anything runs: its sender counts on it.
    if let Err(err) = attach_idempotency_key(state, headers, &mut request) {
        return refusal(media, &err);
    }
    let span = tracing::info_span!(
        "graphql",
        operation = request.operation_name.as_deref().unwrap_or("-"),
        principal = principal.kind()
    );
    let mut response = state.schema.execute(request.data(principal)).instrument(span).await;
    response.errors.iter_mut().for_each(add_default_code);
    answer(media, &response, None)
}

/// Errors raised by async-graphql itself (validation, input coercion) get a code too, so
/// every error a client sees carries `extensions.code`.
fn add_default_code(error: &mut ServerError) {
    if error_code(error).is_none() {
        let code = if !error.path.is_empty() {
            Code::BadUserInput
        } else if is_bound_refusal(&error.message) {
            Code::QueryTooComplex
        } else {
            Code::GraphqlValidationFailed
        };
        error.extensions = coded("", None, code).extensions;
    }
}

/// async-graphql's own depth, complexity and recursion refusals, by their messages.
fn is_bound_refusal(message: &str) -> bool {
    ["Query is too complex", "Query is nested too deep", "recursion depth of the query", "number of directives"]
        .iter()
        .any(|known| message.contains(known))
}

/// `POST /graphql`: one GraphQL request as `application/json`. Batches and multipart
/// uploads are not accepted.
pub async fn post(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    // Already read whole, and refused over the size limit, by `http::read_body`.
    body: Bytes,
) -> Response {
    let media = Media::negotiate(&headers);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .is_some_and(|content_type| content_type.essence_str() == "application/json");
    if !is_json {
        return failure(media, Code::BadRequest, "send the request as Content-Type: application/json");
    }
    let mut request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) => request,
        Err(_) if body.trim_ascii_start().starts_with(b"[") => {
            return failure(media, Code::BadRequest, "send one operation per request; batches are not supported");
        }
        // serde's message may quote the body, which may hold credentials.
        Err(err) if err.is_syntax() || err.is_eof() => {
            return failure(media, Code::BadRequest, "the request body is not valid JSON");
        }
        Err(_) => {
            return failure(
                media,
                Code::BadRequest,
                "the body is not a GraphQL request: `query` must be a string, `operationName` a string, \
                 `variables` and `extensions` objects",
            );
        }
    };
    if request.query.trim().is_empty() {
        return failure(media, Code::BadRequest, "the request needs a `query`");
    }
    if let Err(refusal) = admit(&state.documents, &mut request) {
        return refused(media, &refusal);
    }
    execute(&state, media, &headers, client, request).await
}

/// `operationName` from a GET query string. async-graphql's query-string parser reads
/// `operation_name`, not the spec's `operationName`, so the name is read here.
#[derive(serde::Deserialize)]
struct OperationName {
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

/// `GET /graphql`: GraphiQL for a browser; queries (never mutations) from the query string.
pub async fn get(State(state): State<AppState>, client: ClientAddr, headers: HeaderMap, uri: Uri) -> Response {
    let media = Media::negotiate(&headers);
    let query_string = uri.query().unwrap_or_default();
    let mut request = match async_graphql::http::parse_query_string(query_string) {
        Ok(request) => request,
        Err(_) => {
            return failure(
                media,
                Code::BadRequest,
                "the query string is not a GraphQL request (variables must be JSON)",
            );
        }
    };
    if request.query.trim().is_empty() {
        if accepts_html(&headers) && state.graphiql {
            return graphiql::page();
        }
        return failure(media, Code::BadRequest, "a GET request needs a `query` parameter");
    }
    if let Ok(Query(OperationName { operation_name: Some(name) })) = Query::<OperationName>::try_from_uri(&uri) {
        request.operation_name = Some(name).filter(|name| !name.is_empty());
    }
    if let Err(refusal) = admit(&state.documents, &mut request) {
        return refused(media, &refusal);
    }
    let operation_name = request.operation_name.clone();
    if request.parsed_query().is_ok_and(|document| is_mutation(document, &operation_name)) {
        let mut response = failure(media, Code::MethodNotAllowed, "mutations must be sent with POST");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, media, &headers, client, request).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn legacy_and_modern_accept_headers_get_their_media_type() {
        assert_eq!(Media::negotiate(&HeaderMap::new()), Media::Json);
        for json in ["*/*", "application/json", "application/*", "text/html, */*;q=0.8", "image/png"] {
            assert_eq!(Media::negotiate(&accept(json)), Media::Json, "{json}");
        }
        for modern in [
            "application/graphql-response+json",
            "application/graphql-response+json, application/json",
            "application/json;q=0.9, application/graphql-response+json",
            "application/graphql-response+json;charset=utf-8, application/json;q=0.9, */*;q=0.1",
        ] {
            assert_eq!(Media::negotiate(&accept(modern)), Media::GraphqlResponse, "{modern}");
        }
        assert_eq!(Media::negotiate(&accept("application/json, application/graphql-response+json")), Media::Json);
        assert_eq!(Media::negotiate(&accept("application/graphql-response+json;q=0, */*")), Media::Json);
    }
}
