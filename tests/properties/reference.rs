//! A plain reference for the document gate's limits, affordable only on small documents:
//! a scan that reads brackets as the GraphQL spec's lexical grammar does, and a naive
//! expansion of every fragment spread. The property tests and the fuzz target (which
//! includes this file) check what the gate admits against it.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// How deep `{`, `[` and `(` nest outside strings, block strings and comments, read as the
/// GraphQL spec's lexical grammar reads them.
pub fn reference_nesting(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| chars.get(i + k) == Some(&c));
    let (mut i, mut depth, mut deepest) = (0, 0usize, 0);
    while i < chars.len() {
        if at(i, "\"\"\"") {
            i += 3;
            while i < chars.len() && !at(i, "\"\"\"") {
                i += if at(i, "\\\"\"\"") { 4 } else { 1 };
            }
            i += 3;
            continue;
        }
        match chars[i] {
            '"' => {
                i += 1;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 2,
                        '"' => break,
                        '\n' | '\r' => break,
                        _ => i += 1,
                    }
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                    i += 1;
                }
                continue;
            }
            '{' | '[' | '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// A document's size with every fragment spread replaced by the fragment, counted the
/// slow way. Operations and fragment definitions all count, as the gate documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expanded {
    pub selections: u64,
    pub aliases: u64,
    pub directives: u64,
    pub depth: usize,
}

/// Expanding stops past this many selections: the document is then far over any limit.
pub const BUDGET: u64 = 100_000;

pub enum Unbounded {
    Cycle,
    OverBudget,
}

struct Naive<'d> {
    document: &'d ExecutableDocument,
    path: Vec<&'d str>,
    out: Expanded,
}

impl<'d> Naive<'d> {
    fn set(&mut self, set: &'d SelectionSet, depth: usize) -> Result<(), Unbounded> {
        for item in &set.items {
            self.out.depth = self.out.depth.max(depth);
            self.out.selections += 1;
            self.out.directives += item.node.directives().len() as u64;
            if self.out.selections > BUDGET {
                return Err(Unbounded::OverBudget);
            }
            match &item.node {
                Selection::Field(field) => {
                    self.out.aliases += u64::from(field.node.alias.is_some());
                    self.set(&field.node.selection_set.node, depth + 1)?;
                }
                Selection::InlineFragment(inline) => self.set(&inline.node.selection_set.node, depth + 1)?,
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node, depth + 1)?,
            }
        }
        Ok(())
    }

    fn fragment(&mut self, name: &'d str, depth: usize) -> Result<(), Unbounded> {
        if self.path.contains(&name) {
            return Err(Unbounded::Cycle);
        }
        let Some(definition) = self.document.fragments.get(name) else {
            return Ok(());
        };
        self.path.push(name);
        self.out.directives += definition.node.directives.len() as u64;
        self.set(&definition.node.selection_set.node, depth)?;
        self.path.pop();
        Ok(())
    }
}

pub fn reference_expansion(document: &ExecutableDocument) -> Result<Expanded, Unbounded> {
    let mut naive = Naive { document, path: Vec::new(), out: Expanded::default() };
    for (_, operation) in document.operations.iter() {
        naive.out.directives += operation.node.directives.len() as u64;
        for variable in &operation.node.variable_definitions {
            naive.out.directives += variable.node.directives.len() as u64;
        }
        naive.set(&operation.node.selection_set.node, 1)?;
    }
    for name in document.fragments.keys() {
        naive.fragment(name, 1)?;
    }
    Ok(naive.out)
}
