//! The Ticket life cycle through GraphQL: creation, admin edits and their
//! audit trail, the status rules, optimistic concurrency, deletion, input
//! validation, and paging through lists in every order and filter.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use test_support::Store;
use uuid::Uuid;

use crate::support::{assert_code, both_stores, error_code, ticket, TestApp, TICKET_FIELDS};

fn history(ticket: &Value) -> &Vec<Value> {
    ticket["history"].as_array().expect("a history list")
}

/// The history entries that touched `field`.
fn changes<'a>(ticket: &'a Value, field: &str) -> Vec<&'a Value> {
    history(ticket).iter().filter(|e| e["field"] == field).collect()
}

async fn create_and_update_read_their_own_writes(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let reporter = app.register("reporter@example.com").await;
    let helper = app.register("helper@example.com").await;

    // Creation answers with the created ticket, read model and history included.
    let query = format!("mutation($i: CreateTicketInput!) {{ createTicket(input: $i) {{ {TICKET_FIELDS} }} }}");
    let created = app
        .gql_ok(
            Some(&reporter.token),
            &query,
            json!({ "i": { "title": "  VPN is down  ", "description": "Since 9am." } }),
        )
        .await["createTicket"]
        .clone();
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["status"], "OPEN");
    assert_eq!(created["priority"], "MEDIUM");
    assert_eq!(created["version"], 1);
    assert_eq!(created["title"], "VPN is down", "titles are trimmed");
    assert_eq!(created["description"], "Since 9am.");
    assert_eq!(created["reporter"]["id"], json!(reporter.id));
    assert_eq!(created["assignee"], Value::Null);
    assert_eq!(created["deletedAt"], Value::Null);
    assert_eq!(created["confidentialNotes"], Value::Null);
    assert_eq!(history(&created).len(), 1);
    assert_eq!(history(&created)[0]["action"], "TicketOpened");
    assert_eq!(history(&created)[0]["actor"]["id"], json!(reporter.id));
    // The answer is built without reading the row back: it must be what a
    // read returns, timestamps to the microsecond.
    assert_eq!(created, ticket(&app, &reporter.token, &id).await);

    // One admin call changes all four fields; the answer shows all four.
    let note = "ticket-note-plaintext-42";
    let input =
        json!({ "status": "IN_PROGRESS", "priority": "HIGH", "assigneeId": helper.id, "confidentialNotes": note });
    let body = app.update(&admin.token, &id, input.clone()).await;
    let updated = &body["data"]["updateTicket"];
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(updated["status"], "IN_PROGRESS");
    assert_eq!(updated["priority"], "HIGH");
    assert_eq!(updated["assignee"]["id"], json!(helper.id));
    assert_eq!(updated["confidentialNotes"], note);
    assert_eq!(updated["version"], 5);

    // One history entry per event, with field, from, to and actor; no note text.
    let entries = history(updated);
    assert_eq!(entries.len(), 5, "{entries:?}");
    let sequences: Vec<i64> = entries.iter().filter_map(|e| e["sequence"].as_i64()).collect();
    assert_eq!(sequences, vec![1, 2, 3, 4, 5]);
    for entry in &entries[1..] {
        assert_eq!(entry["actor"]["id"], json!(admin.id), "{entry}");
    }
    let status = changes(updated, "status");
    assert_eq!((status.len(), &status[0]["from"], &status[0]["to"]), (1, &json!("OPEN"), &json!("IN_PROGRESS")));
    let priority = changes(updated, "priority");
    assert_eq!((priority.len(), &priority[0]["from"], &priority[0]["to"]), (1, &json!("MEDIUM"), &json!("HIGH")));
    let assignee = changes(updated, "assignee");
    assert_eq!((assignee.len(), &assignee[0]["from"], &assignee[0]["to"]), (1, &Value::Null, &json!(helper.id)));
    let notes = changes(updated, "confidentialNotes");
    assert_eq!((notes.len(), &notes[0]["from"], &notes[0]["to"]), (1, &Value::Null, &Value::Null));
    assert!(!updated["history"].to_string().contains(note), "the history never shows the notes");

    // Every event records who did it, as what, when, and in which request.
    let sql = format!(
        "SELECT {} FROM events WHERE aggregate_id = '{id}' ORDER BY sequence",
        if app.test_db().db.is_postgres() { "metadata::text" } else { "metadata" }
    );
    let metadata: Vec<String> =
        commands::on_db!(&app.test_db().db, pool => sqlx::query_scalar(&sql).fetch_all(pool).await)
            .expect("the events' metadata");
    assert_eq!(metadata.len(), 5);
    for (i, raw) in metadata.iter().enumerate() {
        let meta: Value = serde_json::from_str(raw).expect("JSON metadata");
        let (actor, role) = if i == 0 { (&reporter.id, "EMPLOYEE") } else { (&admin.id, "ADMIN") };
        assert_eq!(meta["actor_id"], json!(actor), "{meta}");
        assert_eq!(meta["actor_role"], role, "{meta}");
        assert!(meta["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{meta}");
        assert!(meta["at"].as_str().is_some_and(|at| DateTime::parse_from_rfc3339(at).is_ok()), "{meta}");
    }

    // The reporter sees the same history but for the notes: neither their
    // text nor that they changed.
    let seen = ticket(&app, &reporter.token, &id).await;
    assert_eq!(seen["confidentialNotes"], Value::Null);
    let without_notes: Vec<Value> = updated["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|entry| entry["field"] != "confidentialNotes")
        .cloned()
        .collect();
    assert_eq!(seen["history"], json!(without_notes));

    // The same values again change nothing: no event, same version.
    let events = app.event_count().await;
    let again = app.update(&admin.token, &id, input).await;
    assert!(again.get("errors").is_none(), "{again}");
    assert_eq!(again["data"]["updateTicket"]["version"], 5);
    assert_eq!(history(&again["data"]["updateTicket"]).len(), 5);
    assert_eq!(app.event_count().await, events, "a no-op appends nothing");

    // RESOLVED → IN_PROGRESS is refused whole, even with a valid change beside it.
    let resolved = app.update(&admin.token, &id, json!({ "status": "RESOLVED" })).await;
    assert_eq!(resolved["data"]["updateTicket"]["version"], 6);
    let events = app.event_count().await;
    let refused = app.update(&admin.token, &id, json!({ "status": "IN_PROGRESS", "priority": "LOW" })).await;
    assert_code(&refused, "BAD_USER_INPUT");
    let after = ticket(&app, &admin.token, &id).await;
    assert_eq!(
        (&after["status"], &after["priority"], &after["version"]),
        (&json!("RESOLVED"), &json!("HIGH"), &json!(6))
    );
    assert_eq!(app.event_count().await, events);
    // Reopen first, then it may move on.
    assert_eq!(app.update(&admin.token, &id, json!({ "status": "OPEN" })).await["data"]["updateTicket"]["version"], 7);
    let moved = app.update(&admin.token, &id, json!({ "status": "IN_PROGRESS" })).await;
    assert_eq!(moved["data"]["updateTicket"]["status"], "IN_PROGRESS");

    // A stale expectedVersion is a CONFLICT and changes nothing; a fresh one works.
    let events = app.event_count().await;
    let stale = app
        .gql(Some(&admin.token), crate::support::UPDATE, json!({ "id": id, "input": { "priority": "LOW" }, "v": 3 }))
        .await;
    assert_code(&stale, "CONFLICT");
    assert_eq!(app.event_count().await, events);
    assert_eq!(ticket(&app, &admin.token, &id).await["priority"], "HIGH");
    let fresh = app
        .gql(Some(&admin.token), crate::support::UPDATE, json!({ "id": id, "input": { "priority": "LOW" }, "v": 8 }))
        .await;
    assert_eq!(fresh["data"]["updateTicket"]["priority"], "LOW", "{fresh}");
    assert_eq!(fresh["data"]["updateTicket"]["version"], 9);

    // Clearing the assignee and the notes.
    let cleared = app.update(&admin.token, &id, json!({ "clearAssignee": true, "confidentialNotes": "" })).await;
    let cleared = &cleared["data"]["updateTicket"];
    assert_eq!(cleared["assignee"], Value::Null, "{cleared}");
    assert_eq!(cleared["confidentialNotes"], Value::Null);
    let unassigned = changes(cleared, "assignee");
    assert_eq!(unassigned.last().map(|e| (&e["from"], &e["to"])), Some((&json!(helper.id), &Value::Null)));
    // Both ways of naming the assignee at once, or a user who does not exist.
    let both = app.update(&admin.token, &id, json!({ "clearAssignee": true, "assigneeId": helper.id })).await;
    assert_code(&both, "BAD_USER_INPUT");
    let nobody = app.update(&admin.token, &id, json!({ "assigneeId": Uuid::new_v4().to_string() })).await;
    assert_code(&nobody, "BAD_USER_INPUT");

    // Every field of an update's answer is what a read returns afterwards,
    // for a change, for several at once and for a no-op.
    let query = format!(
        "mutation($id: ID!, $i: UpdateTicketInput!) {{ updateTicket(id: $id, input: $i) {{ {TICKET_FIELDS} }} }}"
    );
    for input in [
        json!({ "priority": "MEDIUM" }),
        json!({ "status": "RESOLVED", "assigneeId": helper.id, "confidentialNotes": "second note" }),
        json!({ "status": "RESOLVED" }),
    ] {
        let answered =
            app.gql_ok(Some(&admin.token), &query, json!({ "id": id, "i": input })).await["updateTicket"].clone();
        assert_eq!(answered, ticket(&app, &admin.token, &id).await, "{input}");
    }

    // A long history pages by sequence; the reporter's pages skip the notes.
    let paged =
        "query($id: ID!, $a: Int, $f: Int) { ticket(id: $id) { history(after: $a, first: $f) { sequence field } } }";
    let page = |token: &str, after: Value, first: Value| {
        let variables = json!({ "id": id, "a": after, "f": first });
        let (app, token) = (&app, token.to_owned());
        async move { app.gql(Some(&token), paged, variables).await }
    };
    let sequences = |body: &Value| -> Vec<i64> {
        body["data"]["ticket"]["history"]
            .as_array()
            .expect("a page")
            .iter()
            .filter_map(|e| e["sequence"].as_i64())
            .collect()
    };
    assert_eq!(sequences(&page(&admin.token, json!(0), json!(2)).await), vec![1, 2]);
    assert_eq!(sequences(&page(&admin.token, json!(2), json!(3)).await), vec![3, 4, 5]);
    assert_eq!(sequences(&page(&admin.token, json!(1000), Value::Null).await), Vec::<i64>::new());
    let all = sequences(&page(&admin.token, Value::Null, Value::Null).await);
    assert_eq!(all, (1..=all.len() as i64).collect::<Vec<_>>());
    let reporters = page(&reporter.token, json!(0), json!(6)).await;
    assert_eq!(sequences(&reporters).len(), 6);
    assert!(!reporters.to_string().contains("confidentialNotes"), "{reporters}");
    for (after, first) in [(json!(0), json!(0)), (json!(0), json!(1001)), (json!(-1), json!(5))] {
        assert_code(&page(&admin.token, after, first).await, "BAD_USER_INPUT");
    }

    app.shutdown().await;
}

async fn concurrent_updates_all_land(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let helper = app.register("helper@example.com").await;
    let id = app.create_ticket(&admin.token, "Contended ticket").await;

    let inputs: Vec<Value> = (0..10)
        .map(|i| match i % 3 {
            0 => json!({ "priority": if i % 2 == 0 { "HIGH" } else { "LOW" } }),
            1 => json!({ "assigneeId": if i % 2 == 1 { &helper.id } else { &admin.id } }),
            _ => json!({ "confidentialNotes": format!("concurrent note {i}") }),
        })
        .collect();
    let answers =
        futures::future::join_all(inputs.iter().map(|input| app.update(&admin.token, &id, input.clone()))).await;
    for (input, answer) in inputs.iter().zip(&answers) {
        assert!(answer.get("errors").is_none(), "every update lands ({input}): {answer}");
    }

    let after = ticket(&app, &admin.token, &id).await;
    let entries = history(&after);
    let version = after["version"].as_i64().expect("a version");
    let sequences: Vec<i64> = entries.iter().filter_map(|e| e["sequence"].as_i64()).collect();
    assert_eq!(sequences, (1..=version).collect::<Vec<_>>(), "one entry per event, no gaps");
    assert_eq!(entries[0]["action"], "TicketOpened");
    // Every note differs, so all three are changes; no update was lost: each
    // field's changes chain from the previous value to the final one.
    assert_eq!(changes(&after, "confidentialNotes").len(), 3);
    for (field, initial, last) in [
        ("priority", json!("MEDIUM"), after["priority"].clone()),
        ("assignee", Value::Null, after["assignee"]["id"].clone()),
    ] {
        let mut current = initial;
        let chain = changes(&after, field);
        assert!(!chain.is_empty(), "at least one {field} change lands");
        for change in chain {
            assert_eq!(change["from"], current, "{field} changes chain: {entries:?}");
            assert_ne!(change["from"], change["to"], "only effective changes are recorded");
            current = change["to"].clone();
        }
        assert_eq!(current, last, "the final {field} is the last change");
    }
    let effective = i64::try_from(entries.len()).expect("a small history") - 1;
    assert_eq!(version, 1 + effective);
    let stored = app.count(&format!("SELECT COUNT(*) FROM events WHERE aggregate_id = '{id}'")).await;
    assert_eq!(stored, version, "the store holds exactly the ticket's events");
    assert!(after["confidentialNotes"].as_str().is_some_and(|n| n.starts_with("concurrent note")));

    app.shutdown().await;
}

async fn deleted_tickets_vanish_for_employees(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let owner = app.register("owner@example.com").await;
    let doomed = app.create_ticket(&owner.token, "Delete me").await;
    let kept = app.create_ticket(&owner.token, "Keep me").await;

    let delete = "mutation($id: ID!, $v: Int) { deleteTicket(id: $id, expectedVersion: $v, reason: \"duplicate\") }";
    assert_code(&app.gql(Some(&admin.token), delete, json!({ "id": doomed, "v": 7 })).await, "CONFLICT");
    let deleted = app.gql_ok(Some(&admin.token), delete, json!({ "id": doomed, "v": 1 })).await;
    assert_eq!(deleted["deleteTicket"], json!(doomed));

    // The reporter no longer sees it, by id or in the list.
    assert_eq!(ticket(&app, &owner.token, &doomed).await, Value::Null);
    let list = "query($f: TicketFilter) { tickets(filter: $f) { edges { node { id deletedAt } } } }";
    let mine = app.gql_ok(Some(&owner.token), list, json!({})).await;
    assert_eq!(ids(&mine), vec![kept.clone()]);

    // Admins still see it, marked, and its history ends with the deletion.
    let seen = ticket(&app, &admin.token, &doomed).await;
    assert!(seen["deletedAt"].as_str().is_some(), "{seen}");
    assert_eq!(seen["version"], 2);
    assert_eq!(history(&seen).last().map(|e| e["action"].clone()), Some(json!("TicketDeleted")));
    assert_eq!(ids(&app.gql_ok(Some(&admin.token), list, json!({})).await), vec![kept.clone()]);
    let everything = app.gql_ok(Some(&admin.token), list, json!({ "f": { "includeDeleted": true } })).await;
    assert_eq!(ids(&everything).into_iter().collect::<HashSet<_>>(), HashSet::from([doomed.clone(), kept.clone()]));

    // A deleted ticket accepts nothing more.
    let events = app.event_count().await;
    let refused = app.update(&admin.token, &doomed, json!({ "priority": "HIGH" })).await;
    assert_code(&refused, "BAD_USER_INPUT");
    let again = app.gql(Some(&admin.token), delete, json!({ "id": doomed })).await;
    assert!(matches!(error_code(&again).as_deref(), Some("BAD_USER_INPUT" | "NOT_FOUND")), "{again}");
    assert_eq!(app.event_count().await, events);
    assert_eq!(ticket(&app, &admin.token, &doomed).await["priority"], "MEDIUM");

    app.shutdown().await;
}

fn ids(data: &Value) -> Vec<String> {
    data["tickets"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("an id").to_owned())
        .collect()
}

async fn invalid_input_is_refused_and_writes_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let id = app.create_ticket(&admin.token, "A valid ticket").await;
    let events = app.event_count().await;
    let create = "mutation($t: String!, $d: String!) { createTicket(input: {title: $t, description: $d}) { id } }";
    let list = "query($first: Int = 20, $after: String, $f: TicketFilter) { tickets(first: $first, after: $after, filter: $f) { edges { node { id } } } }";
    let garbage_cursor = base64_url("not json at all");
    let wrong_shape_cursor = base64_url(r#"{"hello":"world"}"#);
    let far_cursor = base64_url(&format!(r#"{{"at":{},"rank":0,"id":"{}"}}"#, i64::MAX, Uuid::nil()));

    let cases: Vec<(&str, &str, Value)> = vec![
        ("empty title", create, json!({ "t": "", "d": "x" })),
        ("blank title", create, json!({ "t": "   ", "d": "x" })),
        ("201-char title", create, json!({ "t": "t".repeat(201), "d": "x" })),
        ("title with a newline", create, json!({ "t": "two\nlines", "d": "x" })),
        ("title with NUL", create, json!({ "t": "nul\u{0}byte", "d": "x" })),
        ("empty description", create, json!({ "t": "ok", "d": "" })),
        ("10001-char description", create, json!({ "t": "ok", "d": "d".repeat(10_001) })),
        ("bad enum variable", crate::support::UPDATE, json!({ "id": id, "input": { "status": "CLOSED" } })),
        (
            "bad enum literal",
            "mutation($id: ID!) { updateTicket(id: $id, input: {priority: URGENT}) { id } }",
            json!({ "id": id }),
        ),
        ("bad order", "{ tickets(orderBy: SIDEWAYS) { edges { node { id } } } }", json!({})),
        ("malformed id (ticket)", "query($id: ID!) { ticket(id: $id) { id } }", json!({ "id": "not-a-uuid" })),
        (
            "malformed id (update)",
            crate::support::UPDATE,
            json!({ "id": "not-a-uuid", "input": { "priority": "HIGH" } }),
        ),
        ("malformed id (delete)", "mutation { deleteTicket(id: \"42\") }", json!({})),
        ("malformed assignee", crate::support::UPDATE, json!({ "id": id, "input": { "assigneeId": "bob" } })),
        ("malformed filter id", list, json!({ "f": { "assigneeId": "bob" } })),
        ("negative first", list, json!({ "first": -1 })),
        ("negative first (users)", "{ users(first: -5) { edges { node { id } } } }", json!({})),
        ("invalid cursor", list, json!({ "after": "garbage!!" })),
        ("cursor not JSON", list, json!({ "after": garbage_cursor })),
        ("cursor of the wrong shape", list, json!({ "after": wrong_shape_cursor })),
        ("cursor out of time's range", list, json!({ "after": far_cursor })),
        ("invalid users cursor", "{ users(after: \"nope\") { edges { node { id } } } }", json!({})),
        (
            "negative expectedVersion",
            crate::support::UPDATE,
            json!({ "id": id, "input": { "priority": "HIGH" }, "v": -1 }),
        ),
        (
            "10001-char notes",
            crate::support::UPDATE,
            json!({ "id": id, "input": { "confidentialNotes": "n".repeat(10_001) } }),
        ),
        ("first not an int", list, json!({ "first": "ten" })),
    ];
    let mut failures = Vec::new();
    for (what, query, variables) in &cases {
        let body = app.gql(Some(&admin.token), query, variables.clone()).await;
        if error_code(&body).as_deref() != Some("BAD_USER_INPUT") {
            failures.push(format!("{what}: {body}"));
        }
    }
    // Searching for odd text is no error at all.
    for search in ["%", "_", "\\", "'; DROP TABLE tickets; --"] {
        let body = app.gql(Some(&admin.token), list, json!({ "f": { "search": search } })).await;
        if body.get("errors").is_some() {
            failures.push(format!("search {search:?}: {body}"));
        }
    }
    // A NUL may be refused, but never as INTERNAL (PostgreSQL refuses it in text).
    let nul = app.gql(Some(&admin.token), list, json!({ "f": { "search": "nul\u{0}byte" } })).await;
    if nul.get("errors").is_some() && error_code(&nul).as_deref() != Some("BAD_USER_INPUT") {
        failures.push(format!("search with NUL: {nul}"));
    }
    // A search too long to run is refused or matches nothing; it must never
    // be dropped silently and list every ticket.
    let long = app.gql(Some(&admin.token), list, json!({ "f": { "search": "z".repeat(201) } })).await;
    let refused = error_code(&long).as_deref() == Some("BAD_USER_INPUT");
    if !refused && (long.get("errors").is_some() || !ids(&long["data"]).is_empty()) {
        failures.push(format!("201-char search: {long}"));
    }
    assert!(failures.is_empty(), "not refused as BAD_USER_INPUT:\n{}", failures.join("\n"));
    assert_eq!(app.event_count().await, events, "nothing was written");
    // Limits that are not errors: 200 characters, and `first` above the cap.
    app.create_ticket(&admin.token, &"t".repeat(200)).await;
    let capped = app.gql_ok(Some(&admin.token), list, json!({ "first": 1_000_000 })).await;
    assert_eq!(ids(&capped).len(), 2);

    app.shutdown().await;
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// One row of a page, with the keys every order sorts by.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    rank: u8,
}

fn timestamp(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp")).expect("RFC 3339").with_timezone(&Utc)
}

/// Walks every page of `order` with `first: 10` and returns the rows in order.
async fn walk(app: &TestApp, token: &str, order: &str, filter: &Value) -> Vec<Row> {
    let query = "query($after: String, $order: TicketOrder, $f: TicketFilter) { \
        tickets(first: 10, after: $after, orderBy: $order, filter: $f) { \
        edges { cursor node { id createdAt updatedAt priority } } pageInfo { hasNextPage endCursor } } }";
    let mut rows = Vec::new();
    let mut after = Value::Null;
    for _page in 0..10 {
        let data = app.gql_ok(Some(token), query, json!({ "after": after, "order": order, "f": filter })).await;
        let connection = &data["tickets"];
        let edges = connection["edges"].as_array().expect("edges");
        assert!(edges.len() <= 10);
        for edge in edges {
            let node = &edge["node"];
            rows.push(Row {
                id: node["id"].as_str().expect("an id").to_owned(),
                created: timestamp(&node["createdAt"]),
                updated: timestamp(&node["updatedAt"]),
                rank: match node["priority"].as_str() {
                    Some("LOW") => 1,
                    Some("MEDIUM") => 2,
                    _ => 3,
                },
            });
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            return rows;
        }
        assert_eq!(edges.len(), 10, "only the last page is short");
        after = connection["pageInfo"]["endCursor"].clone();
        assert_eq!(after, edges[edges.len() - 1]["cursor"]);
    }
    panic!("more pages than tickets");
}

async fn pagination_walks_every_order(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let employee = app.register("pager@example.com").await;
    let mut all = Vec::new();
    let mut mine = Vec::new();
    for i in 0..25 {
        let token = if i % 5 == 0 { &admin.token } else { &employee.token };
        let id = app.create_ticket(token, &format!("Ticket number {i:02}")).await;
        if i % 5 != 0 {
            mine.push(id.clone());
        }
        all.push(id);
    }
    // Mixed priorities, and updates out of creation order.
    for (i, id) in all.iter().enumerate().rev() {
        let priority = ["LOW", "MEDIUM", "HIGH"][i % 3];
        if priority != "MEDIUM" {
            let body = app.update(&admin.token, id, json!({ "priority": priority })).await;
            assert!(body.get("errors").is_none(), "{body}");
        }
    }

    for order in ["CREATED_DESC", "CREATED_ASC", "UPDATED_DESC", "PRIORITY_DESC"] {
        let rows = walk(&app, &admin.token, order, &Value::Null).await;
        let seen: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(rows.len(), 25, "{order}: no duplicates or gaps");
        assert_eq!(seen, all.iter().map(String::as_str).collect(), "{order}: every ticket once");
        let mut expected = rows.clone();
        expected.sort_by(|a, b| match order {
            "CREATED_DESC" => (b.created, &b.id).cmp(&(a.created, &a.id)),
            "CREATED_ASC" => (a.created, &a.id).cmp(&(b.created, &b.id)),
            "UPDATED_DESC" => (b.updated, &b.id).cmp(&(a.updated, &a.id)),
            _ => (b.rank, b.created, &b.id).cmp(&(a.rank, a.created, &a.id)),
        });
        let got: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, want, "{order}: pages follow the order");
    }
    // Newest first by default.
    let newest = walk(&app, &admin.token, "CREATED_DESC", &Value::Null).await;
    assert_eq!(newest.first().map(|r| r.id.clone()), all.last().cloned());
    // An employee pages through exactly their own tickets.
    let own = walk(&app, &employee.token, "CREATED_ASC", &Value::Null).await;
    assert_eq!(own.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), mine);

    app.shutdown().await;
}

async fn filters_narrow_the_list(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let alice = app.register("alice@example.com").await;
    let bob = app.register("bob.smith@example.com").await;

    let vpn = app.create_ticket_with(&alice.token, "VPN drops 50% of packets", "Since Monday").await;
    let packets = app.create_ticket_with(&alice.token, "Lost 500 packets", "No VPN involved here? It says vpn").await;
    let printer = app.create_ticket_with(&alice.token, "Printer jam", "Tray 2").await;
    let underscore = app.create_ticket_with(&bob.token, "disk a_b full", "x").await;
    let lookalike = app.create_ticket_with(&bob.token, "disk axb full", "x").await;
    let network = app.create_ticket_with(&admin.token, "Network", "The vPn gateway is slow").await;

    let set = |id: &str, input: Value| {
        let (app, token, id) = (&app, admin.token.clone(), id.to_owned());
        async move {
            let body = app.update(&token, &id, input).await;
            assert!(body.get("errors").is_none(), "{body}");
        }
    };
    set(&vpn, json!({ "status": "IN_PROGRESS", "priority": "HIGH", "assigneeId": bob.id })).await;
    set(&packets, json!({ "status": "RESOLVED", "priority": "HIGH" })).await;
    set(&printer, json!({ "status": "IN_PROGRESS", "priority": "LOW", "assigneeId": bob.id })).await;
    set(&network, json!({ "assigneeId": admin.id })).await;

    let cases: Vec<(&str, &str, Value, Vec<&String>)> = vec![
        ("status", &admin.token, json!({ "status": "IN_PROGRESS" }), vec![&vpn, &printer]),
        ("status resolved", &admin.token, json!({ "status": "RESOLVED" }), vec![&packets]),
        ("priority", &admin.token, json!({ "priority": "HIGH" }), vec![&vpn, &packets]),
        ("priority medium", &admin.token, json!({ "priority": "MEDIUM" }), vec![&underscore, &lookalike, &network]),
        ("assignee", &admin.token, json!({ "assigneeId": bob.id }), vec![&vpn, &printer]),
        ("reporter", &admin.token, json!({ "reporterId": bob.id }), vec![&underscore, &lookalike]),
        ("status and priority", &admin.token, json!({ "status": "IN_PROGRESS", "priority": "HIGH" }), vec![&vpn]),
        (
            "search, any case, title or description",
            &admin.token,
            json!({ "search": "VpN" }),
            vec![&vpn, &packets, &network],
        ),
        ("search % literally", &admin.token, json!({ "search": "50%" }), vec![&vpn]),
        ("search _ literally", &admin.token, json!({ "search": "a_b" }), vec![&underscore]),
        ("search nothing", &admin.token, json!({ "search": "zebra" }), vec![]),
        ("employee scope and search", &alice.token, json!({ "search": "vpn" }), vec![&vpn, &packets]),
        ("employee asking for another reporter", &alice.token, json!({ "reporterId": bob.id }), vec![]),
        ("employee filtering by assignee", &bob.token, json!({ "assigneeId": bob.id }), vec![]),
    ];
    let query = "query($f: TicketFilter) { tickets(first: 100, filter: $f) { edges { node { id } } } }";
    let mut failures = Vec::new();
    for (what, token, filter, want) in cases {
        let data = app.gql_ok(Some(token), query, json!({ "f": filter })).await;
        let got: HashSet<String> = ids(&data).into_iter().collect();
        let want: HashSet<String> = want.into_iter().cloned().collect();
        if got != want {
            failures.push(format!("{what}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "filters:\n{}", failures.join("\n"));

    app.shutdown().await;
}

/// A selection of plain fields is answered straight from the row; any
/// other goes through the resolvers. Both must answer alike.
async fn plain_selections_answer_as_the_resolvers_do(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket_with(&reporter.token, "Printer \"jam\" ✓", "Tray 2\nagain").await;
    app.update(&admin.token, &id, json!({ "status": "IN_PROGRESS", "priority": "HIGH" })).await;
    let plain = "id title description status priority createdAt updatedAt version";
    let page = |selection: String| format!("{{ tickets(first: 5) {{ edges {{ node {{ {selection} }} }} }} }}");
    let node = |data: &Value| data["tickets"]["edges"][0]["node"].clone();
    for token in [&reporter.token, &admin.token] {
        let fast = node(&app.gql_ok(Some(token), &page(plain.to_owned()), json!({})).await);
        assert_eq!(fast["id"], json!(id));
        assert_eq!(fast["status"], "IN_PROGRESS");
        assert_eq!(fast["version"], 3);
        // A fragment, a directive and a field with arguments each take the resolvers.
        for other in [
            format!("... on Ticket {{ {plain} }}"),
            format!("{plain} deletedAt @include(if: false)"),
            format!("{plain} history(first: 1) {{ sequence }}"),
        ] {
            let mut slow = node(&app.gql_ok(Some(token), &page(other.clone()), json!({})).await);
            slow.as_object_mut().unwrap().remove("history");
            assert_eq!(fast, slow, "{other}");
        }
        // Aliases name the keys, in the order asked.
        let (_, aliased) = app.gql_raw(Some(token), &page("v: version t: title".into()), json!({})).await;
        assert!(aliased.contains(&format!("{{\"v\":3,\"t\":{}}}", fast["title"])), "{aliased}");
        // The page around the nodes, likewise.
        let info = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }";
        let whole =
            |extra: &str| format!("{{ tickets(first: 1) {{ {extra} edges {{ cursor node {{ {plain} }} }} {info} }} }}");
        let fast = app.gql_ok(Some(token), &whole(""), json!({})).await;
        assert_eq!(fast["tickets"]["edges"][0]["node"]["id"], json!(id));
        assert_eq!(fast["tickets"]["pageInfo"]["endCursor"], fast["tickets"]["edges"][0]["cursor"]);
        let mut slow = app.gql_ok(Some(token), &whole("__typename"), json!({})).await;
        assert_eq!(slow["tickets"].as_object_mut().unwrap().remove("__typename"), Some(json!("TicketConnection")));
        assert_eq!(fast, slow);
        // Two fields under one key are merged by the resolvers, as GraphQL says.
        let twice = node(&app.gql_ok(Some(token), &page("id id".into()), json!({})).await);
        assert_eq!(twice, json!({ "id": id }));
        // A history's entries, likewise: `__typename` takes the resolvers.
        let entry = "sequence at action field from to actor { id email displayName role createdAt }";
        let detail = |selection: &str| format!("query($id: ID!) {{ ticket(id: $id) {{ history {{ {selection} }} }} }}");
        let fast = app.gql_ok(Some(token), &detail(entry), json!({ "id": id })).await;
        let mut slow = app.gql_ok(Some(token), &detail(&format!("{entry} __typename")), json!({ "id": id })).await;
        for entry in slow["ticket"]["history"].as_array_mut().unwrap() {
            assert_eq!(entry.as_object_mut().unwrap().remove("__typename"), Some(json!("AuditEntry")));
        }
        assert_eq!(history(&fast["ticket"]).len(), 3);
        assert_eq!(fast, slow);
    }
    app.shutdown().await;
}

/// A page leaves a ticket's description and sealed notes unread when no
/// node asks for them (`TicketQuery::omit_*`, tested in `projections`), so
/// it must see them asked for however they are: by name, alias, or in a
/// fragment; and answer the rest without them.
async fn pages_answer_descriptions_and_notes_however_asked(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket_with(&reporter.token, "Dock has no video", "Only on the left port").await;
    app.update(&admin.token, &id, json!({ "confidentialNotes": "Replace dock #42" })).await;
    let page = |selection: &str| {
        let fragment = if selection.contains("...D") { "fragment D on Ticket { description }" } else { "" };
        format!("{{ tickets(first: 5) {{ edges {{ node {{ {selection} }} }} }} }} {fragment}")
    };
    // The node's values, whatever their keys.
    let values = |data: &Value| {
        let mut values: Vec<String> =
            data["tickets"]["edges"][0]["node"].as_object().unwrap().values().map(Value::to_string).collect();
        values.sort();
        values
    };
    for selection in [
        "description confidentialNotes",
        "d: description n: confidentialNotes",
        "... on Ticket { description confidentialNotes }",
        "...D confidentialNotes",
    ] {
        let seen = values(&app.gql_ok(Some(&admin.token), &page(selection), json!({})).await);
        assert_eq!(seen, ["\"Only on the left port\"", "\"Replace dock #42\""], "{selection}");
        let seen = values(&app.gql_ok(Some(&reporter.token), &page(selection), json!({})).await);
        assert_eq!(seen, ["\"Only on the left port\"", "null"], "{selection}");
    }
    let node = |data: &Value| data["tickets"]["edges"][0]["node"].clone();
    // Without them, the page still answers the rest.
    let seen = node(&app.gql_ok(Some(&admin.token), &page("id title ...D"), json!({})).await);
    assert_eq!(seen, json!({ "id": id, "title": "Dock has no video", "description": "Only on the left port" }));
    let seen = node(&app.gql_ok(Some(&admin.token), &page("id title"), json!({})).await);
    assert_eq!(seen, json!({ "id": id, "title": "Dock has no video" }));
    app.shutdown().await;
}

/// A ticket of 71 events, over the 64 read with a ticket's row: opened by
/// `reporter`, then 70 changes by `admin`, each flipping the priority, or,
/// with `notes`, setting the confidential notes every tenth (7 in all).
async fn flapping_ticket(app: &TestApp, admin: &str, reporter: &str, notes: bool) -> String {
    let id = app.create_ticket(reporter, "Flapping link").await;
    let mut high = false;
    for step in 0..70 {
        let input = if notes && step % 10 == 5 {
            json!({ "confidentialNotes": format!("step {step}") })
        } else {
            high = !high;
            json!({ "priority": if high { "HIGH" } else { "LOW" } })
        };
        let answer = app.update(admin, &id, input).await;
        assert!(answer.get("errors").is_none(), "{answer}");
    }
    id
}

/// A ticket of over 64 events has its history read apart from its row,
/// once the budget for long histories admits it, and the request gives the
/// budget back when its answer is written.
async fn a_long_history_is_read_apart_and_the_budget_given_back(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let reporter = app.register("reporter@example.com").await;
    let id = flapping_ticket(&app, &admin.token, &reporter.token, false).await;
    let detail = "query($id: ID!) { ticket(id: $id) { version history { sequence actor { id } } } }";
    let budget = &app.state().app.budget;
    for token in [&admin.token, &reporter.token] {
        let seen = app.gql_ok(Some(token), detail, json!({ "id": id })).await["ticket"].clone();
        assert_eq!(seen["version"], 71);
        let entries = history(&seen);
        let sequences: Vec<i64> = entries.iter().filter_map(|e| e["sequence"].as_i64()).collect();
        assert_eq!(sequences, (1..=71).collect::<Vec<_>>());
        assert_eq!(entries[0]["actor"]["id"], json!(reporter.id));
        assert_eq!(entries[70]["actor"]["id"], json!(admin.id));
        assert_eq!(budget.available(), api::graphql::admission::BUDGET as usize, "given back");
    }
    app.shutdown().await;
}

/// A page of a history of over 64 events is read by itself in SQL; for
/// every viewer it must be the page cut from the whole history, without
/// the confidential notes' changes for anyone but admins.
async fn pages_of_a_long_history_are_read_in_sql_alike(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let reporter = app.register("reporter@example.com").await;
    let id = flapping_ticket(&app, &admin.token, &reporter.token, true).await;
    let entry = "sequence at action field from to actor { id displayName }";
    let whole = format!("query($id: ID!) {{ ticket(id: $id) {{ history {{ {entry} }} }} }}");
    let page = format!(
        "query($id: ID!, $after: Int, $first: Int) {{ ticket(id: $id) {{ history(after: $after, first: $first) {{ {entry} }} }} }}"
    );
    let budget = &app.state().app.budget;
    for (token, notes) in [(&admin.token, 7), (&reporter.token, 0)] {
        let all = history(&app.gql_ok(Some(token), &whole, json!({ "id": id })).await["ticket"]).clone();
        assert_eq!(all.len(), 71 - 7 + notes, "every event but the notes' for all but admins");
        assert_eq!(all.iter().filter(|e| e["field"] == "confidentialNotes").count(), notes);
        for (after, first) in
            [(None, Some(10)), (Some(30), Some(25)), (Some(60), None), (Some(3), Some(1000)), (Some(71), Some(5))]
        {
            let got = app.gql_ok(Some(token), &page, json!({ "id": id, "after": after, "first": first })).await;
            let after = after.unwrap_or(0);
            let want: Vec<Value> = all
                .iter()
                .filter(|e| e["sequence"].as_i64().is_some_and(|sequence| sequence > after))
                .take(first.unwrap_or(usize::MAX))
                .cloned()
                .collect();
            assert_eq!(history(&got["ticket"]), &want, "after {after}, first {first:?}");
        }
        assert_eq!(budget.available(), api::graphql::admission::BUDGET as usize, "given back");
    }
    app.shutdown().await;
}

both_stores!(
    pages_of_a_long_history_are_read_in_sql_alike,
    a_long_history_is_read_apart_and_the_budget_given_back,
    plain_selections_answer_as_the_resolvers_do,
    pages_answer_descriptions_and_notes_however_asked,
    create_and_update_read_their_own_writes,
    concurrent_updates_all_land,
    deleted_tickets_vanish_for_employees,
    invalid_input_is_refused_and_writes_nothing,
    pagination_walks_every_order,
    filters_narrow_the_list,
);
