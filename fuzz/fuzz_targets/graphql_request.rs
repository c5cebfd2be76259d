//! The GraphQL request path on arbitrary JSON bodies: the body reader, the
//! shape limits and async-graphql's validation against the server's own
//! schema, stopped where resolvers would start. Nothing may panic, and no
//! body may take longer than [`BUDGET`] to be accepted or refused.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use api::graphql::limits::{Documents, Prepared};
use api::graphql::TicketsSchema;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Request, Response, ValidationMode, Value};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// Far above what any document should cost, far below a frozen worker.
const BUDGET: Duration = Duration::from_secs(1);

/// Answers every request that passed validation with `null`: resolvers
/// would need a store, and what is fuzzed here is what runs before them.
struct StopBeforeResolvers;

#[async_trait::async_trait]
impl Extension for StopBeforeResolvers {
    async fn execute(&self, _ctx: &ExtensionContext<'_>, _operation: Option<&str>, _next: NextExecute<'_>) -> Response {
        Response::new(Value::Null)
    }
}

impl ExtensionFactory for StopBeforeResolvers {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopBeforeResolvers)
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    /// As `graphql::Schemas`: `full` for a new document, `known` for one
    /// that passed before.
    full: TicketsSchema,
    known: TicketsSchema,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let schema = |mode| api::graphql::builder(mode).extension(StopBeforeResolvers).finish();
    Harness {
        runtime: tokio::runtime::Builder::new_current_thread().build().expect("a runtime"),
        full: schema(ValidationMode::Strict),
        known: schema(ValidationMode::Fast),
    }
});

fuzz_target!(|body: &[u8]| {
    // Built before the clock starts: the first input is timed like the rest.
    let harness = &*HARNESS;
    let started = Instant::now();
    harness.runtime.block_on(answer(body));
    let took = started.elapsed();
    assert!(took < BUDGET, "a {} byte body took {took:?}", body.len());
});

/// What the HTTP handler does with a JSON body, up to the resolvers; a
/// document that passed is then sent again, as clients do, and runs on the
/// schema for known documents.
async fn answer(body: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let Ok(mut request) = api::upload::read_request(&headers, Body::from(body.to_vec()), 1 << 20).await else {
        return;
    };
    let again = || {
        let mut copy = Request::new(request.query.clone()).variables(request.variables.clone());
        copy.operation_name.clone_from(&request.operation_name);
        copy
    };
    let mut second = again();
    let documents = Documents::default();
    let Ok(prepared) = documents.prepare(&mut request).await else { return };
    let response = HARNESS.full.execute(request).await;
    documents.answered(prepared, &response);
    if let Ok(Prepared::Known) = documents.prepare(&mut second).await {
        HARNESS.known.execute(second).await;
    }
}
