//! DESIGN §6 where a client or a database reader can see it: notes and
//! titles never reach the store in clear, and the GraphQL edge refuses
//! deep, huge and malformed requests without showing its internals.

use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::Store;

use crate::support::{assert_no_leak, both_stores, error_code, ticket, TestApp};

const NOTE: &str = "the-secret-note-XYZ";
const TITLE: &str = "Sealed-title-QWERTY";
const DESCRIPTION: &str = "Sealed-description-ASDFGH";
const REASON: &str = "Sealed-reason-ZXCVB";

async fn plaintext_never_reaches_the_store(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let id = app.create_ticket_with(&admin.token, TITLE, DESCRIPTION).await;
    let body = app.update(&admin.token, &id, json!({ "confidentialNotes": NOTE })).await;
    assert_eq!(body["data"]["updateTicket"]["confidentialNotes"], NOTE, "{body}");
    // A second ticket, deleted with a reason: the reason is sealed too.
    let gone = app.create_ticket(&admin.token, "Deleted one").await;
    let deleted = app
        .gql(
            Some(&admin.token),
            "mutation($id: ID!, $r: String) { deleteTicket(id: $id, reason: $r) }",
            json!({ "id": gone, "r": REASON }),
        )
        .await;
    assert!(deleted.get("errors").is_none(), "{deleted}");
    assert_eq!(ticket(&app, &admin.token, &id).await["confidentialNotes"], NOTE);

    match store {
        Store::Postgres => {
            let tables: Vec<String> = match &app.test_db().db {
                commands::db::Db::Postgres(pool) => sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                )
                .fetch_all(pool)
                .await
                .expect("the tables"),
                commands::db::Db::Sqlite(_) => unreachable!("a PostgreSQL test"),
            };
            for table in ["events", "snapshots", "tickets", "ticket_history", "users", "data_keys"] {
                assert!(tables.iter().any(|t| t == table), "table {table} exists: {tables:?}");
            }
            for table in &tables {
                // The whole row as text covers every column, json included.
                for secret in [NOTE, REASON] {
                    let sql = format!("SELECT COUNT(*) FROM {table} AS t WHERE t::text LIKE '%{secret}%'");
                    assert_eq!(app.count(&sql).await, 0, "{secret} found in {table}");
                }
            }
        }
        Store::Sqlite => {
            let path = app.test_db().url.trim_start_matches("sqlite://").to_owned();
            let mut bytes = std::fs::read(&path).expect("the database file");
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            assert!(
                contains(&bytes, DESCRIPTION.as_bytes()),
                "the search itself works: the read model holds the description"
            );
            for secret in [NOTE, REASON] {
                assert!(!contains(&bytes, secret.as_bytes()), "{secret} found in the SQLite files");
            }
        }
    }
    // The event store holds titles and descriptions sealed.
    for text in [TITLE, DESCRIPTION, NOTE, REASON] {
        let pattern = format!("%{text}%");
        for table in ["events", "snapshots"] {
            let sql = format!(
                "SELECT COUNT(*) FROM {table} WHERE {} LIKE '{pattern}'",
                if table == "events" {
                    cast(store, "payload") + " || " + &cast(store, "metadata")
                } else {
                    cast(store, "payload")
                }
            );
            assert_eq!(app.count(&sql).await, 0, "{text} is in {table} in clear");
        }
    }
    app.shutdown().await;
}

