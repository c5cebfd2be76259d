//! Nothing lives only in the process: after a restart on the same database
//! and secrets, tickets, history, notes and tokens are all still good, and
//! a new active master key leaves old notes readable.

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use test_support::Store;

use crate::support::{both_stores, ticket, TestApp};

async fn state_survives_a_restart_and_key_rotation(store: Store) {
    let mut app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let employee = app.register("survivor@example.com").await;
    let id = app.create_ticket(&employee.token, "Before the restart").await;
    let body = app
        .update(&admin.token, &id, json!({ "status": "IN_PROGRESS", "confidentialNotes": "kept across restarts" }))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let before = ticket(&app, &admin.token, &id).await;
    assert_eq!(before["version"], 3);

    let settings = app.settings.clone();
    app.restart(settings.clone()).await;

    // Same data, same history, notes still open, old tokens still valid.
    let after = ticket(&app, &admin.token, &id).await;
    assert_eq!(after, before, "the ticket is unchanged by a restart");
    assert_eq!(after["confidentialNotes"], "kept across restarts");
    let own = ticket(&app, &employee.token, &id).await;
    assert_eq!(own["id"], json!(id), "the employee's old access token still works");
    let refreshed = app
        .gql_ok(
            None,
            "mutation($t: String!) { refresh(refreshToken: $t) { accessToken } }",
            json!({ "t": employee.refresh }),
        )
        .await;
    assert!(refreshed["refresh"]["accessToken"].is_string());
    // The restarted projector goes on where it stopped.
    let body = app.update(&admin.token, &id, json!({ "priority": "LOW" })).await;
    assert_eq!(body["data"]["updateTicket"]["version"], 4, "{body}");

    // Rotate: a new active master key first, the old one kept for unwrapping.
    let old_spec = settings.master_keys.as_ref().expect("tests set master keys").expose_secret().to_owned();
    let (_, new_spec) = commands::cipher::MasterKeys::generate("newkid");
    let mut rotated = settings.clone();
    rotated.master_keys = Some(SecretString::from(format!("{new_spec},{old_spec}")));
    app.restart(rotated).await;

    let after = ticket(&app, &admin.token, &id).await;
    assert_eq!(after["confidentialNotes"], "kept across restarts", "old notes open under the old key");
    assert_eq!(after["history"].as_array().map(Vec::len), Some(4));
    let body = app.update(&admin.token, &id, json!({ "confidentialNotes": "written after rotation" })).await;
    assert_eq!(body["data"]["updateTicket"]["confidentialNotes"], "written after rotation", "{body}");
    let fresh = app.create_ticket(&employee.token, "After the rotation").await;
    let body = app.update(&admin.token, &fresh, json!({ "confidentialNotes": "new key, new ticket" })).await;
    assert_eq!(body["data"]["updateTicket"]["confidentialNotes"], "new key, new ticket", "{body}");
    let kid: String = match &app.test_db().db {
        commands::db::Db::Postgres(pool) => {
            sqlx::query_scalar(&format!("SELECT kid FROM data_keys WHERE ticket_id = '{fresh}'")).fetch_one(pool).await
        }
        commands::db::Db::Sqlite(pool) => {
            let uuid = uuid::Uuid::parse_str(&fresh).expect("a uuid");
            sqlx::query_scalar("SELECT kid FROM data_keys WHERE ticket_id = $1").bind(uuid).fetch_one(pool).await
        }
    }
    .expect("the new ticket's data key");
    assert_eq!(kid, "newkid", "new tickets are wrapped under the active key");

    app.shutdown().await;
}

both_stores!(state_survives_a_restart_and_key_rotation);
