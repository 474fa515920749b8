//! The document gate on any text: it must answer without crashing, and what it admits
//! must be GraphQL within the limits it was given, counted again by the plain reference.

#![no_main]

use latchkey_fuzz::{
    document::{DocumentLimits, admit},
    reference::{reference_expansion, reference_nesting},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // Besides the defaults, one tight bound at a time: a small input then reaches each
    // bound, and a bound the gate stopped checking shows up as an admitted violation.
    let default = DocumentLimits::default();
    let tight = [
        DocumentLimits { max_nesting: 3, ..default.clone() },
        DocumentLimits { max_depth: 2, ..default.clone() },
        DocumentLimits { max_selections: 4, ..default.clone() },
        DocumentLimits { max_aliases: 1, ..default.clone() },
        DocumentLimits { max_directives: 1, ..default.clone() },
    ];
    for limits in [default].into_iter().chain(tight) {
        let Ok(document) = admit(text, &limits) else {
            continue;
        };
        assert!(text.len() <= limits.max_bytes);
        assert!(async_graphql::parser::parse_query(text).is_ok(), "admitted text that does not parse");
        assert!(reference_nesting(text) <= limits.max_nesting, "admitted too deep a nesting");
        let Ok(expanded) = reference_expansion(&document) else {
            panic!("admitted a fragment cycle or an unbounded expansion");
        };
        assert!(expanded.selections <= limits.max_selections, "{expanded:?}");
        assert!(expanded.aliases <= limits.max_aliases, "{expanded:?}");
        assert!(expanded.directives <= limits.max_directives, "{expanded:?}");
        assert!(expanded.depth <= limits.max_depth, "{expanded:?}");
    }
});
