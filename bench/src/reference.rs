//! The reference: the same work done directly in SQL with sqlx, at the
//! same concurrency, on the same database, in the same run.
//!
//! - write: one transaction reads a stream's last sequence, inserts one
//!   event row (a ~430-byte JSON payload plus metadata, bound and stored
//!   as `json` as the server's events are) and upserts a view row — what a
//!   mutation minimally costs. It runs on tables of its own
//!   (`bench_events`, `bench_views`, dropped afterwards) shaped like
//!   `events` and `tickets`, so the projector never sees these rows.
//! - page: the employee's first page straight from the `tickets` read
//!   model: `WHERE reporter_id = $1 ORDER BY created_at DESC, id DESC LIMIT`,
//!   its rows decoded into the server's own `TicketRow`, as the event scan
//!   decodes into the projector's `EventRow`: the reference pays what the
//!   server's decoding costs, no more.
//!
//! Each client writes to streams of its own, so there are no conflicts. On
//! SQLite the transaction is `BEGIN IMMEDIATE` (a read-then-write deferred
//! transaction would fail rather than wait when another writer commits).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use commands::json_text::JsonText;
use projections::read::TicketRow;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use crate::config::Config;
use crate::driver::{closed_loop, Measured};

const PG_TABLES: &str = "
CREATE TABLE IF NOT EXISTS bench_events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    position bigserial NOT NULL UNIQUE, transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE IF NOT EXISTS bench_views (
    id text PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, updated_at timestamptz NOT NULL)";
const SQLITE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS bench_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
    sequence INTEGER NOT NULL, event_type TEXT NOT NULL, event_version TEXT NOT NULL, payload TEXT NOT NULL,
    metadata TEXT NOT NULL, recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (aggregate_type, aggregate_id, sequence));
CREATE TABLE IF NOT EXISTS bench_views (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL)";
const DROP_TABLES: &str = "DROP TABLE IF EXISTS bench_events; DROP TABLE IF EXISTS bench_views";

const LAST: &str =
    "SELECT COALESCE(MAX(sequence), 0) FROM bench_events WHERE aggregate_type = $1 AND aggregate_id = $2";
const INSERT: &str = "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
    payload, metadata) VALUES ($1, $2, $3, 'TicketStatusChanged', '1', $4, $5)";
const UPSERT: &str = "INSERT INTO bench_views (id, status, version, updated_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (id) DO UPDATE SET status = excluded.status, version = excluded.version, updated_at = excluded.updated_at";
const PAGE: &str = "SELECT id, title, description, priority, priority_rank, status, reporter_id, assignee_id, \
    created_at, updated_at, version, notes_envelope, deleted_at FROM tickets \
    WHERE reporter_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 51";

/// Streams each client cycles through.
const STREAMS_PER_CLIENT: u64 = 64;

/// A pool of `clients` connections on the benchmark's database.
#[derive(Clone)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// ~430 bytes once serialised, like a sealed event payload.
fn payload() -> Value {
    json!({ "TicketStatusChanged": {
        "from": "OPEN", "to": "IN_PROGRESS",
        "envelope": { "ciphertext": "A".repeat(300), "digest": "d".repeat(43) } } })
}

