//! A write whose events are durable answers success or `COMMITTED_UNCONFIRMED`,
//! never `INTERNAL`: a client that retries an `INTERNAL` would write twice.
//! The fault is real: the read model's table is renamed away by another
//! connection, so the wait for the projection and the read back fail
//! while the event store still takes appends.

use serde_json::{json, Value};
use test_support::Store;

use super::support::{both_stores, TestApp};

/// Renames the tickets read model away (or back) from the test's own connection.
async fn rename(app: &TestApp, from: &str, to: &str) {
    let sql = format!("ALTER TABLE {from} RENAME TO {to}");
    commands::on_db!(&app.test_db().db, pool => sqlx::query(&sql).execute(pool).await.map(|_| ()))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

async fn a_committed_write_never_answers_internal(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    app.create_ticket(&admin.token, "Already there").await;
    rename(&app, "tickets", "tickets_away").await;
    // The fault is real: a plain read of the read model fails now.
    let (_, broken) =
        app.gql_raw(Some(&admin.token), "{ tickets(first: 1) { edges { node { id } } } }", json!({})).await;
    assert!(broken.contains("\"INTERNAL\""), "the read model is away: {broken}");

    let created = app
        .gql(
            Some(&admin.token),
            "mutation { createTicket(input: {title: \"Printer on fire\", description: \"Smoke.\"}) { id title } }",
            json!({}),
        )
        .await;
    assert_ne!(code(&created), Some("INTERNAL"), "a committed create is not a plain failure: {created}");
    if code(&created).is_none() {
        assert_eq!(created["data"]["createTicket"]["title"], "Printer on fire", "{created}");
    } else {
        assert_eq!(code(&created), Some("COMMITTED_UNCONFIRMED"), "{created}");
    }

    rename(&app, "tickets_away", "tickets").await;
    let opened = app.count("SELECT COUNT(*) FROM events WHERE aggregate_type = 'Ticket' AND sequence = 1").await;
    assert_eq!(opened, 2, "exactly one ticket was opened by the create");
    app.shutdown().await;
}

both_stores!(a_committed_write_never_answers_internal);
