//! A token answer as latchkey keeps it, and its mapping into an environment's two
//! documents: the tokens, the expiry as a time, the granted scope, and whatever else the
//! provider sent (an `instance_url`, an `id_token`), each where the environment's schemas
//! put it.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use oauth2::TokenResponse as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{crypto::Sensitive, domain::catalog::Environment};

/// Every field of a token answer beyond RFC 6749's own.
#[derive(Deserialize, Serialize)]
pub(super) struct Extras {
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// Extras may hold secrets (`id_token`): only their names are printed.
impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.fields.keys()).finish()
    }
}

impl oauth2::ExtraTokenFields for Extras {}

/// A token answer. `Debug` shows no token.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// As the provider spelled it (`Bearer`, `bearer`, `bot`).
    pub token_type: String,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<u64>,
    /// `None` when the answer has no `scope`: RFC 6749 says the requested ones were granted.
    pub scope: Option<Vec<String>>,
    /// Every other field of the answer.
    pub extras: Sensitive<Map<String, Value>>,
    /// When the answer arrived, which `expires_in` counts from.
    pub received_at: DateTime<Utc>,
}

impl TokenSet {
    pub(super) fn from_answer(answer: super::TokenAnswer) -> Self {
        let extras = answer.extra_fields().fields.clone();
        Self {
            access_token: SecretString::from(answer.access_token().secret().clone()),
            token_type: answer.token_type().as_ref().to_owned(),
            refresh_token: answer.refresh_token().map(|token| SecretString::from(token.secret().clone())),
            expires_in: answer.expires_in().map(|lifetime| lifetime.as_secs()),
            scope: answer.scopes().map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect()),
            extras: Sensitive::new(extras),
            received_at: Utc::now(),
        }
    }

    /// When the access token expires, where the answer says.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let lifetime = Duration::try_seconds(i64::try_from(self.expires_in?).ok()?)?;
        self.received_at.checked_add_signed(lifetime)
    }
}

/// An authentication's documents made from a token answer. `Debug` shows the scopes only.
pub struct Mapped {
    pub credentials: Sensitive<Value>,
    pub user_data: Value,
    /// The granted scopes the environment knows (all of them, where it declares none):
    /// the authentication's `scopes`.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped").field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

/// The documents an earlier answer (or the end user) filled: what a new answer does not
/// restate is kept, such as the refresh token of a provider that does not rotate it.
pub struct Previous<'a> {
    pub credentials: &'a Value,
    pub user_data: &'a Value,
}

/// Fields of the answer that have a place of their own.
const STANDARD: &[&str] = &["access_token", "token_type", "refresh_token", "expires_in", "scope"];

#[derive(Debug, PartialEq, Eq)]
enum Place {
    Credentials,
    UserData,
    Nowhere,
}

fn declares(schema: &Value, key: &str) -> bool {
    schema["properties"].get(key).is_some()
}

fn closed(schema: &Value) -> bool {
    schema["additionalProperties"] == Value::Bool(false) || schema["unevaluatedProperties"] == Value::Bool(false)
}

/// Where a field of a token answer goes: into the credentials where their schema names it,
/// else into the user data where theirs names it (Salesforce's `instance_url`), else into
/// the credentials where their schema takes any field; otherwise it is left out, as the
/// schema would refuse it. `expires_in` is kept only where a schema names it: `expires_at`
/// says the same without going stale.
fn place(environment: &Environment, key: &str) -> Place {
    if declares(&environment.credentials_schema, key) {
        Place::Credentials
    } else if declares(&environment.user_data_schema, key) {
        Place::UserData
    } else if !closed(&environment.credentials_schema) && key != "expires_in" {
        Place::Credentials
    } else {
        Place::Nowhere
    }
}

