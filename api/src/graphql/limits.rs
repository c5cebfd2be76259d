//! Query-shape limits async-graphql lacks: aliases (each one repeats a
//! field's whole cost) and fields per document, counted over the parsed
//! document before anything runs.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

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

pub struct ShapeLimits;

impl ExtensionFactory for ShapeLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ShapeLimitsExtension)
    }
}

struct ShapeLimitsExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ShapeLimitsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let total = measure(&document);
        if total.aliases > MAX_ALIASES {
            return Err(ServerError::new(format!("a query may use at most {MAX_ALIASES} aliases"), None));
        }
        if total.fields > MAX_FIELDS {
            return Err(ServerError::new(format!("a query may select at most {MAX_FIELDS} fields"), None));
        }
        Ok(document)
    }
}
