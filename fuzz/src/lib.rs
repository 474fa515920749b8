//! latchkey's modules under fuzzing, compiled from its own source files. Depending on the
//! whole latchkey crate would also build, with coverage instrumentation, the database and
//! HTTP stacks that these modules never touch: several times the build time, in a CI step
//! with a budget of minutes. Both modules depend on nothing else of latchkey's.

#[path = "../../src/graphql/document.rs"]
pub mod document;

// Only envelopes and keys are fuzzed; the rest of the module is unused here.
#[allow(dead_code)]
#[path = "../../src/crypto/mod.rs"]
pub mod crypto;

/// The reference the property tests check the gate against, to check it here too.
#[path = "../../tests/properties/reference.rs"]
pub mod reference;
