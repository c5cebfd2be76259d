//! The database: PostgreSQL in production, an embedded SQLite file by
//! default. Both hold the event store and the read models.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// A pool on one of the two supported stores.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs the same code on either pool; each arm is compiled for its own
/// database, so binds and rows keep their native types.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// Appends `(id, id, …)` as bound parameters, for `… IN` on either store.
pub fn push_id_list<'a, DB>(sql: &mut sqlx::QueryBuilder<'a, DB>, ids: &'a [uuid::Uuid])
where
    DB: sqlx::Database,
    uuid::Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    sql.push("(");
    let mut list = sql.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    sql.push(")");
}

/// How many connections a pool opens at most; measured best at 4–16 here.
pub const MAX_CONNECTIONS: u32 = 16;

/// A connection idle for longer than this is pinged before use.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(2);

/// sqlx by default pings every connection it hands out of the pool: one
/// more round trip per query (on this machine it doubled the messages a
/// mutation sends to PostgreSQL). A connection in steady use is known to be
/// alive; only one idle long enough for the server to have gone away since
/// is pinged, and a dead one is replaced rather than handed out.
fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for > PING_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// Keeps a SQLite connection only if it is out of any transaction. SQLite
/// ends a transaction by itself on some errors (a full disk, an I/O error);
/// sqlx's rollback then fails and it goes on counting the transaction as
/// open, so the connection's next transaction is a savepoint in none, and
/// rolling that back leaves a transaction open for ever: stale reads, the
/// write lock held, commits that never land. Such a connection is closed.
fn out_of_transaction(
    conn: &mut sqlx::SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    use sqlx::Connection as _;
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A dropped transaction's rollback is still queued: let it run first.
        conn.ping().await?;
        Ok(!conn.is_in_transaction())
    })
}

/// The database holds password hashes and readable ticket text: only its
/// owner may read it. SQLite gives its -wal and -shm files the same mode.
fn restrict_to_owner(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let created = std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path);
        if created.is_ok() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://…`) and runs the
    /// migrations. A SQLite file and its folder are created when missing.
    ///
    /// # Errors
    /// When the URL is neither, the store is unreachable or a migration fails.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .context("DATABASE_URL is not a valid PostgreSQL URL")?
                // A forgotten open transaction would hold the projector back.
                .options([("idle_in_transaction_session_timeout", "60000")]);
            let pool = PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .test_before_acquire(false)
                .before_acquire(ping_if_idle)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("cannot connect to PostgreSQL")?;
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("DATABASE_URL is not a valid SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL can lose the last commits on power loss; acknowledged means kept.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Erased read-model rows must not linger in free pages.
                .pragma("secure_delete", "ON");
            if let Some(parent) = options.get_filename().parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
                }
            }
            restrict_to_owner(options.get_filename());
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                .before_acquire(ping_if_idle)
                .after_release(out_of_transaction)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("cannot open the SQLite database")?;
            Db::Sqlite(pool)
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite:");
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies pending migrations; safe to run from several processes at once.
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await,
            Db::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await,
        }
        .context("database migration failed")
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Answers whether the store can run a query now.
    ///
    /// # Errors
    /// When it cannot.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}
