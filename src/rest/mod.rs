//! The `/core/v1` REST endpoints, over the same use cases as GraphQL. JSON in and out;
//! errors are `{"message", "code"}` with the HTTP status of their code.

mod authentications;
mod catalog;

use axum::{
    Extension, Json, Router,
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    handler::Handler,
    http::{Method, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{
    auth::{Access, Principal},
    domain::idempotency::Idempotency,
    error::Error,
    http::AppState,
    rate_limit::ClientAddr,
};

/// One endpoint under `/core/v1`: the router is built from these, and the access matrix
/// test drives every one of them, so neither can miss an endpoint.
pub struct Route {
    pub method: Method,
    /// The path under `/core/v1`, with `{parameters}` as the router matches them.
    pub path: &'static str,
    /// The token the endpoint takes.
    pub access: Access,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    // The handler answers exactly the method the table names.
    let filter = MethodFilter::try_from(method.clone()).unwrap_or_else(|_| unreachable!("a standard method"));
    Route { method, path, access, handler: on(filter, handler) }
}

/// Every `/core/v1` endpoint.
pub fn routes() -> Vec<Route> {
    use Access::{MasterOrUser, User};
    vec![
        route(Method::POST, "/authentications", MasterOrUser, authentications::create),
        route(Method::GET, "/authentications/{id}", MasterOrUser, authentications::get),
        route(Method::PUT, "/authentications/{id}", MasterOrUser, authentications::replace),
        route(Method::DELETE, "/authentications/{id}", MasterOrUser, authentications::remove),
        route(Method::GET, "/authentications/{id}/full", User, authentications::full),
        route(Method::POST, "/authentications/{id}/refresh", MasterOrUser, authentications::refresh),
        route(Method::GET, "/connectors", MasterOrUser, catalog::connectors),
        route(Method::GET, "/services/{name}/versions/{version}/environments", MasterOrUser, catalog::environments),
    ]
}

pub fn router() -> Router<AppState> {
    // Each route carries its token rule, which [`Caller`] enforces before anything else
    // is read from the request.
    routes()
        .into_iter()
        .fold(Router::new(), |router, route| router.route(route.path, route.handler.layer(Extension(route.access))))
}

/// A use-case error as a REST response.
pub struct RestError(Error);

impl From<Error> for RestError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = crate::http::status_of(code);
        let mut response =
            (status, Json(json!({"message": self.0.public_message(), "code": code.as_str()}))).into_response();
        crate::http::add_refusal_headers(&self.0, response.headers_mut());
        response
    }
}

pub type RestResult<T> = Result<T, RestError>;

/// The caller of a REST request, resolved from its bearer token and admitted by its
/// route's token rule (from [`routes`]); a handler outside the route list gets no caller.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let access = parts
            .extensions
            .get::<Access>()
            .copied()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("a REST handler outside the route list")))?;
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let authenticated = state.authenticator.authenticate(authorization).await;
        let Ok(client) = ClientAddr::from_request_parts(parts, state).await;
        state.rate_limiter.admit(authenticated.as_ref().ok(), client)?;
        let principal = authenticated?;
        principal.check(access)?;
        Ok(Caller(principal))
    }
}

/// The request's `Idempotency-Key`, for the creates.
pub struct IdempotencyKey(pub Option<Idempotency>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKey(crate::http::idempotency_key(state, &parts.headers)?))
    }
}

/// A JSON body whose refusal is a `BAD_USER_INPUT` error that never echoes the body
/// (it may hold credentials).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let message = match rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        "the body must be sent as Content-Type: application/json"
                    }
                    JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
                    JsonRejection::JsonDataError(_) => {
                        "the body does not have the expected fields and types (see the API documentation)"
                    }
                    _ => "the body could not be read",
                };
                Err(Error::bad_input(message).into())
            }
        }
    }
}
