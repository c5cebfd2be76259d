//! Attachments in an S3-compatible bucket instead of the data folder: a
//! real S3 endpoint on loopback (moto's server, installed by `.ci/run` and
//! `scripts/test`), the same uploads, digests and downloads.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use test_support::Store;

use crate::common::{blob_root, create_ok, every_type, fetch, files_under};
use crate::support::{both_stores, TestApp};

/// An S3 endpoint for one test, stopped when dropped.
pub struct Bucket {
    server: Child,
    pub endpoint: String,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Bucket {
    pub async fn start(name: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let port_text = port.to_string();
        let args = ["-H", "127.0.0.1", "-p", port_text.as_str()];
        let quiet = |command: &mut Command| command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let server = quiet(Command::new("moto_server").args(args))
            .or_else(|_| quiet(Command::new("python3").args(["-m", "moto.server"]).args(args)))
            .expect("moto's S3 server is needed: pip install 'moto[server]', or run scripts/test");
        let bucket = Self { server, endpoint: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.put(format!("{}/{name}", bucket.endpoint)).send().await.is_ok_and(|r| r.status().is_success()) {
                return bucket;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the S3 server at {} did not come up", bucket.endpoint);
    }
}

/// A server on `store` whose blobs go to `s3://evidence/tickets` on `bucket`.
pub async fn app_on_bucket(store: Store, bucket: &Bucket) -> TestApp {
    let mut app = TestApp::spawn(store).await;
    let mut settings = app.settings.clone();
    settings.blob_store = "s3://evidence/tickets".to_owned();
    settings.blob_options = [
        ("aws_endpoint", bucket.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    app.restart(settings).await;
    app
}

async fn attachments_live_in_a_bucket(store: Store) {
    let bucket = Bucket::start("evidence").await;
    let app = app_on_bucket(store, &bucket).await;

    let reporter = app.register("bucket@example.com").await;
    let files: Vec<_> = every_type().into_iter().map(|(file, _)| file).collect();
    let ticket = create_ok(&app, &reporter.token, "Evidence in a bucket", &files).await;
    let attachments = ticket["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), files.len());
    for (attachment, file) in attachments.iter().zip(&files) {
        assert_eq!(attachment["sha256"], file.sha256());
        let (status, body) = fetch(&app, Some(&reporter.token), attachment["url"].as_str().expect("url")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, file.bytes, "{}", file.name);
    }
    // Nothing went to the data folder: the bucket holds the evidence.
    assert!(files_under(&blob_root(&app)).is_empty());
    let listing = reqwest::get(format!("{}/evidence?list-type=2&prefix=tickets/sha256/", bucket.endpoint))
        .await
        .expect("bucket listing")
        .text()
        .await
        .expect("listing body");
    for file in &files {
        assert!(listing.contains(&file.sha256()), "{} missing from the bucket", file.name);
    }
    app.shutdown().await;
}

both_stores!(attachments_live_in_a_bucket);
