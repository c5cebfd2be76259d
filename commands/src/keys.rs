//! The key ring: each ticket's data key, stored wrapped by a master key.
//! Deleting a ticket's row shreds its sealed text in every event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::values::TicketId;
use thiserror::Error;
use uuid::Uuid;

use crate::cipher::{CipherError, DataKey, MasterKeys, WrappedKey};
use crate::db::Db;
use crate::on_db;
use crate::parts::try_in_parts;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error("key store failure: {0}")]
    Store(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct KeyRing {
    db: Db,
    master: Arc<MasterKeys>,
}

impl KeyRing {
    pub fn new(db: Db, master: MasterKeys) -> Self {
        Self { db, master: Arc::new(master) }
    }

    /// Makes and stores a fresh data key for a new ticket. It is written
    /// before the ticket's first event, so no event is ever unreadable; a
    /// key whose command then fails is harmless and unused.
    ///
    /// # Errors
    /// When the key cannot be stored.
    pub async fn create(&self, ticket: TicketId) -> Result<DataKey, KeyError> {
        let (key, wrapped) = self.master.new_data_key(ticket.as_uuid());
        const SQL: &str = "INSERT INTO data_keys (ticket_id, kid, wrapped) VALUES ($1, $2, $3)";
        on_db!(&self.db, pool => sqlx::query(SQL).bind(ticket.as_uuid()).bind(&wrapped.kid).bind(&wrapped.ciphertext).execute(pool).await.map(|_| ()))?;
        Ok(key)
    }

    /// Makes a fresh data key for a new ticket without storing it: the
    /// write side stores the wrapped key with the ticket's first events
    /// (`WriteSide::open_ticket`), so the key exists exactly when they do.
    pub fn mint(&self, ticket: TicketId) -> (DataKey, WrappedKey) {
        self.master.new_data_key(ticket.as_uuid())
    }

    /// The ticket's data key, or `None` once it has been shredded.
    ///
    /// # Errors
    /// When the store fails or the master key named by the row is unknown.
    pub async fn get(&self, ticket: TicketId) -> Result<Option<DataKey>, KeyError> {
        Ok(self.get_many(&[ticket.as_uuid()]).await?.remove(&ticket.as_uuid()))
    }

    /// The data keys of many tickets in one query; shredded ones are absent.
    ///
    /// # Errors
    /// When the store fails or a row names an unknown master key.
    pub async fn get_many(&self, tickets: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, KeyError> {
        if tickets.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, String, String)> = match &self.db {
            // One statement whatever the count: as an `IN` list, a
            // rebuild's batch of 4,000 tickets was a new statement of
            // 4,000 parameters for PostgreSQL to parse and plan each time.
            Db::Postgres(pool) => {
                const ANY: &str = "SELECT ticket_id, kid, wrapped FROM data_keys WHERE ticket_id = ANY($1)";
                sqlx::query_as(ANY).bind(tickets).fetch_all(pool).await
            }
            Db::Sqlite(pool) => {
                let mut sql =
                    sqlx::QueryBuilder::new("SELECT ticket_id, kid, wrapped FROM data_keys WHERE ticket_id IN ");
                crate::db::push_id_list(&mut sql, tickets);
                sql.build_query_as().fetch_all(pool).await
            }
        }?;
        // A rebuild's batch unwraps thousands, on every core.
        let rows: Vec<(Uuid, WrappedKey)> =
            rows.into_iter().map(|(ticket, kid, ciphertext)| (ticket, WrappedKey { kid, ciphertext })).collect();
        let keys = try_in_parts(&rows, |part| {
            part.iter()
                .map(|(ticket, wrapped)| Ok((*ticket, self.master.unwrap(*ticket, wrapped)?)))
                .collect::<Result<Vec<_>, KeyError>>()
        })?;
        Ok(keys.into_iter().collect())
    }

    /// Re-wraps every data key not yet under the active master key, so an
    /// old master key can be retired. Events are never touched.
    ///
    /// # Errors
    /// When the store fails or a key cannot be unwrapped.
    pub async fn rotate(&self) -> Result<u64, KeyError> {
        const SELECT: &str = "SELECT ticket_id, kid, wrapped FROM data_keys WHERE kid <> $1";
        const UPDATE: &str = "UPDATE data_keys SET kid = $2, wrapped = $3 WHERE ticket_id = $1";
        let rows: Vec<(uuid::Uuid, String, String)> = on_db!(&self.db, pool =>
            sqlx::query_as(SELECT).bind(self.master.active_kid()).fetch_all(pool).await)?;
        let mut count = 0;
        for (ticket, kid, ciphertext) in rows {
            let rewrapped = self.master.rewrap(ticket, &WrappedKey { kid, ciphertext })?;
            on_db!(&self.db, pool => sqlx::query(UPDATE).bind(ticket).bind(&rewrapped.kid).bind(&rewrapped.ciphertext).execute(pool).await.map(|_| ()))?;
            count += 1;
        }
        Ok(count)
    }
}

/// Wrapped data keys of tickets being opened, by stream id: the append of
/// a stream's first events stores its key in the same statement
/// (PostgreSQL) or transaction (SQLite), so a create is one durable commit.
#[derive(Default)]
pub struct NewKeys(Mutex<HashMap<String, (Uuid, WrappedKey)>>);

impl NewKeys {
    pub(crate) fn put(&self, stream: &str, ticket: Uuid, key: WrappedKey) {
        if let Ok(mut keys) = self.0.lock() {
            keys.insert(stream.to_owned(), (ticket, key));
        }
    }

    pub(crate) fn get(&self, stream: &str) -> Option<(Uuid, WrappedKey)> {
        self.0.lock().ok()?.get(stream).cloned()
    }

    pub(crate) fn forget(&self, stream: &str) {
        if let Ok(mut keys) = self.0.lock() {
            keys.remove(stream);
        }
    }
}
