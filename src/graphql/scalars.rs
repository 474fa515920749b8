//! The contract's scalars: `Json` travels as a string holding JSON text or a plain string
//! (see [`JsonText`]; a JSON literal is accepted as input too); `DateTime` is RFC 3339 in
//! UTC with milliseconds and a `Z`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{SecondsFormat, Utc};

use crate::domain::json_text::JsonText;

/// Arbitrary JSON. On the wire a string of JSON text, e.g. `"{\"api_key\":\"x\"}"`, or a
/// plain string that is not JSON text, which goes back exactly as it came.
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub JsonText);

impl Json {
    pub fn into_value(self) -> serde_json::Value {
        self.0.into_value()
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Json(value.into())
    }
}

#[Scalar(name = "Json")]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => {
                JsonText::parse(&text).map(Json).map_err(|err| InputValueError::custom(err.to_string()))
            }
            Value::Null => Ok(Json::from(serde_json::Value::Null)),
            other => other
                .into_json()
                .map(Json::from)
                .map_err(|err| InputValueError::custom(format!("not a JSON value: {err}"))),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.text())
    }
}

/// A UTC timestamp such as `2026-11-20T10:38:37.757Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|at| DateTime(at.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom("DateTime must be RFC 3339, e.g. 2026-11-20T10:38:37.757Z")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_accepts_strings_of_json_and_literals_and_returns_the_string_form() {
        let from_string = <Json as ScalarType>::parse(Value::String(r#"{"api_key":"x"}"#.into())).unwrap();
        let literal = Value::from_json(serde_json::json!({"api_key": "x"})).unwrap();
        let from_literal = <Json as ScalarType>::parse(literal).unwrap();
        assert_eq!(from_string, from_literal);
        assert_eq!(from_string.to_value(), Value::String(r#"{"api_key":"x"}"#.into()));
        assert!(<Json as ScalarType>::parse(Value::String("{not json".into())).is_err());
        let plain = <Json as ScalarType>::parse(Value::String("support@example.com".into())).unwrap();
        assert_eq!(plain.to_value(), Value::String("support@example.com".into()));
    }

    #[test]
    fn deeply_nested_json_text_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(<Json as ScalarType>::parse(Value::String(deep)).is_err());
    }

    #[test]
    fn datetime_prints_utc_with_milliseconds() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T11:38:37.757+01:00").unwrap().with_timezone(&Utc);
        assert_eq!(DateTime(at).to_value(), Value::String("2026-11-20T10:38:37.757Z".into()));
    }
}
