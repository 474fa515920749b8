//! The document gate against generated documents: it never crashes, admits only GraphQL
//! within its limits, and admits every document within them. The limits are recounted
//! here by a plain reference (a spec-following scan for nesting, a naive expansion of
//! every fragment for size and depth), which is only affordable on small documents.

use std::collections::HashMap;

use async_graphql::parser::{parse_query, types::ExecutableDocument};
use latchkey::graphql::document::{DocumentLimits, Refusal, admit};
use proptest::prelude::*;

use crate::reference::{Unbounded, reference_expansion, reference_nesting};

/// What must hold of anything the gate admits under `limits`.
fn assert_within(text: &str, limits: &DocumentLimits) -> Result<(), TestCaseError> {
    prop_assert!(text.len() <= limits.max_bytes);
    let document = parse_query(text);
    prop_assert!(document.is_ok(), "admitted but not GraphQL: {text:?}");
    prop_assert!(reference_nesting(text) <= limits.max_nesting, "admitted too deep a nesting: {text:?}");
    let document = document.expect("checked above");
    match reference_expansion(&document) {
        Err(Unbounded::Cycle) => prop_assert!(false, "admitted a fragment cycle: {text:?}"),
        Err(Unbounded::OverBudget) => prop_assert!(false, "admitted an unbounded expansion: {text:?}"),
        Ok(expanded) => {
            prop_assert!(expanded.selections <= limits.max_selections, "{expanded:?} {text:?}");
            prop_assert!(expanded.aliases <= limits.max_aliases, "{expanded:?} {text:?}");
            prop_assert!(expanded.directives <= limits.max_directives, "{expanded:?} {text:?}");
            prop_assert!(expanded.depth <= limits.max_depth, "{expanded:?} {text:?}");
        }
    }
    Ok(())
}

/// Runs the gate on a thread with half the stack of a server worker, so a recursion the
/// gate lets through shows up as a crash here rather than only under load.
fn admit_on_small_stack(text: String, limits: DocumentLimits) -> Result<(), Refusal> {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || admit(&text, &limits).map(|_| ()))
        .expect("thread")
        .join()
        .expect("the gate does not panic")
}

// ---------------------------------------------------------------------------------------
// Generated documents.

/// Pieces of GraphQL and things that confuse a scanner, glued into near-GraphQL text.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "\"",
    "\"\"\"",
    "\\",
    "\\\"",
    "\\\"\"\"",
    "#",
    "\n",
    "\r",
    "...",
    "... on Query",
    "F0",
    "F1",
    "fragment F0 on Query",
    "fragment F1 on Query",
    "on",
    "query",
    "mutation Q",
    "a",
    "b:",
    ":",
    "$v",
    "$v: [Int]",
    "@include(if: true)",
    "@skip(if: $v)",
    ",",
    "1",
    "-1.5e3",
    "\"[{(\"",
    "\"\"\"[{(\"\"\"",
    "# [{(\n",
    "\\u{1F600}",
    "é",
    "\u{0}",
    "!",
    "=",
    "true",
    "null",
    "__typename",
    " ",
    "k: ",
    "{ a }",
    "[1, [2]]",
    "{k: {k: [1]}}",
];

fn near_graphql() -> impl Strategy<Value = String> {
    let soup = prop::collection::vec((0..PIECES.len(), any::<bool>()), 0..120).prop_map(|pieces| {
        pieces
            .into_iter()
            .map(|(piece, spaced)| if spaced { format!("{} ", PIECES[piece]) } else { PIECES[piece].to_owned() })
            .collect::<String>()
    });
    // A generated document with a piece put in place of a stretch of it: often still GraphQL.
    let spliced = (document(), any::<prop::sample::Index>(), 0..8usize, 0..PIECES.len()).prop_map(
        |(document, at, cut, piece)| {
            let text: Vec<char> = Printer::print(&document).chars().collect();
            let at = at.index(text.len());
            let end = (at + cut).min(text.len());
            text[..at].iter().chain(PIECES[piece].chars().collect::<Vec<_>>().iter()).chain(&text[end..]).collect()
        },
    );
    prop_oneof![soup, spliced]
}

