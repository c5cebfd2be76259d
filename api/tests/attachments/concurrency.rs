//! Many uploads to one ticket at once: all land, none is lost, the
//! version counts every one.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;
use test_support::Store;

use crate::common::{add, added_entries, blob_root, fetch, files_under, jpeg, png, ticket, File};
use crate::support::{both_stores, error_code, TestApp};

const UPLOADS: usize = 8;

async fn concurrent_uploads_all_land(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Many screenshots").await;
    let before = app.event_count().await;

    // Half share one content (and so one blob, written concurrently).
    let files: Vec<File> = (0..UPLOADS)
        .map(|i| {
            let bytes = if i % 2 == 0 { png() } else { [jpeg(), vec![u8::try_from(i).expect("small")]].concat() };
            File::new(&format!("shot-{i}.img"), "application/octet-stream", bytes)
        })
        .collect();
    let answers = futures::future::join_all(files.iter().map(|file| add(&app, Some(&reporter.token), &id, file))).await;

    let mut ids = HashSet::new();
    for ((status, body), file) in answers.iter().zip(&files) {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(error_code(body), None, "{} failed: {body}", file.name);
        let attachment = &body["data"]["addAttachment"];
        assert_eq!(attachment["filename"], file.name.as_str());
        assert_eq!(attachment["sha256"], file.sha256());
        ids.insert(attachment["id"].as_str().expect("an id").to_owned());
    }
    assert_eq!(ids.len(), UPLOADS, "every upload is its own attachment");

    let seen = ticket(&app, &reporter.token, &id).await;
    assert_eq!(seen["version"], 1 + UPLOADS, "{seen}");
    let attachments = seen["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), UPLOADS);
    let shown: HashSet<String> = attachments.iter().filter_map(|a| a["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(shown, ids);
    let entries = added_entries(&seen);
    let sequences: Vec<i64> = entries.iter().filter_map(|e| e["sequence"].as_i64()).collect();
    assert_eq!(sequences, (2..=1 + UPLOADS as i64).collect::<Vec<_>>());
    assert_eq!(app.event_count().await, before + UPLOADS as i64);
    assert_eq!(files_under(&blob_root(&app)).len(), 1 + UPLOADS / 2, "identical files share a blob");

    for attachment in attachments {
        let file = files.iter().find(|f| f.name == attachment["filename"].as_str().unwrap_or_default());
        let file = file.expect("a file we sent");
        let (status, body) = fetch(&app, Some(&reporter.token), attachment["url"].as_str().unwrap_or_default()).await;
        assert_eq!((status, body), (StatusCode::OK, file.bytes.clone()));
        assert_ne!(attachment["uploadedBy"], Value::Null);
    }
    app.shutdown().await;
}

both_stores!(concurrent_uploads_all_land);
