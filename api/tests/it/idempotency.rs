//! `Idempotency-Key` on mutations: a retry with the same key from the same
//! user answers the first outcome and changes nothing, across restarts; the
//! same key on another request is refused; each user's keys are their own.

use serde_json::{json, Value};
use test_support::Store;

use super::support::{both_stores, TestApp, UPDATE};

const CREATE: &str =
    "mutation($t: String!) { createTicket(input: {title: $t, description: \"Broken.\"}) { id title version } }";
const DELETE: &str = "mutation($id: ID!) { deleteTicket(id: $id) }";

/// POSTs a GraphQL request with an `Idempotency-Key`; the JSON answer.
pub async fn keyed(app: &TestApp, token: &str, key: &str, query: &str, variables: Value) -> Value {
    let response = app
        .client()
        .post(format!("{}/graphql", app.address()))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("the server answers");
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

async fn tickets_opened(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM events WHERE aggregate_type = 'Ticket' AND sequence = 1").await
}

async fn a_retried_create_makes_one_ticket(store: Store) {
    let mut app = TestApp::spawn(store).await;
    let alice = app.register("alice@example.com").await;
    let bob = app.register("bob@example.com").await;

    let first = keyed(&app, &alice.token, "create-1", CREATE, json!({ "t": "Printer jammed" })).await;
    assert!(first.get("errors").is_none(), "{first}");
    let again = keyed(&app, &alice.token, "create-1", CREATE, json!({ "t": "Printer jammed" })).await;
    assert_eq!(again, first, "a retry answers the first outcome");
    assert_eq!(tickets_opened(&app).await, 1, "and opens nothing more");

    let other = keyed(&app, &alice.token, "create-1", CREATE, json!({ "t": "Another title" })).await;
    assert_eq!(code(&other), Some("BAD_USER_INPUT"), "the same key on another request: {other}");
    assert_eq!(tickets_opened(&app).await, 1);

    let bobs = keyed(&app, &bob.token, "create-1", CREATE, json!({ "t": "Printer jammed" })).await;
    assert!(bobs.get("errors").is_none(), "another user's key is their own: {bobs}");
    assert_ne!(bobs["data"]["createTicket"]["id"], first["data"]["createTicket"]["id"]);
    assert_eq!(tickets_opened(&app).await, 2);

    for bad in ["x".repeat(256), "caf\u{e9}".to_owned(), String::new(), "with space".to_owned()] {
        let refused = keyed(&app, &alice.token, &bad, CREATE, json!({ "t": "Printer jammed" })).await;
        assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "key {bad:?}: {refused}");
    }
    let two = "mutation { a: createTicket(input: {title: \"One\", description: \"x\"}) { id } \
        b: createTicket(input: {title: \"Two\", description: \"x\"}) { id } }";
    let refused = keyed(&app, &alice.token, "two-fields", two, json!({})).await;
    assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "a key covers one mutation field: {refused}");
    assert_eq!(tickets_opened(&app).await, 2, "a refused key writes nothing");

    app.restart(app.settings.clone()).await;
    let after_restart = keyed(&app, &alice.token, "create-1", CREATE, json!({ "t": "Printer jammed" })).await;
    assert_eq!(after_restart, first, "the key outlives the process");
    assert_eq!(tickets_opened(&app).await, 2);

    // A crash after the append and before the answer was stored leaves the
    // key with the change only: a retry answers from the ticket it opened.
    let forget = "UPDATE idempotency_keys SET response = NULL";
    commands::on_db!(&app.test_db().db, pool => sqlx::query(forget).execute(pool).await.map(|_| ()))
        .expect("the answers are forgotten");
    let after_crash = keyed(&app, &alice.token, "create-1", CREATE, json!({ "t": "Printer jammed" })).await;
    assert_eq!(after_crash, first, "answered from the recorded change");
    assert_eq!(tickets_opened(&app).await, 2, "and nothing opened again");
    app.shutdown().await;
}

async fn retried_changes_are_no_ops(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let id = app.create_ticket(&admin.token, "Network down").await;

    let input = json!({ "id": id, "input": { "status": "IN_PROGRESS" } });
    let first = keyed(&app, &admin.token, "update-1", UPDATE, input.clone()).await;
    assert!(first.get("errors").is_none(), "{first}");
    let events = app.event_count().await;
    // Someone else moves the ticket on; the retry still answers what the first did.
    app.update(&admin.token, &id, json!({ "status": "RESOLVED" })).await;
    let again = keyed(&app, &admin.token, "update-1", UPDATE, input).await;
    assert_eq!(again, first, "a retried update answers its first outcome");
    assert_eq!(app.event_count().await, events + 1, "only the other edit was appended");

    let deleted = keyed(&app, &admin.token, "delete-1", DELETE, json!({ "id": id })).await;
    assert_eq!(deleted["data"]["deleteTicket"], json!(id), "{deleted}");
    let events = app.event_count().await;
    let again = keyed(&app, &admin.token, "delete-1", DELETE, json!({ "id": id })).await;
    assert_eq!(again, deleted, "a retried delete answers as the first did");
    assert_eq!(app.event_count().await, events);
    app.shutdown().await;
}

async fn simultaneous_retries_open_one_ticket(store: Store) {
    let app = TestApp::spawn(store).await;
    let alice = app.register("alice@example.com").await;
    let send = || keyed(&app, &alice.token, "together", CREATE, json!({ "t": "Sent twice at once" }));
    let answers = futures::future::join_all((0..4).map(|_| send())).await;
    let ids: Vec<&Value> =
        answers.iter().map(|a| &a["data"]["createTicket"]["id"]).filter(|id| !id.is_null()).collect();
    assert!(!ids.is_empty(), "one of them ran: {answers:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "every success names the same ticket: {answers:?}");
    for answer in answers.iter().filter(|a| a["data"]["createTicket"]["id"].is_null()) {
        assert_eq!(code(answer), Some("CONFLICT"), "the others are told it is in progress: {answer}");
    }
    assert_eq!(tickets_opened(&app).await, 1);
    app.shutdown().await;
}

both_stores!(a_retried_create_makes_one_ticket, retried_changes_are_no_ops, simultaneous_retries_open_one_ticket);
