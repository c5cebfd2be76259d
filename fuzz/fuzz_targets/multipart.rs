//! The multipart request reader (`api::upload::read_request`) on arbitrary
//! bodies under a fixed boundary. The first byte of an input sets the size
//! of the chunks the body arrives in, so the part counter also sees
//! delimiters split across chunks. Nothing may panic, and a refusal is a
//! 400 or a 413.
#![no_main]

use std::panic::PanicHookInfo;
use std::sync::{LazyLock, Once};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Small, so inputs can be over it.
const MAX_UPLOAD_BYTES: u64 = 2048;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"));

/// The server catches async-graphql's assertion on an `operations` part
/// declared as multipart (`upload::read_request`), but libfuzzer-sys's
/// panic hook aborts before anything can catch it: that one panic is let
/// through to the server's catch, every other still aborts the run.
fn let_the_server_catch_its_known_panic() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        let known = info
            .location()
            .is_some_and(|at| at.file().contains("async-graphql-7.") && at.file().ends_with("src/http/mod.rs"));
        if !known {
            abort(info);
        }
    }));
}

static HOOK: Once = Once::new();

fuzz_target!(|input: &[u8]| {
    HOOK.call_once(let_the_server_catch_its_known_panic);
    let Some((&chunk, body)) = input.split_first() else { return };
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        body.chunks(usize::from(chunk).max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=XyZ"));
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    match RUNTIME.block_on(api::upload::read_request(&headers, body, MAX_UPLOAD_BYTES)) {
        Ok(request) => {
            let _ = api::graphql::limits::parse_checked(&request.query);
        }
        Err(refused) => {
            let status = refused.status();
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                "refused with {status}"
            );
        }
    }
});
