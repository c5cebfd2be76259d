//! Query-shape limits async-graphql lacks: aliases (each one repeats a
//! field's whole cost) and fields per document, counted over the parsed
//! document before anything runs.
//!
//! Checked by the HTTP handler on the request's parsed document (which the
//! schema then reuses) rather than by a schema extension: with any
//! extension installed, async-graphql looks every resolved field up in its
//! registry and runs it through the extension chain, which cost a page of
//! 50 tickets about a tenth of its CPU.
//!
//! Clients send the same few documents over and over, and parsing one
//! (pest) cost a ticket's detail read about a twelfth of the process's CPU,
//! and validating it in full a page of tickets a twentieth: [`Documents`]
//! keeps the documents that passed these checks and async-graphql's full
//! validation by their text, and hands each request a copy to execute on
//! the schema that validates only what depends on the request's variables
//! (depth, complexity, uploads; see `graphql::Schemas`).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Response, ServerError};
use lru::LruCache;

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

/// Documents kept, least recently used dropped first.
const CACHED_DOCUMENTS: usize = 256;
/// Longer query texts are parsed every time rather than kept.
const MAX_CACHED_QUERY: usize = 8 * 1024;

/// Parsed documents that passed [`check`] and full validation, by query text.
pub struct Documents(Mutex<LruCache<String, ExecutableDocument>>);

/// How a request's document was prepared.
pub enum Prepared {
    /// Kept: it passed full validation before.
    Known,
    /// Parsed now, with a copy to keep once it passes full validation
    /// (none when its text is too long to keep).
    New(Option<(String, ExecutableDocument)>),
}

impl Default for Documents {
    fn default() -> Self {
        Self(Mutex::new(LruCache::new(NonZeroUsize::new(CACHED_DOCUMENTS).unwrap_or(NonZeroUsize::MIN))))
    }
}

impl Documents {
    /// Gives the request its parsed document, from the cache when its text
    /// passed before, else parsed and checked here.
    ///
    /// # Errors
    /// As [`check`].
    pub fn prepare(&self, request: &mut async_graphql::Request) -> Result<Prepared, ServerError> {
        let cacheable = request.query.len() <= MAX_CACHED_QUERY;
        if cacheable {
            let known = self.0.lock().ok().and_then(|mut cache| cache.get(&request.query).cloned());
            if let Some(document) = known {
                request.set_parsed_query(document);
                return Ok(Prepared::Known);
            }
        }
        check(request)?;
        let copy = cacheable.then(|| request.parsed_query().cloned().map(|doc| (request.query.clone(), doc)));
        Ok(Prepared::New(copy.transpose()?))
    }

    /// Keeps a new document once its `response` shows that it passed full
    /// validation: every error it holds, if any, a resolver's (with a path).
    pub fn answered(&self, prepared: Prepared, response: &Response) {
        let Prepared::New(Some((query, document))) = prepared else { return };
        if response.errors.iter().all(|error| !error.path.is_empty()) {
            if let Ok(mut cache) = self.0.lock() {
                cache.put(query, document);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> async_graphql::Request {
        async_graphql::Request::new(query)
    }

    #[test]
    fn a_document_is_kept_once_it_passed_and_one_that_failed_is_refused_again() {
        let documents = Documents::default();
        let query = "query($id: ID!) { ticket(id: $id) { id title } }";
        let mut first = request(query);
        let prepared = documents.prepare(&mut first).unwrap();
        assert!(matches!(prepared, Prepared::New(Some(_))));
        documents.answered(prepared, &Response::from_errors(vec![ServerError::new("Unknown field", None)]));
        assert_eq!(documents.0.lock().unwrap().len(), 0, "a document that failed validation is not kept");

        let prepared = documents.prepare(&mut request(query)).unwrap();
        let mut resolver_error = ServerError::new("not found", None);
        resolver_error.path.push(async_graphql::PathSegment::Field("ticket".to_owned()));
        documents.answered(prepared, &Response::from_errors(vec![resolver_error]));
        let mut again = request(query);
        assert!(matches!(documents.prepare(&mut again).unwrap(), Prepared::Known));
        assert_eq!(format!("{:?}", again.parsed_query().unwrap()), format!("{:?}", first.parsed_query().unwrap()));

        let aliases: String = (0..=MAX_ALIASES).map(|i| format!("a{i}: me {{ id }} ")).collect();
        let over = format!("{{ {aliases} }}");
        for _ in 0..2 {
            let refused = documents.prepare(&mut request(&over)).err().unwrap();
            assert!(refused.message.contains("aliases"), "{}", refused.message);
        }
        assert!(documents.prepare(&mut request("{ me { id ")).is_err());
        assert_eq!(documents.0.lock().unwrap().len(), 1, "only documents that passed are kept");
    }
}