/// Text that scanners get wrong: brackets, quotes, backslashes and line ends.
fn scanner_text() -> impl Strategy<Value = String> {
    "[\\[\\]{}()#a \"\\\\\n\r]{0,12}"
}

#[derive(Clone, Debug)]
enum Literal {
    Int(i32),
    Text(String),
    Block(String),
    List(Vec<Literal>),
    Object(Vec<Literal>),
}

fn literal() -> impl Strategy<Value = Literal> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Literal::Int),
        scanner_text().prop_map(Literal::Text),
        scanner_text().prop_map(Literal::Block),
    ];
    leaf.prop_recursive(5, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Literal::List),
            prop::collection::vec(inner, 0..3).prop_map(Literal::Object),
        ]
    })
}

#[derive(Clone, Debug)]
enum Item {
    Field {
        alias: bool,
        arguments: Option<Literal>,
        directives: usize,
        comment: Option<String>,
        selections: Vec<Item>,
    },
    Inline {
        typed: bool,
        directives: usize,
        selections: Vec<Item>,
    },
    /// Resolved when printing: a later fragment, an earlier one (a cycle), or an unknown one.
    Spread {
        target: usize,
        directives: usize,
    },
}

fn item() -> impl Strategy<Value = Item> {
    let directives = || prop_oneof![4 => Just(0usize), 1 => 1..3usize];
    let leaf = prop_oneof![
        (
            any::<bool>(),
            prop::option::weighted(0.3, literal()),
            directives(),
            prop::option::weighted(0.2, scanner_text())
        )
            .prop_map(|(alias, arguments, directives, comment)| Item::Field {
                alias,
                arguments,
                directives,
                comment,
                selections: Vec::new()
            }),
        (any::<usize>(), directives()).prop_map(|(target, directives)| Item::Spread { target, directives }),
    ];
    leaf.prop_recursive(7, 48, 3, move |inner| {
        prop_oneof![
            (
                any::<bool>(),
                prop::option::weighted(0.3, literal()),
                directives(),
                prop::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(|(alias, arguments, directives, selections)| Item::Field {
                    alias,
                    arguments,
                    directives,
                    comment: None,
                    selections
                }),
            (any::<bool>(), directives(), prop::collection::vec(inner, 1..4))
                .prop_map(|(typed, directives, selections)| Item::Inline { typed, directives, selections }),
        ]
    })
}

#[derive(Clone, Debug)]
struct Document {
    /// Each operation: variable directives, directives, selections.
    operations: Vec<(usize, usize, Vec<Item>)>,
    /// Each fragment: directives, selections.
    fragments: Vec<(usize, Vec<Item>)>,
    /// Whether a spread may name its own fragment or an earlier one.
    cycles: bool,
}

fn document() -> impl Strategy<Value = Document> {
    let selections = || prop::collection::vec(item(), 1..4);
    (
        prop::collection::vec((0..2usize, 0..2usize, selections()), 1..3),
        prop::collection::vec((0..2usize, selections()), 0..5),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(operations, fragments, cycles)| Document { operations, fragments, cycles })
}

struct Printer<'a> {
    document: &'a Document,
    out: String,
}

