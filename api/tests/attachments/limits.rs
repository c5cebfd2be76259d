//! Size and count limits, and broken multipart bodies: refused with the
//! right code, never a 500, nothing appended, nothing stored.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    add_mutation, add_ok, authority, create_ok, create_with, footprint, gif, pdf, pdf_of_size, png, post, raw_request,
    read_head, send, status_of, ticket, try_post, File, Multipart,
};
use crate::support::{assert_code, both_stores, TestApp};

/// The limit the small-limit tests run with.
const LIMIT: usize = 64 * 1024;

/// A server whose files may be at most `LIMIT` bytes.
async fn small_limit_app(store: Store) -> TestApp {
    let mut app = TestApp::spawn(store).await;
    let mut settings = app.settings.clone();
    settings.max_upload_bytes = LIMIT as u64;
    app.restart(settings).await;
    app
}

/// Sends a request the server refuses before reading it all. The server
/// then closes the connection with unread data, which can reset it before
/// the client has read the 413 (hyper has no lingering close); such an
/// attempt is retried, and must have left no trace either. A client of its
/// own keeps the closed connection out of the harness's pool (see
/// `refused_upload_leaves_the_connection_usable`).
async fn refused_early(app: &TestApp, token: &str, request: Multipart) -> (StatusCode, Value) {
    let before = footprint(app).await;
    for _ in 0..10 {
        let client = reqwest::Client::new();
        match try_post(&client, app, Some(token), &request.content_type(), request.body.clone()).await {
            Ok(answer) => return answer,
            Err(error) => {
                eprintln!("connection reset before the answer was read: {error}");
                assert_eq!(footprint(app).await, before);
            }
        }
    }
    panic!("never got an answer in ten attempts");
}

async fn oversized_files_are_refused(store: Store) {
    let app = small_limit_app(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Scanner output").await;

    // Exactly at the limit is fine.
    let at_limit = File::new("scan.pdf", "application/pdf", pdf_of_size(LIMIT));
    let attachment = add_ok(&app, &reporter.token, &id, &at_limit).await;
    assert_eq!(attachment["size"], LIMIT);
    let before = footprint(&app).await;

    // One byte more, or far more: 413, nothing appended, nothing stored.
    for size in [LIMIT + 1, 4 * LIMIT, 1024 * 1024] {
        let file = File::new("scan.pdf", "application/pdf", pdf_of_size(size));
        let (status, body) = refused_early(&app, &reporter.token, Multipart::add_attachment(&id, &file)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes: {body}");
        assert_code(&body, "PAYLOAD_TOO_LARGE");
        assert_eq!(footprint(&app).await, before, "{size} bytes left a trace");

        // Also as the second of two files of a new ticket: no ticket.
        let files = [File::new("ok.png", "image/png", png()), file];
        let (status, body) = refused_early(&app, &reporter.token, Multipart::create_ticket("Too big", &files)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes: {body}");
        assert_code(&body, "PAYLOAD_TOO_LARGE");
        assert_eq!(footprint(&app).await, before, "{size} bytes left a trace");
    }
    assert_eq!(ticket(&app, &reporter.token, &id).await["version"], 2);
    app.shutdown().await;
}

/// The server answers 413 while the client is still sending: it never waits
/// for (or buffers) a body that has already broken the limit.
async fn oversized_stream_is_cut_short(store: Store) {
    let app = small_limit_app(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Huge dump").await;
    let before = footprint(&app).await;

    // A request announcing 1 GiB, of which at most 4 MiB is ever sent.
    let mut request = Multipart::add_attachment(&id, &File::new("dump.pdf", "application/pdf", pdf()));
    let cut = request.body.windows(4).position(|w| w == b"%PDF").expect("the file part") + 4;
    request.body.truncate(cut);
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\n\r\n",
        authority(&app),
        reporter.token,
        request.content_type(),
        1_u64 << 30
    );
    let stream = tokio::net::TcpStream::connect(authority(&app)).await.expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let mut sent = 0_usize;
        if writer.write_all(head.as_bytes()).await.is_err() || writer.write_all(&request.body).await.is_err() {
            return sent;
        }
        let chunk = vec![b'x'; 64 * 1024];
        while sent < 4 * 1024 * 1024 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        // Keep the connection open: only the server may end this exchange.
        tokio::time::sleep(Duration::from_secs(30)).await;
        sent
    });
    let answer = read_head(&mut reader, Duration::from_secs(20)).await;
    sender.abort();
    let answer = answer.expect("an answer before the body ends");
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(footprint(&app).await, before);
    app.shutdown().await;
}

/// After a 413 for a body it did not read, the server either says
/// `Connection: close` or still serves the next request on that
/// connection; otherwise a keep-alive client's next request fails.
async fn refused_upload_leaves_the_connection_usable(store: Store) {
    let app = small_limit_app(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Keep-alive").await;

    for size in [2 * LIMIT, 16 * LIMIT] {
        let file = File::new("big.pdf", "application/pdf", pdf_of_size(size));
        let request = Multipart::add_attachment(&id, &file);
        let head = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\n\
             Content-Length: {}\r\n\r\n",
            authority(&app),
            reporter.token,
            request.content_type(),
            request.body.len()
        );
        let stream = tokio::net::TcpStream::connect(authority(&app)).await.expect("connects");
        let (mut reader, mut writer) = stream.into_split();
        let bytes = [head.as_bytes(), &request.body].concat();
        let sender = tokio::spawn(async move {
            let sent = writer.write_all(&bytes).await;
            (writer, sent)
        });
        let answer = read_head(&mut reader, Duration::from_secs(15)).await.expect("an answer");
        assert_eq!(status_of(&answer), 413, "{answer}");
        let (mut writer, sent) = sender.await.expect("the sender finishes");
        if answer.to_ascii_lowercase().contains("connection: close") {
            continue;
        }
        // Kept alive: the next request on this connection must be served.
        let next = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", authority(&app));
        let written = writer.write_all(next.as_bytes()).await;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut buffer = [0_u8; 8192];
        while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
            seen.extend_from_slice(&buffer[..n]);
            if seen.ends_with(b"\r\n\r\nok") {
                break;
            }
        }
        let seen = String::from_utf8_lossy(&seen);
        assert!(
            sent.is_ok() && written.is_ok() && seen.contains("HTTP/1.1 200"),
            "{size}-byte file: the 413 kept the connection alive (no `Connection: close`), but the server \
             closed it: a keep-alive client's next request fails (body write: {sent:?}, next request: \
             {written:?}).\nFirst answer:\n{answer}\nThen:\n{seen}"
        );
    }
    app.shutdown().await;
}

