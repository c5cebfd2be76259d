//! Sign-up, sign-in, sessions and the access changes that must bite at
//! once: DESIGN §4 and §6 over real HTTP.

use api::auth::tokens::JwtKeys;
use chrono::{Duration, Utc};
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use test_support::Store;
use uuid::Uuid;

use crate::support::{assert_code, both_stores, error_code, TestApp, LOGIN, PASSWORD, REGISTER};

const ME: &str = "{ me { id email role } }";
const REFRESH: &str = "mutation($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken user { id } } }";
const LOGOUT: &str = "mutation($t: String!) { logout(refreshToken: $t) }";
const USERS: &str = "{ users { edges { node { id role } } } }";
const SET_ROLE: &str = "mutation($id: ID!, $role: Role!) { setUserRole(userId: $id, role: $role) { id role } }";
const SET_DISABLED: &str =
    "mutation($id: ID!, $d: Boolean!) { setUserDisabled(userId: $id, disabled: $d) { id disabled } }";

async fn register_raw(app: &TestApp, email: &str, password: &str) -> Value {
    app.gql(None, REGISTER, json!({ "email": email, "password": password, "name": "Test User" })).await
}

async fn login_raw(app: &TestApp, email: &str, password: &str) -> Value {
    app.gql(None, LOGIN, json!({ "email": email, "password": password })).await
}

async fn refresh_raw(app: &TestApp, token: &str) -> Value {
    app.gql(None, REFRESH, json!({ "t": token })).await
}

async fn registration_normalises_and_polices(store: Store) {
    let app = TestApp::spawn(store).await;

    let body = register_raw(&app, "  Mixed.Case@Example.COM ", PASSWORD).await;
    assert!(body.get("errors").is_none(), "{body}");
    let user = &body["data"]["register"]["user"];
    assert_eq!(user["email"], "mixed.case@example.com");
    assert_eq!(user["role"], "EMPLOYEE", "registration always makes an employee");
    assert_eq!(body["data"]["register"]["expiresIn"], 900);

    let users = app.count("SELECT COUNT(*) FROM users").await;
    let events = app.event_count().await;
    let duplicate = register_raw(&app, "mixed.case@EXAMPLE.com", "another-Kettle-58").await;
    assert_code(&duplicate, "BAD_USER_INPUT");
    assert_eq!(duplicate["data"], Value::Null);

    // Weak passwords: too short, well known, or made of the email address.
    for (email, password) in [
        ("weakling@example.com", "Sh0rt!pw"),
        ("weakling@example.com", "password1234"),
        ("weakling@example.com", "PASSWORD1234"),
        ("weakling@example.com", "my-Weakling-2024"),
        ("weakling@example.com", "aaaaaaaaaaaaaaaa"),
    ] {
        let refused = register_raw(&app, email, password).await;
        assert_code(&refused, "BAD_USER_INPUT");
    }
    // Nor a malformed email or empty display name.
    assert_code(&register_raw(&app, "not-an-email", PASSWORD).await, "BAD_USER_INPUT");
    let blank_name =
        app.gql(None, REGISTER, json!({ "email": "blank@example.com", "password": PASSWORD, "name": "  " })).await;
    assert_code(&blank_name, "BAD_USER_INPUT");

    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users, "no account was created");
    assert_eq!(app.event_count().await, events, "nothing was written");

    // Two registrations of one address at once: exactly one wins, the other
    // is told the address is taken (never INTERNAL).
    let (a, b) = tokio::join!(
        register_raw(&app, "twice@example.com", PASSWORD),
        register_raw(&app, "TWICE@example.com", "another-Kettle-58"),
    );
    let codes = [error_code(&a), error_code(&b)];
    assert!(codes.contains(&None) && codes.contains(&Some("BAD_USER_INPUT".to_owned())), "{a} / {b}");

    // The refused address is still free, and sign-in ignores case too.
    app.register("weakling@example.com").await;
    let again = app.login("MIXED.CASE@example.com", PASSWORD).await;
    let me = app.gql_ok(Some(&again.token), ME, json!({})).await;
    assert_eq!(me["me"]["email"], "mixed.case@example.com");

    app.shutdown().await;
}

