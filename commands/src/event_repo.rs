//! One event repository over either store, so the write side is written once.
//!
//! The hot path bypasses the stores' generic code: loading a stream reads
//! the snapshot and the events after it in one statement (postgres-es
//! takes two, the second formatted with the sequence inlined, so PostgreSQL
//! parses and plans it afresh every time), and appending writes the events
//! and the snapshot in one statement on PostgreSQL (postgres-es: BEGIN, one
//! INSERT per event, the snapshot, COMMIT), both on connections of
//! [`Statements`]. The tables are postgres-es's and sqlite-es's, and so is
//! every other read.

use std::sync::Arc;

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use deadpool::managed::Pool;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::{Postgres, QueryBuilder, SqlitePool};

use crate::idempotency::{self, Claim, KeyTaken};
use crate::json_text::JsonText;
use crate::keys::NewKeys;
use crate::statements::{self, PgStatements, Statements};

pub enum EventRepo {
    Postgres(PostgresEventRepository, Pool<PgStatements>, Arc<NewKeys>),
    Sqlite(SqliteEventRepository, SqlitePool, Arc<NewKeys>),
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
       payload, NULL::json AS metadata
  FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2
UNION ALL
SELECT 1, sequence, 0, event_type, event_version, payload, metadata
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
   AND sequence > COALESCE((SELECT last_sequence FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2), 0)
 ORDER BY kind, sequence";

const LOAD_SQLITE: &str = "
SELECT 0 AS kind, last_sequence AS sequence, current_snapshot AS snapshot, '' AS event_type, '' AS event_version,
       payload, NULL AS metadata
  FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2
UNION ALL
SELECT 1, sequence, 0, event_type, event_version, payload, metadata
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

/// Runs one appending statement, its own transaction, on a connection of
/// `pool`. Never run twice: whether a statement cut short committed is not
/// known.
async fn alone(pool: &Pool<PgStatements>, mut sql: QueryBuilder<'_, Postgres>) -> Result<(), PersistenceError> {
    let mut conn = statements::connection(pool).await.map_err(unknown)?;
    let result = sql.build().execute(&mut *conn).await;
    statements::give_back(pool, conn, &result);
    result.map(|_| ()).map_err(unknown)
}

/// Runs `record` (binding an idempotency key to the change) and then the
/// appending statement in one transaction on a connection of `pool`: only
/// a mutation sent with an `Idempotency-Key` pays its extra round trips.
async fn recorded(
    pool: &Pool<PgStatements>,
    record: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    mut sql: QueryBuilder<'_, Postgres>,
) -> Result<(), PersistenceError> {
    let mut conn = statements::connection(pool).await.map_err(unknown)?;
    let result = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if record.execute(&mut *tx).await?.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sql.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }
    .await;
    statements::give_back(pool, conn, &result);
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(PersistenceError::UnknownError(Box::new(KeyTaken))),
        Err(error) => Err(unknown(error)),
    }
}

