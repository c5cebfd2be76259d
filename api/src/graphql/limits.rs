//! Query-shape limits async-graphql lacks: aliases (each one repeats a
//! field's whole cost) and fields per document, counted over the parsed
//! document before anything runs.
//!
//! Checked by the HTTP handler on the request's parsed document (which the
//! schema then reuses) rather than by a schema extension: with any
//! extension installed, async-graphql looks every resolved field up in its
//! registry and runs it through the extension chain, which cost a page of
//! 50 tickets about a tenth of its CPU.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::ServerError;

/// Aliased fields one document may hold.
pub const MAX_ALIASES: usize = 15;
/// Fields one document may hold, fragments counted where they are defined.
pub const MAX_FIELDS: usize = 500;

#[derive(Default)]
struct Count {
    aliases: usize,
    fields: usize,
}

fn count(selections: &SelectionSet, total: &mut Count) {
    for selection in &selections.items {
        match &selection.node {
            Selection::Field(field) => {
                total.fields += 1;
                total.aliases += usize::from(field.node.alias.is_some());
                count(&field.node.selection_set.node, total);
            }
            Selection::InlineFragment(fragment) => count(&fragment.node.selection_set.node, total),
            Selection::FragmentSpread(_) => {}
        }
    }
}

fn measure(document: &ExecutableDocument) -> Count {
    let mut total = Count::default();
    for (_, operation) in document.operations.iter() {
        count(&operation.node.selection_set.node, &mut total);
    }
    for fragment in document.fragments.values() {
        count(&fragment.node.selection_set.node, &mut total);
    }
    total
}

/// Parses the request's query (kept for execution) and refuses it when
/// its shape is over the limits.
///
/// # Errors
/// A syntax error, or the limit the query breaks.
pub fn check(request: &mut async_graphql::Request) -> Result<(), ServerError> {
    let total = measure(request.parsed_query()?);
    if total.aliases > MAX_ALIASES {
        return Err(ServerError::new(format!("a query may use at most {MAX_ALIASES} aliases"), None));
    }
    if total.fields > MAX_FIELDS {
        return Err(ServerError::new(format!("a query may select at most {MAX_FIELDS} fields"), None));
    }
    Ok(())
}
