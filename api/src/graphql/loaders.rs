//! Batches what a response mentions into one query per kind and level:
//! users (reporters, assignees, actors, uploaders), and each ticket's
//! history and attachments. Cached for one request only; users come from
//! `ReadModels::users_by_ids`, which serves from memory only rows known
//! to be current, as it does for every request's caller check.

use std::collections::{HashMap, HashSet};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::Context;
use projections::read::{AttachmentRow, HistoryRow, ReadModels, TicketRow, UserRow};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub struct UserLoader(pub ReadModels);

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, ApiError> {
        let rows = self.0.users_by_ids(keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, std::sync::Arc::unwrap_or_clone(row))).collect())
    }
}

/// A ticket's history, keyed by ticket id.
pub struct HistoryLoader(pub ReadModels);

impl Loader<Uuid> for HistoryLoader {
    type Value = Vec<HistoryRow>;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<HistoryRow>>, ApiError> {
        let mut by_ticket: HashMap<Uuid, Vec<HistoryRow>> = keys.iter().map(|id| (*id, Vec::new())).collect();
        for (ticket, row) in self.0.histories(keys).await? {
            by_ticket.entry(ticket).or_default().push(row);
        }
        Ok(by_ticket)
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

/// One ticket's detail has nothing to batch with: what its fields will ask
/// the loaders for is fetched here at once (history and attachments side by
/// side, then every user they and the ticket mention in one query) and put
/// in the loaders' caches. A loader would otherwise wait out its batching
/// delay (a timer thread's round trip and at least 1 ms) once per level.
/// What the selection does not ask for is not fetched; anything missed here
/// is still loaded by the loaders.
///
/// # Errors
/// When the store fails.
pub async fn prime_ticket(ctx: &Context<'_>, read: &ReadModels, ticket: &TicketRow) -> ApiResult<()> {
    let selection = ctx.look_ahead();
    let (history, attachments) = (selection.field("history"), selection.field("attachments"));
    let ids = [ticket.id];
    let (histories, attachments_of) = tokio::try_join!(
        async {
            if history.exists() {
                HistoryLoader(read.clone()).load(&ids).await
            } else {
                Ok(HashMap::new())
            }
        },
        async {
            if attachments.exists() {
                AttachmentLoader(read.clone()).load(&ids).await
            } else {
                Ok(HashMap::new())
            }
        },
    )?;
    let mut users = HashSet::new();
    if selection.field("reporter").exists() {
        users.insert(ticket.reporter_id);
    }
    if selection.field("assignee").exists() {
        users.extend(ticket.assignee_id);
    }
    if history.field("actor").exists() {
        users.extend(histories.values().flatten().filter_map(|row| row.actor_id));
    }
    if attachments.field("uploadedBy").exists() {
        users.extend(attachments_of.values().flatten().filter_map(|row| row.uploaded_by));
    }
    ctx.data_unchecked::<Histories>().feed_many(histories).await;
    ctx.data_unchecked::<Attachments>().feed_many(attachments_of).await;
    if !users.is_empty() {
        let ids: Vec<Uuid> = users.into_iter().collect();
        ctx.data_unchecked::<Users>().feed_many(UserLoader(read.clone()).load(&ids).await?).await;
    }
    Ok(())
}
