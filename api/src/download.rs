//! `GET /attachments/{id}`: the ticket's own access rules, always served as
//! a download (never rendered on our origin), with single-range support for
//! large PDFs.

use std::ops::Range;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::{error_response, HttpState};

/// Parses a single `bytes=` range against a file of `size` bytes. `None`
/// means "serve it all" (absent, or several ranges, which we may ignore);
/// `Some(Err(()))` is unsatisfiable.
pub fn parse_range(header: Option<&HeaderValue>, size: u64) -> Option<Result<Range<u64>, ()>> {
    let spec = header?.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    let range = match (position(start), position(end)) {
        (Some(start), Some(end)) if start <= end => start..end.saturating_add(1).min(size),
        (Some(start), None) if end.is_empty() => start..size,
        (None, Some(suffix)) if start.is_empty() && suffix > 0 => size.saturating_sub(suffix)..size,
        _ => return Some(Err(())),
    };
    Some(if range.start < size && range.start < range.end { Ok(range) } else { Err(()) })
}

/// A byte position: digits only, and one past any file's end when too
/// large for an integer, so that the range is clamped to the end as
/// RFC 9110 says rather than refused.
fn position(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// `filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
pub fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "attachment not found")
}

pub async fn download(State(state): State<HttpState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let app = &state.app;
    let viewer = match app.caller(&headers).await.map(|caller| caller.viewer()) {
        Ok(Ok(viewer)) => viewer,
        Ok(Err(error)) => {
            let refused = error_response(StatusCode::UNAUTHORIZED, error.code(), &error.message());
            return ([(header::WWW_AUTHENTICATE, "Bearer")], refused).into_response();
        }
        Err(error) => {
            tracing::error!(error = ?error, "cannot resolve caller");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
        }
    };
    let attachment = match app.visible_attachment(viewer, &id).await {
        Ok(Some(attachment)) => attachment,
        Ok(None) => return not_found(),
        Err(error) => {
            tracing::error!(error = ?error, "attachment lookup failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
        }
    };
    let size = u64::try_from(attachment.size).unwrap_or_default();
    let range = match parse_range(headers.get(header::RANGE), size) {
        Some(Ok(range)) => Some(range),
        Some(Err(())) => {
            let headers = [
                (header::CONTENT_RANGE, format!("bytes */{size}")),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox".to_owned()),
            ];
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
        None => None,
    };
    let stream = match app.blobs.get(&attachment.sha256, range.clone()).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(error = %error, sha256 = %attachment.sha256, "blob missing or unreadable");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
        }
    };
    let (status, length) = match &range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.end - range.start),
        None => (StatusCode::OK, size),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &attachment.content_type)
        .header(header::CONTENT_LENGTH, length)
        .header(header::CONTENT_DISPOSITION, content_disposition(&attachment.filename))
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox")
        .header(header::CACHE_CONTROL, "private, no-store")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}\"", attachment.sha256));
    if let Some(range) = &range {
        response = response.header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", range.start, range.end - 1));
    }
    response.body(Body::from_stream(stream)).unwrap_or_else(|_| not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, size: u64) -> Option<Result<Range<u64>, ()>> {
        parse_range(Some(&HeaderValue::from_str(spec).unwrap()), size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-99", 1000), Some(Ok(0..100)));
        assert_eq!(range("bytes=900-", 1000), Some(Ok(900..1000)));
        assert_eq!(range("bytes=-100", 1000), Some(Ok(900..1000)));
        assert_eq!(range("bytes=990-2000", 1000), Some(Ok(990..1000)));
        assert_eq!(range("bytes=0-99999999999999999999999", 1000), Some(Ok(0..1000)));
        assert_eq!(range("bytes=-99999999999999999999999", 1000), Some(Ok(0..1000)));
        assert_eq!(range("bytes=99999999999999999999999-", 1000), Some(Err(())));
        assert_eq!(range("bytes=0-1x", 1000), Some(Err(())));
        assert_eq!(range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(range("bytes=5-2", 1000), Some(Err(())));
        assert_eq!(range("bytes=0-1,5-6", 1000), None);
        assert_eq!(range("items=0-1", 1000), None);
        assert_eq!(parse_range(None, 1000), None);
    }

    #[test]
    fn dispositions_are_always_attachments_and_escaped() {
        assert_eq!(content_disposition("a b.png"), "attachment; filename=\"a b.png\"; filename*=UTF-8''a%20b.png");
        let tricky = content_disposition("x\".html; filename=evil.html");
        assert!(tricky.starts_with("attachment; filename=\"x_.html; filename=evil.html\""));
        assert!(content_disposition("résumé.pdf").contains("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
    }
}
