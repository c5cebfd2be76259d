//! Read operations.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as CURSOR;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use projections::read::{TicketKey, TicketParts, TicketQuery};
use uuid::Uuid;

use super::types::{Ticket, TicketFilter, TicketOrder, TicketPage, User};
use super::{app, caller};
use crate::error::{ApiError, ApiResult};

/// The most rows one page may ask for.
const MAX_PAGE: i32 = 100;

pub struct Query;

/// A page costs what one row costs, once per row it may return.
fn page_cost(first: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let rows = usize::try_from(first.unwrap_or(default).clamp(0, MAX_PAGE)).unwrap_or_default();
    rows.max(1) * child_complexity
}

fn page_size(first: i32) -> ApiResult<i64> {
    if first < 0 {
        return Err(ApiError::BadInput("first must not be negative".into()));
    }
    Ok(i64::from(first.min(MAX_PAGE)))
}

/// A search is plain text of at most 200 characters, cleaned as stored
/// text is (see `domain::values`), so it matches what was stored.
fn search_text(search: &str) -> ApiResult<String> {
    Ok(domain::values::SearchText::parse(search)?.as_str().to_owned())
}

fn encode_cursor<T: serde::Serialize>(key: &T) -> String {
    CURSOR.encode(serde_json::to_vec(key).unwrap_or_default())
}

fn decode_cursor<T: serde::de::DeserializeOwned>(cursor: &str) -> ApiResult<T> {
    CURSOR
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::BadInput("invalid cursor".into()))
}

/// Cursors are ours, but clients can forge them: keep times where both
/// stores can compare them.
fn plausible(at: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    use chrono::Datelike;
    if (1..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(ApiError::BadInput("invalid cursor".into()))
    }
}

fn optional_id(id: Option<&ID>) -> ApiResult<Option<Uuid>> {
    id.map(|id| Uuid::parse_str(id).map_err(|_| ApiError::BadInput("not a valid id".into()))).transpose()
}

#[Object]
impl Query {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let viewer = caller(ctx).viewer()?;
        let user = app(ctx).read.user(viewer.id).await?;
        user.map(User).ok_or(ApiError::Unauthenticated("invalid or expired token"))
    }

    /// A ticket the caller may see, else `null`.
    async fn ticket(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Ticket>> {
        let viewer = caller(ctx).viewer()?;
        let selection = ctx.look_ahead();
        let parts = TicketParts {
            history: selection.field("history").exists(),
            attachments: selection.field("attachments").exists(),
        };
        let Some(ticket) = app(ctx).visible_ticket_with(viewer, &id, parts).await? else { return Ok(None) };
        let row = super::loaders::prime_ticket(ctx, &app(ctx).read, ticket, parts).await?;
        Ok(Some(Ticket::from(row)))
    }

    /// Tickets in the caller's scope, newest first by default.
    #[graphql(complexity = "page_cost(first, 20, child_complexity)")]
    async fn tickets(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        filter: Option<TicketFilter>,
        #[graphql(default)] order_by: TicketOrder,
    ) -> ApiResult<TicketPage> {
        let viewer = caller(ctx).viewer()?;
        let limit = page_size(first.unwrap_or(20))?;
        let filter = filter.unwrap_or_default();
        let order = order_by.into();
        // Columns no node asks for are not read (fragments count).
        let node = ctx.look_ahead().field("edges").field("node");
        let query = TicketQuery {
            visible_to_reporter: None,
            include_deleted: filter.include_deleted.unwrap_or(false),
            status: filter.status.map(domain::values::Status::from),
            priority: filter.priority.map(domain::values::Priority::from),
            assignee: optional_id(filter.assignee_id.as_ref())?,
            reporter: optional_id(filter.reporter_id.as_ref())?,
            search: filter.search.as_deref().map(search_text).transpose()?,
            order: Some(order),
            after: after
                .as_deref()
                .map(decode_cursor::<TicketKey>)
                .transpose()?
                .map(|key| plausible(key.at).map(|_| key))
                .transpose()?,
            limit: limit + 1,
            omit_description: !node.field("description").exists(),
            omit_notes: !node.field("confidentialNotes").exists(),
        };
        let has_previous = query.after.is_some();
        let mut rows = app(ctx).list_tickets(viewer, query).await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or_default());
        let mut connection = Connection::new(has_previous, has_next);
        connection.edges.extend(
            rows.into_iter().map(|row| Edge::new(encode_cursor(&TicketKey::of(&row, order)), Ticket::from(row))),
        );
        Ok(TicketPage(connection))
    }

    /// Every user, oldest first (admins only).
    #[graphql(complexity = "page_cost(first, 50, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, User>> {
        caller(ctx).admin()?;
        let limit = page_size(first.unwrap_or(50))?;
        let after: Option<(DateTime<Utc>, Uuid)> = after.as_deref().map(decode_cursor).transpose()?;
        let after = after.map(|(at, id)| plausible(at).map(|at| (at, id))).transpose()?;
        let mut rows = app(ctx).read.users(after, limit + 1).await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or_default());
        let mut connection = Connection::new(after.is_some(), has_next);
        connection
            .edges
            .extend(rows.into_iter().map(|row| Edge::new(encode_cursor(&(row.created_at, row.id)), User(row))));
        Ok(connection)
    }
}
