//! JSON Schema checks for credentials and user data. Messages name the JSON pointer and
//! the rule broken, never the value: the value may be a secret.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use jsonschema::{Validator, error::ValidationErrorKind};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest credentials or user-data document accepted, serialized.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// At most this many violations are reported at once.
const MAX_REPORTED: usize = 20;

/// Compiles a schema given by a partner (custom environments) or the catalog.
pub fn compile(field: &str, schema: &Value) -> Result<Validator> {
    if !schema.is_object() {
        return Err(Error::bad_input(format!("{field} must be a JSON Schema object")));
    }
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|err| Error::bad_input(format!("{field} is not a valid JSON Schema: {}", err.kind().keyword())))
}

/// Compiled validators of stored schemas, by the SHA-256 of the schema's JSON text. A
/// schema that changes has another key, so a changed environment is checked against its
/// new schema at once; an entry is only ever a function of its key, so the cache can be
/// shared by everything in the process.
static COMPILED: LazyLock<Mutex<HashMap<[u8; 32], Arc<Validator>>>> = LazyLock::new(Mutex::default);
/// Far more schemas than a catalog holds; beyond it the cache starts over.
const MAX_COMPILED: usize = 1024;

/// The validator of a stored `schema`, compiled once per distinct schema: compiling
/// (regular expressions included) costs far more than validating.
fn compiled(field: &str, schema: &Value) -> Result<Arc<Validator>> {
    let text = serde_json::to_vec(schema).map_err(Error::internal)?;
    let key: [u8; 32] = Sha256::digest(&text).into();
    let cached = COMPILED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key).cloned();
    if let Some(validator) = cached {
        return Ok(validator);
    }
    // A stored schema that no longer compiles is our fault, not the caller's.
    let validator =
        Arc::new(compile(field, schema).map_err(|err| Error::internal(anyhow::anyhow!("stored schema: {err}")))?);
    let mut cache = COMPILED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if cache.len() >= MAX_COMPILED {
        cache.clear();
    }
    cache.insert(key, validator.clone());
    Ok(validator)
}

/// One broken rule: where (a JSON pointer) and what, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where the rule failed; for a missing property, its parent.
    pub pointer: String,
    /// The missing property, for a `required` rule.
    pub missing: Option<String>,
    pub message: String,
}

impl Violation {
    /// The top-level property a form would show this violation on, if any.
    pub fn property(&self) -> Option<&str> {
        match (&self.missing, self.pointer.strip_prefix('/')) {
            (Some(missing), None) => Some(missing),
            (_, Some(path)) => path.split('/').next(),
            (None, None) => None,
        }
    }
}

/// Every violation of `schema` by `instance` (at most 20), for showing on form fields.
pub fn violations(field: &str, schema: &Value, instance: &Value) -> Result<Vec<Violation>> {
    let size = serde_json::to_vec(instance).map_err(Error::internal)?.len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(Error::bad_input(format!("{field} must be at most {MAX_DOCUMENT_BYTES} bytes of JSON")));
    }
    let validator = compiled(field, schema)?;
    Ok(validator
        .iter_errors(instance)
        .take(MAX_REPORTED)
        .map(|error| {
            let missing = match error.kind() {
                ValidationErrorKind::Required { property: Value::String(property) } => Some(property.clone()),
                _ => None,
            };
            Violation { pointer: error.instance_path().to_string(), missing, message: describe(error.kind()) }
        })
        .collect())
}

/// Checks `instance` against `schema`, reporting every violation with its pointer.
pub fn validate(field: &str, schema: &Value, instance: &Value) -> Result<()> {
    let violations = violations(field, schema, instance)?;
    if violations.is_empty() {
        return Ok(());
    }
    let described: Vec<String> =
        violations.iter().map(|violation| format!("{field}{}: {}", violation.pointer, violation.message)).collect();
    Err(Error::bad_input(format!("{field} does not match the schema: {}", described.join("; "))))
}

fn describe(kind: &ValidationErrorKind) -> String {
    match kind {
        ValidationErrorKind::Required { property } => format!("required property {property} is missing"),
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!("unexpected properties {}", unexpected.join(", "))
        }
        ValidationErrorKind::Type { .. } => "has the wrong type".to_owned(),
        ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters"),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters"),
        ValidationErrorKind::Pattern { pattern } => format!("does not match the pattern {pattern}"),
        ValidationErrorKind::Format { format } => format!("is not a valid {format}"),
        ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. } => {
            "is not one of the allowed values".to_owned()
        }
        other => format!("fails the `{}` rule", other.keyword()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "api_token": {"type": "string", "minLength": 10},
                "subdomain": {"type": "string", "pattern": "^[a-z0-9-]+$"}
            },
            "required": ["api_token", "subdomain"],
            "additionalProperties": false
        })
    }

    #[test]
    fn a_changed_schema_is_checked_as_changed_at_once() {
        let instance = json!({"api_token": "secret-12345", "subdomain": "acme"});
        assert!(validate("data", &schema(), &instance).is_ok());
        let mut stricter = schema();
        stricter["properties"]["api_token"]["minLength"] = json!(20);
        assert!(validate("data", &stricter, &instance).is_err(), "the new schema applies");
        assert!(validate("data", &schema(), &instance).is_ok(), "and the old one still means the old rules");
    }

    #[test]
    fn every_violation_is_reported_with_its_pointer_and_without_the_value() {
        let instance = json!({"api_token": "secret-1", "subdomain": "Bad Domain!", "extra": 1});
        let message = validate("data", &schema(), &instance).unwrap_err().to_string();
        assert!(message.contains("data/api_token: must be at least 10 characters"), "{message}");
        assert!(message.contains("data/subdomain: does not match the pattern"), "{message}");
        assert!(message.contains("unexpected properties extra"), "{message}");
        assert!(!message.contains("secret-1") && !message.contains("Bad Domain!"), "{message}");
        let missing = validate("data", &schema(), &json!({})).unwrap_err().to_string();
        assert!(missing.contains("required property \"api_token\" is missing"), "{missing}");
        let fields = violations("data", &schema(), &json!({"subdomain": "acme"})).unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].property(), Some("api_token"));
        let fields = violations("data", &schema(), &json!({"api_token": "short", "subdomain": "acme"})).unwrap();
        assert_eq!(fields[0].property(), Some("api_token"));
    }

    #[test]
    fn a_valid_document_passes_and_an_invalid_schema_is_bad_input() {
        assert!(validate("data", &schema(), &json!({"api_token": "0123456789", "subdomain": "acme"})).is_ok());
        assert!(matches!(compile("credentialsSchema", &json!({"type": 12})), Err(Error::BadInput(_))));
        assert!(matches!(compile("credentialsSchema", &json!([1])), Err(Error::BadInput(_))));
    }

    #[test]
    fn oversized_documents_are_refused() {
        let huge = json!({"api_token": "x".repeat(MAX_DOCUMENT_BYTES)});
        assert!(matches!(validate("data", &json!({}), &huge), Err(Error::BadInput(_))));
    }
}
