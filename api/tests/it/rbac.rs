//! DESIGN §4 as a table: every role against every operation, on a ticket
//! owned by one employee, with the outcome each must get. Another user's
//! ticket must answer exactly like one that does not exist.

use std::fmt::Write as _;

use serde_json::{json, Value};
use test_support::Store;
use uuid::Uuid;

use crate::support::{both_stores, error_code, Account, TestApp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Owner,
    Other,
    Admin,
}

const ROLES: [Who; 4] = [Who::Anonymous, Who::Owner, Who::Other, Who::Admin];

/// What one cell of the table expects.
#[derive(Debug, Clone)]
enum Want {
    /// No error, and this value at the operation's path (after `project`).
    Is(Value),
    /// No error and something non-null there.
    NonNull,
    /// An error with this `extensions.code`.
    Code(&'static str),
}

use Want::{Code, Is, NonNull};

const UNAUTH: Want = Code("UNAUTHENTICATED");
const FORBIDDEN: Want = Code("FORBIDDEN");

/// One operation: its document, its variables and how to read its answer.
struct Operation {
    name: &'static str,
    query: &'static str,
    variables: Value,
    /// Turns `data` into the value compared with `Want::Is`.
    project: fn(&Value) -> Value,
    /// Anonymous, owner, other employee, admin.
    want: [Want; 4],
}

fn ticket_field(data: &Value) -> Value {
    data["ticket"].clone()
}

fn sorted_ids(data: &Value) -> Value {
    let mut ids: Vec<String> = data["tickets"]["edges"]
        .as_array()
        .map(|edges| edges.iter().filter_map(|e| e["node"]["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    ids.sort();
    json!(ids)
}

fn history_actions(data: &Value) -> Value {
    match data["ticket"]["history"].as_array() {
        Some(entries) => json!(entries.iter().map(|e| e["action"].clone()).collect::<Vec<_>>()),
        None => data["ticket"].clone(),
    }
}

fn sorted(mut ids: Vec<String>) -> Value {
    ids.sort();
    json!(ids)
}

async fn role_operation_owner_table(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let owner = app.register("owner@example.com").await;
    let other = app.register("other@example.com").await;

    let owned = app.create_ticket(&owner.token, "Owner's laptop will not boot").await;
    let doomed = app.create_ticket(&owner.token, "Owner's ticket the admin deletes").await;
    let others = app.create_ticket(&other.token, "Other's monitor flickers").await;
    let admins = app.create_ticket(&admin.token, "Admin's own ticket").await;
    let notes = app.update(&admin.token, &owned, json!({ "confidentialNotes": "rbac-secret-note" })).await;
    assert!(notes.get("errors").is_none(), "{notes}");

    let token = |who: Who| -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::Owner => Some(&owner.token),
            Who::Other => Some(&other.token),
            Who::Admin => Some(&admin.token),
        }
    };

    let operations = vec![
        Operation {
            name: "me",
            query: "{ me { id role } }",
            variables: json!({}),
            project: |data| data["me"]["role"].clone(),
            want: [UNAUTH, Is(json!("EMPLOYEE")), Is(json!("EMPLOYEE")), Is(json!("ADMIN"))],
        },
        Operation {
            name: "ticket(id)",
            query: "query($id: ID!) { ticket(id: $id) { id title } }",
            variables: json!({ "id": owned }),
            project: |data| data["ticket"]["title"].clone(),
            want: [
                UNAUTH,
                Is(json!("Owner's laptop will not boot")),
                Is(Value::Null),
                Is(json!("Owner's laptop will not boot")),
            ],
        },
        Operation {
            name: "tickets (scope)",
            query: "{ tickets(first: 100) { edges { node { id } } } }",
            variables: json!({}),
            project: sorted_ids,
            want: [
                UNAUTH,
                Is(sorted(vec![owned.clone(), doomed.clone()])),
                Is(sorted(vec![others.clone()])),
                Is(sorted(vec![owned.clone(), doomed.clone(), others.clone(), admins.clone()])),
            ],
        },
        Operation {
            name: "tickets (includeDeleted)",
            query: "{ tickets(first: 100, filter: {includeDeleted: true}) { edges { node { id } } } }",
            variables: json!({}),
            project: sorted_ids,
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, NonNull],
        },
        Operation {
            name: "ticket.history",
            query: "query($id: ID!) { ticket(id: $id) { history { action } } }",
            variables: json!({ "id": owned }),
            project: history_actions,
            want: [
                UNAUTH,
                // The owner sees the history but not that the notes changed.
                Is(json!(["TicketOpened"])),
                Is(Value::Null),
                Is(json!(["TicketOpened", "ConfidentialNotesSet"])),
            ],
        },
        Operation {
            name: "confidentialNotes",
            query: "query($id: ID!) { ticket(id: $id) { confidentialNotes } }",
            variables: json!({ "id": owned }),
            project: ticket_field,
            want: [
                UNAUTH,
                Is(json!({ "confidentialNotes": null })),
                Is(Value::Null),
                Is(json!({ "confidentialNotes": "rbac-secret-note" })),
            ],
        },
        Operation {
            name: "confidentialNotes in a list",
            query: "{ tickets(first: 100) { edges { node { confidentialNotes } } } }",
            variables: json!({}),
            project: |data| {
                json!(data["tickets"]["edges"].as_array().map(|edges| edges
                    .iter()
                    .filter_map(|e| e["node"]["confidentialNotes"].as_str())
                    .collect::<Vec<_>>()))
            },
            want: [UNAUTH, Is(json!([])), Is(json!([])), Is(json!(["rbac-secret-note"]))],
        },
        Operation {
            name: "createTicket",
            query: "mutation { createTicket(input: {title: \"Made in the table\", description: \"x\"}) { status } }",
            variables: json!({}),
            project: |data| data["createTicket"]["status"].clone(),
            want: [UNAUTH, Is(json!("OPEN")), Is(json!("OPEN")), Is(json!("OPEN"))],
        },
        Operation {
            name: "updateTicket",
            query: "mutation($id: ID!) { updateTicket(id: $id, input: {priority: HIGH}) { priority } }",
            variables: json!({ "id": owned }),
            project: |data| data["updateTicket"]["priority"].clone(),
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Is(json!("HIGH"))],
        },
        Operation {
            name: "updateTicket (missing id)",
            query: "mutation($id: ID!) { updateTicket(id: $id, input: {priority: HIGH}) { priority } }",
            variables: json!({ "id": Uuid::new_v4().to_string() }),
            project: |data| data["updateTicket"].clone(),
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Code("NOT_FOUND")],
        },
        Operation {
            name: "deleteTicket",
            query: "mutation($id: ID!) { deleteTicket(id: $id) }",
            variables: json!({ "id": doomed }),
            project: |data| data["deleteTicket"].clone(),
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Is(json!(doomed))],
        },
        Operation {
            name: "deleteTicket (missing id)",
            query: "mutation($id: ID!) { deleteTicket(id: $id) }",
            variables: json!({ "id": Uuid::new_v4().to_string() }),
            project: |data| data["deleteTicket"].clone(),
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Code("NOT_FOUND")],
        },
        Operation {
            name: "users",
            query: "{ users { edges { node { email } } } }",
            variables: json!({}),
            project: |data| {
                let mut emails: Vec<&str> = data["users"]["edges"]
                    .as_array()
                    .map(|edges| edges.iter().filter_map(|e| e["node"]["email"].as_str()).collect())
                    .unwrap_or_default();
                emails.sort_unstable();
                json!(emails)
            },
            want: [
                UNAUTH,
                FORBIDDEN,
                FORBIDDEN,
                Is(json!(["admin@example.com", "other@example.com", "owner@example.com"])),
            ],
        },
        Operation {
            name: "setUserRole",
            query: "mutation($id: ID!) { setUserRole(userId: $id, role: EMPLOYEE) { role } }",
            variables: json!({ "id": other.id }),
            project: |data| data["setUserRole"]["role"].clone(),
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Is(json!("EMPLOYEE"))],
        },
        Operation {
            name: "setUserDisabled",
            query: "mutation($id: ID!) { setUserDisabled(userId: $id, disabled: false) { id } }",
            variables: json!({ "id": other.id }),
            project: |data| data["setUserDisabled"]["id"].clone(),
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Is(json!(other.id))],
        },
        Operation {
            name: "setUserRole (promote)",
            query: "mutation($id: ID!) { setUserRole(userId: $id, role: ADMIN) { role } }",
            variables: json!({ "id": owner.id }),
            project: |data| data["setUserRole"]["role"].clone(),
            // Run by the admin last: promoting the owner is harmless by then.
            want: [UNAUTH, FORBIDDEN, FORBIDDEN, Is(json!("ADMIN"))],
        },
    ];

    let mut failures = String::new();
    for operation in &operations {
        for (who, want) in ROLES.iter().zip(&operation.want) {
            let body = app.gql(token(*who), operation.query, operation.variables.clone()).await;
            let data = &body["data"];
            let verdict = match want {
                Code(code) => {
                    let got = error_code(&body);
                    (got.as_deref() == Some(*code)).then_some(()).ok_or(format!("want {code}, got {got:?}"))
                }
                Is(expected) => match body.get("errors") {
                    Some(errors) => Err(format!("want {expected}, got errors {errors}")),
                    None => {
                        let got = (operation.project)(data);
                        (got == *expected).then_some(()).ok_or(format!("want {expected}, got {got}"))
                    }
                },
                NonNull => match body.get("errors") {
                    Some(errors) => Err(format!("want ok, got errors {errors}")),
                    None if data.as_object().is_some_and(|o| o.values().all(|v| !v.is_null())) => Ok(()),
                    None => Err(format!("want a value, got {data}")),
                },
            };
            if let Err(why) = verdict {
                let _ = writeln!(failures, "{} as {who:?}: {why}", operation.name);
            }
        }
    }
    assert!(failures.is_empty(), "RBAC table mismatches on {store:?}:\n{failures}");

    // The owner became an admin in the last rows; the employee "other" still
    // cannot tell another user's ticket from a missing one.
    hidden_looks_missing(&app, &other, &owned).await;
    app.shutdown().await;
}

