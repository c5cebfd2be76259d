//! What the attachment tests share: tiny valid files built in code, a
//! hand-written GraphQL multipart request (so names, declared types and
//! truncation are fully under the test's control), upload and download
//! helpers, and a look at the blob folder on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::support::{assert_no_leak, TestApp};

pub const ATTACHMENT_FIELDS: &str = "id filename contentType size sha256 uploadedAt url uploadedBy { id }";
pub const HISTORY_FIELDS: &str = "history { sequence at action field from to actor { id } }";

/// `createTicket` answering with its attachments and history.
pub fn create_mutation() -> String {
    format!(
        "mutation($input: CreateTicketInput!) {{ createTicket(input: $input) {{ id version \
         attachments {{ {ATTACHMENT_FIELDS} }} {HISTORY_FIELDS} }} }}"
    )
}

pub fn add_mutation() -> String {
    format!(
        "mutation($ticketId: ID!, $file: Upload!) {{ addAttachment(ticketId: $ticketId, file: $file) \
         {{ {ATTACHMENT_FIELDS} }} }}"
    )
}

pub fn ticket_query() -> String {
    format!(
        "query($id: ID!) {{ ticket(id: $id) {{ id version deletedAt attachments {{ {ATTACHMENT_FIELDS} }} \
         {HISTORY_FIELDS} }} }}"
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------- files

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).expect("a small chunk").to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A valid 1×1 greyscale PNG: signature, IHDR, a stored-deflate IDAT, IEND.
pub fn png() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&1_u32.to_be_bytes());
    ihdr.extend_from_slice(&1_u32.to_be_bytes());
    // 8-bit greyscale, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let scanline = [0_u8, 0x80];
    // zlib header, then one final stored block of two bytes.
    let mut zlib = vec![0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF];
    zlib.extend_from_slice(&scanline);
    zlib.extend_from_slice(&adler32(&scanline).to_be_bytes());
    png_chunk(&mut out, b"IDAT", &zlib);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A JFIF header and an end-of-image marker.
pub fn jpeg() -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    out.extend_from_slice(b"JFIF\0");
    out.extend_from_slice(&[0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// The classic 1×1 transparent GIF89a.
pub fn gif() -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&[
        0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x21, 0xF9, 0x04, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00,
        0x3B,
    ]);
    out
}

/// A 1×1 lossless WebP: `RIFF <size> WEBP VP8L …`.
pub fn webp() -> Vec<u8> {
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&26_u32.to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&[
        0x0D, 0x00, 0x00, 0x00, 0x2F, 0x00, 0x00, 0x00, 0x10, 0x07, 0x10, 0x11, 0x11, 0x88, 0x88, 0xFE, 0x07, 0x00,
    ]);
    assert_eq!(out.len(), 34, "RIFF size must match");
    out
}

const PDF_BODY: &str = "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n\
    2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
    3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 3 3]>>endobj\n\
    trailer<</Root 1 0 R>>\n";

/// A one-page PDF.
pub fn pdf() -> Vec<u8> {
    format!("{PDF_BODY}%%EOF\n").into_bytes()
}

/// A PDF of exactly `size` bytes, padded with a comment.
pub fn pdf_of_size(size: usize) -> Vec<u8> {
    let tail = "%%EOF\n";
    let fixed = PDF_BODY.len() + 2 + tail.len();
    assert!(size >= fixed, "a PDF needs at least {fixed} bytes");
    let mut out = PDF_BODY.as_bytes().to_vec();
    out.push(b'%');
    out.extend(std::iter::repeat_n(b'x', size - fixed));
    out.push(b'\n');
    out.extend_from_slice(tail.as_bytes());
    assert_eq!(out.len(), size);
    out
}

/// One file part of a multipart request.
#[derive(Debug, Clone)]
pub struct File {
    /// The name as the client sends it, unsanitised.
    pub name: String,
    /// What the client claims; the server must not believe it.
    pub declared: String,
    pub bytes: Vec<u8>,
}

