//! SQLite ends a transaction by itself on some errors (a full disk, an I/O
//! error, a conflict clause of `ROLLBACK`). A pooled connection must not go
//! on as if it were still in one: its next transactions would nest in
//! nothing, and one rolled back would leave a transaction open for ever,
//! with stale reads and commits that never land.

use commands::db::Db;
use sqlx::{Connection as _, SqliteConnection};
use test_support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_sqlite_ended_itself_leaves_no_connection_behind_in_one() {
    let test_db = TestDb::sqlite().await;
    let Db::Sqlite(pool) = &test_db.db else { unreachable!("a SQLite store") };
    sqlx::query("CREATE TABLE probe (n INTEGER PRIMARY KEY)").execute(pool).await.unwrap();

    // SQLite rolls the whole transaction back; sqlx's own rollback then fails.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO probe VALUES (1)").execute(&mut *tx).await.unwrap();
    let refused = sqlx::query("INSERT OR ROLLBACK INTO probe VALUES (1)").execute(&mut *tx).await;
    assert!(refused.is_err(), "the duplicate is refused");
    drop(tx);

    // Transactions on the pool's connections after that: some rolled back,
    // some committed.
    const ROUNDS: i64 = 16;
    for n in 0..ROUNDS {
        let mut dropped = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO probe VALUES ($1)").bind(1_000 + n).execute(&mut *dropped).await.unwrap();
        drop(dropped);
        let mut kept = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO probe VALUES ($1)").bind(100 + n).execute(&mut *kept).await.unwrap();
        kept.commit().await.unwrap();
    }

    // Every commit is there for anyone else to read.
    let mut other = SqliteConnection::connect(&test_db.url).await.unwrap();
    let committed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM probe WHERE n BETWEEN 100 AND 999")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(committed, ROUNDS, "every acknowledged commit is durable and visible");
    let dropped: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM probe WHERE n >= 1000").fetch_one(&mut other).await.unwrap();
    assert_eq!(dropped, 0, "nothing rolled back is kept");
    other.close().await.unwrap();
    test_db.cleanup().await;
}
