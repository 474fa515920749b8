//! JSON Schema checks for credentials and user data. Messages name the JSON pointer and
//! the rule broken, never the value: the value may be a secret.

use jsonschema::{Validator, error::ValidationErrorKind};
use serde_json::Value;

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

/// Checks `instance` against `schema`, reporting every violation with its pointer.
pub fn validate(field: &str, schema: &Value, instance: &Value) -> Result<()> {
    let size = serde_json::to_vec(instance).map_err(Error::internal)?.len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(Error::bad_input(format!("{field} must be at most {MAX_DOCUMENT_BYTES} bytes of JSON")));
    }
    // A stored schema that no longer compiles is our fault, not the caller's.
    let validator = compile(field, schema).map_err(|err| Error::internal(anyhow::anyhow!("stored schema: {err}")))?;
    let violations: Vec<String> = validator
        .iter_errors(instance)
        .take(MAX_REPORTED)
        .map(|error| {
            // The pointer is empty at the document's root.
            format!("{field}{}: {}", error.instance_path(), describe(error.kind()))
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::bad_input(format!("{field} does not match the schema: {}", violations.join("; "))))
    }
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
    fn every_violation_is_reported_with_its_pointer_and_without_the_value() {
        let instance = json!({"api_token": "secret-1", "subdomain": "Bad Domain!", "extra": 1});
        let message = validate("data", &schema(), &instance).unwrap_err().to_string();
        assert!(message.contains("data/api_token: must be at least 10 characters"), "{message}");
        assert!(message.contains("data/subdomain: does not match the pattern"), "{message}");
        assert!(message.contains("unexpected properties extra"), "{message}");
        assert!(!message.contains("secret-1") && !message.contains("Bad Domain!"), "{message}");
        let missing = validate("data", &schema(), &json!({})).unwrap_err().to_string();
        assert!(missing.contains("required property \"api_token\" is missing"), "{missing}");
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
