//! One event repository over either store, so the write side is written once.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use crate::db::Db;

pub enum EventRepo {
    Postgres(PostgresEventRepository),
    Sqlite(SqliteEventRepository),
}

impl EventRepo {
    pub fn new(db: &Db) -> Self {
        match db {
            Db::Postgres(pool) => EventRepo::Postgres(PostgresEventRepository::new(pool.clone())),
            Db::Sqlite(pool) => EventRepo::Sqlite(SqliteEventRepository::new(pool.clone())),
        }
    }
}

/// Our SQLite table keys events by position, so a second writer of the same
/// sequence breaks a UNIQUE constraint (2067) rather than the primary key
/// sqlite-es looks for (1555). Both mean the same: another command won.
fn sqlite_unique_is_conflict(error: PersistenceError) -> PersistenceError {
    if let PersistenceError::UnknownError(inner) = &error {
        let unique = inner
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .is_some_and(|e| e.is_unique_violation());
        if unique {
            return PersistenceError::OptimisticLockError;
        }
    }
    error
}

macro_rules! delegate {
    ($self:ident, $repo:ident => $call:expr) => {
        match $self {
            EventRepo::Postgres($repo) => $call,
            EventRepo::Sqlite($repo) => $call,
        }
    };
}

impl PersistedEventRepository for EventRepo {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, repo => repo.get_events::<A>(aggregate_id).await)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, repo => repo.get_last_events::<A>(aggregate_id, last_sequence).await)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        delegate!(self, repo => repo.get_snapshot::<A>(aggregate_id).await)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match self {
            EventRepo::Postgres(repo) => repo.persist::<A>(events, snapshot_update).await,
            EventRepo::Sqlite(repo) => {
                repo.persist::<A>(events, snapshot_update).await.map_err(sqlite_unique_is_conflict)
            }
        }
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, repo => repo.stream_events::<A>(aggregate_id).await)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, repo => repo.stream_all_events::<A>().await)
    }
}
