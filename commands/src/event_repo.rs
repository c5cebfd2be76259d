//! One event repository over either store, so the write side is written once.
//!
//! Two operations bypass the stores' generic code on the hot path: loading
//! a stream (snapshot and later events in one statement rather than two,
//! the second of which postgres-es formats with the sequence inlined, so
//! PostgreSQL parses and plans it afresh every time) and appending events
//! that carry no snapshot (one multi-row INSERT, atomic on its own, instead
//! of BEGIN, one INSERT per event and COMMIT). Snapshot writes still go
//! through postgres-es and sqlite-es.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::{PgPool, QueryBuilder, SqlitePool};

use crate::db::Db;

pub enum EventRepo {
    Postgres(PostgresEventRepository, PgPool),
    Sqlite(SqliteEventRepository, SqlitePool),
}

/// A stream as stored: its snapshot, if any, and the events after it.
#[derive(Debug, Default)]
pub struct StoredStream {
    pub snapshot: Option<SerializedSnapshot>,
    pub events: Vec<SerializedEvent>,
}

/// The snapshot row (kind 0) comes first, then the events after it in order.
/// `current_snapshot` rides in the events' `sequence` slot of row 0.
const LOAD_POSTGRES: &str = "
SELECT 0 AS kind, last_sequence AS sequence, current_snapshot AS snapshot, '' AS event_type, '' AS event_version,
       payload, NULL::jsonb AS metadata
  FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2
UNION ALL
SELECT 1, sequence, 0, event_type, event_version, payload, metadata
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
   AND sequence > COALESCE((SELECT last_sequence FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2), 0)
 ORDER BY kind, sequence";

const LOAD_SQLITE: &str = "
SELECT 0 AS kind, last_sequence AS sequence, current_snapshot AS snapshot, '' AS event_type, '' AS event_version,
       json(payload) AS payload, NULL AS metadata
  FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2
UNION ALL
SELECT 1, sequence, 0, event_type, event_version, json(payload), json(metadata)
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
   AND sequence > COALESCE((SELECT last_sequence FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2), 0)
 ORDER BY kind, sequence";

#[derive(sqlx::FromRow)]
struct StreamRow {
    kind: i32,
    sequence: i64,
    snapshot: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Option<Value>,
}

impl StoredStream {
    fn from_rows(aggregate_type: &str, aggregate_id: &str, rows: Vec<StreamRow>) -> Result<Self, PersistenceError> {
        let mut stream = StoredStream { snapshot: None, events: Vec::with_capacity(rows.len()) };
        for row in rows {
            let sequence = usize::try_from(row.sequence).map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            if row.kind == 0 {
                let current_snapshot =
                    usize::try_from(row.snapshot).map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
                stream.snapshot = Some(SerializedSnapshot {
                    aggregate_id: aggregate_id.to_owned(),
                    aggregate: row.payload,
                    current_sequence: sequence,
                    current_snapshot,
                });
            } else {
                stream.events.push(SerializedEvent::new(
                    aggregate_id.to_owned(),
                    sequence,
                    aggregate_type.to_owned(),
                    row.event_type,
                    row.event_version,
                    row.payload,
                    row.metadata.unwrap_or(Value::Null),
                ));
            }
        }
        Ok(stream)
    }
}

fn unknown(error: sqlx::Error) -> PersistenceError {
    let conflict = error.as_database_error().is_some_and(|e| e.is_unique_violation());
    if conflict {
        PersistenceError::OptimisticLockError
    } else {
        PersistenceError::UnknownError(Box::new(error))
    }
}

impl EventRepo {
    pub fn new(db: &Db) -> Self {
        match db {
            Db::Postgres(pool) => EventRepo::Postgres(PostgresEventRepository::new(pool.clone()), pool.clone()),
            Db::Sqlite(pool) => EventRepo::Sqlite(SqliteEventRepository::new(pool.clone()), pool.clone()),
        }
    }

    /// The stream's snapshot and the events after it, as one consistent read.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn load_stream<A: Aggregate>(&self, aggregate_id: &str) -> Result<StoredStream, PersistenceError> {
        let rows: Vec<StreamRow> = match self {
            EventRepo::Postgres(_, pool) => {
                sqlx::query_as(LOAD_POSTGRES).bind(A::TYPE).bind(aggregate_id).fetch_all(pool).await
            }
            EventRepo::Sqlite(_, pool) => {
                sqlx::query_as(LOAD_SQLITE).bind(A::TYPE).bind(aggregate_id).fetch_all(pool).await
            }
        }
        .map_err(unknown)?;
        StoredStream::from_rows(A::TYPE, aggregate_id, rows)
    }

    /// Appends events in one statement; a sequence already taken means
    /// another command won the race.
    async fn append<A: Aggregate>(&self, events: &[SerializedEvent]) -> Result<(), PersistenceError> {
        const INSERT: &str =
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ";
        macro_rules! insert {
            ($pool:expr) => {{
                let mut sql = QueryBuilder::new(INSERT);
                sql.push_values(events, |mut row, event| {
                    row.push_bind(A::TYPE)
                        .push_bind(event.aggregate_id.as_str())
                        .push_bind(i64::try_from(event.sequence).unwrap_or(i64::MAX))
                        .push_bind(event.event_type.as_str())
                        .push_bind(event.event_version.as_str())
                        .push_bind(&event.payload)
                        .push_bind(&event.metadata);
                });
                sql.build().execute($pool).await.map(|_| ()).map_err(unknown)
            }};
        }
        match self {
            EventRepo::Postgres(_, pool) => insert!(pool),
            EventRepo::Sqlite(_, pool) => insert!(pool),
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
            EventRepo::Postgres($repo, _) => $call,
            EventRepo::Sqlite($repo, _) => $call,
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
        match (self, snapshot_update) {
            (_, None) => self.append::<A>(events).await,
            (EventRepo::Postgres(repo, _), snapshot_update) => repo.persist::<A>(events, snapshot_update).await,
            (EventRepo::Sqlite(repo, _), snapshot_update) => {
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
