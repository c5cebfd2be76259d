//! The REST edges beside GraphQL: liveness, readiness and GraphiQL.

use reqwest::StatusCode;
use serde_json::Value;
use test_support::Store;

use crate::support::{both_stores, TestApp};

async fn health_readiness_and_graphiql(store: Store) {
    let app = TestApp::spawn(store).await;

    let healthz = app.get("/healthz").await;
    assert_eq!(healthz.status(), StatusCode::OK);

    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), StatusCode::OK);
    let ready: Value = readyz.json().await.expect("readyz answers JSON");
    assert_eq!(ready["ready"], Value::Bool(true), "{ready}");

    let graphiql = app.get("/graphql").await;
    assert_eq!(graphiql.status(), StatusCode::OK);
    let content_type = graphiql.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = graphiql.text().await.expect("a body");
    assert!(html.to_lowercase().contains("graphiql"), "GraphiQL page expected: {html}");

    app.shutdown().await;
}

both_stores!(health_readiness_and_graphiql);