async fn login_failures_look_alike(store: Store) {
    let app = TestApp::spawn(store).await;
    app.register("known@example.com").await;

    let unknown = login_raw(&app, "nobody@example.com", PASSWORD).await;
    let wrong = login_raw(&app, "known@example.com", "wrong-Kettle-99").await;
    assert_code(&unknown, "UNAUTHENTICATED");
    assert_code(&wrong, "UNAUTHENTICATED");
    assert_eq!(unknown["errors"], wrong["errors"], "unknown email and wrong password answer the same");
    assert_eq!(unknown["data"], wrong["data"]);
    let malformed = login_raw(&app, "not an email", PASSWORD).await;
    assert_eq!(malformed["errors"], wrong["errors"]);

    app.shutdown().await;
}

async fn refresh_rotates_and_reuse_revokes_the_family(store: Store) {
    let app = TestApp::spawn(store).await;
    let first = app.register("rotator@example.com").await;

    let second = refresh_raw(&app, &first.refresh).await;
    assert!(second.get("errors").is_none(), "{second}");
    let second_refresh = second["data"]["refresh"]["refreshToken"].as_str().expect("a refresh token").to_owned();
    let second_access = second["data"]["refresh"]["accessToken"].as_str().expect("an access token").to_owned();
    assert_ne!(second_refresh, first.refresh, "refresh rotates");
    assert_eq!(app.gql_ok(Some(&second_access), ME, json!({})).await["me"]["id"], json!(first.id));

    // The old token is spent: refused, and its family (with the new token) revoked.
    assert_code(&refresh_raw(&app, &first.refresh).await, "UNAUTHENTICATED");
    assert_code(&refresh_raw(&app, &second_refresh).await, "UNAUTHENTICATED");

    // Rotation in the normal way: each new token works once.
    let session = app.login("rotator@example.com", PASSWORD).await;
    let next = refresh_raw(&app, &session.refresh).await;
    let next_refresh = next["data"]["refresh"]["refreshToken"].as_str().expect("a refresh token").to_owned();
    let newest = refresh_raw(&app, &next_refresh).await;
    assert!(newest.get("errors").is_none(), "the new refresh token works: {newest}");
    let newest_refresh = newest["data"]["refresh"]["refreshToken"].as_str().expect("a refresh token").to_owned();
    // Replaying an older token of this family kills the newest one too.
    assert_code(&refresh_raw(&app, &next_refresh).await, "UNAUTHENTICATED");
    assert_code(&refresh_raw(&app, &newest_refresh).await, "UNAUTHENTICATED");

    // Logout revokes.
    let other = app.login("rotator@example.com", PASSWORD).await;
    assert_eq!(app.gql_ok(None, LOGOUT, json!({ "t": other.refresh })).await["logout"], true);
    assert_code(&refresh_raw(&app, &other.refresh).await, "UNAUTHENTICATED");
    // Garbage refresh tokens are refused, not errors.
    assert_code(&refresh_raw(&app, "garbage").await, "UNAUTHENTICATED");
    assert_code(&refresh_raw(&app, "").await, "UNAUTHENTICATED");

    app.shutdown().await;
}

