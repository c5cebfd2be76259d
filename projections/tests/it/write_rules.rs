//! What the event store guarantees to the read side: a refused or empty
//! command appends nothing, appended events never change, and one email
//! makes one account however many ask at once.

use std::sync::Arc;

use commands::db::Db;
use commands::on_db;
use commands::write::{Actor, WriteError};
use domain::account::{AccountCommand, AccountError};
use domain::ticket::{AssigneeChange, TicketCommand, TicketError, TicketUpdate};
use domain::values::{DisplayName, Email, Priority, Role, Status, UserId};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::fixture::{self, admin, App};

async fn stale_version_and_no_op_append_nothing(db: Db) {
    let app = App::new(db);
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    let ticket = app.open_ticket(reporter, "Monitor flickers").await;
    let raised = TicketUpdate { priority: Some(Priority::High), expected_version: Some(1), ..Default::default() };
    assert_eq!(app.update(ticket, raised).await, 2);
    let events = || async { fixture::event_counts(&app.db, "Ticket").await[0].1 };

    let stale = TicketUpdate { status: Some(Status::Resolved), expected_version: Some(1), ..Default::default() };
    let refused = app.write.ticket(ticket, TicketCommand::Update(stale), &admin()).await;
    assert!(
        matches!(refused, Err(WriteError::Rejected(TicketError::VersionConflict { expected: 1, actual: 2 }))),
        "{refused:?}"
    );
    let stale_delete = TicketCommand::Delete { reason: None, expected_version: Some(1) };
    let refused = app.write.ticket(ticket, stale_delete, &admin()).await;
    assert!(matches!(refused, Err(WriteError::Rejected(TicketError::VersionConflict { .. }))), "{refused:?}");
    assert_eq!(events().await, 2, "a refused command appends nothing");

    // Every field set to the value it has: accepted, and nothing happens.
    let same = TicketUpdate {
        status: Some(Status::Open),
        priority: Some(Priority::High),
        assignee: Some(AssigneeChange::Clear),
        expected_version: Some(2),
        ..Default::default()
    };
    assert_eq!(app.update(ticket, same).await, 2);
    let notes = fixture::seal_notes(&app.keys, ticket, "Replace the cable").await;
    assert_eq!(app.update(ticket, TicketUpdate { confidential_notes: Some(notes), ..Default::default() }).await, 3);
    // The same text sealed again is a new envelope but the same notes.
    let again = fixture::seal_notes(&app.keys, ticket, "Replace the cable").await;
    assert_eq!(app.update(ticket, TicketUpdate { confidential_notes: Some(again), ..Default::default() }).await, 3);
    assert_eq!(events().await, 3, "a command that changes nothing appends nothing");

    let unchanged_role = app.write.account(reporter, AccountCommand::ChangeRole { to: Role::Employee }, &admin()).await;
    assert_eq!(unchanged_role.expect("accepted"), 1);

    app.settle().await;
    assert_eq!(app.read.ticket(ticket.as_uuid()).await.unwrap().unwrap().version, 3);
    app.assert_read_models_match_events().await;
}
test_support::store_test!(stale_version_and_no_op_append_nothing);

async fn events_are_immutable(db: Db) {
    let app = App::new(db.clone());
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    app.open_ticket(reporter, "Keyboard missing keys").await;
    let stored = || async {
        let rows: Vec<(String, String)> = on_db!(&db, pool =>
            sqlx::query_as("SELECT event_type, aggregate_id FROM events ORDER BY position").fetch_all(pool).await)
        .unwrap();
        rows
    };
    let before = stored().await;
    assert_eq!(before.len(), 2);

    let mut attempts = vec![
        "UPDATE events SET event_type = 'Tampered'",
        "UPDATE events SET payload = metadata WHERE sequence = 1",
        "DELETE FROM events WHERE sequence = 1",
        "DELETE FROM events",
    ];
    if db.is_postgres() {
        attempts.push("TRUNCATE events");
    }
    for sql in attempts {
        let result = on_db!(&db, pool => sqlx::query(sql).execute(pool).await.map(|_| ()));
        let error = result.expect_err(sql).to_string();
        assert!(error.contains("events are immutable"), "{sql}: {error}");
    }
    assert_eq!(stored().await, before);
}
test_support::store_test!(events_are_immutable);

async fn one_account_per_email_under_concurrency(db: Db) {
    const RACERS: usize = 8;
    let app = App::new(db);
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let (write, start) = (app.write.clone(), start.clone());
        racers.spawn(async move {
            let email = Email::parse(["Same@Example.com", "same@example.COM"][n % 2]).unwrap();
            let id = UserId::for_email(&email);
            let command = AccountCommand::Register {
                email,
                display_name: DisplayName::parse(&format!("Racer {n}")).unwrap(),
                password_hash: format!("$argon2id$racer{n}"),
                role: Role::Employee,
            };
            start.wait().await;
            write.account(id, command, &Actor::system(format!("race-{n}"))).await
        });
    }
    let results = racers.join_all().await;
    let won = results.iter().filter(|result| result.is_ok()).count();
    let taken =
        results.iter().filter(|result| matches!(result, Err(WriteError::Rejected(AccountError::EmailTaken)))).count();
    assert_eq!((won, taken), (1, RACERS - 1), "{results:?}");

    app.settle().await;
    let users = app.read.users(None, 100).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].email, "same@example.com");
    assert_eq!(fixture::event_total(&app.db).await, 1);
    app.assert_read_models_match_events().await;
}
test_support::store_test!(one_account_per_email_under_concurrency);
