//! Batches what a response mentions into one query per kind and level:
//! users (reporters, assignees, actors, uploaders), and each ticket's
//! history and attachments. Cached for one request only, so a role change
//! is never served stale.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use projections::read::{AttachmentRow, HistoryRow, ReadModels, UserRow};
use uuid::Uuid;

use crate::error::ApiError;

pub struct UserLoader(pub ReadModels);

impl Loader<Uuid> for UserLoader {
    type Value = UserRow;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UserRow>, ApiError> {
        let rows = self.0.users_by_ids(keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
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
