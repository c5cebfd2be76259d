//! The size of a document once its fragments are expanded, computed
//! without expanding it. A fragment spread twice in a fragment spread
//! twice … doubles at every level, so a 1 KB text can stand for billions
//! of fields, and async-graphql's own checks (recursive depth, complexity)
//! walk that expansion before they refuse. Here each fragment is measured
//! once, its size kept, and every spread adds the size kept; the sums
//! saturate, so no document can make them wrap or run long.
//!
//! The walk never goes deeper than [`MAX_NESTING`] levels (fields with a
//! selection, inline fragments and spreads each count one, as
//! async-graphql's recursive-depth limit counts them), so it stays bounded
//! on the stack as well.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::Name;

/// Levels of selection sets, spreads and inline fragments one document may
/// nest (the schema's `limit_recursive_depth`).
pub const MAX_NESTING: usize = 32;

/// What a selection set holds once expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub fields: u64,
    pub aliases: u64,
    pub spreads: u64,
}

impl Shape {
    fn add(self, other: Self) -> Self {
        Self {
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
            spreads: self.spreads.saturating_add(other.spreads),
        }
    }
}

/// Why a document cannot be measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmeasurable {
    /// Nested deeper than [`MAX_NESTING`].
    TooDeep,
    /// A fragment that spreads itself, directly or through others.
    Cycle(String),
}

/// The document as written (every definition once) and as it would run
/// (every operation with its fragments expanded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measure {
    pub written: Shape,
    pub expanded: Shape,
}

/// Measures `document`.
///
/// # Errors
/// When it nests too deep or its fragments form a cycle.
pub fn measure(document: &ExecutableDocument) -> Result<Measure, Unmeasurable> {
    let mut walk = Walk { document, sizes: HashMap::new() };
    let mut expanded = Shape::default();
    for (_, operation) in document.operations.iter() {
        expanded = expanded.add(walk.selections(&operation.node.selection_set.node, 0)?);
    }
    let mut written = Shape::default();
    for (_, operation) in document.operations.iter() {
        written = written.add(own(&operation.node.selection_set.node));
    }
    for (name, fragment) in &document.fragments {
        // Fragments no operation uses are refused by validation, but are
        // measured all the same so that the walk proves them acyclic.
        walk.fragment(name, 0)?;
        written = written.add(own(&fragment.node.selection_set.node));
    }
    Ok(Measure { written, expanded })
}

/// A fragment's size: being measured (a spread reaching it again is a
/// cycle) or known.
enum Size {
    Measuring,
    Known(Shape),
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    sizes: HashMap<&'a Name, Size>,
}

impl<'a> Walk<'a> {
    fn selections(&mut self, set: &'a SelectionSet, level: usize) -> Result<Shape, Unmeasurable> {
        if level > MAX_NESTING {
            return Err(Unmeasurable::TooDeep);
        }
        let mut shape = Shape::default();
        for selection in &set.items {
            let inner = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let this = Shape { fields: 1, aliases: u64::from(field.alias.is_some()), spreads: 0 };
                    let below = if field.selection_set.node.items.is_empty() {
                        Shape::default()
                    } else {
                        self.selections(&field.selection_set.node, level + 1)?
                    };
                    this.add(below)
                }
                Selection::InlineFragment(inline) => self.selections(&inline.node.selection_set.node, level + 1)?,
                Selection::FragmentSpread(spread) => {
                    let this = Shape { spreads: 1, ..Shape::default() };
                    this.add(self.fragment(&spread.node.fragment_name.node, level + 1)?)
                }
            };
            shape = shape.add(inner);
        }
        Ok(shape)
    }

    /// A named fragment's expanded size, measured at its first spread and
    /// kept. An unknown name counts nothing (validation refuses it).
    fn fragment(&mut self, name: &'a Name, level: usize) -> Result<Shape, Unmeasurable> {
        let Some(fragment) = self.document.fragments.get(name) else { return Ok(Shape::default()) };
        match self.sizes.get(name) {
            Some(Size::Known(shape)) => return Ok(*shape),
            Some(Size::Measuring) => return Err(Unmeasurable::Cycle(name.to_string())),
            None => {}
        }
        self.sizes.insert(name, Size::Measuring);
        let shape = self.selections(&fragment.node.selection_set.node, level)?;
        self.sizes.insert(name, Size::Known(shape));
        Ok(shape)
    }
}

/// A selection set's own fields and aliases, spreads not followed; bounded
/// by the parser's own nesting limit.
fn own(set: &SelectionSet) -> Shape {
    set.items.iter().fold(Shape::default(), |shape, selection| {
        let inner = match &selection.node {
            Selection::Field(field) => {
                let this = Shape { fields: 1, aliases: u64::from(field.node.alias.is_some()), spreads: 0 };
                this.add(own(&field.node.selection_set.node))
            }
            Selection::InlineFragment(inline) => own(&inline.node.selection_set.node),
            Selection::FragmentSpread(_) => Shape { spreads: 1, ..Shape::default() },
        };
        shape.add(inner)
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn measured(text: &str) -> Result<Measure, Unmeasurable> {
        measure(&parse_query(text).expect("a document"))
    }

    /// Each fragment spreads the one before `fan_out` times.
    fn nested(levels: usize, fan_out: usize) -> String {
        let mut text = "fragment F0 on Query { __typename }".to_owned();
        for i in 1..=levels {
            text.push_str(&format!(" fragment F{i} on Query {{ {} }}", format!("...F{} ", i - 1).repeat(fan_out)));
        }
        text + &format!(" {{ ...F{levels} }}")
    }

    #[test]
    fn spreads_count_where_they_are_used() {
        let measure = measured("fragment U on User { a: id email } { me { ...U ...U } x: me { ...U } }").unwrap();
        assert_eq!(measure.expanded, Shape { fields: 8, aliases: 4, spreads: 3 });
        assert_eq!(measure.written, Shape { fields: 4, aliases: 2, spreads: 3 });
    }

    #[test]
    fn nested_fragments_are_sized_by_arithmetic() {
        let started = std::time::Instant::now();
        let measure = measured(&nested(30, 2)).unwrap();
        assert_eq!(measure.expanded.fields, 1 << 30);
        assert_eq!(measure.expanded.spreads, (1 << 31) - 1);
        // Beyond what fits in 64 bits, the sums saturate.
        assert_eq!(measured(&nested(31, 16)).unwrap().expanded.fields, u64::MAX);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn cycles_and_deep_nesting_are_unmeasurable() {
        let cycle = measured("fragment A on Query { ...B } fragment B on Query { __typename ...A } { ...A }");
        assert!(matches!(cycle, Err(Unmeasurable::Cycle(_))), "{cycle:?}");
        let unused = measured("fragment A on Query { ...A } { __typename }");
        assert!(matches!(unused, Err(Unmeasurable::Cycle(_))), "{unused:?}");
        let chain: String = (1..40).map(|i| format!("fragment F{i} on Query {{ ...F{} }} ", i - 1)).collect();
        let chain = format!("fragment F0 on Query {{ __typename }} {chain} {{ ...F39 }}");
        assert_eq!(measured(&chain), Err(Unmeasurable::TooDeep));
        let wide: String = (0..100).map(|i| format!("a{i}: __typename ")).collect();
        assert_eq!(measured(&format!("{{ {wide} }}")).unwrap().expanded.aliases, 100);
    }
}