async fn bad_access_tokens_are_unauthenticated(store: Store) {
    let app = TestApp::spawn(store).await;
    let user = app.register("bearer@example.com").await;
    assert_eq!(app.gql_ok(Some(&user.token), ME, json!({})).await["me"]["id"], json!(user.id));

    let secret = app.settings.jwt_secret.as_ref().expect("tests set a secret").expose_secret().to_owned();
    let keys = JwtKeys::new(secret.as_bytes()).expect("a valid secret");
    let id = Uuid::parse_str(&user.id).expect("a uuid");
    let (expired, _) = keys.issue_access(id, Utc::now() - Duration::hours(1)).expect("a token");
    let (unknown_user, _) = keys.issue_access(Uuid::new_v4(), Utc::now()).expect("a token");
    let foreign = JwtKeys::new(b"some-other-secret-some-other-secret-0000").expect("a valid secret");
    let (wrong_key, _) = foreign.issue_access(id, Utc::now()).expect("a token");
    // One character in the middle of the signature changed.
    let signature_at = user.token.rfind('.').expect("a JWT") + 10;
    let mut tampered = user.token.clone();
    let flipped = if &tampered[signature_at..=signature_at] == "A" { "B" } else { "A" };
    tampered.replace_range(signature_at..=signature_at, flipped);
    let mut parts: Vec<&str> = user.token.split('.').collect();
    let claims = parts[1].to_owned();
    let swapped_claims = {
        // Someone else's claims under this token's signature.
        let (other, _) = keys.issue_access(Uuid::new_v4(), Utc::now()).expect("a token");
        other.split('.').nth(1).expect("claims").to_owned()
    };
    parts[1] = &swapped_claims;
    let resigned = parts.join(".");
    assert_ne!(claims, swapped_claims);

    for (what, token) in [
        ("refresh token as bearer", user.refresh.as_str()),
        ("tampered signature", tampered.as_str()),
        ("swapped claims", resigned.as_str()),
        ("expired", expired.as_str()),
        ("unknown user", unknown_user.as_str()),
        ("signed with another key", wrong_key.as_str()),
        ("garbage", "not.a.jwt"),
        ("nonsense", "%%%"),
    ] {
        let body = app.gql(Some(token), ME, json!({})).await;
        assert_eq!(error_code(&body).as_deref(), Some("UNAUTHENTICATED"), "{what}: {body}");
        // A bad token is refused even where no sign-in is needed.
        let ticket = app.gql(Some(token), "{ tickets { edges { node { id } } } }", json!({})).await;
        assert_code(&ticket, "UNAUTHENTICATED");
    }
    app.shutdown().await;
}

