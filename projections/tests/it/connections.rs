//! The read models' own PostgreSQL connections: given back without sqlx's
//! release round trip, and replaced when the server cuts them.

use commands::db::Db;
use domain::values::Role;
use projections::read::TicketQuery;
use sqlx::Connection;
use test_support::TestDb;

use crate::fixture::App;

/// Cuts every connection to the test's database but the one it cuts with.
async fn cut_all_connections(url: &str) {
    let mut admin = sqlx::PgConnection::connect(url).await.expect("a connection of the test's own");
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("connections cut");
    assert!(!cut.is_empty(), "the read models held connections");
    let _ = admin.close().await;
}

/// Every connection the process holds is cut, as when PostgreSQL restarts:
/// the next reads still answer, on new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_outlive_their_connections() {
    let test = TestDb::postgres().await;
    let app = App::new(test.db.clone());
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    let ticket = app.open_ticket(reporter, "Laptop fan is loud").await;
    app.settle().await;
    // Several connections open and go idle, as under load.
    let reads = (0..4).map(|_| app.read.ticket(ticket.as_uuid()));
    for read in futures_util::future::join_all(reads).await {
        assert!(read.expect("read").is_some());
    }

    cut_all_connections(&test.url).await;
    for _ in 0..3 {
        let page = app.read.tickets(&TicketQuery { limit: 10, ..TicketQuery::default() }).await;
        assert_eq!(page.expect("a page after the cut").len(), 1);
        let row = app.read.ticket(ticket.as_uuid()).await.expect("a ticket after the cut");
        assert_eq!(row.map(|row| row.title), Some("Laptop fan is loud".to_owned()));
    }
    app.read.close().await;
    test.cleanup().await;
}

/// A read dropped half-way (its client went away) leaves its connection
/// fit for the next read, which answers its own question.
async fn a_dropped_read_leaves_its_connection_usable(db: Db) {
    let app = App::new(db);
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    for i in 0..40 {
        app.open_ticket(reporter, &format!("Monitor {i} flickers")).await;
    }
    app.settle().await;
    let everything = TicketQuery { limit: 1000, ..TicketQuery::default() };
    for _ in 0..20 {
        // Polled once, then dropped: the statement is sent, its rows unread.
        let read = app.read.tickets(&everything);
        let _ = futures_util::FutureExt::now_or_never(read);
        let first = TicketQuery { limit: 1, ..TicketQuery::default() };
        let page = app.read.tickets(&first).await.expect("the next read");
        assert_eq!(page.len(), 1);
        assert_eq!(app.read.tickets(&everything).await.expect("a whole read").len(), 40);
    }
}
test_support::store_test!(a_dropped_read_leaves_its_connection_usable);