impl File {
    pub fn new(name: &str, declared: &str, bytes: Vec<u8>) -> Self {
        Self { name: name.to_owned(), declared: declared.to_owned(), bytes }
    }

    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// One of each accepted type, with the type the server must decide on.
pub fn every_type() -> Vec<(File, &'static str)> {
    vec![
        (File::new("screenshot.png", "image/png", png()), "image/png"),
        (File::new("photo.jpg", "image/jpeg", jpeg()), "image/jpeg"),
        // Declared types are wrong or generic on purpose: only bytes count.
        (File::new("anim.gif", "application/octet-stream", gif()), "image/gif"),
        (File::new("shot.webp", "text/plain", webp()), "image/webp"),
        (File::new("report.pdf", "application/pdf", pdf()), "application/pdf"),
    ]
}

// ------------------------------------------------------------ multipart

/// `operations` of a `createTicket` with `files` attachment slots.
pub fn create_operations(title: &str, files: usize) -> Value {
    json!({
        "query": create_mutation(),
        "variables": { "input": {
            "title": title,
            "description": "Evidence attached.",
            "attachments": vec![Value::Null; files],
        } },
    })
}

/// A GraphQL multipart request: `operations`, `map`, then one part per
/// file, each mapped to the variable path beside it.
pub struct Multipart {
    pub boundary: String,
    pub body: Vec<u8>,
}

impl Multipart {
    pub fn new(operations: &Value, files: &[(String, &File)]) -> Self {
        let parts: Vec<(&File, Vec<String>)> = files.iter().map(|(path, file)| (*file, vec![path.clone()])).collect();
        Self::mapped(operations, &parts)
    }

