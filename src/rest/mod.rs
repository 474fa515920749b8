//! The `/core/v1` REST endpoints, over the same use cases as GraphQL. JSON in and out;
//! errors are `{"message", "code"}` with the HTTP status of their code.

mod authentications;
mod catalog;

use axum::{
    Json, Router,
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{auth::Principal, domain::idempotency::Idempotency, error::Error, http::AppState, rate_limit::ClientAddr};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authentications", axum::routing::post(authentications::create))
        .route(
            "/authentications/{id}",
            get(authentications::get).put(authentications::replace).delete(authentications::remove),
        )
        .route("/authentications/{id}/full", get(authentications::full))
        .route("/connectors", get(catalog::connectors))
        .route("/services/{name}/versions/{version}/environments", get(catalog::environments))
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

/// The caller of a REST request, resolved from its bearer token.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let authenticated = state.authenticator.authenticate(authorization).await;
        let Ok(client) = ClientAddr::from_request_parts(parts, state).await;
        state.rate_limiter.admit(authenticated.as_ref().ok(), client)?;
        Ok(Caller(authenticated?))
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
