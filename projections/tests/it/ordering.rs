//! PostgreSQL hands out positions at insert but shows rows at commit: a
//! transaction that commits late must still be projected, and in its place.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use commands::db::Db;
use cqrs_es::DomainEvent;
use domain::ticket::TicketEvent;
use domain::values::{Priority, Role, TicketId};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use test_support::TestDb;

use crate::fixture::App;

/// Appends one event the way postgres-es does, inside the caller's transaction.
async fn append(conn: &mut PgConnection, ticket: TicketId, sequence: i64, event: &TicketEvent) -> (i64, i64) {
    let metadata: HashMap<&str, String> = HashMap::from([
        ("at", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        ("request_id", format!("raw-{sequence}")),
        ("actor_role", "ADMIN".to_owned()),
    ]);
    sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Ticket', $1, $2, $3, $4, $5, $6) RETURNING position, transaction_id::text::bigint",
    )
    .bind(ticket.to_string())
    .bind(sequence)
    .bind(event.event_type())
    .bind(event.event_version())
    .bind(serde_json::to_value(event).expect("event serialises"))
    .bind(json!(metadata))
    .fetch_one(conn)
    .await
    .expect("event inserted")
}

/// Waits until `xid` is the oldest transaction running on the server.
async fn wait_until_oldest_running_is(test: &TestDb, xid: i64) {
    let Db::Postgres(pool) = &test.db else { unreachable!("a PostgreSQL test") };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let oldest: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await
            .expect("snapshot read");
        assert!(oldest <= xid, "A is still running, so nothing younger can be the oldest");
        if oldest == xid {
            return;
        }
        assert!(Instant::now() < deadline, "transactions older than A kept running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn priority(from: Priority, to: Priority) -> TicketEvent {
    TicketEvent::TicketPriorityChanged { from, to }
}

/// A writes first (smaller position and transaction id) but commits last.
/// While A is open the projector must not pass it, so B waits too; once A
/// commits, both are applied, A first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_commit_is_never_skipped() {
    let test = TestDb::postgres().await;
    let app = App::new(test.db.clone());
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    let one = app.open_ticket(reporter, "VPN drops every hour").await;
    let two = app.open_ticket(reporter, "Printer jams").await;
    assert_eq!(app.settle().await, 3);

    let mut conn_a = PgConnection::connect(&test.url).await.expect("connection A");
    let mut conn_b = PgConnection::connect(&test.url).await.expect("connection B");

    let mut a = conn_a.begin().await.expect("A begins");
    let (position_a, xid_a) = append(&mut a, one, 2, &priority(Priority::Medium, Priority::High)).await;

    // B builds on A's change (sequence 3 of ticket one) and touches ticket
    // two; it commits while A is still open.
    let mut b = conn_b.begin().await.expect("B begins");
    let (position_b1, xid_b) = append(&mut b, one, 3, &priority(Priority::High, Priority::Low)).await;
    let (position_b2, _) = append(&mut b, two, 2, &priority(Priority::Medium, Priority::High)).await;
    b.commit().await.expect("B commits");
    assert!(position_a < position_b1 && position_b1 < position_b2, "A drew the smaller position");
    assert!(xid_a < xid_b, "A has the older transaction");

    // Other tests' transactions may hold the projector back too; wait until
    // A is the only one, so what follows is about A alone.
    wait_until_oldest_running_is(&test, xid_a).await;
    let applied = app.projector.catch_up().await.expect("projector caught up");
    assert_eq!(applied, 0, "nothing may be applied past A's open transaction");
    let before = app.checkpoint().await.expect("checkpoint after the first batch");
    assert!(before.transaction_id < xid_a, "the checkpoint stays below A");
    for id in [one, two] {
        let ticket = app.read.ticket(id.as_uuid()).await.unwrap().expect("ticket projected");
        assert_eq!((ticket.version, ticket.priority.as_str()), (1, "MEDIUM"), "B must wait for A");
        assert_eq!(app.read.history(id.as_uuid()).await.unwrap().len(), 1);
    }

    a.commit().await.expect("A commits");
    assert_eq!(app.settle().await, 3, "A's event and B's two events");

    // Applied in (transaction_id, position) order: A's HIGH, then B's LOW.
    let ticket_one = app.read.ticket(one.as_uuid()).await.unwrap().unwrap();
    assert_eq!((ticket_one.version, ticket_one.priority.as_str()), (3, "LOW"));
    let history: Vec<_> = app
        .read
        .history(one.as_uuid())
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.sequence, row.action, row.from_value, row.to_value))
        .collect();
    assert_eq!(
        history[1..],
        [
            (2, "TicketPriorityChanged".to_owned(), Some("MEDIUM".to_owned()), Some("HIGH".to_owned())),
            (3, "TicketPriorityChanged".to_owned(), Some("HIGH".to_owned()), Some("LOW".to_owned())),
        ]
    );
    let ticket_two = app.read.ticket(two.as_uuid()).await.unwrap().unwrap();
    assert_eq!((ticket_two.version, ticket_two.priority.as_str()), (2, "HIGH"));
    let after = app.checkpoint().await.unwrap();
    assert_eq!((after.transaction_id, after.position), (xid_b, position_b2), "the checkpoint ends on B's last event");
    app.assert_read_models_match_events().await;

    conn_a.close().await.expect("A closes");
    conn_b.close().await.expect("B closes");
    test.cleanup().await;
}
