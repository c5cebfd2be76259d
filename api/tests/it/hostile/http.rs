//! The HTTP part of the corpus: forged and broken tokens, forged client
//! addresses, path traversal in attachment ids, bad ranges, odd methods
//! and content types.

use api::auth::tokens::JwtKeys;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use uuid::Uuid;

use super::probe::{Expect, Probe, CLIENT, UNAUTHENTICATED};
use super::Targets;
use crate::support::{Account, TestApp};

/// Tokens that must not sign anyone in, on each kind of resource.
pub fn refused_tokens(t: &Targets, probes: &mut Vec<Probe>) {
    let download = format!("/attachments/{}", t.attachment);
    for (what, token) in &t.bad_tokens {
        probes.push(Probe::gql(
            format!("token {what}: me"),
            Some(token),
            "{ me { id } }",
            json!({}),
            Expect::Code(UNAUTHENTICATED),
        ));
        let tickets = "{ tickets { edges { node { id } } } }";
        probes.push(Probe::gql(
            format!("token {what}: tickets"),
            Some(token),
            tickets,
            json!({}),
            Expect::Code(UNAUTHENTICATED),
        ));
        let create = "mutation { createTicket(input: {title: \"t\", description: \"d\"}) { id } }";
        probes.push(Probe::gql(
            format!("token {what}: mutation"),
            Some(token),
            create,
            json!({}),
            Expect::Code(UNAUTHENTICATED),
        ));
        let get = Probe::new(format!("token {what}: download"), "GET", &download, Expect::Status(&[401, 404]));
        probes.push(get.bearer(Some(token)));
    }
    // Authorization headers that are not bearer tokens at all.
    for header in ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer  ", "Token abc", "Bearer a b c", "Digest x=y"] {
        let probe = Probe::new(format!("authorization {header:?}"), "POST", "/graphql", Expect::Code(UNAUTHENTICATED))
            .header("Content-Type", "application/json")
            .header("Authorization", header)
            .body(json!({ "query": "{ me { id } }" }).to_string());
        probes.push(probe);
    }
}