fn cast(store: Store, column: &str) -> String {
    match store {
        Store::Postgres => format!("{column}::text"),
        Store::Sqlite => column.to_owned(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn hostile_requests_are_refused_cleanly(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let mut failures = Vec::new();

    // Deeper than the depth limit (10): refused before anything runs.
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } }";
    let body = app.gql(Some(&admin.token), deep, json!({})).await;
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("nested too deep")), "{body}");
    assert_eq!(body.get("data").filter(|d| !d.is_null()), None, "nothing is executed: {body}");
    want_code(&mut failures, "too deep", &body, "BAD_USER_INPUT");
    // Within the limit is fine.
    let shallow = "{ tickets { edges { node { history { actor { id } } } } } }";
    app.gql_ok(Some(&admin.token), shallow, json!({})).await;

    // Too complex (2,000 aliased fields).
    let wide = format!("{{ {} }}", (0..2_000).map(|i| format!("a{i}: me {{ id }}")).collect::<Vec<_>>().join(" "));
    let body = app.gql(Some(&admin.token), &wide, json!({})).await;
    assert!(body.get("errors").is_some(), "a 2,000-field query is refused");
    assert_eq!(body.get("data").filter(|d| !d.is_null()), None);
    want_code(&mut failures, "too complex", &body, "BAD_USER_INPUT");

    // More than 15 aliases, however cheap; 15 are fine.
    let aliased =
        |n: usize| format!("{{ {} }}", (0..n).map(|i| format!("a{i}: me {{ id }}")).collect::<Vec<_>>().join(" "));
    let body = app.gql(Some(&admin.token), &aliased(16), json!({})).await;
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("at most 15 aliases")), "{body}");
    assert_eq!(body.get("data").filter(|d| !d.is_null()), None);
    want_code(&mut failures, "too many aliases", &body, "BAD_USER_INPUT");
    app.gql_ok(Some(&admin.token), &aliased(15), json!({})).await;
    // More than 500 fields, spread over fragments so no other limit trips first.
    let spread = (0..20).map(|i| format!("...F{i}")).collect::<Vec<_>>().join(" ");
    let fragments = (0..20).map(|i| format!("fragment F{i} on User {{ id email }}")).collect::<Vec<_>>().join(" ");
    let many = format!("{{ me {{ {spread} {} }} }} {fragments}", "id ".repeat(480));
    let body = app.gql(Some(&admin.token), &many, json!({})).await;
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("at most 500 fields")), "{body}");
    want_code(&mut failures, "too many fields", &body, "BAD_USER_INPUT");

    // Syntax errors and unknown fields in the query itself.
    want_code(
        &mut failures,
        "syntax error",
        &app.gql(Some(&admin.token), "{ me { id ", json!({})).await,
        "BAD_USER_INPUT",
    );
    want_code(
        &mut failures,
        "unknown field",
        &app.gql(Some(&admin.token), "{ nosuchfield }", json!({})).await,
        "BAD_USER_INPUT",
    );

    // A body over 1 MiB.
    let padding = "x".repeat(1024 * 1024 + 10);
    let huge = json!({ "query": "{ me { id } }", "variables": { "pad": padding } }).to_string();
    let (status, text) = app.post_raw(Some(&admin.token), &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &text[..text.len().min(300)]);
    let body: Value = serde_json::from_str(&text).expect("a GraphQL-shaped error");
    want_code(&mut failures, "body over 1 MiB", &body, "PAYLOAD_TOO_LARGE");

    // Just under the limit is served.
    let padding = "x".repeat(1000 * 1000);
    let big = json!({ "query": "{ me { id } }", "variables": { "pad": padding } }).to_string();
    let (status, text) = app.post_raw(Some(&admin.token), &big).await;
    assert_eq!(status, StatusCode::OK, "{}", &text[..text.len().min(300)]);

    // Malformed JSON: 400.
    for malformed in ["{\"query\": ", "not json", "", "{\"query\": 42}"] {
        let (status, text) = app.post_raw(Some(&admin.token), malformed).await;
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a GraphQL-shaped error: {text}"));
        if status != StatusCode::BAD_REQUEST {
            failures.push(format!("{malformed:?}: want 400, got {status}: {text}"));
        }
        want_code(&mut failures, &format!("body {malformed:?}"), &body, "BAD_USER_INPUT");
    }
    // JSON that is no GraphQL request: refused with a code (400 or 200).
    for not_graphql in ["[]", "{\"variables\": {}}"] {
        let (status, text) = app.post_raw(Some(&admin.token), not_graphql).await;
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::OK, "{not_graphql}: {status}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a GraphQL-shaped error: {text}"));
        want_code(&mut failures, &format!("body {not_graphql:?}"), &body, "BAD_USER_INPUT");
    }

    // A wrong content type still never shows internals.
    let response = app
        .client()
        .post(format!("{}/graphql", app.address()))
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body("{ me { id } }")
        .send()
        .await
        .expect("an answer");
    assert!(!response.status().is_server_error(), "{}", response.status());
    assert_no_leak(&response.text().await.expect("a body"));

    assert!(failures.is_empty(), "refusals without the right code on {store:?}:\n{}", failures.join("\n"));
    app.shutdown().await;
}

/// A document that passed full validation once runs on the schema that
/// checks only what depends on variables: variables of the wrong type or
/// missing are still refused, with the client's code, and change nothing.
async fn known_documents_still_refuse_bad_variables(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let id = app.create_ticket(&admin.token, "Printer jammed").await;
    let update = "mutation($id: ID!, $s: TicketStatus, $p: Priority) \
        { updateTicket(id: $id, input: {status: $s, priority: $p}) { id version status priority } }";
    let first = app.gql_ok(Some(&admin.token), update, json!({ "id": id, "s": "IN_PROGRESS" })).await;
    assert_eq!(first["updateTicket"]["status"], "IN_PROGRESS", "{first}");
    let events = app.event_count().await;
    let mut failures = Vec::new();
    for (what, variables) in [
        ("an unknown enum value", json!({ "id": id, "s": "BOGUS" })),
        ("a number for an enum", json!({ "id": id, "p": 3 })),
        ("a missing required variable", json!({ "s": "RESOLVED" })),
        ("null for a required variable", json!({ "id": null, "s": "RESOLVED" })),
        ("an object for an ID", json!({ "id": { "x": 1 }, "s": "RESOLVED" })),
    ] {
        let (status, text) = app.gql_raw(Some(&admin.token), update, variables).await;
        assert!(!status.is_server_error(), "{what}: {status} {text}");
        assert_no_leak(&text);
        let body: Value = serde_json::from_str(&text).expect("a JSON answer");
        assert!(body.get("errors").is_some(), "{what}: {body}");
        want_code(&mut failures, what, &body, "BAD_USER_INPUT");
    }
    assert_eq!(app.event_count().await, events, "nothing was appended");
    assert_eq!(ticket(&app, &admin.token, &id).await["status"], "IN_PROGRESS");
    assert!(failures.is_empty(), "refusals without the right code on {store:?}:\n{}", failures.join("\n"));
    app.shutdown().await;
}

fn want_code(failures: &mut Vec<String>, what: &str, body: &Value, code: &str) {
    if error_code(body).as_deref() != Some(code) {
        failures.push(format!("{what}: want {code}, got {body}"));
    }
}

both_stores!(
    plaintext_never_reaches_the_store,
    hostile_requests_are_refused_cleanly,
    known_documents_still_refuse_bad_variables
);
