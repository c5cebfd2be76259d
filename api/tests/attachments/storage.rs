//! Content-addressed blobs: one blob per distinct file, named by its
//! SHA-256 under `<data dir>/blobs/sha256/`, written before its event;
//! orphans are collected, referenced blobs never.

use std::time::Duration;

use reqwest::StatusCode;
use test_support::Store;

use crate::common::{
    add, add_ok, blob_path, blob_root, caught_up, create_ok, create_operations, create_with, download, fetch,
    files_under, footprint, gif, pdf, png, send, sha256_hex, File, Multipart,
};
use crate::support::{assert_code, both_stores, TestApp};

async fn identical_files_share_one_blob(store: Store) {
    let app = TestApp::spawn(store).await;
    let first = app.register("first@example.com").await;
    let second = app.register("second@example.com").await;
    let file = File::new("same.pdf", "application/pdf", pdf());

    let one = create_ok(&app, &first.token, "First", std::slice::from_ref(&file)).await;
    let renamed = File::new("another name.pdf", "image/png", file.bytes.clone());
    let two = create_ok(&app, &second.token, "Second", std::slice::from_ref(&renamed)).await;
    let (a, b) = (&one["attachments"][0], &two["attachments"][0]);
    assert_eq!(a["sha256"], file.sha256());
    assert_eq!(b["sha256"], file.sha256());
    assert_ne!(a["id"], b["id"], "two attachments, one blob");

    // Exactly one file on disk, where its digest says, holding the bytes;
    // no name a person chose appears in any stored path.
    let stored = files_under(&blob_root(&app));
    assert_eq!(stored, vec![blob_path(&app, &file.sha256())], "{stored:?}");
    assert_eq!(std::fs::read(&stored[0]).expect("the blob"), file.bytes);
    assert!(stored.iter().all(|p| !p.to_string_lossy().contains("same")));

    // Each owner downloads it through their own attachment only.
    for (token, attachment) in [(&first.token, a), (&second.token, b)] {
        let (status, body) = fetch(&app, Some(token), attachment["url"].as_str().expect("url")).await;
        assert_eq!((status, body), (StatusCode::OK, file.bytes.clone()));
    }
    let (status, _) = fetch(&app, Some(&first.token), b["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Blobs live in the data folder: a restarted server still serves them.
    let mut app = app;
    app.restart(app.settings.clone()).await;
    let (status, body) = fetch(&app, Some(&second.token), b["url"].as_str().expect("url")).await;
    assert_eq!((status, body), (StatusCode::OK, file.bytes.clone()));
    app.shutdown().await;
}

async fn orphan_blobs_are_collected(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let kept = File::new("kept.gif", "image/gif", gif());
    let created = create_ok(&app, &reporter.token, "Keep me", std::slice::from_ref(&kept)).await;
    let url = created["attachments"][0]["url"].as_str().expect("url").to_owned();

    // A blob whose event never came, as a failed upload leaves it.
    let blobs = &app.state().app.blobs;
    let orphan = File::new("orphan.png", "image/png", [png(), b"orphan".to_vec()].concat());
    let staged = app.settings.data_dir.join("orphan-upload");
    std::fs::write(&staged, &orphan.bytes).expect("a staged upload");
    blobs.put(&orphan.sha256(), std::fs::File::open(&staged).expect("opens")).await.expect("stored");
    assert!(blobs.exists(&orphan.sha256()).await);
    assert!(blob_path(&app, &orphan.sha256()).is_file());

    caught_up(&app).await;
    let read = &app.state().app.read;
    // Within the grace period nothing goes: it may be an upload in flight.
    let removed = blobs.collect_garbage(read, Duration::from_secs(3600)).await.expect("collects");
    assert_eq!(removed, 0);
    assert!(blobs.exists(&orphan.sha256()).await);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let removed = blobs.collect_garbage(read, Duration::ZERO).await.expect("collects");
    assert_eq!(removed, 1, "only the orphan goes");
    assert!(!blobs.exists(&orphan.sha256()).await);
    assert!(!blob_path(&app, &orphan.sha256()).exists());
    assert!(blobs.exists(&kept.sha256()).await, "a referenced blob stays");
    assert_eq!(files_under(&blob_root(&app)), vec![blob_path(&app, &kept.sha256())]);
    let (status, body) = fetch(&app, Some(&reporter.token), &url).await;
    assert_eq!((status, body), (StatusCode::OK, kept.bytes.clone()));

    // Nothing left to collect; a second run removes nothing.
    let removed = blobs.collect_garbage(read, Duration::ZERO).await.expect("collects");
    assert_eq!(removed, 0);
    app.shutdown().await;
}

/// When the blob cannot be written, no event is appended: no event ever
/// points at a missing file.
async fn failed_blob_write_appends_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Storage trouble").await;
    let file = File::new("shot.png", "image/png", png());

    // Make the blob folder unusable: a plain file where a folder must go.
    let blocked = blob_root(&app).join("sha256");
    let _ = std::fs::remove_dir_all(&blocked);
    std::fs::write(&blocked, b"not a folder").expect("blocks the store");
    let before = footprint(&app).await;

    // INTERNAL is answered 500 wherever it arises, inside a GraphQL answer too.
    let (status, body) = add(&app, Some(&reporter.token), &id, &file).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_code(&body, "INTERNAL");
    assert_eq!(body["errors"][0]["message"], "internal error", "no internals shown: {body}");
    assert_eq!(app.event_count().await, before.events);
    assert_eq!(app.count("SELECT COUNT(*) FROM attachments").await, before.attachments);

    let (status, body) = create_with(&app, &reporter.token, "Also failing", std::slice::from_ref(&file)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_code(&body, "INTERNAL");
    assert_eq!(app.event_count().await, before.events);
    assert_eq!(app.count("SELECT COUNT(*) FROM tickets").await, before.tickets);

    // Once the store works again, so do uploads.
    std::fs::remove_file(&blocked).expect("unblocks the store");
    let attachment = add_ok(&app, &reporter.token, &id, &file).await;
    assert_eq!(attachment["sha256"], file.sha256());
    assert_eq!(app.event_count().await, before.events + 1);
    app.shutdown().await;
}

/// The multipart spec lets one file part fill several variables; each
/// attachment made from it holds the whole file, and storing it twice must
/// not damage the blob that other tickets share.
async fn one_file_part_filling_two_variables(store: Store) {
    let app = TestApp::spawn(store).await;
    let first = app.register("first@example.com").await;
    let second = app.register("second@example.com").await;
    let file = File::new("twice.png", "image/png", png());
    let earlier = create_ok(&app, &first.token, "Earlier", std::slice::from_ref(&file)).await;

    let paths = vec!["variables.input.attachments.0".to_owned(), "variables.input.attachments.1".to_owned()];
    let request = Multipart::mapped(&create_operations("Twice", 2), &[(&file, paths)]);
    let (status, body) = send(&app, Some(&second.token), request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let attachments = body["data"]["createTicket"]["attachments"].as_array().expect("attachments").clone();
    assert_eq!(attachments.len(), 2, "{body}");

    // The blob still holds the file, byte for byte.
    let stored = std::fs::read(blob_path(&app, &file.sha256())).expect("the blob");
    assert_eq!(sha256_hex(&stored), file.sha256(), "the blob no longer matches its name ({} bytes)", stored.len());
    for attachment in &attachments {
        assert_eq!(attachment["sha256"], file.sha256());
        assert_eq!(attachment["size"], file.bytes.len());
        let response = download(&app, Some(&second.token), attachment["url"].as_str().expect("url"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.bytes().await.map(|b| b.to_vec());
        assert_eq!(bytes.ok(), Some(file.bytes.clone()), "the download is the file");
    }
    // And the other ticket's attachment of the same content is intact.
    let url = earlier["attachments"][0]["url"].as_str().expect("url");
    let response = download(&app, Some(&first.token), url, None).await;
    let bytes = response.bytes().await.map(|b| b.to_vec());
    assert_eq!(bytes.ok(), Some(file.bytes.clone()), "another ticket's evidence was damaged");
    app.shutdown().await;
}

both_stores!(
    one_file_part_filling_two_variables,
    identical_files_share_one_blob,
    orphan_blobs_are_collected,
    failed_blob_write_appends_nothing
);