/// Every way `viewer` can ask about `hidden` (someone else's ticket) must
/// answer byte for byte as for an id that does not exist.
async fn hidden_looks_missing(app: &TestApp, viewer: &Account, hidden: &str) {
    let missing = Uuid::new_v4().to_string();
    let probes = [
        "query($id: ID!) { ticket(id: $id) { id title confidentialNotes history { action } } }",
        "mutation($id: ID!) { updateTicket(id: $id, input: {status: RESOLVED}) { id } }",
        "mutation($id: ID!) { deleteTicket(id: $id) }",
    ];
    for probe in probes {
        let (status_hidden, hidden_body) = app.gql_raw(Some(&viewer.token), probe, json!({ "id": hidden })).await;
        let (status_missing, missing_body) = app.gql_raw(Some(&viewer.token), probe, json!({ "id": missing })).await;
        assert_eq!(status_hidden, status_missing, "{probe}");
        assert_eq!(
            hidden_body.replace(hidden, "<ID>"),
            missing_body.replace(&missing, "<ID>"),
            "another user's ticket must look like a missing one: {probe}"
        );
    }
    // With several root fields async-graphql 7.2 writes them in completion
    // order, so only the JSON values can be compared.
    let probe = "query($id: ID!) { t: ticket(id: $id) { id } me { id } }";
    let hidden_body = app.gql(Some(&viewer.token), probe, json!({ "id": hidden })).await;
    let missing_body = app.gql(Some(&viewer.token), probe, json!({ "id": missing })).await;
    assert_eq!(hidden_body, missing_body, "{probe}");
}

both_stores!(role_operation_owner_table);
