//! The clean-up in a bucket: blobs whose event never came, objects that
//! are not blobs and copies not where their digest puts them are removed
//! once older than the grace period; referenced blobs stay.

use std::time::Duration;

use reqwest::StatusCode;
use test_support::Store;

use crate::bucket::{app_on_bucket, Bucket};
use crate::common::{caught_up, create_ok, fetch, gif, png, sha256_hex, File};
use crate::support::{both_stores, TestApp};

/// The bucket's object names under `tickets/sha256/`.
async fn listing(bucket: &Bucket) -> String {
    let url = format!("{}/evidence?list-type=2&prefix=tickets/sha256/", bucket.endpoint);
    reqwest::get(url).await.expect("bucket listing").text().await.expect("listing body")
}

/// Puts `bytes` at `key` in the bucket directly, as another writer would.
async fn put_object(bucket: &Bucket, key: &str, bytes: &[u8]) {
    let url = format!("{}/evidence/{key}", bucket.endpoint);
    let response = reqwest::Client::new().put(url).body(bytes.to_vec()).send().await.expect("put");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn bucket_leftovers_are_collected(store: Store) {
    let bucket = Bucket::start("evidence").await;
    let app: TestApp = app_on_bucket(store, &bucket).await;
    let reporter = app.register("reporter@example.com").await;
    let kept = File::new("kept.gif", "image/gif", gif());
    let created = create_ok(&app, &reporter.token, "Keep me", std::slice::from_ref(&kept)).await;
    let url = created["attachments"][0]["url"].as_str().expect("url").to_owned();

    // A blob whose event never came, as a failed upload leaves it.
    let blobs = &app.state().app.blobs;
    let orphan = [png(), b"orphan".to_vec()].concat();
    let staged = app.settings.data_dir.join("orphan-upload");
    std::fs::write(&staged, &orphan).expect("a staged upload");
    blobs.put(&sha256_hex(&orphan), std::fs::File::open(&staged).expect("opens")).await.expect("stored");
    // Something that is not a blob, and a copy of a referenced blob outside
    // the place its digest gives it.
    let stray = format!("tickets/sha256/ab/cd/{}.part", sha256_hex(b"stray"));
    put_object(&bucket, &stray, b"partial").await;
    let misplaced = format!("tickets/sha256/00/00/{}", kept.sha256());
    put_object(&bucket, &misplaced, &kept.bytes).await;
    let before = listing(&bucket).await;
    for name in [&sha256_hex(&orphan), &stray, &misplaced] {
        assert!(before.contains(name.as_str()), "{name} missing before the clean-up");
    }

    caught_up(&app).await;
    let read = &app.state().app.read;
    assert_eq!(blobs.collect_garbage(read, Duration::from_secs(3600)).await.expect("collects"), 0, "all are fresh");
    // Bucket times have a resolution of a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let removed = blobs.collect_garbage(read, Duration::from_secs(1)).await.expect("collects");
    let after = listing(&bucket).await;
    for name in [&sha256_hex(&orphan), &stray, &misplaced] {
        assert!(!after.contains(name.as_str()), "{name} was left in the bucket: {after}");
    }
    assert_eq!(removed, 3);
    assert!(blobs.exists(&kept.sha256()).await, "a referenced blob stays");
    let (status, body) = fetch(&app, Some(&reporter.token), &url).await;
    assert_eq!((status, body), (StatusCode::OK, kept.bytes.clone()));
    app.shutdown().await;
}

both_stores!(bucket_leftovers_are_collected);