/// The bad tokens: forged, broken, expired, or meant for something else.
pub fn forge_tokens(app: &TestApp, employee: &Account) -> Vec<(&'static str, String)> {
    let (refresh, employee_id) = (employee.refresh.as_str(), employee.id.as_str());
    let employee = employee.token.as_str();
    let secret = app.settings.jwt_secret.as_ref().expect("tests set a secret").expose_secret().to_owned();
    let keys = JwtKeys::new(secret.as_bytes()).expect("a valid secret");
    let id = Uuid::parse_str(employee_id).expect("a uuid");
    let (expired, _) = keys.issue_access(id, Utc::now() - chrono::Duration::hours(2)).expect("a token");
    let (future, _) = keys.issue_access(id, Utc::now() + chrono::Duration::days(400)).expect("a token");
    let foreign = JwtKeys::new(b"some-other-secret-some-other-secret-0000").expect("a valid secret");
    let (wrong_key, _) = foreign.issue_access(id, Utc::now()).expect("a token");
    let parts: Vec<&str> = employee.split('.').collect();
    let encode = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let alg_none = format!("{}.{}.", encode(json!({ "alg": "none", "typ": "JWT" })), parts[1]);
    let alg_none_upper = format!("{}.{}.", encode(json!({ "alg": "None", "typ": "JWT" })), parts[1]);
    let rs256 = format!("{}.{}.{}", encode(json!({ "alg": "RS256", "typ": "JWT" })), parts[1], parts[2]);
    let kid = format!("{}.{}.{}", encode(json!({ "alg": "HS256", "kid": "../../../dev/null" })), parts[1], parts[2]);
    let mut tampered = employee.to_owned();
    let last = tampered.pop().map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    tampered.push(last);
    let admin_claims = encode(json!({ "sub": employee_id, "role": "ADMIN", "exp": 4_102_444_800_i64 }));
    let swapped = format!("{}.{admin_claims}.{}", parts[0], parts[2]);
    vec![
        ("alg none", alg_none),
        ("alg None", alg_none_upper),
        ("alg RS256", rs256),
        ("kid path", kid),
        ("wrong signature", tampered),
        ("claims swapped", swapped),
        ("another key", wrong_key),
        ("expired", expired),
        ("issued in 400 days", future),
        ("refresh token", refresh.to_owned()),
        ("garbage", "not.a.jwt".to_owned()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{employee}.x")),
        ("percent", "%%%".to_owned()),
        ("8 KB", "a".repeat(8 * 1024)),
        ("empty segments", "..".to_owned()),
    ]
}

/// Forged client addresses on a failed sign-in.
pub fn forwarded(probes: &mut Vec<Probe>) {
    let login = json!({
        "query": "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
        "variables": { "e": "nobody@example.com", "p": "wrong-password-123" },
    })
    .to_string();
    let values = [
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-For", "::1"),
        ("X-Forwarded-For", "10.0.0.1, 10.0.0.2, 10.0.0.3"),
        ("X-Forwarded-For", "not-an-address"),
        ("X-Forwarded-For", "<script>alert(1)</script>"),
        ("X-Forwarded-For", "999.999.999.999"),
        ("X-Forwarded-For", ""),
        ("X-Forwarded-For", ",,,,"),
        ("Forwarded", "for=1.2.3.4;proto=https"),
        ("X-Real-IP", "1.2.3.4"),
        ("X-Request-Id", "'; DROP TABLE events; --"),
    ];
    for (name, value) in values {
        let probe = Probe::new(format!("{name}: {value:.30}"), "POST", "/graphql", Expect::Code(CLIENT))
            .header("Content-Type", "application/json")
            .header(name, value)
            .body(login.clone());
        probes.push(probe);
    }
    let long = "1.2.3.4, ".repeat(1000);
    let probe = Probe::new("X-Forwarded-For of 9 KB", "POST", "/graphql", Expect::Clean)
        .header("Content-Type", "application/json")
        .header("X-Forwarded-For", &long)
        .body(login);
    probes.push(probe);
}

/// Attachment ids that try to climb out of the blob store.
pub fn traversal(t: &Targets, probes: &mut Vec<Probe>) {
    let ids = [
        "..%2f..%2f..%2fetc%2fpasswd",
        "..%252f..%252fetc%252fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "....//....//etc/passwd",
        "..\\..\\windows\\win.ini",
        "%00",
        "x%00.png",
        "%2fetc%2fpasswd",
        "sha256%2fab%2fcd",
        "' OR 1=1 --",
        "00000000-0000-0000-0000-000000000000",
        "{id}",
        "%ff%fe",
    ];
    for id in ids {
        let path = format!("/attachments/{}", id.replace(' ', "%20").replace('\'', "%27"));
        probes.push(
            Probe::new(format!("attachment id {id}"), "GET", &path, Expect::Status(&[400, 404])).bearer(Some(&t.admin)),
        );
    }
    let long = format!("/attachments/{}", "a".repeat(4000));
    probes.push(
        Probe::new("attachment id of 4,000 characters", "GET", &long, Expect::Status(&[400, 404, 414, 431]))
            .bearer(Some(&t.admin)),
    );
    for path in [
        "/attachments/../../etc/passwd",
        "/attachments/",
        "/attachments",
        "/../../etc/passwd",
        "/attachments/%2e%2e/%2e%2e/etc/passwd",
    ] {
        probes
            .push(Probe::new(format!("path {path}"), "GET", path, Expect::Status(&[400, 404])).bearer(Some(&t.admin)));
    }
}

/// Range headers that are malformed, reversed, overflowing or too many.
pub fn ranges(t: &Targets, probes: &mut Vec<Probe>) {
    let path = format!("/attachments/{}", t.attachment);
    let many = (0..500).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",");
    let values = [
        "bytes=abc".to_owned(),
        "bytes=5-1".to_owned(),
        "bytes=-0".to_owned(),
        "bytes=".to_owned(),
        "bytes=--1".to_owned(),
        "bytes=1--2".to_owned(),
        "bytes=99999999999999999999-".to_owned(),
        "bytes=0-99999999999999999999".to_owned(),
        "bytes=18446744073709551615-18446744073709551615".to_owned(),
        "bytes=-18446744073709551616".to_owned(),
        "items=0-1".to_owned(),
        "bytes 0-1".to_owned(),
        "bytes=0-1,2-3".to_owned(),
        format!("bytes={many}"),
    ];
    // A control character makes the whole request malformed.
    let nul = Probe::new("Range with a NUL", "GET", &path, Expect::Status(&[400]));
    probes.push(nul.bearer(Some(&t.admin)).header("Range", "bytes=\u{0}-1"));
    for value in values {
        let probe = Probe::new(format!("Range: {value:.40}"), "GET", &path, Expect::Status(&[200, 206, 416]))
            .bearer(Some(&t.admin))
            .header("Range", &value);
        probes.push(probe);
    }
}

/// Methods and content types the endpoints do not take.
pub fn odd_requests(t: &Targets, probes: &mut Vec<Probe>) {
    let admin = Some(t.admin.as_str());
    let query = json!({ "query": "{ me { id } }" }).to_string();
    for method in ["PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "FOO", "OPTIONS", "HEAD"] {
        for path in ["/graphql", "/healthz", "/readyz", "/attachments/x"] {
            let probe = Probe::new(format!("{method} {path}"), method, path, Expect::Clean).bearer(admin);
            let probe = if method == "HEAD" { probe } else { probe.body(query.clone()) };
            if method != "HEAD" {
                probes.push(probe.header("Content-Type", "application/json"));
            }
        }
    }
    let content_types = [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/json; charset=utf-16",
        "application/json, text/html",
        "image/png",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=zzz",
        "multipart/mixed; boundary=zzz",
        "",
    ];
    for content_type in content_types {
        let probe = Probe::new(format!("Content-Type {content_type:?}"), "POST", "/graphql", Expect::Clean)
            .header("Content-Type", content_type)
            .bearer(admin)
            .body(query.clone());
        probes.push(probe);
    }
    let garbage = "--zzz\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\nnot json\r\n--zzz--\r\n";
    let probe = Probe::new("multipart with a broken operations part", "POST", "/graphql", Expect::Clean)
        .header("Content-Type", "multipart/form-data; boundary=zzz")
        .bearer(admin)
        .body(garbage);
    probes.push(probe);
    for path in [
        "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D",
        "/graphql?query=mutation%20%7B%20logout(refreshToken%3A%20%22x%22)%20%7D",
        "/graphql?query=%7B",
        "/admin",
        "/.env",
        "/graphql/..%2f..%2fetc%2fpasswd",
        "/%00",
        "/graphql/ws",
    ] {
        probes.push(Probe::new(format!("GET {path}"), "GET", path, Expect::Clean).bearer(admin));
    }
}
