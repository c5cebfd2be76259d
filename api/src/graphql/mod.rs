//! The GraphQL schema (DESIGN §5): queries, mutations and their limits.

pub mod admission;
pub mod idempotency;
pub mod limits;
pub mod loaders;
mod mutation;
mod query;
pub mod shape;
pub mod spliced;
pub mod subscription;
pub mod types;

use async_graphql::{Context, Response, Schema, SchemaBuilder, ValidationMode};

use crate::auth::caller::Caller;
use crate::config::Introspection;
use crate::state::{App, AppState};
use commands::write::Actor;

pub type TicketsSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// Per-request facts the HTTP layer puts in the GraphQL context.
pub struct RequestInfo {
    pub caller: Caller,
    pub request_id: String,
    pub client: String,
    /// What this request holds of the server's budget for long histories.
    pub held: std::sync::Arc<admission::Held>,
    /// The JSON texts its fields answered, for the handler to splice in.
    pub texts: std::sync::Arc<spliced::Texts>,
}

/// The schema twice: `full` validates every request in full; `known`
/// runs the documents that passed full validation before (see
/// `limits::Documents`) and checks only what depends on a request's
/// variables: depth, complexity and uploads. A variable of the wrong type
/// is then refused by the resolver that reads it.
pub struct Schemas {
    pub full: TicketsSchema,
    pub known: TicketsSchema,
}

impl Schemas {
    pub fn new(app: &AppState) -> Self {
        Self { full: schema(app.clone(), ValidationMode::Strict), known: schema(app.clone(), ValidationMode::Fast) }
    }
}

/// Builds the schema with depth, complexity and directive limits, since
/// async-graphql sets none by default (the shape limits are checked by the
/// HTTP handler: `limits::check`).
pub fn schema(app: AppState, validation: ValidationMode) -> TicketsSchema {
    let builder = builder(validation).data(app.clone());
    // `admins` is decided per request, by the HTTP handler.
    if app.settings.introspection == Introspection::Off {
        builder.disable_introspection().finish()
    } else {
        builder.finish()
    }
}

/// The schema's types and limits without the application: all that parsing
/// and validation need, so the fuzz targets validate against the very
/// schema the server runs.
pub fn builder(
    validation: ValidationMode,
) -> SchemaBuilder<query::Query, mutation::Mutation, subscription::Subscription> {
    Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
        .validation_mode(validation)
        .limit_depth(10)
        .limit_complexity(5_000)
        .limit_recursive_depth(shape::MAX_NESTING)
        .limit_directives(8)
        .disable_suggestions()
}

/// Errors raised before any resolver ran (syntax, validation, limits,
/// argument coercion) carry no code: they are all the client's.
pub fn code_client_errors(response: &mut Response) {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "BAD_USER_INPUT");
        }
    }
}

pub(crate) fn app<'a>(ctx: &Context<'a>) -> &'a App {
    ctx.data_unchecked::<AppState>()
}

pub(crate) fn info<'a>(ctx: &Context<'a>) -> &'a RequestInfo {
    ctx.data_unchecked::<RequestInfo>()
}

/// Waits until the server's budget for long histories admits `entries`
/// more for this request (`admission`).
pub(crate) async fn admit_history(ctx: &Context<'_>, entries: usize) {
    app(ctx).budget.admit(&info(ctx).held, entries).await;
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    &info(ctx).caller
}

/// The actor recorded on events this request appends.
pub(crate) fn actor(ctx: &Context<'_>) -> Actor {
    let info = info(ctx);
    let viewer = info.caller.viewer().ok();
    Actor {
        user_id: viewer.map(|v| domain::values::UserId::from_uuid(v.id)),
        role: viewer.map(|v| v.role),
        request_id: info.request_id.clone(),
    }
}
