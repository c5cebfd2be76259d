//! A broad net of hostile requests, made in code: malformed and deeply
//! nested JSON, wrong types and huge numbers, injection strings in every
//! argument, unknown fields, batches, forged and broken tokens, forged
//! client addresses, path traversal in attachment ids, bad ranges, odd
//! methods and content types. Each must get a well-formed answer of the
//! right family, never a server error, never internals, and the server
//! must still answer `/healthz` after it. Specific limits have their own
//! tests elsewhere; this is the net that catches what nobody thought of.

mod graphql;
mod http;
mod probe;

use serde_json::{json, Value};
use test_support::Store;

use self::probe::{healthy, judge, send};
use crate::support::{both_stores, TestApp};

/// The ids and tokens the corpus aims at.
pub struct Targets {
    pub admin: String,
    pub employee: String,
    /// An account the admin's hostile role and status changes aim at.
    pub victim: String,
    pub ticket: String,
    pub attachment: String,
    pub bad_tokens: Vec<(&'static str, String)>,
}

async fn hostile_requests_get_clean_answers(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let employee = app.register("employee@example.com").await;
    let ticket = app.create_ticket(&employee.token, "Hostile target").await;
    let attachment = upload_attachment(&app, &employee.token, &ticket).await;
    let victim = app.register("victim@example.com").await;
    let bad_tokens = http::forge_tokens(&app, &employee);
    let targets = Targets {
        admin: admin.token.clone(),
        employee: employee.token.clone(),
        victim: victim.id.clone(),
        ticket,
        attachment,
        bad_tokens,
    };

    let mut probes = Vec::new();
    graphql::malformed(&targets, &mut probes);
    graphql::wrong_types(&targets, &mut probes);
    graphql::injections(&targets, &mut probes);
    graphql::invalid_documents(&targets, &mut probes);
    graphql::batches(&targets, &mut probes);
    http::refused_tokens(&targets, &mut probes);
    http::forwarded(&mut probes);
    http::traversal(&targets, &mut probes);
    http::ranges(&targets, &mut probes);
    http::odd_requests(&targets, &mut probes);

    let mut failures = Vec::new();
    for probe in &probes {
        match send(&app, probe).await {
            Ok(answer) => {
                if let Some(problem) = judge(probe, &answer) {
                    let text = String::from_utf8_lossy(&answer.body);
                    failures.push(format!("{}: {problem}: {:.300}", probe.what, text));
                }
            }
            Err(problem) => failures.push(format!("{}: {problem}", probe.what)),
        }
        assert!(healthy(&app).await, "/healthz stopped answering after {:?}", probe.what);
    }
    println!("hostile requests tried on {store:?}: {}", probes.len());
    // Nothing hostile changed who the employee is: no role or rights came
    // from forged tokens or unknown input fields.
    let me = app.gql_ok(Some(&employee.token), "{ me { id role } }", json!({})).await;
    assert_eq!(me["me"]["role"], "EMPLOYEE", "{me}");
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests answered badly:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );
    app.shutdown().await;
}

/// Adds a small PNG to `ticket`; its attachment id.
async fn upload_attachment(app: &TestApp, token: &str, ticket: &str) -> String {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\0\0\0\0:~\x9bU\0\0\0\nIDATx\x9cc`\0\0\0\x02\0\x01H\xaf\xa4q\0\0\0\0IEND\xaeB`\x82";
    let operations = json!({
        "query": "mutation($t: ID!, $f: Upload!) { addAttachment(ticketId: $t, file: $f) { id } }",
        "variables": { "t": ticket, "f": null },
    });
    let map = json!({ "0": ["variables.f"] });
    let mut body = Vec::new();
    for (name, value) in [("operations", operations.to_string()), ("map", map.to_string())] {
        body.extend_from_slice(
            format!("--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(b"--b0undary\r\nContent-Disposition: form-data; name=\"0\"; filename=\"shot.png\"\r\nContent-Type: image/png\r\n\r\n");
    body.extend_from_slice(png);
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    let response = app
        .client()
        .post(format!("{}/graphql", app.address()))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "multipart/form-data; boundary=b0undary")
        .body(body)
        .send()
        .await
        .expect("the upload is answered");
    let body: Value = response.json().await.expect("JSON");
    body["data"]["addAttachment"]["id"].as_str().unwrap_or_else(|| panic!("an attachment: {body}")).to_owned()
}

both_stores!(hostile_requests_get_clean_answers);
