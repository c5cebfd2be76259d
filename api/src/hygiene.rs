//! What every answer gets, whichever route (or refusal) made it: security
//! headers, and `Connection: close` when the request's body was not read
//! to its end, so a keep-alive client opens a new connection rather than
//! sending its next request on one the server is about to drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt;
use tower_http::set_header::SetResponseHeaderLayer;

/// The policy of answers that are data, never pages: nothing may load, and
/// no page may frame them.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// GraphiQL's page loads its scripts, styles and fonts from unpkg and runs
/// one inline script; it talks only to this origin.
pub const GRAPHIQL_CSP: &str = "default-src 'none'; script-src 'unsafe-inline' https://unpkg.com; \
    style-src 'unsafe-inline' https://unpkg.com; font-src https://unpkg.com data:; \
    img-src https://graphql.org data:; connect-src 'self' ws: wss:; frame-ancestors 'none'";

/// Adds the headers every answer carries; a route that set its own
/// policy or caching (GraphiQL, downloads) keeps them.
pub fn secure(router: Router) -> Router {
    let always = |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    let unless_set = |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    router
        .layer(axum::middleware::from_fn(close_unless_read))
        .layer(always(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(always(header::X_FRAME_OPTIONS, "DENY"))
        .layer(always(header::REFERRER_POLICY, "no-referrer"))
        .layer(unless_set(header::CONTENT_SECURITY_POLICY, API_CSP))
        .layer(unless_set(header::CACHE_CONTROL, "no-store"))
}

/// Answers `Connection: close` when the request had a body that was not
/// read to its end: hyper then drops the connection after the answer, and
/// a client not told so would send its next request into a closed socket.
async fn close_unless_read(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let marker = read.clone();
    let end = futures_util::stream::once(async move {
        marker.store(true, Ordering::Release);
        None::<Result<bytes::Bytes, axum::Error>>
    })
    .filter_map(std::future::ready);
    let body = Body::from_stream(body.into_data_stream().chain(end));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !read.load(Ordering::Acquire) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
