//! Every accepted type, through `createTicket` (several files in one
//! request) and through `addAttachment`; what the API, the history, the
//! event store and the download say about each.

use reqwest::StatusCode;
use serde_json::json;
use test_support::Store;

use crate::common::{
    add_ok, added_entries, assert_attachment, create_ok, every_type, fetch, footprint, history_line, jpeg, png,
    sha256_hex, ticket, File,
};
use crate::support::{both_stores, TestApp};

async fn create_ticket_takes_every_type_at_once(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let files = every_type();
    let sent: Vec<File> = files.iter().map(|(file, _)| file.clone()).collect();
    let before = footprint(&app).await;

    let created = create_ok(&app, &reporter.token, "Printer shows garbage", &sent).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["version"], 1 + 5, "one TicketOpened and one AttachmentAdded per file: {created}");

    // In the answer: each file as sent, typed by its bytes, in order.
    let attachments = created["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 5, "{created}");
    for (attachment, (file, content_type)) in attachments.iter().zip(&files) {
        assert_attachment(attachment, file, content_type, &file.name, &reporter.id);
    }

    // One history entry per file: name, type, size, digest, who and when.
    let entries = added_entries(&created);
    assert_eq!(entries.len(), 5, "{created}");
    for (i, (entry, (file, content_type))) in entries.iter().zip(&files).enumerate() {
        assert_eq!(entry["sequence"], json!(i + 2), "{entry}");
        assert_eq!(entry["field"], "attachments", "{entry}");
        assert_eq!(entry["to"], history_line(&file.name, content_type, file), "{entry}");
        assert_eq!(entry["actor"]["id"], json!(reporter.id), "{entry}");
        assert!(entry["at"].as_str().is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok()), "{entry}");
    }

    // The event store: six events in one append, the names sealed.
    let after = footprint(&app).await;
    assert_eq!(after.events, before.events + 6);
    assert_eq!(app.count("SELECT COUNT(*) FROM events WHERE event_type = 'AttachmentAdded'").await, 5);
    for (file, _) in &files {
        // A '.' never occurs in base64, so only plaintext can match.
        let sql = format!("SELECT COUNT(*) FROM events WHERE CAST(payload AS TEXT) LIKE '%{}%'", file.name);
        assert_eq!(app.count(&sql).await, 0, "attachment names are sealed in events ({})", file.name);
    }
    assert_eq!(after.blobs, before.blobs + 5, "one blob per distinct file");

    // The same as read back later, and every file downloads byte for byte.
    let seen = ticket(&app, &reporter.token, &id).await;
    assert_eq!(seen["attachments"], created["attachments"]);
    assert_eq!(seen["history"], created["history"]);
    for (attachment, (file, _)) in attachments.iter().zip(&files) {
        let (status, body) = fetch(&app, Some(&reporter.token), attachment["url"].as_str().expect("url")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sha256_hex(&body), file.sha256());
        assert_eq!(body, file.bytes);
    }
    app.shutdown().await;
}

async fn add_attachment_takes_every_type(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Laptop will not boot").await;

    let mut version = 1;
    for (file, content_type) in every_type() {
        let before = app.event_count().await;
        let attachment = add_ok(&app, &reporter.token, &id, &file).await;
        assert_attachment(&attachment, &file, content_type, &file.name, &reporter.id);
        assert_eq!(app.event_count().await, before + 1);
        version += 1;
    }

    // The type comes from the bytes, never from the name or the declared type.
    let disguised = File::new("invoice.pdf", "application/pdf", png());
    let attachment = add_ok(&app, &reporter.token, &id, &disguised).await;
    assert_attachment(&attachment, &disguised, "image/png", "invoice.pdf", &reporter.id);
    // Admins attach to any ticket, and are recorded as the uploader.
    let by_admin = File::new("diagnosis.jpg", "image/jpeg", [jpeg(), b"admin".to_vec()].concat());
    let attachment = add_ok(&app, &admin.token, &id, &by_admin).await;
    assert_attachment(&attachment, &by_admin, "image/jpeg", "diagnosis.jpg", &admin.id);
    version += 2;

    let seen = ticket(&app, &reporter.token, &id).await;
    assert_eq!(seen["version"], version, "{seen}");
    assert_eq!(seen["attachments"].as_array().map(Vec::len), Some(7));
    let entries = added_entries(&seen);
    assert_eq!(entries.len(), 7);
    let mut expected: Vec<(File, &str)> = every_type();
    expected.push((disguised, "image/png"));
    expected.push((by_admin, "image/jpeg"));
    for (i, (entry, (file, content_type))) in entries.iter().zip(&expected).enumerate() {
        assert_eq!(entry["sequence"], json!(i + 2));
        assert_eq!(entry["to"], history_line(&file.name, content_type, file), "{entry}");
        let actor = if i == 6 { &admin.id } else { &reporter.id };
        assert_eq!(entry["actor"]["id"], json!(actor), "{entry}");
    }
    // The owner downloads what the admin attached.
    let url = seen["attachments"][6]["url"].as_str().expect("url");
    let (status, body) = fetch(&app, Some(&reporter.token), url).await;
    assert_eq!((status, body), (StatusCode::OK, expected[6].0.bytes.clone()));
    app.shutdown().await;
}

both_stores!(create_ticket_takes_every_type_at_once, add_attachment_takes_every_type);
