//! Test-only helpers: every store-facing test gets a database of its own on
//! either store, so tests run in parallel, and leaves nothing behind, even
//! when it fails.
//!
//! PostgreSQL comes from `TICKETS_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates and
//! drops a `tickets_t_<uuid>` database there. An unreachable server fails
//! the test loudly: these tests are never skipped.
//!
//! A contract test is written once and run on both stores:
//!
//! ```ignore
//! async fn rebuild_reproduces_read_models(db: Db) { /* ... */ }
//! test_support::store_test!(rebuild_reproduces_read_models);
//! // or inline:
//! test_support::store_test!(no_op_appends_nothing, |db| async move { /* ... */ });
//! ```
//!
//! Each expands to a module holding two `#[tokio::test]`s (multi-threaded,
//! 4 workers), `<name>::postgres` and `<name>::sqlite`; the calling crate
//! needs `tokio` among its dev-dependencies.
#![forbid(unsafe_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use commands::cipher::MasterKeys;
use commands::db::Db;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The server tests use when `TICKETS_TEST_PG` is unset.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// How long to wait for PostgreSQL before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `cleanup` waits for the test's connections to come back.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The two stores every contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Sqlite,
}

/// A fresh, migrated database that is dropped again after the test.
pub struct TestDb {
    pub db: Db,
    /// What `Db::connect` was given; open more connections with it.
    pub url: String,
    place: Place,
    cleaned: bool,
}

/// Where the database lives, so it can be removed.
enum Place {
    Postgres { admin_url: String, name: String },
    Sqlite { dir: PathBuf },
}

impl TestDb {
    /// A fresh database on `store`.
    ///
    /// # Panics
    /// When the store cannot be reached or set up.
    pub async fn new(store: Store) -> Self {
        match store {
            Store::Postgres => Self::postgres().await,
            Store::Sqlite => Self::sqlite().await,
        }
    }

    /// Creates `tickets_t_<uuid>` on the test server and runs the migrations.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable (the message says so) or the database
    /// cannot be created or migrated.
    pub async fn postgres() -> Self {
        let admin_url = std::env::var("TICKETS_TEST_PG").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let name = format!("tickets_t_{}", Uuid::new_v4().simple());
        let mut admin = admin_connection(&admin_url).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = database_url(&admin_url, &name);
        match Db::connect(&url).await {
            Ok(db) => Self { db, url, place: Place::Postgres { admin_url, name }, cleaned: false },
            Err(error) => {
                let _ = drop_database(&admin_url, &name).await;
                panic!("cannot connect to or migrate test database {name}: {error:#}");
            }
        }
    }

    /// A fresh SQLite file in a folder of its own under the temp folder.
    ///
    /// # Panics
    /// When the file cannot be created or migrated.
    pub async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("tickets-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let url = format!("sqlite://{}", dir.join("tickets.db").display());
        match Db::connect(&url).await {
            Ok(db) => Self { db, url, place: Place::Sqlite { dir }, cleaned: false },
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("cannot open or migrate test database {url}: {error:#}");
            }
        }
    }

    pub fn store(&self) -> Store {
        match self.place {
            Place::Postgres { .. } => Store::Postgres,
            Place::Sqlite { .. } => Store::Sqlite,
        }
    }

    /// Closes the pool and removes the database.
    ///
    /// # Panics
    /// When the database cannot be removed: a leftover is a bug to see.
    pub async fn cleanup(mut self) {
        // A connection still held by a forgotten task must not hang the test;
        // the forced drop below ends it anyway.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.db.close()).await;
        let removed = match &self.place {
            Place::Postgres { admin_url, name } => drop_database(admin_url, name).await,
            Place::Sqlite { dir } => remove_dir(dir),
        };
        if let Err(error) = removed {
            panic!("cannot remove test database {}: {error}", self.url);
        }
        self.cleaned = true;
    }
}

/// Best effort when `cleanup` was not reached, e.g. a test panicked.
impl Drop for TestDb {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let removed = match &self.place {
            Place::Sqlite { dir } => remove_dir(dir),
            Place::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // This may run on (or after) the test's own runtime, which
                // cannot be blocked on: use a thread with a runtime of its own.
                std::thread::spawn(move || -> Result<(), BoxError> {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(drop_database(&admin_url, &name))
                })
                .join()
                .unwrap_or_else(|_| Err("the cleanup thread panicked".into()))
            }
        };
        if let Err(error) = removed {
            eprintln!("warning: test database {} was left behind: {error}", self.url);
        }
    }
}

/// Runs `test` on a fresh database of `store`, then removes it (also when
/// `test` panics).
pub async fn with_db<F, Fut>(store: Store, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::new(store).await;
    test(db.db.clone()).await;
    db.cleanup().await;
}

/// Fresh master keys for a test's key ring.
pub fn master_keys() -> MasterKeys {
    MasterKeys::generate("test").0
}

/// Generates `mod <name> { postgres, sqlite }`: one test per store. Either
/// names an `async fn <name>(db: Db)` in scope, or takes the body inline as
/// `|db| async move { ... }`.
#[macro_export]
macro_rules! store_test {
    ($name:ident) => {
        $crate::store_test!(@tests $name, super::$name, {});
    };
    ($name:ident, $test:expr) => {
        // The body is written at the call site: give it the caller's names.
        // `allow`, not `expect`: whether the glob is used depends on the body.
        $crate::store_test!(@tests $name, $test, {
            #[allow(unused_imports)]
            use super::*;
        });
    };
    (@tests $name:ident, $test:expr, { $($imports:tt)* }) => {
        mod $name {
            $($imports)*

            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::with_db($crate::Store::Postgres, $test).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::with_db($crate::Store::Sqlite, $test).await;
            }
        }
    };
}

async fn admin_connection(admin_url: &str) -> PgConnection {
    let unreachable = |error: &dyn std::fmt::Display| -> ! {
        panic!(
            "PostgreSQL is unreachable at {} ({error}). These tests need it: start it, or point \
             TICKETS_TEST_PG at one (postgres://user@host:port/db).",
            redacted(admin_url)
        )
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => unreachable(&error),
        Err(_) => unreachable(&format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), BoxError> {
    let mut admin = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await??;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
    admin.close().await?;
    Ok(())
}

fn remove_dir(dir: &std::path::Path) -> Result<(), BoxError> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// `base` with its database name replaced by `name`; the query is kept.
fn database_url(base: &str, name: &str) -> String {
    let (head, query) = base.split_once('?').map_or((base, None), |(head, query)| (head, Some(query)));
    let authority = head.find("://").map_or(0, |i| i + 3);
    let path = head[authority..].find('/').map_or(head.len(), |i| authority + i);
    let mut url = format!("{}/{name}", &head[..path]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The URL without its user and password, for messages.
fn redacted(url: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority..].find('/').map_or(url.len(), |i| authority + i);
    match url[authority..end].rfind('@') {
        Some(at) => format!("{}…@{}", &url[..authority], &url[authority + at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        assert_eq!(database_url("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(database_url("postgres://u@h/postgres?sslmode=disable", "t1"), "postgres://u@h/t1?sslmode=disable");
        assert_eq!(database_url("postgresql://h:5432", "t1"), "postgresql://h:5432/t1");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redacted("postgres://u:secret@h:5432/db"), "postgres://…@h:5432/db");
        assert_eq!(redacted("postgres://h/db"), "postgres://h/db");
    }
}
