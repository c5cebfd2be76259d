//! Connections for statements that run alone: the read models' queries,
//! and the write side's stream loads and appends.
//!
//! sqlx's pool sends every connection it takes back a `Sync` and waits for
//! the answer (sqlx-core 0.8, `return_to_pool`): one more round trip per
//! statement, on both sides of the socket. The SQL reference of the
//! benchmark read 8,400–9,300 pages a second through sqlx's pool and 11,000
//! on connections it kept. Such a statement is its own transaction, and sqlx
//! reads whatever a dropped statement left unread before it sends the
//! connection's next one, so its connection can go back as it is: on
//! PostgreSQL these statements run on connections kept in a deadpool pool.
//! SQLite runs in process, where that round trip costs little; it keeps
//! sqlx's pool. Transactions stay on sqlx's pool ([`Db`]), whose ping also
//! rolls back one left open.

use std::time::Duration;

use crate::db::{Db, MAX_CONNECTIONS, PING_AFTER_IDLE};
use deadpool::managed::{Manager, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult, Timeouts};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool, SqlitePool};

/// A connection is replaced after this long, as sqlx's pool does, so that
/// PostgreSQL's per-connection plans and caches are made afresh now and then.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Waiting for a connection, or for a new one to open, fails after this.
const WAIT: Duration = Duration::from_secs(10);

/// Opens and vets the PostgreSQL connections.
pub struct PgStatements {
    options: PgConnectOptions,
}

impl Manager for PgStatements {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    /// A connection in steady use is known to be alive; one idle long
    /// enough for the server to have gone away since is pinged first.
    async fn recycle(&self, conn: &mut PgConnection, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if metrics.age() > MAX_LIFETIME {
            return Err(RecycleError::message("past its lifetime"));
        }
        if metrics.last_used() > PING_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(())
    }
}

/// Connections for statements that run alone, with the store they were
/// opened on (whose pool runs the transactions).
#[derive(Clone)]
pub enum Statements {
    Postgres(PgPool, Pool<PgStatements>),
    Sqlite(SqlitePool),
}

impl Statements {
    /// Statements on `db`: on PostgreSQL, connections opened as `db`'s are,
    /// up to as many; opened when first needed.
    ///
    /// # Panics
    /// Never: the pool is built with a runtime and a size.
    pub fn on(db: &Db) -> Self {
        match db {
            Db::Postgres(pool) => {
                let manager = PgStatements { options: (*pool.connect_options()).clone() };
                let timeouts = Timeouts { wait: Some(WAIT), create: Some(WAIT), recycle: Some(WAIT) };
                let alone = Pool::builder(manager)
                    .max_size(MAX_CONNECTIONS as usize)
                    .timeouts(timeouts)
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .expect("a pool with a runtime builds");
                Statements::Postgres(pool.clone(), alone)
            }
            Db::Sqlite(pool) => Statements::Sqlite(pool.clone()),
        }
    }

    /// The store these statements run on.
    pub fn db(&self) -> Db {
        match self {
            Statements::Postgres(pool, _) => Db::Postgres(pool.clone()),
            Statements::Sqlite(pool) => Db::Sqlite(pool.clone()),
        }
    }

    /// Closes the idle connections politely and refuses further statements.
    pub async fn close(&self) {
        if let Statements::Postgres(_, pool) = self {
            let idle = pool.retain(|_, _| false).removed;
            pool.close();
            for conn in idle {
                let _ = conn.close().await;
            }
        }
    }
}

/// A connection for one statement.
///
/// # Errors
/// When none frees up or opens in time, or the pool is closed.
pub async fn connection(pool: &Pool<PgStatements>) -> Result<Object<PgStatements>, sqlx::Error> {
    pool.get().await.map_err(|error| match error {
        PoolError::Backend(error) => error,
        PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
        PoolError::Closed => sqlx::Error::PoolClosed,
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            sqlx::Error::Configuration("the statements' pool is misconfigured".into())
        }
    })
}

/// Whether a statement failed because its connection did (cut, or the
/// server went away) rather than because of what it asked.
pub fn broken<T>(result: &Result<T, sqlx::Error>) -> bool {
    match result {
        Err(sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)) => true,
        // A server that ends the session says why first: connection
        // exceptions (class 08) and shutdowns (57P01–57P03).
        Err(sqlx::Error::Database(error)) => {
            error.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}

/// Closes a connection that broke instead of handing it out again, and the
/// idle ones with it: they likely share its fate (a restarted server).
pub fn discard(pool: &Pool<PgStatements>, conn: Object<PgStatements>) {
    drop(Object::take(conn));
    pool.retain(|_, _| false);
}

/// Gives a connection back after its statement: as it is, unless the
/// statement found it broken.
pub fn give_back<T>(pool: &Pool<PgStatements>, conn: Object<PgStatements>, result: &Result<T, sqlx::Error>) {
    if broken(result) {
        discard(pool, conn);
    }
}

/// Runs the read `$body` with `$conn` bound to an executor of
/// [`Statements`]: a connection on PostgreSQL, the pool on SQLite
/// (`postgres $pool`: a connection of that pool of [`PgStatements`]). A
/// read whose connection broke is run once more on a new one: reads change
/// nothing, and after the server restarts the first read on each old
/// connection would fail otherwise.
#[macro_export]
macro_rules! on_reads {
    (postgres $pool:expr, $conn:ident => $body:expr) => {{
        let pool = $pool;
        let mut retried = false;
        loop {
            let mut held = $crate::statements::connection(pool).await?;
            let result = {
                let $conn = &mut *held;
                $body
            };
            if !$crate::statements::broken(&result) {
                break result;
            }
            $crate::statements::discard(pool, held);
            if retried {
                break result;
            }
            retried = true;
        }
    }};
    ($reads:expr, $conn:ident => $body:expr) => {
        match $reads {
            $crate::statements::Statements::Postgres(_, pool) => $crate::on_reads!(postgres pool, $conn => $body),
            $crate::statements::Statements::Sqlite($conn) => $body,
        }
    };
}
