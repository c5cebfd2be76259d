//! `addAttachment` sent again with the same `Idempotency-Key` (multipart)
//! adds the file once and answers as the first time.

use serde_json::Value;
use test_support::Store;

use crate::common::{png, File, Multipart};
use crate::support::{both_stores, TestApp};

async fn add_keyed(app: &TestApp, token: &str, key: &str, ticket: &str, file: &File) -> Value {
    let request = Multipart::add_attachment(ticket, file);
    let response = app
        .client()
        .post(format!("{}/graphql", app.address()))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, request.content_type())
        .header("Idempotency-Key", key)
        .body(request.body)
        .send()
        .await
        .expect("the server answers");
    response.json().await.expect("a JSON answer")
}

async fn a_retried_attachment_is_added_once(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let ticket = app.create_ticket(&reporter.token, "Screen flickers").await;
    let file = File::new("shot.png", "image/png", png());

    let first = add_keyed(&app, &reporter.token, "attach-1", &ticket, &file).await;
    assert!(first.get("errors").is_none(), "{first}");
    let events = app.event_count().await;
    let again = add_keyed(&app, &reporter.token, "attach-1", &ticket, &file).await;
    assert_eq!(again, first, "a retry answers the first attachment");
    assert_eq!(app.event_count().await, events, "and adds nothing");

    // The answer was lost (a crash before it was stored): the retry
    // answers the attachment the first run added.
    let forget = "UPDATE idempotency_keys SET response = NULL";
    commands::on_db!(&app.test_db().db, pool => sqlx::query(forget).execute(pool).await.map(|_| ()))
        .expect("the answers are forgotten");
    let after_crash = add_keyed(&app, &reporter.token, "attach-1", &ticket, &file).await;
    assert_eq!(after_crash["data"]["addAttachment"]["id"], first["data"]["addAttachment"]["id"], "{after_crash}");
    assert_eq!(app.event_count().await, events, "and adds nothing");

    let other = File::new("other.png", "image/png", [png(), vec![0; 16]].concat());
    let refused = add_keyed(&app, &reporter.token, "attach-1", &ticket, &other).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "another file, same key: {refused}");
    app.shutdown().await;
}

both_stores!(a_retried_attachment_is_added_once);
