//! What interrupted writes leave in the blob folder: the partial
//! `<sha256>#<n>` file of a write the process did not live to finish (the
//! local store hides such names from its own listing) and stray temporary
//! files. The clean-up removes them once older than its grace period, and
//! leaves fresh ones (a write may be in flight) and referenced blobs alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use test_support::Store;

use crate::common::{blob_path, blob_root, caught_up, create_ok, fetch, png, sha256_hex, File};
use crate::support::{both_stores, TestApp};

/// Past any grace period the clean-up is given here.
const LONG_AGO: Duration = Duration::from_secs(3 * 3600);
const GRACE: Duration = Duration::from_secs(3600);

/// Writes `bytes` at `path` (folders included) dated `age` ago.
fn plant(path: &Path, bytes: &[u8], age: Duration) -> PathBuf {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
    std::fs::write(path, bytes).expect("a planted file");
    age_file(path, age);
    path.to_path_buf()
}

fn age_file(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).expect("opens");
    file.set_modified(SystemTime::now() - age).expect("dates the file");
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

async fn crash_leftovers_are_collected(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let kept = File::new("kept.png", "image/png", png());
    let created = create_ok(&app, &reporter.token, "Keep me", std::slice::from_ref(&kept)).await;
    let url = created["attachments"][0]["url"].as_str().expect("url").to_owned();
    // A referenced blob is kept however old it is.
    let kept_path = blob_path(&app, &kept.sha256());
    age_file(&kept_path, LONG_AGO);

    let never_finished = blob_path(&app, &sha256_hex(b"a write killed half way"));
    let folder = never_finished.parent().expect("a folder").to_path_buf();
    let old = [
        // A blob's partial file after a `kill -9` mid-write, and a second
        // writer's beside a blob that did get written.
        plant(&with_suffix(&never_finished, "#1"), b"half a fi", LONG_AGO),
        plant(&with_suffix(&kept_path, "#2"), b"\x89PN", LONG_AGO),
        // Stray temporary files, in a blob's folder and at the top.
        plant(&folder.join(".upload-3f2a.tmp"), b"partial", LONG_AGO),
        plant(&blob_root(&app).join("sha256").join("stray.tmp"), b"partial", LONG_AGO),
    ];
    let fresh_blob = blob_path(&app, &sha256_hex(b"a write still in flight"));
    let fresh = [
        plant(&with_suffix(&fresh_blob, "#1"), b"in flig", Duration::ZERO),
        plant(&folder.join(".upload-9c1e.tmp"), b"in flight", Duration::ZERO),
    ];

    caught_up(&app).await;
    let (blobs, read) = (&app.state().app.blobs, &app.state().app.read);
    let removed = blobs.collect_garbage(read, GRACE).await.expect("collects");
    for path in &old {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    assert_eq!(removed, old.len());
    for path in &fresh {
        assert!(path.exists(), "{} may still be written: it must stay", path.display());
    }
    assert!(kept_path.is_file(), "a referenced blob stays");
    let (status, body) = fetch(&app, Some(&reporter.token), &url).await;
    assert_eq!((status, body), (StatusCode::OK, kept.bytes.clone()));

    // Once they too are old, the fresh ones go; the referenced blob stays.
    for path in &fresh {
        age_file(path, LONG_AGO);
    }
    assert_eq!(blobs.collect_garbage(read, GRACE).await.expect("collects"), fresh.len());
    assert!(fresh.iter().all(|path| !path.exists()));
    assert!(kept_path.is_file());
    app.shutdown().await;
}

both_stores!(crash_leftovers_are_collected);
