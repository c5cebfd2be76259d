//! Query-shape limits async-graphql lacks: aliases (each one repeats a
//! field's whole cost), fields and fragment spreads per document, counted
//! where each fragment is spread (`graphql::shape`) before anything walks
//! the expanded document, and a bounded pool in which new documents are
//! parsed and measured.
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
//!
//! A new document is parsed and measured on a blocking thread, a few at a
//! time: parsing is the one step whose cost grows with the text (up to the
//! 1 MiB body limit) rather than with the bounded shape, and a request's
//! deadline can only stop it between steps, never in the middle of one.
//! Once measured within the limits, async-graphql's validation walks at
//! most [`MAX_FIELDS`] fields and [`MAX_SPREADS`] spreads.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError};
use lru::LruCache;
use tokio::sync::Semaphore;

use super::shape::{self, Unmeasurable};

/// Aliased fields one document may hold, fragments counted where spread.
pub const MAX_ALIASES: u64 = 15;
/// Fields one document may hold, fragments counted where spread.
pub const MAX_FIELDS: u64 = 500;
/// Fragment spreads one document may hold, counted where expanded.
pub const MAX_SPREADS: u64 = 500;
/// New documents parsed and measured at once: the other threads stay free
/// for requests whose documents are known.
const PARSING_THREADS: usize = 2;

/// Documents kept, least recently used dropped first.
const CACHED_DOCUMENTS: usize = 256;
/// Longer query texts are parsed every time rather than kept.
const MAX_CACHED_QUERY: usize = 8 * 1024;

/// Parsed documents that passed [`check`] and full validation, by query
/// text, and the pool that parses new ones.
pub struct Documents {
    known: Mutex<LruCache<String, ExecutableDocument>>,
    parsing: Arc<Semaphore>,
}

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
        Self {
            known: Mutex::new(LruCache::new(NonZeroUsize::new(CACHED_DOCUMENTS).unwrap_or(NonZeroUsize::MIN))),
            parsing: Arc::new(Semaphore::new(PARSING_THREADS)),
        }
    }
}

impl Documents {
    /// Gives the request its parsed document, from the cache when its text
    /// passed before, else parsed and checked here.
    ///
    /// # Errors
    /// As [`check`].
    pub async fn prepare(&self, request: &mut async_graphql::Request) -> Result<Prepared, ServerError> {
        let cacheable = request.query.len() <= MAX_CACHED_QUERY;
        if cacheable {
            let known = self.known.lock().ok().and_then(|mut cache| cache.get(&request.query).cloned());
            if let Some(document) = known {
                request.set_parsed_query(document);
                return Ok(Prepared::Known);
            }
        }
        self.parse(request).await?;
        let copy = cacheable.then(|| request.parsed_query().cloned().map(|doc| (request.query.clone(), doc)));
        Ok(Prepared::New(copy.transpose()?))
    }

    /// Parses and checks the request's document on the bounded pool, and
    /// gives it to the request.
    ///
    /// # Errors
    /// As [`check`].
    pub async fn parse(&self, request: &mut async_graphql::Request) -> Result<(), ServerError> {
        let busy = || ServerError::new("the server is stopping", None);
        // The permit goes with the work, so a request abandoned while its
        // document is parsed still holds its place until the parse ends.
        let permit = self.parsing.clone().acquire_owned().await.map_err(|_| busy())?;
        let query = std::mem::take(&mut request.query);
        let parsed = tokio::task::spawn_blocking(move || {
            let parsed = parse_checked(&query);
            drop(permit);
            (query, parsed)
        });
        let (query, parsed) = parsed.await.map_err(|_| busy())?;
        request.query = query;
        request.set_parsed_query(parsed?);
        Ok(())
    }

    /// Keeps a new document once its `response` shows that it passed full
    /// validation: every error it holds, if any, a resolver's (with a path).
    pub fn answered(&self, prepared: Prepared, response: &Response) {
        let Prepared::New(Some((query, document))) = prepared else { return };
        if response.errors.iter().all(|error| !error.path.is_empty()) {
            if let Ok(mut cache) = self.known.lock() {
                cache.put(query, document);
            }
        }
    }
}

/// Parses `query` and refuses it when its shape is over the limits.
///
/// # Errors
/// A syntax error, or the limit the query breaks.
pub fn parse_checked(query: &str) -> Result<ExecutableDocument, ServerError> {
    let document = async_graphql::parser::parse_query(query).map_err(ServerError::from)?;
    check(&document)?;
    Ok(document)
}

/// Refuses `document` when its shape is over the limits.
///
/// # Errors
/// The limit the document breaks.
pub fn check(document: &ExecutableDocument) -> Result<(), ServerError> {
    let refused = |message: String| Err(ServerError::new(message, None));
    let measure = match shape::measure(document) {
        Ok(measure) => measure,
        Err(Unmeasurable::TooDeep) => {
            return refused(format!("the query is nested too deep (at most {} levels)", shape::MAX_NESTING))
        }
        Err(Unmeasurable::Cycle(name)) => return refused(format!("fragment {name} spreads itself")),
    };
    let (written, expanded) = (measure.written, measure.expanded);
    if written.aliases.max(expanded.aliases) > MAX_ALIASES {
        return refused(format!("a query may use at most {MAX_ALIASES} aliases"));
    }
    if written.fields.max(expanded.fields) > MAX_FIELDS {
        return refused(format!("a query may select at most {MAX_FIELDS} fields"));
    }
    if written.spreads.max(expanded.spreads) > MAX_SPREADS {
        return refused(format!("a query may spread fragments at most {MAX_SPREADS} times"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> async_graphql::Request {
        async_graphql::Request::new(query)
    }

    #[tokio::test]
    async fn a_document_is_kept_once_it_passed_and_one_that_failed_is_refused_again() {
        let documents = Documents::default();
        let query = "query($id: ID!) { ticket(id: $id) { id title } }";
        let mut first = request(query);
        let prepared = documents.prepare(&mut first).await.unwrap();
        assert!(matches!(prepared, Prepared::New(Some(_))));
        documents.answered(prepared, &Response::from_errors(vec![ServerError::new("Unknown field", None)]));
        assert_eq!(documents.known.lock().unwrap().len(), 0, "a document that failed validation is not kept");

        let prepared = documents.prepare(&mut request(query)).await.unwrap();
        let mut resolver_error = ServerError::new("not found", None);
        resolver_error.path.push(async_graphql::PathSegment::Field("ticket".to_owned()));
        documents.answered(prepared, &Response::from_errors(vec![resolver_error]));
        let mut again = request(query);
        assert!(matches!(documents.prepare(&mut again).await.unwrap(), Prepared::Known));
        assert_eq!(format!("{:?}", again.parsed_query().unwrap()), format!("{:?}", first.parsed_query().unwrap()));

        let aliases: String = (0..=MAX_ALIASES).map(|i| format!("a{i}: me {{ id }} ")).collect();
        let over = format!("{{ {aliases} }}");
        for _ in 0..2 {
            let refused = documents.prepare(&mut request(&over)).await.err().unwrap();
            assert!(refused.message.contains("aliases"), "{}", refused.message);
        }
        assert!(documents.prepare(&mut request("{ me { id ")).await.is_err());
        assert_eq!(documents.known.lock().unwrap().len(), 1, "only documents that passed are kept");
    }
}