async fn file_count_is_capped(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let before = footprint(&app).await;

    // Eleven small files in one request: refused, no ticket.
    let files: Vec<File> =
        (0..11_u8).map(|i| File::new(&format!("shot-{i}.gif"), "image/gif", [gif(), vec![i]].concat())).collect();
    let (status, body) = create_with(&app, &reporter.token, "Too many", &files).await;
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_code(&body, "PAYLOAD_TOO_LARGE");
    assert_eq!(footprint(&app).await, before);

    // Ten is the cap, and fine.
    let created = create_ok(&app, &reporter.token, "Just enough", &files[..10]).await;
    assert_eq!(created["version"], 11);
    assert_eq!(created["attachments"].as_array().map(Vec::len), Some(10));
    app.shutdown().await;
}

/// How many file descriptors this process (test and server) holds.
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map(Iterator::count).unwrap_or_default()
}

/// The cap counts file parts as they stream in: a small request with a
/// thousand one-byte file parts is refused without the server spooling a
/// thousand temporary files (one descriptor each) first.
async fn many_file_parts_are_refused_early(store: Store) {
    const PARTS: usize = 1000;
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Many parts").await;
    let before = footprint(&app).await;

    let file = File::new("a.png", "image/png", png());
    let operations = json!({ "query": add_mutation(), "variables": { "ticketId": id, "file": null } });
    let parts: Vec<(&File, Vec<String>)> =
        (0..PARTS).map(|i| (&file, if i == 0 { vec!["variables.file".to_owned()] } else { Vec::new() })).collect();
    let request = Multipart::mapped(&operations, &parts);
    assert!(request.body.len() < 256 * 1024, "a small request");

    let baseline = open_files();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(open_files(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (status, body) = post(&app, Some(&reporter.token), &request.content_type(), request.body).await;
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);

    assert!(
        peak.saturating_sub(baseline) < 200,
        "one request held {} more files open ({baseline} -> {peak}) for its {PARTS} parts: the file count is \
         only checked after every part was spooled",
        peak.saturating_sub(baseline)
    );
    assert!(status.is_client_error() || status == StatusCode::OK, "{status}: {body}");
    let code = crate::support::error_code(&body);
    assert!(matches!(code.as_deref(), Some("PAYLOAD_TOO_LARGE" | "BAD_USER_INPUT")), "{status}: {body}");
    assert_eq!(footprint(&app).await, before);
    app.shutdown().await;
}

async fn broken_multipart_is_a_bad_request(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Broken upload").await;
    let big = File::new("big.pdf", "application/pdf", pdf_of_size(256 * 1024));
    let before = footprint(&app).await;

    // Cut in the middle of the file part, and in the middle of `operations`,
    // with a correct boundary header and Content-Length.
    let request = Multipart::add_attachment(&id, &big);
    let file_start = request.body.windows(4).position(|w| w == b"%PDF").expect("the file part");
    for cut in [file_start + 100_000, 40] {
        let (status, body) =
            post(&app, Some(&reporter.token), &request.content_type(), request.body[..cut].to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "cut at {cut}: {body}");
        assert_code(&body, "BAD_USER_INPUT");
        assert_eq!(footprint(&app).await, before);
    }

    // A map that points at a file part that never comes.
    let operations = json!({ "query": add_mutation(), "variables": { "ticketId": id, "file": null } });
    let missing = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{\"0\": [\"variables.file\"]}}\r\n\
         --b0undary--\r\n"
    );
    let (status, body) =
        post(&app, Some(&reporter.token), "multipart/form-data; boundary=b0undary", missing.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_code(&body, "BAD_USER_INPUT");

    // No boundary at all, and a boundary that never occurs.
    let (status, body) = post(&app, Some(&reporter.token), "multipart/form-data", request.body.clone()).await;
    assert_eq!(
        (status, crate::support::error_code(&body).as_deref()),
        (StatusCode::BAD_REQUEST, Some("BAD_USER_INPUT"))
    );
    let (status, body) =
        post(&app, Some(&reporter.token), "multipart/form-data; boundary=nowhere", request.body.clone()).await;
    assert_eq!(
        (status, crate::support::error_code(&body).as_deref()),
        (StatusCode::BAD_REQUEST, Some("BAD_USER_INPUT"))
    );
    assert_eq!(footprint(&app).await, before);

    // The client announces more than it sends and hangs up half-way: no
    // 5xx (an answer, if any, is a 4xx), nothing appended.
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\n\r\n",
        authority(&app),
        reporter.token,
        request.content_type(),
        request.body.len()
    );
    let bytes = [head.as_bytes(), &request.body[..file_start + 100_000]].concat();
    if let Some(answer) = raw_request(&app, &bytes, true).await {
        let status = status_of(&answer);
        assert!((400..500).contains(&status), "{answer}");
    }
    assert_eq!(footprint(&app).await, before);

    // And the server is none the worse.
    let attachment = add_ok(&app, &reporter.token, &id, &big).await;
    assert_eq!(attachment["size"], 256 * 1024);
    app.shutdown().await;
}

/// `operations` and `map` are JSON: they get the JSON body's 1 MiB, not
/// the files' limit, wherever they come in the body.
async fn oversized_operations_and_map_are_refused(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Big operations").await;
    let before = footprint(&app).await;
    let file = File::new("shot.png", "image/png", png());
    let padding = "x".repeat(9 * 1024 * 1024);
    let operations = json!({ "query": add_mutation(), "variables": { "ticketId": id, "file": null, "pad": padding } });
    let request = Multipart::new(&operations, &[("variables.file".to_owned(), &file)]);
    let (status, body) = refused_early(&app, &reporter.token, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "9 MiB operations: {body}");
    assert_code(&body, "PAYLOAD_TOO_LARGE");

    let paths: Vec<String> = (0..100_000).map(|i| format!("variables.pad.{i}")).collect();
    let operations = json!({ "query": add_mutation(), "variables": { "ticketId": id, "file": null } });
    let mut paths_of_file = vec!["variables.file".to_owned()];
    paths_of_file.extend(paths);
    let request = Multipart::mapped(&operations, &[(&file, paths_of_file)]);
    assert!(request.body.len() > 2 * 1024 * 1024);
    let (status, body) = refused_early(&app, &reporter.token, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "2 MiB map: {body}");
    assert_code(&body, "PAYLOAD_TOO_LARGE");
    assert_eq!(footprint(&app).await, before);

    // Just under the limit is served.
    let operations = json!({ "query": add_mutation(), "variables": { "ticketId": id, "file": null, "pad": "x".repeat(1000 * 1000) } });
    let (status, body) =
        send(&app, Some(&reporter.token), Multipart::new(&operations, &[("variables.file".to_owned(), &file)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    app.shutdown().await;
}

/// An `operations` part sent as a file of any declared type is read as
/// the JSON it must be (async-graphql asserts on a multipart one).
async fn operations_sent_as_a_file_are_read_as_json(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Odd client").await;
    let file = File::new("shot.png", "image/png", png());
    for declared in ["multipart/mixed; boundary=inner", "multipart/form-data", "application/octet-stream"] {
        let request = Multipart::add_attachment(&id, &file);
        let plain = b"name=\"operations\"\r\nContent-Type: application/json";
        let at = request.body.windows(plain.len()).position(|w| w == plain).expect("the operations part");
        let as_file = format!("name=\"operations\"; filename=\"operations.json\"\r\nContent-Type: {declared}");
        let body = [&request.body[..at], as_file.as_bytes(), &request.body[at + plain.len()..]].concat();
        let (status, answer) = post(&app, Some(&reporter.token), &request.content_type(), body).await;
        assert_eq!(status, StatusCode::OK, "{declared}: {answer}");
        assert!(answer.get("errors").is_none(), "{declared}: {answer}");
    }
    app.shutdown().await;
}

both_stores!(
    oversized_files_are_refused,
    oversized_stream_is_cut_short,
    refused_upload_leaves_the_connection_usable,
    file_count_is_capped,
    many_file_parts_are_refused_early,
    broken_multipart_is_a_bad_request,
    oversized_operations_and_map_are_refused,
    operations_sent_as_a_file_are_read_as_json,
);
