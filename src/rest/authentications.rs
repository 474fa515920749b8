//! `/core/v1/authentications`: create, read metadata, replace, delete, and the full read.
//!
//! Bodies take the current names `credentials` and `userData` or the older generation's
//! `data` and `formData` (one name of each pair). As in GraphQL, a string holding JSON
//! text stands for that JSON (`"data": "{\"region\":\"us-east-1\"}"`).

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, IdempotencyKey, RestResult};
use crate::{
    domain::{
        authentications::{self, Authentication, NewAuthentication, Replacement},
        json_text::JsonText,
        refresh::Outcome,
    },
    error::Error,
    http::AppState,
    ids::{AuthenticationId, EnvironmentId},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    name: String,
    service_environment_id: String,
    user_data: Option<Value>,
    form_data: Option<Value>,
    credentials: Option<Value>,
    data: Option<Value>,
    scopes: Option<Vec<String>>,
    hidden: Option<bool>,
    custom_fields: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceBody {
    name: String,
    credentials: Option<Value>,
    data: Option<Value>,
    user_data: Option<Value>,
    form_data: Option<Value>,
    scopes: Option<Vec<String>>,
    custom_fields: Option<Value>,
    /// Accepted only when it names the current environment: it cannot change.
    service_environment_id: Option<String>,
}

/// The value of a field that has a current and an older name; giving both is refused
/// rather than one silently winning.
fn either(current: (&str, Option<Value>), older: (&str, Option<Value>)) -> Result<Option<Value>, Error> {
    let value = match (current, older) {
        ((current, Some(_)), (older, Some(_))) => {
            return Err(Error::bad_input(format!("give {current} or {older} (its older name), not both")));
        }
        ((_, value), (_, None)) | ((_, None), (_, value)) => value,
    };
    value
        .map(|value| match value {
            Value::String(text) => JsonText::parse(&text).map(JsonText::into_value),
            value => Ok(value),
        })
        .transpose()
}

/// The metadata shape: never a secret. `status` and `expiresAt` (ext) say whether the
/// credential is usable and until when.
fn metadata(authentication: &Authentication) -> Value {
    json!({
        "id": authentication.id.to_string(),
        "name": authentication.name,
        "serviceEnvironmentId": authentication.environment.id.to_string(),
        "scopes": authentication.scopes,
        "status": authentication.status.as_str(),
        "expiresAt": authentication.expires_at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    })
}

pub async fn create(
    State(state): State<AppState>,
    Caller(principal): Caller,
    IdempotencyKey(idempotency): IdempotencyKey,
    Body(body): Body<CreateBody>,
) -> RestResult<(StatusCode, Json<Value>)> {
    let caller = principal.caller()?;
    let credentials = either(("credentials", body.credentials), ("data", body.data))?;
    let new = NewAuthentication {
        name: body.name,
        service_id: None,
        environment_id: EnvironmentId::parse(&body.service_environment_id)?,
        credentials: credentials.unwrap_or_else(|| json!({})),
        user_data: either(("userData", body.user_data), ("formData", body.form_data))?,
        scopes: body.scopes,
        hidden: body.hidden,
        custom_fields: body.custom_fields,
    };
    let created = authentications::create(
        &state.unscoped_db,
        &state.keyring.current(),
        state.refresher.timing(),
        caller,
        new,
        idempotency.as_ref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": created.id.to_string()}))))
}

pub async fn get(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let authentication =
        authentications::get(&state.unscoped_db, principal.caller()?, AuthenticationId::parse(&id)?).await?;
    Ok(Json(metadata(&authentication)))
}

pub async fn replace(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    Body(body): Body<ReplaceBody>,
) -> RestResult<Json<Value>> {
    let caller = principal.caller()?;
    let id = AuthenticationId::parse(&id)?;
    let credentials = either(("credentials", body.credentials), ("data", body.data))?
        .ok_or_else(|| Error::bad_input("credentials (or data) is required: a replacement is complete"))?;
    let user_data = either(("userData", body.user_data), ("formData", body.form_data))?;
    if let Some(environment) = &body.service_environment_id {
        let current = authentications::get(&state.unscoped_db, caller, id).await?;
        if EnvironmentId::parse(environment)? != current.environment.id {
            return Err(Error::bad_input("serviceEnvironmentId cannot change; create a new authentication").into());
        }
    }
    let replacement =
        Replacement { name: body.name, credentials, user_data, scopes: body.scopes, custom_fields: body.custom_fields };
    let updated = authentications::replace(
        &state.unscoped_db,
        &state.keyring.current(),
        state.refresher.timing(),
        caller,
        id,
        replacement,
    )
    .await?;
    Ok(Json(metadata(&updated)))
}

pub async fn remove(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    authentications::remove(&state.unscoped_db, principal.caller()?, AuthenticationId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn full(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let scope = principal.user()?;
    let full = authentications::read_full(
        &state.unscoped_db,
        &state.keyring,
        &state.refresher,
        scope,
        AuthenticationId::parse(&id)?,
    )
    .await?;
    let mut body = metadata(&full.authentication);
    body["userData"] = full.user_data.expose().clone();
    body["credentials"] = full.credentials.expose().clone();
    Ok(Json(body))
}

/// (ext) Refreshes an OAuth 2.0 authentication now; the metadata after it, with the
/// `outcome` (`REFRESHED`, `NOT_REFRESHABLE`, `UNAVAILABLE`, `REFUSED`, `FAILED`,
/// `PENDING`) and the provider's `error` code when it refused.
pub async fn refresh(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> RestResult<Json<Value>> {
    let (authentication, outcome) = authentications::refresh(
        &state.unscoped_db,
        &state.refresher,
        principal.caller()?,
        AuthenticationId::parse(&id)?,
    )
    .await?;
    let (outcome, error) = match outcome {
        Outcome::Refreshed => ("REFRESHED", None),
        Outcome::NotRefreshable => ("NOT_REFRESHABLE", None),
        Outcome::Unavailable => ("UNAVAILABLE", None),
        Outcome::Refused(error) => ("REFUSED", Some(error)),
        Outcome::Failed => ("FAILED", None),
        Outcome::Pending => ("PENDING", None),
    };
    let mut body = metadata(&authentication);
    body["outcome"] = json!(outcome);
    body["error"] = json!(error);
    Ok(Json(body))
}
