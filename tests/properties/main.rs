//! Properties of everything that reads what a client sends, checked on generated input:
//! whatever arrives, these parsers answer without crashing, refuse what they must, and
//! give back exactly what was meant.

mod cursors;
mod envelope;
mod gate;
mod ids;
mod json;
mod reference;
mod tokens;