impl Pool {
    /// Opens `clients` connections to `url` and creates the reference tables.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn open(url: &str, clients: usize) -> anyhow::Result<Self> {
        let size = u32::try_from(clients).unwrap_or(u32::MAX);
        // No ping before each query (sqlx's default): the reference is the
        // best the database can do, and the server's pools skip it too.
        let pool = if url.starts_with("postgres") {
            let pool = PgPoolOptions::new().max_connections(size).test_before_acquire(false).connect(url).await?;
            sqlx::raw_sql(PG_TABLES).execute(&pool).await?;
            Pool::Postgres(pool)
        } else {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30));
            let pool =
                SqlitePoolOptions::new().max_connections(size).test_before_acquire(false).connect_with(options).await?;
            sqlx::raw_sql(SQLITE_TABLES).execute(&pool).await?;
            Pool::Sqlite(pool)
        };
        Ok(pool)
    }

    /// Drops the reference tables and closes the pool.
    pub async fn close(self) {
        match self {
            Pool::Postgres(pool) => {
                let _ = sqlx::raw_sql(DROP_TABLES).execute(&pool).await;
                pool.close().await;
            }
            Pool::Sqlite(pool) => {
                let _ = sqlx::raw_sql(DROP_TABLES).execute(&pool).await;
                pool.close().await;
            }
        }
    }

    async fn write(&self, stream: &str, payload: &Value, metadata: &Value) -> Result<(), sqlx::Error> {
        let now = chrono::Utc::now();
        match self {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let last: i64 = sqlx::query_scalar(LAST).bind("Ticket").bind(stream).fetch_one(&mut *tx).await?;
                let args = (stream, last + 1);
                sqlx::query(INSERT)
                    .bind("Ticket")
                    .bind(args.0)
                    .bind(args.1)
                    .bind(JsonText(payload))
                    .bind(JsonText(metadata))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(UPSERT).bind(stream).bind("IN_PROGRESS").bind(args.1).bind(now).execute(&mut *tx).await?;
                tx.commit().await
            }
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let result = async {
                    let last: i64 = sqlx::query_scalar(LAST).bind("Ticket").bind(stream).fetch_one(&mut *conn).await?;
                    sqlx::query(INSERT)
                        .bind("Ticket")
                        .bind(stream)
                        .bind(last + 1)
                        .bind(JsonText(payload))
                        .bind(JsonText(metadata))
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(UPSERT)
                        .bind(stream)
                        .bind("IN_PROGRESS")
                        .bind(last + 1)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ())
                }
                .await;
                if result.is_err() {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                result
            }
        }
    }

    async fn page(&self, reporter: Uuid) -> Result<usize, sqlx::Error> {
        let rows: Vec<TicketRow> = match self {
            Pool::Postgres(pool) => sqlx::query_as(PAGE).bind(reporter).fetch_all(pool).await?,
            Pool::Sqlite(pool) => sqlx::query_as(PAGE).bind(reporter).fetch_all(pool).await?,
        };
        Ok(rows.len())
    }
}

/// The write transaction in a closed loop.
pub async fn writes(pool: &Pool, config: &Config, clients: usize) -> Measured {
    let pool = pool.clone();
    let payload = Arc::new(payload());
    let metadata = Arc::new(json!({ "at": chrono::Utc::now().to_rfc3339(), "request_id": Uuid::new_v4().to_string(),
        "actor_id": Uuid::new_v4().to_string(), "actor_role": "ADMIN" }));
    closed_loop(clients, config.limit, config.warmup, 1, move |client, n| {
        let (pool, payload, metadata) = (pool.clone(), payload.clone(), metadata.clone());
        async move {
            let stream = format!("bench-{clients}-{client}-{}", n % STREAMS_PER_CLIENT);
            pool.write(&stream, &payload, &metadata).await.map(|()| 0).map_err(|e| e.to_string())
        }
    })
    .await
}

/// The employee's first page in a closed loop.
pub async fn pages(pool: &Pool, config: &Config, clients: usize, reporters: Arc<Vec<Uuid>>) -> Measured {
    let pool = pool.clone();
    closed_loop(clients, config.limit, config.warmup, 1, move |_, n| {
        let (pool, reporters) = (pool.clone(), reporters.clone());
        async move {
            let reporter = reporters[usize::try_from(n).unwrap_or_default() % reporters.len()];
            pool.page(reporter).await.map(|_| 0).map_err(|e| e.to_string())
        }
    })
    .await
}

/// The SQL ~430-byte payload really is about that size.
pub fn payload_bytes() -> usize {
    serde_json::to_vec(&payload()).map_or(0, |v| v.len())
}

/// Opens the reference pool for a run, if a database is known.
///
/// # Errors
/// When the database cannot be reached.
pub async fn open_for(url: Option<&str>, clients: usize) -> anyhow::Result<Option<Pool>> {
    match url {
        Some(url) => Ok(Some(Pool::open(url, clients).await.context("reference database")?)),
        None => Ok(None),
    }
}
