//! The `Json` scalar. What it does with text that is not JSON is its own choice; these
//! properties hold whatever that choice is: it never crashes, and JSON comes back equal.

use async_graphql::{ScalarType, Value};
use latchkey::graphql::scalars::Json;
use proptest::prelude::*;

/// serde_json refuses text nested deeper than this; values from clients are no deeper.
const MAX_DEPTH: usize = 128;

fn parse_text(text: &str) -> Result<Json, String> {
    <Json as ScalarType>::parse(Value::String(text.to_owned()))
        .map_err(|err| err.into_server_error(Default::default()).message)
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// JSON values whose numbers survive a trip through text exactly.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (any::<i32>(), 0..20u32)
            .prop_map(|(n, shift)| serde_json::Value::from(f64::from(n) / f64::from(1u32 << shift))),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn json_text_reads_back_as_the_same_value_and_prints_as_json(value in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) };
        let parsed = parse_text(&text.expect("serializable"));
        prop_assert_eq!(parsed.as_ref().ok(), Some(&Json::from(value.clone())));
        let Value::String(printed) = parsed.expect("checked above").to_value() else {
            return Err(TestCaseError::fail("Json prints as a string"));
        };
        prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&printed).ok(), Some(value));
    }

    /// A string on its own is the wire form, JSON text, so only other values are literals.
    #[test]
    fn a_json_literal_reads_as_the_same_value(value in json_value().prop_filter("a string", |value| !value.is_string())) {
        let literal = Value::from_json(value.clone()).expect("a GraphQL value");
        prop_assert_eq!(<Json as ScalarType>::parse(literal).ok(), Some(Json::from(value)));
    }

    #[test]
    fn any_string_is_read_or_refused_without_a_crash(text in prop_oneof![any::<String>(), "[\\[\\]{}\",:0-9a\\\\ ]{0,40}"]) {
        match serde_json::from_str::<serde_json::Value>(&text) {
            // Text that is JSON always means that JSON.
            Ok(value) => prop_assert_eq!(parse_text(&text).ok(), Some(Json::from(value))),
            Err(_) => {
                let _ = parse_text(&text);
            }
        }
    }

    #[test]
    fn deeply_nested_json_text_never_becomes_a_deeper_value(levels in 100..20_000usize, objects in any::<bool>()) {
        let (open, close) = if objects { ("{\"k\":", "}") } else { ("[", "]") };
        let text = format!("{}0{}", open.repeat(levels), close.repeat(levels));
        // Refused, or at most read as something other than the nesting (never a crash).
        if let Ok(json) = parse_text(&text) {
            let value = json.into_value();
            prop_assert!(levels <= MAX_DEPTH || depth(&value) == 0, "read {levels} levels into depth {}", depth(&value));
        }
    }
}
