//! Forms generated from an environment's `credentialsSchema` and `userDataSchema` (one
//! field per top-level property, typed by the property's schema) and from a solution's
//! config slots (one field per slot, typed by its value type), and the posted form read
//! back into JSON.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::domain::solutions::{ConfigSlot, ValueType};

/// A schema with more properties than this is shown up to here; the rest can only come
/// through the API.
const MAX_FIELDS: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Credentials,
    UserData,
    /// A solution's config slots, by externalId.
    Config,
}

impl Document {
    fn prefix(self) -> &'static str {
        match self {
            Document::Credentials => "credentials.",
            Document::UserData => "userData.",
            Document::Config => "config.",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An `<input>` of this type: `text`, `email`, `url` or `password`.
    Input(&'static str),
    Number {
        integer: bool,
    },
    Boolean,
    Select(Vec<String>),
    /// Anything else (objects, arrays, mixed types) is edited as JSON text.
    Json,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub document: Document,
    pub property: String,
    pub label: String,
    pub description: Option<String>,
    pub required: bool,
    pub kind: Kind,
}

impl Field {
    /// The form control's name (and, with a prefix, its id).
    pub fn name(&self) -> String {
        format!("{}{}", self.document.prefix(), self.property)
    }

    /// A secret is never shown back, not even after a failed post.
    pub fn secret(&self) -> bool {
        self.kind == Kind::Input("password")
    }
}

/// The fields of one schema, in its properties' order. Credentials are secrets (password
/// inputs) unless they are an email address or a URL, or the schema says `writeOnly:
/// false`; user data is shown, unless the schema marks it `writeOnly` or `format: password`.
pub fn fields(document: Document, schema: &Value) -> Vec<Field> {
    let required: Vec<&str> =
        schema["required"].as_array().map(|list| list.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .take(MAX_FIELDS)
        .map(|(property, spec)| Field {
            document,
            property: property.clone(),
            label: spec["title"].as_str().map_or_else(|| humanize(property), str::to_owned),
            description: spec["description"].as_str().map(str::to_owned),
            required: required.contains(&property.as_str()),
            kind: kind(document, spec),
        })
        .collect()
}

/// The field of a config slot: a text input, a number, a checkbox, a select of its
/// choices, or JSON text for objects and arrays.
pub fn config_field(slot: &ConfigSlot) -> Field {
    let kind = match slot.value_type {
        ValueType::String => Kind::Input("text"),
        ValueType::Number => Kind::Number { integer: false },
        ValueType::Boolean => Kind::Boolean,
        ValueType::Choice => Kind::Select(slot.choices.iter().map(|choice| text_of(choice.value())).collect()),
        ValueType::Object | ValueType::Array => Kind::Json,
    };
    Field {
        document: Document::Config,
        property: slot.external_id.clone(),
        label: slot.title.clone(),
        description: None,
        required: slot.required,
        kind,
    }
}

/// A JSON value as a form control shows it: a string as itself, `true` as a ticked box,
/// `false` as an empty one, anything else as JSON text.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Bool(true) => "on".to_owned(),
        Value::Bool(false) | Value::Null => String::new(),
        Value::Number(number) => number.to_string(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A label from a property name without a `title`: `api_token` reads "Api token".
fn humanize(property: &str) -> String {
    let words = property.replace(['_', '-'], " ");
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => property.to_owned(),
    }
}

fn kind(document: Document, spec: &Value) -> Kind {
    if let Some(options) = spec["enum"].as_array() {
        let options: Vec<String> = options.iter().filter_map(|o| o.as_str().map(str::to_owned)).collect();
        if !options.is_empty() {
            return Kind::Select(options);
        }
    }
    let format = spec["format"].as_str();
    let write_only = spec["writeOnly"].as_bool();
    match spec["type"].as_str() {
        Some("string") => match format {
            Some("email") => Kind::Input("email"),
            Some("uri" | "url") => Kind::Input("url"),
            Some("password") => Kind::Input("password"),
            _ if write_only == Some(true) => Kind::Input("password"),
            _ if document == Document::Credentials && write_only != Some(false) => Kind::Input("password"),
            _ => Kind::Input("text"),
        },
        Some("integer") => Kind::Number { integer: true },
        Some("number") => Kind::Number { integer: false },
        Some("boolean") => Kind::Boolean,
        _ => Kind::Json,
    }
}

/// The posted values of `fields` as a JSON document, and the fields whose text could not
/// be read as their type (keyed by control name). A blank optional field is left out.
pub fn read(fields: &[Field], posted: &BTreeMap<String, String>) -> (Value, BTreeMap<String, String>) {
    let mut document = Map::new();
    let mut errors = BTreeMap::new();
    for field in fields {
        let raw = posted.get(&field.name()).map(String::as_str).unwrap_or_default();
        let value = match &field.kind {
            Kind::Boolean => Some(Value::Bool(!raw.is_empty())),
            _ if raw.trim().is_empty() => None,
            Kind::Input(_) | Kind::Select(_) => Some(Value::String(raw.to_owned())),
            Kind::Number { integer: true } => match raw.trim().parse::<i64>() {
                Ok(number) => Some(number.into()),
                Err(_) => {
                    errors.insert(field.name(), "must be a whole number".to_owned());
                    None
                }
            },
            Kind::Number { integer: false } => {
                // A whole number stays one (`75`, not `75.0`).
                let whole = raw.trim().parse::<i64>().ok().map(serde_json::Number::from);
                match whole.or_else(|| raw.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64)) {
                    Some(number) => Some(Value::Number(number)),
                    None => {
                        errors.insert(field.name(), "must be a number".to_owned());
                        None
                    }
                }
            }
            // serde_json stops at 128 levels of nesting, and the body is bounded in size.
            Kind::Json => match serde_json::from_str::<Value>(raw) {
                Ok(value) => Some(value),
                Err(_) => {
                    errors.insert(field.name(), "must be valid JSON".to_owned());
                    None
                }
            },
        };
        if let Some(value) = value {
            document.insert(field.property.clone(), value);
        }
    }
    (Value::Object(document), errors)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_property_becomes_a_field_of_its_type() {
        let schema = json!({
            "properties": {
                "email": {"type": "string", "format": "email", "title": "Email"},
                "api_token": {"type": "string", "description": "The token"},
                "account": {"type": "string", "writeOnly": false},
                "region": {"type": "string", "enum": ["eu", "us"]},
                "port": {"type": "integer"},
                "sandbox": {"type": "boolean"},
                "extra": {"type": "object"}
            },
            "required": ["email", "api_token"]
        });
        let fields = fields(Document::Credentials, &schema);
        let by = |property: &str| fields.iter().find(|f| f.property == property).unwrap();
        assert_eq!(by("email").kind, Kind::Input("email"));
        assert_eq!(by("api_token").kind, Kind::Input("password"));
        assert_eq!(by("account").kind, Kind::Input("text"));
        assert_eq!(by("region").kind, Kind::Select(vec!["eu".into(), "us".into()]));
        assert_eq!(by("port").kind, Kind::Number { integer: true });
        assert_eq!(by("sandbox").kind, Kind::Boolean);
        assert_eq!(by("extra").kind, Kind::Json);
        assert_eq!(by("email").label, "Email");
        assert_eq!(by("api_token").label, "Api token");
        assert!(by("email").required && by("api_token").required && !by("account").required);
        assert_eq!(by("api_token").name(), "credentials.api_token");
    }

    #[test]
    fn fields_come_in_the_order_the_schema_lists_them() {
        let schema: Value =
            serde_json::from_str(r#"{"properties": {"subdomain": {}, "email": {}, "api_token": {}}}"#).unwrap();
        let order: Vec<String> = fields(Document::Credentials, &schema).into_iter().map(|f| f.property).collect();
        assert_eq!(order, ["subdomain", "email", "api_token"]);
    }

    #[test]
    fn user_data_is_shown_unless_marked_secret() {
        let schema =
            json!({"properties": {"subdomain": {"type": "string"}, "pin": {"type": "string", "writeOnly": true}}});
        let fields = fields(Document::UserData, &schema);
        let by = |property: &str| fields.iter().find(|f| f.property == property).unwrap();
        assert_eq!(by("subdomain").kind, Kind::Input("text"));
        assert!(by("pin").secret());
    }

    #[test]
    fn posted_text_is_read_as_each_fields_type() {
        let schema = json!({"properties": {
            "name": {"type": "string"}, "blank": {"type": "string"}, "port": {"type": "integer"},
            "sandbox": {"type": "boolean"}, "bad": {"type": "number"}
        }});
        let fields = fields(Document::UserData, &schema);
        let posted: BTreeMap<String, String> = [
            ("userData.name", "acme"),
            ("userData.blank", "  "),
            ("userData.port", "8080"),
            ("userData.sandbox", "on"),
            ("userData.bad", "many"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (document, errors) = read(&fields, &posted);
        assert_eq!(document, json!({"name": "acme", "port": 8080, "sandbox": true}));
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["userData.bad"]);
    }
}
