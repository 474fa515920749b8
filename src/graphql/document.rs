//! The gate every GraphQL document passes before anything else parses or walks it.
//!
//! Parsing recurses once per nested `{`, `[` and `(`, and validation expands fragment
//! spreads without memoising them, so a few kilobytes can overflow the stack or cost
//! time and memory that double with each level of fragments. The gate refuses such
//! documents in linear time, before authentication or any database work:
//!
//! 1. the text: its length, and the nesting of brackets outside strings and comments,
//!    found by a scan that does not recurse;
//! 2. the parsed document: its size once every fragment is expanded (each fragment's
//!    cost computed once), its aliases and directives, and how deep selections and
//!    fragment spreads reach.
//!
//! What passes is handed to execution already parsed, so nothing parses it twice.

use std::{collections::HashMap, fmt, ops::AddAssign};

use async_graphql::parser::{
    self, Pos,
    types::{Directive, ExecutableDocument, Selection, SelectionSet},
};

/// Bounds on one document. The defaults admit every query the API documents, GraphiQL's
/// introspection query among them, with room to spare.
#[derive(Clone, Debug)]
pub struct DocumentLimits {
    /// Longest document text, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of `{`, `[` and `(`.
    pub max_nesting: usize,
    /// Deepest chain of selection sets and fragment spreads.
    pub max_depth: usize,
    /// Most selections (fields, spreads, inline fragments) with every fragment expanded,
    /// counting every operation and every fragment definition.
    pub max_selections: u64,
    /// Most aliased fields, with fragments expanded.
    pub max_aliases: u64,
    /// Most directives, with fragments expanded.
    pub max_directives: u64,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_bytes: 128 * 1024,
            max_nesting: 64,
            max_depth: 32,
            max_selections: 2_000,
            max_aliases: 100,
            max_directives: 100,
        }
    }
}

/// Why a document was refused. The message names the bound, never the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over one of the [`DocumentLimits`].
    TooComplex { message: String, pos: Option<Pos> },
    /// Not GraphQL: the parser's reason and where, without the text around it.
    Syntax { message: String, pos: Option<Pos> },
}