async fn demotion_and_disabling_bite_at_once(store: Store) {
    let app = TestApp::spawn(store).await;
    let root = app.admin().await;
    let deputy = app.register("deputy@example.com").await;
    let worker = app.register("worker@example.com").await;

    // Promote, then demote: the deputy's token follows the role at once.
    let promoted = app.gql_ok(Some(&root.token), SET_ROLE, json!({ "id": deputy.id, "role": "ADMIN" })).await;
    assert_eq!(promoted["setUserRole"]["role"], "ADMIN");
    app.gql_ok(Some(&deputy.token), USERS, json!({})).await;
    let demoted = app.gql_ok(Some(&root.token), SET_ROLE, json!({ "id": deputy.id, "role": "EMPLOYEE" })).await;
    assert_eq!(demoted["setUserRole"]["role"], "EMPLOYEE");
    assert_code(&app.gql(Some(&deputy.token), USERS, json!({})).await, "FORBIDDEN");
    assert_eq!(app.gql_ok(Some(&deputy.token), ME, json!({})).await["me"]["role"], "EMPLOYEE");

    // Disabling: the access token stops at once, the refresh token too.
    app.gql_ok(Some(&worker.token), ME, json!({})).await;
    let disabled = app.gql_ok(Some(&root.token), SET_DISABLED, json!({ "id": worker.id, "d": true })).await;
    assert_eq!(disabled["setUserDisabled"]["disabled"], true);
    assert_code(&app.gql(Some(&worker.token), ME, json!({})).await, "UNAUTHENTICATED");
    assert_code(&refresh_raw(&app, &worker.refresh).await, "UNAUTHENTICATED");
    let refused = login_raw(&app, "worker@example.com", PASSWORD).await;
    let wrong = login_raw(&app, "deputy@example.com", "wrong-Kettle-99").await;
    assert_code(&refused, "UNAUTHENTICATED");
    assert_eq!(refused["errors"], wrong["errors"], "a disabled account answers like a wrong password");
    // Enabled again, the user can sign in again (old sessions stay revoked).
    app.gql_ok(Some(&root.token), SET_DISABLED, json!({ "id": worker.id, "d": false })).await;
    assert_code(&refresh_raw(&app, &worker.refresh).await, "UNAUTHENTICATED");
    let back = app.login("worker@example.com", PASSWORD).await;
    app.gql_ok(Some(&back.token), ME, json!({})).await;

    // The last admin can be neither demoted nor disabled, by itself or anyone.
    assert_code(
        &app.gql(Some(&root.token), SET_ROLE, json!({ "id": root.id, "role": "EMPLOYEE" })).await,
        "BAD_USER_INPUT",
    );
    assert_code(&app.gql(Some(&root.token), SET_DISABLED, json!({ "id": root.id, "d": true })).await, "BAD_USER_INPUT");
    assert_eq!(app.gql_ok(Some(&root.token), ME, json!({})).await["me"]["role"], "ADMIN");
    app.gql_ok(Some(&root.token), USERS, json!({})).await;
    // With a second admin, one of them may step down.
    app.gql_ok(Some(&root.token), SET_ROLE, json!({ "id": deputy.id, "role": "ADMIN" })).await;
    app.gql_ok(Some(&deputy.token), SET_ROLE, json!({ "id": root.id, "role": "EMPLOYEE" })).await;
    assert_code(&app.gql(Some(&root.token), USERS, json!({})).await, "FORBIDDEN");
    assert_code(
        &app.gql(Some(&deputy.token), SET_ROLE, json!({ "id": deputy.id, "role": "EMPLOYEE" })).await,
        "BAD_USER_INPUT",
    );
    // Users page by cursor, oldest first, each once.
    let page = "query($after: String) { users(first: 2, after: $after) { edges { node { email } } \
        pageInfo { hasNextPage endCursor } } }";
    let mut emails = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.gql_ok(Some(&deputy.token), page, json!({ "after": after })).await;
        let users = &data["users"];
        for edge in users["edges"].as_array().expect("edges") {
            emails.push(edge["node"]["email"].as_str().expect("an email").to_owned());
        }
        if users["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = users["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(emails, ["admin@example.com", "deputy@example.com", "worker@example.com"]);
    // Unknown and malformed users.
    let missing =
        app.gql(Some(&deputy.token), SET_ROLE, json!({ "id": Uuid::new_v4().to_string(), "role": "ADMIN" })).await;
    assert_code(&missing, "NOT_FOUND");
    assert_code(
        &app.gql(Some(&deputy.token), SET_ROLE, json!({ "id": "nope", "role": "ADMIN" })).await,
        "BAD_USER_INPUT",
    );

    app.shutdown().await;
}

async fn login_is_rate_limited_per_email(store: Store) {
    let app = TestApp::spawn(store).await;
    app.register("target@example.com").await;

    // 10 a minute, refilled one every 6 s: a slow (debug) hash may earn a
    // few more attempts, never many.
    let started = std::time::Instant::now();
    let mut codes = Vec::new();
    for _ in 0..20 {
        let body = login_raw(&app, "target@example.com", "wrong-Kettle-99").await;
        let code = error_code(&body);
        codes.push(code.clone());
        if code.as_deref() == Some("TOO_MANY_REQUESTS") {
            break;
        }
    }
    let refilled = usize::try_from(started.elapsed().as_secs() / 6).unwrap_or(usize::MAX);
    let limited = codes.iter().position(|c| c.as_deref() == Some("TOO_MANY_REQUESTS"));
    assert!(
        limited.is_some_and(|n| (10..=10 + refilled).contains(&n)),
        "throttled after 10 attempts (+{refilled} refilled): {codes:?}"
    );
    assert!(codes[..codes.len() - 1].iter().all(|c| c.as_deref() == Some("UNAUTHENTICATED")), "{codes:?}");
    // Even the right password is throttled now, whatever the case of the email.
    assert_code(&login_raw(&app, "TARGET@example.com", PASSWORD).await, "TOO_MANY_REQUESTS");
    // Another address has its own budget.
    app.register("bystander@example.com").await;
    app.login("bystander@example.com", PASSWORD).await;

    app.shutdown().await;
}

/// Sign-ins from behind a trusted reverse proxy are throttled by the
/// address the proxy names, so one client spending its budget does not
/// lock out everyone else behind the same proxy.
async fn sign_ins_behind_a_trusted_proxy_are_throttled_per_client(store: Store) {
    let mut app = TestApp::spawn(store).await;
    let mut settings = app.settings.clone();
    settings.trusted_proxies = vec!["127.0.0.1".parse().expect("an address")];
    app.restart(settings).await;
    let login_from = |client: &'static str, n: usize| {
        let body = json!({ "query": LOGIN, "variables": { "email": format!("nobody{n}@example.com"), "password": "wrong-Kettle-99" } });
        let request =
            app.client().post(format!("{}/graphql", app.address())).header("x-forwarded-for", client).json(&body);
        async move { request.send().await.expect("the server answers").json::<Value>().await.expect("JSON") }
    };

    // 60 a minute per client, refilled one a second: a slow (debug) hash
    // may earn a few more attempts.
    let started = std::time::Instant::now();
    let mut limited = None;
    for n in 0..120 {
        if error_code(&login_from("203.0.113.7", n).await).as_deref() == Some("TOO_MANY_REQUESTS") {
            limited = Some(n);
            break;
        }
    }
    let refilled = usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX) + 1;
    assert!(
        limited.is_some_and(|n| (60..=60 + refilled).contains(&n)),
        "throttled after 60 ({limited:?}, +{refilled})"
    );
    // The same client is still throttled; another one behind the proxy is not.
    assert_code(&login_from("203.0.113.7", 1000).await, "TOO_MANY_REQUESTS");
    assert_code(&login_from("203.0.113.8", 1001).await, "UNAUTHENTICATED");

    app.shutdown().await;
}