/// Maps a token answer into `environment`'s documents: `access_token`, `refresh_token`,
/// `token_type`, `expires_at` (RFC 3339, from `expires_in`), `scope` (the granted scopes,
/// space-separated) and every other field of the answer, each placed by the schemas. With
/// `previous`, its fields stay unless the answer restates them; an expiry the answer does
/// not restate is dropped, as it no longer holds.
pub fn map(
    tokens: &TokenSet,
    environment: &Environment,
    requested: &[String],
    previous: Option<Previous<'_>>,
) -> Mapped {
    let object = |value: Option<&Value>| value.and_then(Value::as_object).cloned().unwrap_or_default();
    let mut credentials = object(previous.as_ref().map(|p| p.credentials));
    let mut user_data = object(previous.as_ref().map(|p| p.user_data));
    for stale in ["expires_at", "expires_in"] {
        credentials.remove(stale);
        user_data.remove(stale);
    }
    let granted = tokens.scope.clone().unwrap_or_else(|| requested.to_vec());
    let mut fields: Vec<(String, Value)> = vec![
        ("access_token".into(), tokens.access_token.expose_secret().into()),
        ("token_type".into(), tokens.token_type.clone().into()),
    ];
    if let Some(refresh_token) = &tokens.refresh_token {
        fields.push(("refresh_token".into(), refresh_token.expose_secret().into()));
    }
    if let Some(expires_in) = tokens.expires_in {
        fields.push(("expires_in".into(), expires_in.into()));
    }
    if let Some(expires_at) = tokens.expires_at() {
        fields.push(("expires_at".into(), expires_at.to_rfc3339_opts(SecondsFormat::Secs, true).into()));
    }
    if !granted.is_empty() {
        fields.push(("scope".into(), granted.join(" ").into()));
    }
    fields.extend(
        tokens
            .extras
            .expose()
            .iter()
            .filter(|(key, _)| !STANDARD.contains(&key.as_str()) && key.as_str() != "expires_at")
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    for (key, value) in fields {
        match place(environment, &key) {
            Place::Credentials => {
                credentials.insert(key, value);
            }
            Place::UserData => {
                user_data.insert(key, value);
            }
            Place::Nowhere => {}
        }
    }
    let scopes = if environment.scopes.is_empty() {
        granted
    } else {
        granted.into_iter().filter(|scope| environment.scopes.iter().any(|known| &known.scope == scope)).collect()
    };
    Mapped { credentials: Sensitive::new(Value::Object(credentials)), user_data: Value::Object(user_data), scopes }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        domain::catalog::{AuthenticationType, Scope},
        ids::{EnvironmentId, ServiceId},
    };

    fn environment(credentials_schema: Value, user_data_schema: Value, scopes: &[&str]) -> Environment {
        Environment {
            id: EnvironmentId::generate(),
            service_id: ServiceId::generate(),
            title: "Production".into(),
            authentication_type: AuthenticationType::Oauth2,
            credentials_schema,
            user_data_schema,
            scopes: scopes.iter().map(|scope| Scope { scope: (*scope).into(), description: String::new() }).collect(),
            oauth_app: None,
            builtin: false,
        }
    }

    fn answer(extras: Value, refresh: Option<&str>, scope: Option<&[&str]>) -> TokenSet {
        TokenSet {
            access_token: "at-1".to_owned().into(),
            token_type: "Bearer".into(),
            refresh_token: refresh.map(|token| token.to_owned().into()),
            expires_in: Some(3600),
            scope: scope.map(|scopes| scopes.iter().map(|scope| (*scope).to_owned()).collect()),
            extras: Sensitive::new(extras.as_object().cloned().unwrap_or_default()),
            received_at: DateTime::parse_from_rfc3339("2030-01-01T12:00:00Z").unwrap().with_timezone(&Utc),
        }
    }

    #[test]
    fn an_open_schema_takes_the_tokens_the_expiry_the_granted_scope_and_every_extra() {
        let env = environment(json!({}), json!({}), &[]);
        let tokens = answer(json!({"id_token": "jwt", "instance_url": "https://acme.example"}), Some("rt-1"), None);
        let mapped = map(&tokens, &env, &["read".into()], None);
        assert_eq!(
            mapped.credentials.expose(),
            &json!({
                "access_token": "at-1", "token_type": "Bearer", "refresh_token": "rt-1",
                "expires_at": "2030-01-01T13:00:00Z", "scope": "read",
                "id_token": "jwt", "instance_url": "https://acme.example"
            })
        );
        assert_eq!(mapped.user_data, json!({}));
        assert_eq!(mapped.scopes, ["read"]);
    }

    #[test]
    fn closed_schemas_place_each_field_where_it_is_named_and_leave_out_the_rest() {
        // Salesforce's shape: the instance URL is user data, the tokens credentials.
        let env = environment(
            json!({"properties": {"access_token": {}, "refresh_token": {}, "token_type": {}, "expires_at": {}, "scope": {}, "issued_at": {}},
                   "additionalProperties": false}),
            json!({"properties": {"instance_url": {}, "id": {}}, "additionalProperties": false}),
            &["api", "refresh_token"],
        );
        let tokens = answer(
            json!({"instance_url": "https://acme.my.salesforce.com", "issued_at": "1700000000000", "signature": "sig"}),
            Some("rt-1"),
            Some(&["api", "refresh_token", "web"]),
        );
        let mapped = map(&tokens, &env, &[], None);
        let credentials = mapped.credentials.expose();
        assert_eq!(credentials["issued_at"], "1700000000000");
        assert_eq!(credentials["scope"], "api refresh_token web", "the scope as granted");
        assert!(credentials.get("signature").is_none() && credentials.get("expires_in").is_none());
        assert_eq!(mapped.user_data, json!({"instance_url": "https://acme.my.salesforce.com"}));
        assert_eq!(mapped.scopes, ["api", "refresh_token"], "only scopes the environment knows");
    }

    #[test]
    fn a_refresh_keeps_what_the_answer_does_not_restate_and_drops_a_stale_expiry() {
        let env = environment(json!({}), json!({"properties": {"instance_url": {}}}), &[]);
        let before = json!({"access_token": "old", "refresh_token": "rt-keep", "expires_at": "2029-01-01T00:00:00Z", "team": "t1"});
        let user_data = json!({"instance_url": "https://acme.example"});
        let mut tokens = answer(json!({}), None, Some(&["read"]));
        tokens.expires_in = None;
        let mapped = map(&tokens, &env, &[], Some(Previous { credentials: &before, user_data: &user_data }));
        let credentials = mapped.credentials.expose();
        assert_eq!(credentials["access_token"], "at-1");
        assert_eq!(credentials["refresh_token"], "rt-keep", "no new refresh token: the old one stays");
        assert_eq!(credentials["team"], "t1");
        assert!(credentials.get("expires_at").is_none(), "an expiry the answer does not restate is unknown");
        assert_eq!(mapped.user_data, user_data);

        let rotated = answer(json!({}), Some("rt-new"), None);
        let mapped = map(&rotated, &env, &[], Some(Previous { credentials: &before, user_data: &user_data }));
        assert_eq!(mapped.credentials.expose()["refresh_token"], "rt-new");
        assert_eq!(mapped.credentials.expose()["expires_at"], "2030-01-01T13:00:00Z");
    }

    #[test]
    fn debug_output_holds_no_token() {
        let tokens = answer(json!({"id_token": "jwt-secret"}), Some("rt-secret"), None);
        let env = environment(json!({}), json!({}), &[]);
        let printed = format!("{tokens:?} {:?}", map(&tokens, &env, &[], None));
        for secret in ["at-1", "rt-secret", "jwt-secret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