impl Printer<'_> {
    fn directives(&mut self, count: usize) {
        for _ in 0..count {
            self.out.push_str(" @include(if: true)");
        }
    }

    fn literal(&mut self, literal: &Literal) {
        match literal {
            Literal::Int(n) => self.out.push_str(&n.to_string()),
            Literal::Text(text) => {
                self.out.push('"');
                for c in text.chars() {
                    match c {
                        '"' => self.out.push_str("\\\""),
                        '\\' => self.out.push_str("\\\\"),
                        '\n' => self.out.push_str("\\n"),
                        '\r' => self.out.push_str("\\r"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            Literal::Block(text) => {
                // A trailing space keeps a final `"` or `\` from merging with the closing quotes.
                self.out.push_str("\"\"\"");
                self.out.push_str(&text.replace("\"\"\"", "\\\"\"\""));
                self.out.push_str(" \"\"\"");
            }
            Literal::List(items) => {
                self.out.push('[');
                for item in items {
                    self.literal(item);
                    self.out.push(' ');
                }
                self.out.push(']');
            }
            Literal::Object(fields) => {
                self.out.push('{');
                for (n, field) in fields.iter().enumerate() {
                    self.out.push_str(&format!("k{n}: "));
                    self.literal(field);
                    self.out.push(' ');
                }
                self.out.push('}');
            }
        }
    }

    /// `within`: the fragment being printed, if any.
    fn selections(&mut self, items: &[Item], within: Option<usize>) {
        self.out.push_str("{ ");
        for (n, item) in items.iter().enumerate() {
            match item {
                Item::Field { alias, arguments, directives, comment, selections } => {
                    if let Some(comment) = comment {
                        let line: String = comment.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
                        self.out.push_str(&format!("# {line}\n"));
                    }
                    if *alias {
                        self.out.push_str(&format!("a{n}: "));
                    }
                    self.out.push('f');
                    if let Some(arguments) = arguments {
                        self.out.push_str("(x: ");
                        self.literal(arguments);
                        self.out.push(')');
                    }
                    self.directives(*directives);
                    if !selections.is_empty() {
                        self.out.push(' ');
                        self.selections(selections, within);
                    }
                }
                Item::Inline { typed, directives, selections } => {
                    self.out.push_str(if *typed { "... on Query" } else { "..." });
                    self.directives(*directives);
                    self.out.push(' ');
                    self.selections(selections, within);
                }
                Item::Spread { target, directives } => {
                    let count = self.document.fragments.len();
                    let first = match within {
                        Some(current) if !self.document.cycles => current + 1,
                        _ => 0,
                    };
                    let name = if first < count && target % 5 != 0 {
                        format!("F{}", first + target % (count - first))
                    } else {
                        "Unknown".to_owned()
                    };
                    self.out.push_str(&format!("...{name}"));
                    self.directives(*directives);
                }
            }
            self.out.push(' ');
        }
        self.out.push('}');
    }

    fn print(document: &Document) -> String {
        let mut printer = Printer { document, out: String::new() };
        let named = document.operations.len() > 1;
        for (n, (variable_directives, directives, selections)) in document.operations.iter().enumerate() {
            if named || *directives > 0 || *variable_directives > 0 {
                printer.out.push_str(&format!("query Q{n}($v: [[Int]]"));
                printer.directives(*variable_directives);
                printer.out.push(')');
                printer.directives(*directives);
                printer.out.push(' ');
            }
            printer.selections(selections, None);
            printer.out.push('\n');
        }
        for (n, (directives, selections)) in document.fragments.iter().enumerate() {
            printer.out.push_str(&format!("fragment F{n} on Query"));
            printer.directives(*directives);
            printer.out.push(' ');
            printer.selections(selections, Some(n));
            printer.out.push('\n');
        }
        printer.out
    }
}

fn generous() -> DocumentLimits {
    DocumentLimits {
        max_bytes: usize::MAX,
        max_nesting: usize::MAX,
        max_depth: usize::MAX,
        max_selections: u64::MAX,
        max_aliases: u64::MAX,
        max_directives: u64::MAX,
    }
}

/// A gate answer, short: the refusal, or that it admitted.
fn outcome(result: &Result<ExecutableDocument, Refusal>) -> String {
    match result {
        Ok(_) => "admitted".to_owned(),
        Err(refusal) => format!("{refusal:?}"),
    }
}

fn is_too_complex(result: &Result<ExecutableDocument, Refusal>) -> bool {
    matches!(result, Err(Refusal::TooComplex { .. }))
}

// ---------------------------------------------------------------------------------------
// The properties.

proptest! {
    #[test]
    fn arbitrary_text_never_crashes_the_gate_and_what_passes_is_within_the_limits(text in any::<String>()) {
        let limits = DocumentLimits::default();
        if admit(&text, &limits).is_ok() {
            assert_within(&text, &limits)?;
        }
    }

    #[test]
    fn near_graphql_text_never_crashes_the_gate_and_what_passes_is_within_the_limits(text in near_graphql()) {
        let default = DocumentLimits::default();
        let small = [
            DocumentLimits { max_nesting: 4, ..default.clone() },
            DocumentLimits { max_depth: 3, ..default.clone() },
            DocumentLimits { max_selections: 12, max_aliases: 2, max_directives: 2, ..default.clone() },
        ];
        for limits in [default].into_iter().chain(small) {
            if admit_on_small_stack(text.clone(), limits.clone()).is_ok() {
                assert_within(&text, &limits)?;
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_it_can_overflow_the_stack(
        levels in 0..3_000usize,
        lists in any::<bool>(),
    ) {
        // Nested list and object literals, or nested selection sets: each level is one
        // frame of the parser's recursion.
        let text = if lists {
            let open: String = (0..levels).map(|n| if n % 2 == 0 { "[" } else { "{k: " }).collect();
            let close: String = (0..levels).rev().map(|n| if n % 2 == 0 { "]" } else { "}" }).collect();
            format!("{{ f(x: {open}1{close}) }}")
        } else {
            format!("{}{}", "{ f ".repeat(levels + 1), "}".repeat(levels + 1))
        };
        let nesting = reference_nesting(&text);
        let limits = DocumentLimits::default();
        let result = admit_on_small_stack(text, limits.clone());
        if nesting > limits.max_nesting {
            prop_assert!(matches!(result, Err(Refusal::TooComplex { .. })), "{nesting} levels: {result:?}");
        }
    }

    #[test]
    fn the_gate_admits_exactly_the_documents_within_its_limits(document in document()) {
        let text = Printer::print(&document);
        let parsed = parse_query(&text);
        prop_assert!(parsed.is_ok(), "generated text is not GraphQL: {:?}\n{text}", parsed.err());
        let expanded = match reference_expansion(&parsed.expect("checked above")) {
            Ok(expanded) => expanded,
            Err(Unbounded::Cycle) => {
                let result = admit(&text, &generous());
                prop_assert!(is_too_complex(&result), "a fragment cycle was not refused: {}\n{text}", outcome(&result));
                return Ok(());
            }
            Err(Unbounded::OverBudget) => {
                let result = admit(&text, &DocumentLimits::default());
                prop_assert!(is_too_complex(&result), "{}\n{text}", outcome(&result));
                return Ok(());
            }
        };
        let exact = DocumentLimits {
            max_bytes: text.len(),
            max_nesting: reference_nesting(&text),
            max_depth: expanded.depth,
            max_selections: expanded.selections,
            max_aliases: expanded.aliases,
            max_directives: expanded.directives,
        };
        let result = admit(&text, &exact);
        prop_assert!(result.is_ok(), "refused within {exact:?}: {:?}\n{text}", result.err());

        // One less of any bound refuses it.
        let mut tighter: HashMap<&str, DocumentLimits> = HashMap::new();
        tighter.insert("bytes", DocumentLimits { max_bytes: exact.max_bytes - 1, ..exact.clone() });
        tighter.insert("nesting", DocumentLimits { max_nesting: exact.max_nesting - 1, ..exact.clone() });
        tighter.insert("depth", DocumentLimits { max_depth: exact.max_depth - 1, ..exact.clone() });
        tighter.insert("selections", DocumentLimits { max_selections: exact.max_selections - 1, ..exact.clone() });
        if exact.max_aliases > 0 {
            tighter.insert("aliases", DocumentLimits { max_aliases: exact.max_aliases - 1, ..exact.clone() });
        }
        if exact.max_directives > 0 {
            tighter.insert("directives", DocumentLimits { max_directives: exact.max_directives - 1, ..exact.clone() });
        }
        for (bound, limits) in tighter {
            let result = admit(&text, &limits);
            prop_assert!(is_too_complex(&result), "one {bound} over {limits:?} was admitted: {}\n{text}", outcome(&result));
        }
    }
}