    /// One file part per entry, mapped to every path beside it (the spec
    /// lets one file fill several variables).
    pub fn mapped(operations: &Value, parts: &[(&File, Vec<String>)]) -> Self {
        let boundary = format!("tickets-test-{}", Uuid::new_v4().simple());
        let map: serde_json::Map<String, Value> =
            parts.iter().enumerate().map(|(i, (_, paths))| (i.to_string(), json!(paths))).collect();
        let mut body = Vec::new();
        let mut part = |headers: String, content: &[u8]| {
            body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n").as_bytes());
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        };
        part(
            "Content-Disposition: form-data; name=\"operations\"\r\nContent-Type: application/json\r\n".to_owned(),
            operations.to_string().as_bytes(),
        );
        part("Content-Disposition: form-data; name=\"map\"\r\n".to_owned(), Value::Object(map).to_string().as_bytes());
        for (i, (file, _)) in parts.iter().enumerate() {
            let name = file.name.replace('"', "\\\"");
            part(
                format!(
                    "Content-Disposition: form-data; name=\"{i}\"; filename=\"{name}\"\r\nContent-Type: {}\r\n",
                    file.declared
                ),
                &file.bytes,
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Self { boundary, body }
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// `createTicket` with `files` as its attachments.
    pub fn create_ticket(title: &str, files: &[File]) -> Self {
        let paths: Vec<(String, &File)> =
            files.iter().enumerate().map(|(i, f)| (format!("variables.input.attachments.{i}"), f)).collect();
        Self::new(&create_operations(title, files.len()), &paths)
    }

    /// `addAttachment(ticketId, file)`.
    pub fn add_attachment(ticket: &str, file: &File) -> Self {
        let operations = json!({ "query": add_mutation(), "variables": { "ticketId": ticket, "file": null } });
        Self::new(&operations, &[("variables.file".to_owned(), file)])
    }
}

/// POSTs `body` to `/graphql` as `content_type`; the status and the JSON
/// answer, checked for leaked internals.
pub async fn post(app: &TestApp, token: Option<&str>, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    try_post(app.client(), app, token, content_type, body).await.expect("the server answers")
}

/// As `post`, but a transport failure (e.g. the server closing the
/// connection while the body is still being sent) is returned.
pub async fn try_post(
    client: &reqwest::Client,
    app: &TestApp,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let mut request = client
        .post(format!("{}/graphql", app.address()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    assert_no_leak(&text);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    Ok((status, value))
}

pub async fn send(app: &TestApp, token: Option<&str>, request: Multipart) -> (StatusCode, Value) {
    post(app, token, &request.content_type(), request.body).await
}

/// `createTicket` with files; the status and the whole answer.
pub async fn create_with(app: &TestApp, token: &str, title: &str, files: &[File]) -> (StatusCode, Value) {
    send(app, Some(token), Multipart::create_ticket(title, files)).await
}

/// `createTicket` with files that must succeed; the ticket.
pub async fn create_ok(app: &TestApp, token: &str, title: &str, files: &[File]) -> Value {
    let (status, body) = create_with(app, token, title, files).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "createTicket failed: {body}");
    body["data"]["createTicket"].clone()
}

/// `addAttachment`; the status and the whole answer.
pub async fn add(app: &TestApp, token: Option<&str>, ticket: &str, file: &File) -> (StatusCode, Value) {
    send(app, token, Multipart::add_attachment(ticket, file)).await
}

/// `addAttachment` that must succeed; the attachment.
pub async fn add_ok(app: &TestApp, token: &str, ticket: &str, file: &File) -> Value {
    let (status, body) = add(app, Some(token), ticket, file).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "addAttachment failed: {body}");
    body["data"]["addAttachment"].clone()
}

/// The ticket as `token` sees it (`null` when hidden).
pub async fn ticket(app: &TestApp, token: &str, id: &str) -> Value {
    app.gql_ok(Some(token), &ticket_query(), json!({ "id": id })).await["ticket"].clone()
}

pub async fn delete_ticket(app: &TestApp, admin: &str, id: &str) {
    app.gql_ok(Some(admin), "mutation($id: ID!) { deleteTicket(id: $id) }", json!({ "id": id })).await;
}

/// Checks an attachment as the API shows it against the file sent.
#[track_caller]
pub fn assert_attachment(attachment: &Value, file: &File, content_type: &str, filename: &str, uploader: &str) {
    assert_eq!(attachment["filename"], filename, "{attachment}");
    assert_eq!(attachment["contentType"], content_type, "{attachment}");
    assert_eq!(attachment["size"], json!(file.bytes.len()), "{attachment}");
    assert_eq!(attachment["sha256"], file.sha256(), "{attachment}");
    assert_eq!(attachment["uploadedBy"]["id"], uploader, "{attachment}");
    let id = attachment["id"].as_str().expect("an attachment id");
    assert!(Uuid::parse_str(id).is_ok(), "ids are UUIDs: {id}");
    assert_eq!(attachment["url"], format!("/attachments/{id}"), "{attachment}");
    let at = attachment["uploadedAt"].as_str().expect("uploadedAt");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "uploadedAt is a date-time: {at}");
}

/// What the history says about an attachment added.
pub fn history_line(filename: &str, content_type: &str, file: &File) -> String {
    format!("{filename} ({content_type}, {} bytes, sha256 {})", file.bytes.len(), file.sha256())
}

/// The `AttachmentAdded` entries of a ticket's history.
pub fn added_entries(ticket: &Value) -> Vec<Value> {
    ticket["history"]
        .as_array()
        .expect("a history list")
        .iter()
        .filter(|e| e["action"] == "AttachmentAdded")
        .cloned()
        .collect()
}

// ------------------------------------------------------------- download

/// `GET url` with an optional Bearer token and `Range`.
pub async fn download(app: &TestApp, token: Option<&str>, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = app.client().get(format!("{}{url}", app.address()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header(reqwest::header::RANGE, range);
    }
    request.send().await.expect("the server answers")
}

/// A download's status and body bytes.
pub async fn fetch(app: &TestApp, token: Option<&str>, url: &str) -> (StatusCode, Vec<u8>) {
    let response = download(app, token, url, None).await;
    let status = response.status();
    (status, response.bytes().await.expect("a body").to_vec())
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header: {:?}", response.headers()))
        .to_owned()
}

// ---------------------------------------------------------------- blobs

/// Where the default blob store keeps its files.
pub fn blob_root(app: &TestApp) -> PathBuf {
    app.settings.data_dir.join("blobs")
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Where the blob of `sha256` must be on disk.
pub fn blob_path(app: &TestApp, sha256: &str) -> PathBuf {
    blob_root(app).join("sha256").join(&sha256[..2]).join(&sha256[2..4]).join(sha256)
}

/// Waits until the projector has seen every event.
pub async fn caught_up(app: &TestApp) {
    for _ in 0..200 {
        if app.state().app.read.lag().await.expect("lag") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the projector did not catch up");
}

/// What must not change when an upload is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    pub events: i64,
    pub tickets: i64,
    pub attachments: i64,
    pub data_keys: i64,
    pub blobs: usize,
}

pub async fn footprint(app: &TestApp) -> Footprint {
    Footprint {
        events: app.event_count().await,
        tickets: app.count("SELECT COUNT(*) FROM tickets").await,
        attachments: app.count("SELECT COUNT(*) FROM attachments").await,
        data_keys: app.count("SELECT COUNT(*) FROM data_keys").await,
        blobs: files_under(&blob_root(app)).len(),
    }
}

// ------------------------------------------------------------- raw HTTP

/// The server's `host:port`.
pub fn authority(app: &TestApp) -> String {
    app.address().trim_start_matches("http://").to_owned()
}

/// Reads an HTTP response head from `reader`, waiting at most `limit`;
/// `None` when the connection closes (or times out) without one.
pub async fn read_head(reader: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let read = tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await;
        match read {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                received.extend_from_slice(&buffer[..n]);
                if received.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    (!received.is_empty()).then(|| String::from_utf8_lossy(&received).into_owned())
}

/// The status code of a raw response head.
pub fn status_of(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"))
}

/// Writes `bytes` to a fresh connection, then reads the answer's head.
pub async fn raw_request(app: &TestApp, bytes: &[u8], half_close: bool) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(authority(app)).await.expect("connects");
    stream.write_all(bytes).await.expect("writes");
    if half_close {
        let _ = stream.shutdown().await;
    }
    read_head(&mut stream, Duration::from_secs(15)).await
}