/// Two admins demote each other at the same moment through two replicas
/// (DESIGN §8): one of them must stay an admin.
async fn last_admin_survives_concurrent_demotions_across_replicas(store: Store) {
    let app = TestApp::spawn(store).await;
    let root = app.admin().await;
    let deputy = app.register("deputy@example.com").await;
    app.gql_ok(Some(&root.token), SET_ROLE, json!({ "id": deputy.id, "role": "ADMIN" })).await;
    let replica = app.replica().await;

    let (first, second) = tokio::join!(
        app.gql(Some(&root.token), SET_ROLE, json!({ "id": deputy.id, "role": "EMPLOYEE" })),
        replica.gql(Some(&deputy.token), SET_ROLE, json!({ "id": root.id, "role": "EMPLOYEE" })),
    );
    // The loser is refused either as the last admin or, if the winner's
    // demotion of them landed first, as no longer an admin at all.
    let refused = [&first, &second]
        .iter()
        .filter(|b| matches!(error_code(b).as_deref(), Some("BAD_USER_INPUT" | "FORBIDDEN")))
        .count();
    let admins = app.count("SELECT COUNT(*) FROM users WHERE role = 'ADMIN'").await;
    assert!(admins >= 1, "no admin is left: {first} / {second}");
    assert_eq!(refused, 1, "exactly one demotion lands: {first} / {second}");

    replica.stop().await;
    app.shutdown().await;
}

both_stores!(
    last_admin_survives_concurrent_demotions_across_replicas,
    registration_normalises_and_polices,
    login_failures_look_alike,
    refresh_rotates_and_reuse_revokes_the_family,
    bad_access_tokens_are_unauthenticated,
    demotion_and_disabling_bite_at_once,
    login_is_rate_limited_per_email,
    sign_ins_behind_a_trusted_proxy_are_throttled_per_client,
);
