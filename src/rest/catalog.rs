//! `GET /core/v1/connectors` and `GET /core/v1/services/{name}/versions/{version}/environments`.

use axum::{
    Json,
    extract::{Path, State},
};
use serde_json::{Value, json};

use super::{Caller, RestResult};
use crate::{domain::catalog, error::Error, http::AppState};

pub async fn connectors(State(state): State<AppState>, Caller(principal): Caller) -> RestResult<Json<Value>> {
    let services = catalog::all_services(&state.db, principal.org_id()?).await?;
    let elements: Vec<Value> = services
        .into_iter()
        .map(|service| {
            json!({
                "name": service.name,
                "version": service.version,
                "title": service.title,
                "description": service.description,
                "service": {"id": service.id.to_string(), "name": service.name, "version": service.version},
            })
        })
        .collect();
    Ok(Json(json!({ "elements": elements })))
}

pub async fn environments(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path((name, version)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    let org_id = principal.org_id()?;
    let version: i32 = version.parse().map_err(|_| Error::bad_input("the version must be a whole number"))?;
    let service = catalog::service_by_name(&state.db, org_id, &name, version).await?;
    let elements: Vec<Value> = catalog::environments(&state.db, org_id, service.id)
        .await?
        .into_iter()
        .map(|environment| {
            json!({
                "id": environment.id.to_string(),
                "title": environment.title,
                "authenticationType": environment.authentication_type.as_str(),
                // The older generation's names, for clients written against them.
                "formDataSchema": environment.user_data_schema,
                "dataSchema": environment.credentials_schema,
                "userDataSchema": environment.user_data_schema,
                "credentialsSchema": environment.credentials_schema,
                "scopes": environment.scopes,
            })
        })
        .collect();
    Ok(Json(json!({ "elements": elements })))
}
