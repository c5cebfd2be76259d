//! `GET /attachments/{id}`: the ticket's access rules, exact bytes, safe
//! headers and single ranges.

use reqwest::StatusCode;
use test_support::Store;
use uuid::Uuid;

use crate::common::{add_ok, create_ok, delete_ticket, download, fetch, header, pdf_of_size, png, sha256_hex, File};
use crate::support::{both_stores, TestApp};

/// Status, content type and body of a download, to compare refusals.
async fn refusal(app: &TestApp, token: Option<&str>, url: &str) -> (StatusCode, String, String) {
    let response = download(app, token, url, None).await;
    let status = response.status();
    let content_type = header(&response, "content-type");
    (status, content_type, response.text().await.expect("a body"))
}

async fn downloads_follow_ticket_access(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let owner = app.register("owner@example.com").await;
    let other = app.register("other@example.com").await;
    let file = File::new("evidence.png", "image/png", png());
    let created = create_ok(&app, &owner.token, "Badge reader broken", std::slice::from_ref(&file)).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    let url = created["attachments"][0]["url"].as_str().expect("url").to_owned();

    // The owner and any admin may download it.
    for token in [&owner.token, &admin.token] {
        let (status, body) = fetch(&app, Some(token), &url).await;
        assert_eq!((status, body), (StatusCode::OK, file.bytes.clone()));
    }

    // Another employee gets exactly what a random id gets.
    let foreign = refusal(&app, Some(&other.token), &url).await;
    let random = refusal(&app, Some(&other.token), &format!("/attachments/{}", Uuid::new_v4())).await;
    let malformed = refusal(&app, Some(&other.token), "/attachments/not-an-id").await;
    assert_eq!(foreign.0, StatusCode::NOT_FOUND, "{foreign:?}");
    assert_eq!(foreign, random);
    assert_eq!(foreign, malformed);
    assert!(foreign.2.contains("NOT_FOUND"), "{foreign:?}");
    assert!(!foreign.2.contains(&id), "the answer names no ticket");

    // No token, or a bad one: 401, whether or not the attachment exists.
    for token in [None, Some("garbage"), Some("eyJhbGciOiJIUzI1NiJ9.e30.AAAA")] {
        let (status, _, body) = refusal(&app, token, &url).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert!(body.contains("UNAUTHENTICATED"), "{body}");
        let (status, _, _) = refusal(&app, token, &format!("/attachments/{}", Uuid::new_v4())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // Once the ticket is deleted only admins get its files.
    delete_ticket(&app, &admin.token, &id).await;
    let gone = refusal(&app, Some(&owner.token), &url).await;
    assert_eq!(gone, random, "the owner now sees a missing attachment");
    assert_eq!(refusal(&app, Some(&other.token), &url).await, random);
    let (status, body) = fetch(&app, Some(&admin.token), &url).await;
    assert_eq!((status, body), (StatusCode::OK, file.bytes.clone()));
    app.shutdown().await;
}

async fn downloads_are_exact_and_safe(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Blue screen").await;
    let file = File::new("crash dump.pdf", "application/octet-stream", pdf_of_size(5000));
    let attachment = add_ok(&app, &reporter.token, &id, &file).await;
    let url = attachment["url"].as_str().expect("url");
    let size = file.bytes.len();

    // The whole file: digest of the body = the sha256 field = our digest.
    let response = download(&app, Some(&reporter.token), url, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/pdf");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let csp = header(&response, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("sandbox"), "{csp}");
    assert_eq!(header(&response, "x-frame-options"), "DENY");
    assert_eq!(header(&response, "referrer-policy"), "no-referrer");
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    assert_eq!(header(&response, "content-length"), size.to_string());
    assert!(header(&response, "cache-control").contains("no-store"));
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"crash dump.pdf\"; filename*=UTF-8''crash%20dump.pdf"
    );
    let body = response.bytes().await.expect("a body");
    assert_eq!(sha256_hex(&body), attachment["sha256"].as_str().expect("sha256"));
    assert_eq!(sha256_hex(&body), file.sha256());

    // The first eight bytes.
    let response = download(&app, Some(&reporter.token), url, Some("bytes=0-7")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), format!("bytes 0-7/{size}"));
    assert_eq!(header(&response, "content-length"), "8");
    assert_eq!(header(&response, "content-type"), "application/pdf");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(response.bytes().await.expect("a body").as_ref(), &file.bytes[..8]);

    // The last four bytes.
    let response = download(&app, Some(&reporter.token), url, Some("bytes=-4")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), format!("bytes {}-{}/{size}", size - 4, size - 1));
    assert_eq!(response.bytes().await.expect("a body").as_ref(), &file.bytes[size - 4..]);

    // An open-ended range from the middle, and one that runs past the end.
    let response = download(&app, Some(&reporter.token), url, Some("bytes=4000-")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), format!("bytes 4000-{}/{size}", size - 1));
    assert_eq!(response.bytes().await.expect("a body").as_ref(), &file.bytes[4000..]);
    let response = download(&app, Some(&reporter.token), url, Some("bytes=4990-999999")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.expect("a body").as_ref(), &file.bytes[4990..]);
    // An end too large for any integer is clamped to the file's end too
    // (RFC 9110, 14.1.2), not refused.
    let response = download(&app, Some(&reporter.token), url, Some("bytes=0-99999999999999999999999")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), format!("bytes 0-{}/{size}", size - 1));
    assert_eq!(response.bytes().await.expect("a body").as_ref(), &file.bytes[..]);

    // Unsatisfiable: 416 with the size.
    for range in [
        format!("bytes={size}-"),
        "bytes=9000-9100".to_owned(),
        "bytes=7-3".to_owned(),
        "bytes=99999999999999999999999-".to_owned(),
    ] {
        let response = download(&app, Some(&reporter.token), url, Some(&range)).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&response, "content-range"), format!("bytes */{size}"), "{range}");
    }

    // Several ranges may be answered with the whole file.
    let response = download(&app, Some(&reporter.token), url, Some("bytes=0-1,4-5")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("a body").len(), size);

    // A refused range request is still refused, not partially served.
    let other = app.register("other@example.com").await;
    let response = download(&app, Some(&other.token), url, Some("bytes=0-7")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = download(&app, None, url, Some("bytes=0-7")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

both_stores!(downloads_follow_ticket_access, downloads_are_exact_and_safe);
