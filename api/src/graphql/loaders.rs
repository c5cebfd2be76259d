//! Batches what a response mentions into one query per kind and level:
//! users (reporters, assignees, actors, uploaders), and each ticket's
//! history and attachments. Cached for one request only; users come from
//! `ReadModels::users_by_ids`, which serves from memory only rows known
//! to be current, as it does for every request's caller check.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::{Context, Lookahead, Value};
use projections::read::{AttachmentRow, HistoryRow, ReadModels, TicketInFull, TicketParts, TicketRow, UserRow};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub struct UserLoader(pub ReadModels);

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, ApiError> {
        let rows = self.0.users_by_ids(keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, Arc::unwrap_or_clone(row))).collect())
    }
}

/// A ticket's history, keyed by ticket id; shared, since the loader's cache
/// hands out a copy of what it holds and a history can be thousands long.
pub struct HistoryLoader(pub ReadModels);

impl Loader<Uuid> for HistoryLoader {
    type Value = Arc<Vec<HistoryRow>>;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Arc<Vec<HistoryRow>>>, ApiError> {
        let mut by_ticket: HashMap<Uuid, Vec<HistoryRow>> = keys.iter().map(|id| (*id, Vec::new())).collect();
        for (ticket, row) in self.0.histories(keys).await? {
            by_ticket.entry(ticket).or_default().push(row);
        }
        Ok(by_ticket.into_iter().map(|(ticket, rows)| (ticket, Arc::new(rows))).collect())
    }
}

/// A ticket's attachments, keyed by ticket id.
pub struct AttachmentLoader(pub ReadModels);

impl Loader<Uuid> for AttachmentLoader {
    type Value = Vec<AttachmentRow>;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<AttachmentRow>>, ApiError> {
        let mut by_ticket: HashMap<Uuid, Vec<AttachmentRow>> = keys.iter().map(|id| (*id, Vec::new())).collect();
        for row in self.0.attachments_of(keys).await? {
            by_ticket.entry(row.ticket_id).or_default().push(row);
        }
        Ok(by_ticket)
    }
}

pub type Users = DataLoader<UserLoader, HashMapCache>;
pub type Histories = DataLoader<HistoryLoader, HashMapCache>;
pub type Attachments = DataLoader<AttachmentLoader, HashMapCache>;

/// Fresh loaders for one request.
pub fn for_request(read: &ReadModels) -> (Users, Histories, Attachments) {
    (
        DataLoader::with_cache(UserLoader(read.clone()), tokio::spawn, HashMapCache::default()),
        DataLoader::with_cache(HistoryLoader(read.clone()), tokio::spawn, HashMapCache::default()),
        DataLoader::with_cache(AttachmentLoader(read.clone()), tokio::spawn, HashMapCache::default()),
    )
}

/// Whether some `history` selected under `selection` asks for the whole
/// history rather than a page of it (`first` or `after`).
fn asks_whole_history(selection: &Lookahead<'_>) -> bool {
    selection.field("history").selection_fields().iter().any(|field| {
        field.arguments().map_or(true, |arguments| {
            !arguments.iter().any(|(name, value)| matches!(name.as_str(), "first" | "after") && *value != Value::Null)
        })
    })
}

/// One ticket's detail has nothing to batch with: what its fields will ask
/// the loaders for was read with its row (`ReadModels::ticket_with`:
/// history and attachments as `parts` says), or is read here (a long
/// history, once the budget admits it), and is put in the loaders' caches,
/// with every user they and the ticket mention, read at once. A loader
/// would otherwise wait out its batching delay (a timer thread's round
/// trip and at least 1 ms) once per level. Anything missed here is still
/// loaded by the loaders.
///
/// # Errors
/// When the store fails.
pub async fn prime_ticket(
    ctx: &Context<'_>,
    read: &ReadModels,
    ticket: TicketInFull,
    parts: TicketParts,
) -> ApiResult<TicketRow> {
    let selection = ctx.look_ahead();
    let TicketInFull { row, history, attachments } = ticket;
    // A history too long to come with the row is read once the server's
    // budget for long histories admits it (`graphql::admission`), unless
    // only pages of it (`first`, `after`) are asked for: the field reads
    // those itself.
    let history = match history {
        Some(history) => Some(history),
        None if parts.history && asks_whole_history(&selection) => {
            crate::graphql::admit_history(ctx, usize::try_from(row.version).unwrap_or(usize::MAX)).await;
            Some(read.history(row.id).await?)
        }
        None => None,
    };
    let mut users = HashSet::new();
    if selection.field("reporter").exists() {
        users.insert(row.reporter_id);
    }
    if selection.field("assignee").exists() {
        users.extend(row.assignee_id);
    }
    if selection.field("history").field("actor").exists() {
        users.extend(history.iter().flatten().filter_map(|entry| entry.actor_id));
    }
    if selection.field("attachments").field("uploadedBy").exists() {
        users.extend(attachments.iter().filter_map(|attachment| attachment.uploaded_by));
    }
    if let Some(history) = history {
        ctx.data_unchecked::<Histories>().feed_one(row.id, Arc::new(history)).await;
    }
    if parts.attachments {
        ctx.data_unchecked::<Attachments>().feed_one(row.id, attachments).await;
    }
    if !users.is_empty() {
        let ids: Vec<Uuid> = users.into_iter().collect();
        ctx.data_unchecked::<Users>().feed_many(UserLoader(read.clone()).load(&ids).await?).await;
    }
    Ok(row)
}