/// The statement that binds the request's idempotency key to the change.
fn record<'a, DB>(
    claim: &'a Claim,
    aggregate_type: &'a str,
    events: &'a [SerializedEvent],
) -> sqlx::query::Query<'a, DB, <DB as sqlx::Database>::Arguments<'a>>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let id = events.first().map_or("", |event| event.aggregate_id.as_str());
    let version = events.last().map_or(0, |e| i64::try_from(e.sequence).unwrap_or(i64::MAX));
    sqlx::query(idempotency::RECORD)
        .bind(aggregate_type)
        .bind(id)
        .bind(version)
        .bind(i64::try_from(events.len()).unwrap_or(i64::MAX))
        .bind(claim.scope.as_str())
        .bind(claim.key.as_str())
        .bind(claim.token.as_str())
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
    /// `new_keys` are the data keys to store with the first events of their
    /// streams. Loads and appends run on `statements`.
    pub fn new(statements: &Statements, new_keys: Arc<NewKeys>) -> Self {
        match statements {
            Statements::Postgres(pool, alone) => {
                EventRepo::Postgres(PostgresEventRepository::new(pool.clone()), alone.clone(), new_keys)
            }
            Statements::Sqlite(pool) => {
                EventRepo::Sqlite(SqliteEventRepository::new(pool.clone()), pool.clone(), new_keys)
            }
        }
    }

    /// The stream's snapshot and the events after it, as one consistent read.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn load_stream<A: Aggregate>(&self, aggregate_id: &str) -> Result<StoredStream, PersistenceError> {
        let rows: Vec<StreamRow> = match self {
            EventRepo::Postgres(_, pool, _) => {
                async {
                    crate::on_reads!(postgres pool, conn =>
                        sqlx::query_as(LOAD_POSTGRES).bind(A::TYPE).bind(aggregate_id).fetch_all(conn).await)
                }
                .await
            }
            EventRepo::Sqlite(_, pool, _) => {
                sqlx::query_as(LOAD_SQLITE).bind(A::TYPE).bind(aggregate_id).fetch_all(pool).await
            }
        }
        .map_err(unknown)?;
        StoredStream::from_rows(A::TYPE, aggregate_id, rows)
    }

    /// Appends events, and with them the aggregate's snapshot when given,
    /// or a new ticket's data key with its first events, atomically; a
    /// sequence already taken means another command won the race. On
    /// PostgreSQL this is one statement (the other inserts run as
    /// data-modifying CTEs), on SQLite one transaction. A request's
    /// idempotency key ([`idempotency::appending`]) is bound to the change
    /// in the same transaction.
    async fn append<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        const INSERT: &str =
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ";
        const SNAPSHOT: &str =
            "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) ";
        // Never back: a snapshot only replaces an older one.
        const SNAPSHOT_CONFLICT: &str = " ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
            SET last_sequence = excluded.last_sequence, current_snapshot = excluded.current_snapshot, \
            payload = excluded.payload WHERE snapshots.last_sequence < excluded.last_sequence";
        // A new stream's first events are as cheap to replay as a snapshot
        // is to read, and most tickets are read far more than changed: the
        // first snapshot comes with the stream's second command.
        let snapshot = snapshot.filter(|_| events.first().is_none_or(|event| event.sequence > 1));
        let last_sequence = events.last().map_or(0, |e| i64::try_from(e.sequence).unwrap_or(i64::MAX));
        let new_keys = match self {
            EventRepo::Postgres(_, _, keys) | EventRepo::Sqlite(_, _, keys) => keys,
        };
        let key =
            events.first().filter(|first| first.sequence == 1).and_then(|first| new_keys.get(&first.aggregate_id));
        const KEY: &str = "INSERT INTO data_keys (ticket_id, kid, wrapped) ";
        macro_rules! key {
            ($sql:expr, $ticket:expr, $wrapped:expr) => {
                $sql.push(KEY).push_values([()], |mut row, ()| {
                    row.push_bind($ticket).push_bind($wrapped.kid.as_str()).push_bind($wrapped.ciphertext.as_str());
                })
            };
        }
        macro_rules! events {
            ($sql:expr) => {
                $sql.push(INSERT).push_values(events, |mut row, event| {
                    row.push_bind(A::TYPE)
                        .push_bind(event.aggregate_id.as_str())
                        .push_bind(i64::try_from(event.sequence).unwrap_or(i64::MAX))
                        .push_bind(event.event_type.as_str())
                        .push_bind(event.event_version.as_str())
                        .push_bind(JsonText(&event.payload))
                        .push_bind(JsonText(&event.metadata));
                })
            };
        }
        macro_rules! snapshot {
            ($sql:expr, $id:expr, $payload:expr, $current:expr) => {{
                $sql.push(SNAPSHOT).push_values([()], |mut row, ()| {
                    row.push_bind(A::TYPE)
                        .push_bind($id)
                        .push_bind(last_sequence)
                        .push_bind(i64::try_from($current).unwrap_or(i64::MAX))
                        .push_bind(JsonText($payload));
                });
                $sql.push(SNAPSHOT_CONFLICT)
            }};
        }
        let claim = idempotency::current();
        match (self, &snapshot) {
            (EventRepo::Postgres(_, pool, _), snapshot) => {
                let mut sql = QueryBuilder::new("");
                match snapshot {
                    None => {
                        if let Some((ticket, wrapped)) = &key {
                            sql.push("WITH keyed AS (");
                            key!(sql, *ticket, wrapped);
                            sql.push(") ");
                        }
                        events!(sql);
                    }
                    Some((id, payload, current)) => {
                        sql.push("WITH appended AS (");
                        events!(sql);
                        sql.push(") ");
                        snapshot!(sql, id.as_str(), payload, *current);
                    }
                }
                match &claim {
                    Some(claim) => recorded(pool, record(claim, A::TYPE, events), sql).await,
                    None => alone(pool, sql).await,
                }
            }
            (EventRepo::Sqlite(_, pool, _), snapshot) => {
                let mut tx = pool.begin().await.map_err(unknown)?;
                if let Some(claim) = &claim {
                    let bound = record(claim, A::TYPE, events).execute(&mut *tx).await.map_err(unknown)?;
                    if bound.rows_affected() != 1 {
                        return Err(PersistenceError::UnknownError(Box::new(KeyTaken)));
                    }
                }
                if let Some((ticket, wrapped)) = &key {
                    let mut sql = QueryBuilder::new("");
                    key!(sql, *ticket, wrapped);
                    sql.build().execute(&mut *tx).await.map_err(unknown)?;
                }
                let mut sql = QueryBuilder::new("");
                events!(sql);
                sql.build().execute(&mut *tx).await.map_err(unknown)?;
                if let Some((id, payload, current)) = snapshot {
                    let mut sql = QueryBuilder::new("");
                    snapshot!(sql, id.as_str(), payload, *current);
                    sql.build().execute(&mut *tx).await.map_err(unknown)?;
                }
                tx.commit().await.map_err(unknown)
            }
        }
    }
}

macro_rules! delegate {
    ($self:ident, $repo:ident => $call:expr) => {
        match $self {
            EventRepo::Postgres($repo, _, _) => $call,
            EventRepo::Sqlite($repo, _, _) => $call,
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
        self.append::<A>(events, snapshot_update).await
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, repo => repo.stream_events::<A>(aggregate_id).await)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, repo => repo.stream_all_events::<A>().await)
    }
}
