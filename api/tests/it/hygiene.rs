//! HTTP hygiene: security headers on every answer, connections that stay
//! usable (or are closed cleanly) after a refusal, and the settings that
//! restrict `/metrics` and introspection.

use std::time::Duration;

use api::config::{Introspection, Metrics};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{both_stores, error_code, TestApp};

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The headers every answer carries; `csp` is checked by the caller.
fn assert_secured(what: &str, response: &reqwest::Response) {
    assert_eq!(header(response, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(response, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(response, "referrer-policy"), "no-referrer", "{what}");
    assert!(header(response, "cache-control").contains("no-store"), "{what}: {:?}", response.headers());
    assert!(!header(response, "content-security-policy").is_empty(), "{what}: {:?}", response.headers());
}

async fn every_answer_carries_security_headers(store: Store) {
    let app = TestApp::spawn(store).await;
    let client = app.client();
    let address = app.address();
    let post = |body: &str| {
        client
            .post(format!("{address}/graphql"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let answers = [
        ("healthz", app.get("/healthz").await),
        ("readyz", app.get("/readyz").await),
        ("metrics", app.get("/metrics").await),
        ("unknown route", app.get("/nowhere").await),
        ("no token download", app.get(&format!("/attachments/{}", uuid::Uuid::new_v4())).await),
        ("query", post(r#"{"query":"{ __typename }"}"#).await.expect("an answer")),
        ("malformed", post("not json").await.expect("an answer")),
        ("too large", post(&"x".repeat(2 * 1024 * 1024)).await.expect("an answer")),
    ];
    for (what, response) in &answers {
        assert_secured(what, response);
        assert_eq!(header(response, "content-security-policy"), API_CSP, "{what}");
    }
    let graphiql = app.get("/graphql").await;
    assert_secured("GraphiQL", &graphiql);
    let csp = header(&graphiql, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("https://unpkg.com"), "{csp}");
    app.shutdown().await;
}

/// Writes `request` on a fresh connection, then a `/healthz` on the same
/// one; what came back, and whether the server closed the connection.
async fn then_healthz(app: &TestApp, request: Vec<u8>) -> (String, bool) {
    let authority = app.address().trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await.expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let next = format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    // Written while the answer is read: the server may answer before
    // reading the body, and may then close the connection.
    let sender = tokio::spawn(async move {
        if writer.write_all(&request).await.is_ok() {
            let _ = writer.write_all(next.as_bytes()).await;
        }
        writer
    });
    let mut seen = Vec::new();
    let mut buffer = vec![0_u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let closed = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
        if String::from_utf8_lossy(&seen).matches("HTTP/1.1 ").count() == 2 && seen.ends_with(b"ok") {
            break false;
        }
    };
    drop(sender.await);
    (String::from_utf8_lossy(&seen).into_owned(), closed)
}

async fn refused_requests_leave_no_broken_connection(store: Store) {
    let app = TestApp::spawn(store).await;
    let authority = app.address().trim_start_matches("http://").to_owned();
    let request = |method: &str, path: &str, content_type: &str, body: &[u8]| {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        [head.as_bytes(), body].concat()
    };
    let multipart = format!(
        "--b\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{}\r\n--b--\r\n",
        "x".repeat(200_000)
    );
    let cases = [
        (
            "unauthenticated multipart",
            request("POST", "/graphql", "multipart/form-data; boundary=b", multipart.as_bytes()),
        ),
        ("JSON over 1 MiB", request("POST", "/graphql", "application/json", &vec![b' '; 3 * 1024 * 1024])),
        ("wrong content type", request("POST", "/graphql", "text/plain", &vec![b'x'; 300_000])),
        ("a method not served", request("PUT", "/graphql", "application/json", &vec![b' '; 300_000])),
        ("an unknown route", request("POST", "/nowhere", "application/json", &vec![b' '; 300_000])),
        ("a body on a GET", request("GET", "/healthz", "application/json", &vec![b' '; 300_000])),
    ];
    for (what, bytes) in cases {
        let (seen, closed) = then_healthz(&app, bytes).await;
        let first = seen.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
        assert!(first.starts_with("http/1.1 "), "{what}: no answer: {seen:?}");
        let answers = seen.matches("HTTP/1.1 ").count();
        if first.contains("connection: close") {
            assert!(closed && answers == 1, "{what}: said close, then: {seen}");
        } else {
            assert_eq!(answers, 2, "{what}: the connection broke without `Connection: close`: {seen}");
            assert!(seen.ends_with("ok"), "{what}: the next request was not served: {seen}");
        }
    }
    app.shutdown().await;
}

async fn metrics_can_be_closed_or_guarded(store: Store) {
    let mut app = TestApp::spawn(store).await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK, "open by default");

    let mut settings = app.settings.clone();
    settings.metrics = Metrics::Off;
    app.restart(settings.clone()).await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);

    settings.metrics = Metrics::Open;
    settings.metrics_token = Some("scrape-token-0123456789".to_owned().into());
    app.restart(settings).await;
    let url = format!("{}/metrics", app.address());
    for token in [None, Some("wrong")] {
        let mut request = app.client().get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(error_code(&body).as_deref(), Some("UNAUTHENTICATED"));
    }
    let response = app.client().get(&url).bearer_auth("scrape-token-0123456789").send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.expect("a body").contains("tickets_"), "Prometheus text");
    app.shutdown().await;
}

async fn introspection_can_be_off_or_for_admins(store: Store) {
    let mut app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let employee = app.register("employee@example.com").await;
    let introspect = "{ __schema { queryType { name } } }";
    let served = |body: &Value| body["data"]["__schema"]["queryType"]["name"] == "Query";
    for token in [None, Some(employee.token.as_str()), Some(admin.token.as_str())] {
        assert!(served(&app.gql(token, introspect, json!({})).await), "on by default");
    }
    let mut settings = app.settings.clone();
    for (mode, anonymous, employee_sees, admin_sees) in
        [(Introspection::Off, false, false, false), (Introspection::Admins, false, false, true)]
    {
        settings.introspection = mode;
        app.restart(settings.clone()).await;
        for (token, expected) in [
            (None, anonymous),
            (Some(employee.token.as_str()), employee_sees),
            (Some(admin.token.as_str()), admin_sees),
        ] {
            // Twice: the second run is of a document the server knows.
            for _ in 0..2 {
                let body = app.gql(token, introspect, json!({})).await;
                assert_eq!(served(&body), expected, "{mode:?}, {}: {body}", token.is_some());
            }
        }
        app.gql_ok(None, "{ __typename }", json!({})).await;
    }
    app.shutdown().await;
}

both_stores!(
    every_answer_carries_security_headers,
    refused_requests_leave_no_broken_connection,
    metrics_can_be_closed_or_guarded,
    introspection_can_be_off_or_for_admins
);
