//! Batches the users a response mentions (reporters, assignees, actors,
//! uploaders) into one query per level, cached for one request only so a
//! role change is never served stale.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use projections::read::{ReadModels, UserRow};
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

pub type Users = DataLoader<UserLoader, HashMapCache>;

/// A fresh loader for one request.
pub fn users(read: ReadModels) -> Users {
    DataLoader::with_cache(UserLoader(read), tokio::spawn, HashMapCache::default())
}
