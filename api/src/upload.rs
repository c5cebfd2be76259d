//! Reading a GraphQL request body. JSON is bounded in memory; multipart
//! uploads stream to temporary files with every file, the JSON parts, the
//! whole stream and the number of parts bounded while the body arrives
//! (`multipart`), so neither a large file nor a flood of tiny parts is
//! ever held or opened.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::http::MultipartOptions;
use async_graphql::ParseRequestError;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::{StreamExt, TryStreamExt};

use crate::http::error_response;
use crate::multipart::Limits;
use crate::service::attachments::MAX_FILES_PER_REQUEST;

/// Largest GraphQL request body without uploads.
pub const MAX_JSON_BODY: usize = 1024 * 1024;
/// Parts besides the files: `operations`, `map` and the closing delimiter.
const OTHER_PARTS: usize = 3;

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

pub fn is_multipart(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/"))
}

/// The `boundary` parameter itself, not any parameter ending in it.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty()).then(|| value.to_owned())
    })
}

/// Counts a byte pattern in a stream, across chunk edges.
struct Needle {
    pattern: Vec<u8>,
    tail: Vec<u8>,
    seen: usize,
}

impl Needle {
    fn new(pattern: Vec<u8>) -> Self {
        Self { pattern, tail: Vec::new(), seen: 0 }
    }

    fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        let width = self.pattern.len();
        let mut at = 0;
        while at + width <= window.len() {
            if window[at..at + width] == self.pattern[..] {
                self.seen += 1;
                at += width;
            } else {
                at += 1;
            }
        }
        // Keep what could still be the start of a match, never a whole one.
        self.tail = window[at..].to_vec();
        self.seen
    }
}

/// Counts parts, and the file paths the `map` part names: async-graphql
/// opens one handle per path, so one file mapped to thousands of variables
/// is as costly as thousands of files.
struct PartCounter {
    delimiters: Needle,
    paths: Needle,
}

impl PartCounter {
    fn new(boundary: &str) -> Self {
        Self {
            delimiters: Needle::new(format!("--{boundary}").into_bytes()),
            paths: Needle::new(b"\"variables.".to_vec()),
        }
    }

    /// Whether the body is still within bounds.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        // `operations` and `map` come first; files follow the third delimiter.
        if self.delimiters.seen <= 2 {
            self.paths.feed(chunk);
        }
        self.delimiters.feed(chunk) <= MAX_FILES_PER_REQUEST + OTHER_PARTS
            && self.paths.seen <= 2 * MAX_FILES_PER_REQUEST
    }
}

/// # Errors
/// A ready response: 413 `PAYLOAD_TOO_LARGE` or 400 `BAD_USER_INPUT`.
pub async fn read_request(
    headers: &HeaderMap,
    body: Body,
    max_upload_bytes: u64,
) -> Result<async_graphql::Request, Response> {
    let content_type = content_type(headers).map(str::to_owned);
    let too_large = || error_response(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "request body is too large");
    let flooded = Arc::new(AtomicBool::new(false));
    let parsed = if is_multipart(headers) {
        let Some(boundary) = content_type.as_deref().and_then(boundary) else {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "multipart request without a boundary",
            ));
        };
        let files = MAX_FILES_PER_REQUEST as u64 + 1;
        let limits = Limits {
            file: max_upload_bytes,
            body: max_upload_bytes.saturating_mul(files).saturating_add(2 * MAX_JSON_BODY as u64),
        };
        let mut counter = PartCounter::new(&boundary);
        let flag = flooded.clone();
        let stream = body.into_data_stream().map_err(std::io::Error::other).map(move |chunk| {
            let chunk = chunk?;
            if !counter.feed(&chunk) {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("too many parts"));
            }
            Ok(chunk)
        });
        crate::multipart::receive(stream, &boundary, &limits).await
    } else {
        let bytes = axum::body::to_bytes(body, MAX_JSON_BODY).await.map_err(|_| too_large())?;
        async_graphql::http::receive_body(content_type, &bytes[..], MultipartOptions::default()).await
    };
    parsed.map_err(|error| {
        if flooded.load(Ordering::Relaxed) {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("at most {MAX_FILES_PER_REQUEST} files per request"),
            );
        }
        let message = match error {
            ParseRequestError::PayloadTooLarge => return too_large(),
            ParseRequestError::UnsupportedBatch => "batched requests are not supported",
            _ => "request is not a valid GraphQL request",
        };
        error_response(StatusCode::BAD_REQUEST, "BAD_USER_INPUT", message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_counted_across_chunks() {
        let mut needle = Needle::new(b"--XyZ".to_vec());
        assert_eq!(needle.feed(b"--XyZ\r\nabc\r\n--X"), 1);
        assert_eq!(needle.feed(b"yZ\r\ndata--"), 2);
        assert_eq!(needle.feed(b"XyZ--XyZ"), 4);
        assert_eq!(needle.feed(b""), 4);
    }

    #[test]
    fn a_map_naming_too_many_paths_is_refused() {
        let mut counter = PartCounter::new("B");
        assert!(counter.feed(b"--B\r\n{\"query\":\"...\"}\r\n--B\r\n{\"0\":["));
        let paths = "\"variables.x.0\",".repeat(2 * MAX_FILES_PER_REQUEST + 1);
        assert!(!counter.feed(paths.as_bytes()));
    }

    #[test]
    fn boundaries_are_read_from_the_header() {
        assert_eq!(boundary("multipart/form-data; boundary=abc123").as_deref(), Some("abc123"));
        assert_eq!(boundary("multipart/form-data; Boundary=\"a b\"; x=y").as_deref(), Some("a b"));
        assert_eq!(boundary("multipart/form-data").as_deref(), None);
        assert_eq!(boundary("multipart/form-data; xboundary=Q; boundary=XX").as_deref(), Some("XX"));
    }
}