impl Refusal {
    fn too_complex(message: String, pos: Option<Pos>) -> Self {
        Refusal::TooComplex { message, pos }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::TooComplex { message, .. } | Refusal::Syntax { message, .. } => message,
        }
    }

    pub fn pos(&self) -> Option<Pos> {
        match self {
            Refusal::TooComplex { pos, .. } | Refusal::Syntax { pos, .. } => *pos,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Checks `query` against `limits` and parses it. The document is parsed only once the
/// text has passed, and walked only once it has parsed.
pub fn admit(query: &str, limits: &DocumentLimits) -> Result<ExecutableDocument, Refusal> {
    if query.len() > limits.max_bytes {
        return Err(Refusal::too_complex(format!("the document is longer than {} bytes", limits.max_bytes), None));
    }
    check_nesting(query, limits.max_nesting)?;
    let document = parser::parse_query(query).map_err(syntax_refusal)?;
    check_expansion(&document, limits)?;
    Ok(document)
}

/// The parser's own message quotes the offending line, which may be the whole document;
/// keep only its reason and position.
fn syntax_refusal(err: parser::Error) -> Refusal {
    let pos = err.positions().next();
    let text = err.to_string();
    let reason = text
        .lines()
        .rev()
        .find_map(|line| line.trim_start().strip_prefix("= "))
        .unwrap_or(if matches!(err, parser::Error::Syntax { .. }) { "unexpected input" } else { text.as_str() });
    let mut message = format!("syntax error: {reason}");
    if message.len() > 200 {
        let cut = (0..=200).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
        message.truncate(cut);
        message.push('…');
    }
    Refusal::Syntax { message, pos }
}

/// Refuses text whose brackets nest deeper than `max`, without recursing. Brackets inside
/// strings, block strings and comments do not count. The scan never counts fewer brackets
/// than the parser would descend into: where the two could read the text differently (an
/// unterminated string, a bad escape), the parser stops with a syntax error first.
fn check_nesting(query: &str, max: usize) -> Result<(), Refusal> {
    let bytes = query.as_bytes();
    let (mut depth, mut i, mut line, mut column_start) = (0usize, 0usize, 1usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    if bytes[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                        continue;
                    }
                    if bytes[i] == b'\n' {
                        line += 1;
                        column_start = i + 1;
                    }
                    i += 1;
                }
                i += 3;
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'\n' => {
                line += 1;
                column_start = i + 1;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    let pos = Pos { line, column: i - column_start + 1 };
                    return Err(Refusal::too_complex(
                        format!("the document nests brackets deeper than {max} levels"),
                        Some(pos),
                    ));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// What a selection set costs once its fragments are expanded.
#[derive(Clone, Copy, Default, Debug)]
struct Cost {
    selections: u64,
    aliases: u64,
    directives: u64,
    /// How many levels of selections it spans. A fragment's cost is computed where it is
    /// first spread, so a later, deeper spread checks its depth against this.
    levels: usize,
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Self) {
        self.selections = self.selections.saturating_add(other.selections);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.saturating_add(other.directives);
        self.levels = self.levels.max(other.levels);
    }
}

fn directives(list: &[async_graphql::Positioned<Directive>]) -> Cost {
    Cost { directives: list.len() as u64, ..Cost::default() }
}

/// Walks the document once, computing each fragment's expanded cost a single time.
struct Expansion<'d> {
    document: &'d ExecutableDocument,
    limits: &'d DocumentLimits,
    /// `None` while a fragment is being expanded: meeting it again is a cycle.
    fragments: HashMap<&'d str, Option<Cost>>,
    total: Cost,
}

fn check_expansion(document: &ExecutableDocument, limits: &DocumentLimits) -> Result<(), Refusal> {
    let mut walk = Expansion { document, limits, fragments: HashMap::new(), total: Cost::default() };
    for (_, operation) in document.operations.iter() {
        let mut cost = directives(&operation.node.directives);
        for variable in &operation.node.variable_definitions {
            cost += directives(&variable.node.directives);
        }
        cost += walk.selection_set(&operation.node.selection_set.node, 1)?;
        walk.add(cost, Some(operation.pos))?;
    }
    for name in document.fragments.keys() {
        let cost = walk.fragment(name, 1, None)?;
        walk.add(cost, None)?;
    }
    Ok(())
}

impl<'d> Expansion<'d> {
    /// Adds to the running total, refusing as soon as any bound is passed.
    fn add(&mut self, cost: Cost, pos: Option<Pos>) -> Result<(), Refusal> {
        self.total += cost;
        self.check(self.total, pos)
    }

    fn check(&self, cost: Cost, pos: Option<Pos>) -> Result<(), Refusal> {
        let limits = self.limits;
        let over = if cost.selections > limits.max_selections {
            Some(format!("the document selects more than {} fields with its fragments expanded", limits.max_selections))
        } else if cost.aliases > limits.max_aliases {
            Some(format!("the document has more than {} aliases with its fragments expanded", limits.max_aliases))
        } else if cost.directives > limits.max_directives {
            Some(format!("the document has more than {} directives with its fragments expanded", limits.max_directives))
        } else {
            None
        };
        over.map_or(Ok(()), |message| Err(Refusal::too_complex(message, pos)))
    }

    fn too_deep(&self, pos: Option<Pos>) -> Refusal {
        Refusal::too_complex(
            format!("selections and fragment spreads nest deeper than {} levels", self.limits.max_depth),
            pos,
        )
    }

    fn selection_set(&mut self, set: &'d SelectionSet, depth: usize) -> Result<Cost, Refusal> {
        let mut cost = Cost::default();
        for item in &set.items {
            if depth > self.limits.max_depth {
                return Err(self.too_deep(Some(item.pos)));
            }
            cost += Cost { selections: 1, ..directives(item.node.directives()) };
            let below = match &item.node {
                Selection::Field(field) => {
                    if field.node.alias.is_some() {
                        cost.aliases = cost.aliases.saturating_add(1);
                    }
                    self.selection_set(&field.node.selection_set.node, depth + 1)?
                }
                Selection::InlineFragment(inline) => self.selection_set(&inline.node.selection_set.node, depth + 1)?,
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name.node, depth + 1, Some(item.pos))?
                }
            };
            cost += below;
            cost.levels = cost.levels.max(below.levels.saturating_add(1));
            // Refuse early: one expensive fragment must not be expanded in full first.
            self.check(cost, Some(item.pos))?;
        }
        Ok(cost)
    }

    /// The expanded cost of a fragment, computed on first use. An unknown fragment costs
    /// nothing here; validation reports it.
    fn fragment(&mut self, name: &'d str, depth: usize, pos: Option<Pos>) -> Result<Cost, Refusal> {
        match self.fragments.get(name) {
            // Its selections start at `depth` here, however deep they started before.
            Some(Some(cost)) if depth.saturating_add(cost.levels).saturating_sub(1) > self.limits.max_depth => {
                return Err(self.too_deep(pos));
            }
            Some(Some(cost)) => return Ok(*cost),
            Some(None) => {
                return Err(Refusal::too_complex(format!("fragment {name} spreads itself"), pos));
            }
            None => {}
        }
        let Some(definition) = self.document.fragments.get(name) else {
            return Ok(Cost::default());
        };
        self.fragments.insert(name, None);
        let mut cost = directives(&definition.node.directives);
        cost += self.selection_set(&definition.node.selection_set.node, depth)?;
        self.fragments.insert(name, Some(cost));
        Ok(cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_list(levels: usize) -> String {
        format!(
            "{{ users(criteria: {{name: {}1{}}}) {{ edges {{ node {{ id }} }} }} }}",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    }

    /// `fragment F0 on Query { __typename }` and `Fn` spreading `F(n-1)` twice: 2^n
    /// selections from a document that grows linearly.
    pub(crate) fn doubling_fragments(levels: usize) -> String {
        let mut query = String::from("query { ...F");
        query.push_str(&levels.to_string());
        query.push_str(" }\nfragment F0 on Query { __typename }\n");
        for n in 1..=levels {
            query.push_str(&format!("fragment F{n} on Query {{ ...F{m} ...F{m} }}\n", m = n - 1));
        }
        query
    }

    fn refusal(query: &str) -> Refusal {
        admit(query, &DocumentLimits::default()).expect_err("refused")
    }

    #[test]
    fn deeply_nested_literals_are_refused_before_parsing() {
        let refused = refusal(&nested_list(2_000));
        assert!(matches!(refused, Refusal::TooComplex { .. }), "{refused:?}");
        assert!(refused.message().contains("64"), "{refused}");
    }

    #[test]
    fn nesting_at_the_limit_parses_on_a_small_stack() {
        // Query-level braces take 1 + arguments 1 + object 1 levels around the list.
        let query = nested_list(DocumentLimits::default().max_nesting - 3);
        // Half the stack of a server thread (tokio's default is 2 MiB); parsing takes about
        // 8 KiB a level in a debug build.
        let handle = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || admit(&query, &DocumentLimits::default()).map(|_| ()))
            .expect("thread");
        assert_eq!(handle.join().expect("no stack overflow"), Ok(()));
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = "[".repeat(500);
        let query = format!(
            "# {deep}\n{{ users(criteria: {{name: \"{deep}\\\" {deep}\"}}) {{ edges {{ node {{ id }} }} }} }}\n# \"\"\"{deep}"
        );
        assert!(admit(&query, &DocumentLimits::default()).is_ok());
        let block = format!(
            "{{ users(criteria: {{name: \"\"\"{deep} \\\"\"\" {deep}\"\"\"}}) {{ edges {{ node {{ id }} }} }} }}"
        );
        assert!(admit(&block, &DocumentLimits::default()).is_ok());
    }

    #[test]
    fn doubling_fragments_are_refused_without_expanding_them() {
        // 2^26 selections if expanded (the shape that took 61 s): the memoised walk refuses
        // after expanding each fragment once.
        let refused = refusal(&doubling_fragments(26));
        assert!(refused.message().contains("fields with its fragments expanded"), "{refused}");
        // Small enough expansions pass.
        assert!(admit(&doubling_fragments(6), &DocumentLimits::default()).is_ok());
    }

    #[test]
    fn aliases_directives_and_length_are_bounded() {
        let aliases: String = (0..101).map(|i| format!("a{i}: __typename ")).collect();
        assert!(refusal(&format!("{{ {aliases} }}")).message().contains("aliases"));
        let directives: String = (0..101).map(|_| "@include(if: true) ").collect();
        assert!(refusal(&format!("{{ __typename {directives} }}")).message().contains("directives"));
        let long = format!("{{ __typename }} # {}", "x".repeat(200 * 1024));
        assert!(refusal(&long).message().contains("longer than"));
    }

    #[test]
    fn fragment_cycles_and_long_spread_chains_are_refused() {
        let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert!(refusal(cycle).message().contains("spreads itself"));
        let mut chain = String::from("query { ...F0 }\n");
        for n in 0..2_500 {
            chain.push_str(&format!("fragment F{n} on Query {{ ...F{} }}\n", n + 1));
        }
        chain.push_str("fragment F2500 on Query { __typename }\n");
        assert!(refusal(&chain).message().contains("nest deeper"));
    }

    #[test]
    fn a_fragment_spread_deep_after_a_shallow_spread_still_counts_its_depth() {
        // F is first expanded two levels down, then spread again near the depth limit.
        let deep = DocumentLimits::default().max_depth - 2;
        let query = format!(
            "{{ ...F {}...F{} }} fragment F on Query {{ a {{ b {{ c }} }} }}",
            "f { ".repeat(deep),
            " }".repeat(deep)
        );
        assert!(refusal(&query).message().contains("nest deeper"));
        // Spread only where it fits, the same fragment passes.
        let fits = format!("{{ ...F {}...F{} }} fragment F on Query {{ a }}", "f { ".repeat(deep), " }".repeat(deep));
        assert!(admit(&fits, &DocumentLimits::default()).is_ok());
    }

    #[test]
    fn syntax_errors_never_echo_the_document() {
        let secret_looking = "x".repeat(10_000);
        let refused = refusal(&format!("{{ viewer {{ {secret_looking} ( }}"));
        assert!(matches!(refused, Refusal::Syntax { .. }));
        assert!(refused.message().len() <= 210, "{refused}");
        assert!(!refused.message().contains(&secret_looking[..50]));
        assert!(refused.pos().is_some());
    }

    #[test]
    fn the_introspection_query_passes() {
        let query = include_str!("../../tests/fixtures/introspection.graphql");
        assert!(admit(query, &DocumentLimits::default()).is_ok());
    }
}
