//! Values that travel as text. The public API's `Json` values are strings holding JSON
//! text (`"{\"a\":1}"`, `"42"`, `"\"eu\""`), and its own examples also send plain strings
//! such as `value: "support@example.com"` and get them back as sent. So a text is read as
//! JSON where it is JSON text, and otherwise as a plain string that remembers it was plain.
//!
//! A plain string that happens to be JSON text (`"42"`, `"true"`, `"null"`) is that JSON
//! value; the string 42 is written `"\"42\""`. A text that opens like JSON (`{`, `[` or `"`)
//! but does not parse is refused rather than kept as a string, because it is almost
//! surely broken JSON, not a word.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// A JSON value and the form it was given in, so it goes back exactly as it came.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonText {
    value: Value,
    /// Given as a plain string that is not JSON text; `value` is that string.
    plain: bool,
}

impl JsonText {
    /// Reads a text: JSON text as JSON, anything else as a plain string.
    pub fn parse(text: &str) -> Result<Self> {
        match serde_json::from_str(text) {
            Ok(value) => Ok(Self { value, plain: false }),
            // The parser's message names a line and column, never the text (it may be a secret).
            Err(err) if text.trim_start().starts_with(['{', '[', '"']) => {
                Err(Error::bad_input(format!("a Json string that opens like JSON must hold JSON text: {err}")))
            }
            Err(_) => Ok(Self { value: Value::String(text.to_owned()), plain: true }),
        }
    }

    /// The text to send back: a plain string as it came, anything else as JSON text.
    pub fn text(&self) -> String {
        match &self.value {
            Value::String(plain) if self.plain => plain.clone(),
            value => value.to_string(),
        }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn into_value(self) -> Value {
        self.value
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> Self {
        Self { value, plain: false }
    }
}

/// Stored as its text, so a plain string stays plain.
impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Self::parse(&text).map_err(serde::de::Error::custom),
            // Stored before values were kept as text: a JSON value as such.
            value => Ok(Self::from(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_strings_come_back_exactly_as_given() {
        for text in ["support@example.com", " padded ", "", "a{b", "NaN", "1e400"] {
            let given = JsonText::parse(text).unwrap();
            assert_eq!(given.value(), &json!(text));
            assert_eq!(given.text(), text);
        }
    }

    #[test]
    fn json_text_is_json_and_comes_back_as_json_text() {
        for (text, value) in [
            (r#"{"a": 1}"#, json!({"a": 1})),
            ("\"support@example.com\"", json!("support@example.com")),
            ("42", json!(42)),
            ("true", json!(true)),
            ("null", Value::Null),
        ] {
            let given = JsonText::parse(text).unwrap();
            assert_eq!(given.value(), &value);
            assert_eq!(given.text(), value.to_string());
        }
    }

    #[test]
    fn broken_json_is_refused_not_taken_as_a_string() {
        for text in ["{not json", "[1,", "\"unterminated", "  {\"a\":}"] {
            assert!(JsonText::parse(text).is_err(), "{text}");
        }
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(JsonText::parse(&deep).is_err());
    }

    #[test]
    fn the_stored_form_keeps_plain_strings_plain() {
        for text in ["support@example.com", "\"quoted\"", "7", r#"{"a":[1]}"#] {
            let given = JsonText::parse(text).unwrap();
            let stored = serde_json::to_string(&given).unwrap();
            assert_eq!(serde_json::from_str::<JsonText>(&stored).unwrap(), given);
        }
        assert_eq!(serde_json::from_str::<JsonText>("50").unwrap(), JsonText::from(json!(50)));
    }
}
