//! Accounts against an attacker and a crash: look-alike emails, text that
//! reorders itself, sign-in floods, tokens outliving a disabling, and a
//! rebuild of the read models cut short.

use std::time::Duration;

use commands::write::Actor;
use domain::account::AccountCommand;
use domain::values::{DisplayName, Email, Role, UserId};
use projections::read::Table;
use secrecy::SecretString;
use serde_json::{json, Value};
use test_support::Store;

use crate::support::{assert_code, both_stores, TestApp, LOGIN, PASSWORD, REGISTER};

const ME: &str = "{ me { id email role displayName } }";
const REFRESH: &str = "mutation($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken } }";
const SET_DISABLED: &str =
    "mutation($id: ID!, $d: Boolean!) { setUserDisabled(userId: $id, disabled: $d) { id disabled } }";
const BOOTSTRAP_EMAIL: &str = "root@example.com";
const BOOTSTRAP_PASSWORD: &str = "Bootstrap-orchard-Lantern-9";

async fn register_raw(app: &TestApp, email: &str, name: &str) -> Value {
    app.gql(None, REGISTER, json!({ "email": email, "password": PASSWORD, "name": name })).await
}

async fn login_raw(app: &TestApp, email: &str) -> Value {
    app.gql(None, LOGIN, json!({ "email": email, "password": PASSWORD })).await
}

/// Full-width and Cyrillic variants of an existing address are the same
/// account or refused, never a second account that looks the same.
async fn look_alike_emails_are_not_new_accounts(store: Store) {
    let app = TestApp::spawn(store).await;
    let ada = app.register("ada@example.com").await;
    let before = app.count("SELECT COUNT(*) FROM events").await;

    for look_alike in
        ["ＡＤＡ@ｅｘａｍｐｌｅ.ｃｏｍ", "ａｄａ＠example.com", "\u{430}da@example.com", "ada@ex\u{430}mple.com"]
    {
        let body = register_raw(&app, look_alike, "Not Ada").await;
        assert_code(&body, "BAD_USER_INPUT");
    }
    // An address made only of Cyrillic letters that look Latin.
    assert_code(&register_raw(&app, "\u{430}\u{440}\u{435}@example.com", "Ape").await, "BAD_USER_INPUT");
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, before, "a refusal records nothing");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);

    // The full-width spelling signs in to the same account.
    let wide = app.login("ＡＤＡ@ｅｘａｍｐｌｅ.ｃｏｍ", PASSWORD).await;
    assert_eq!(wide.id, ada.id);
    // Other scripts still register, in one script each.
    app.register("иван@example.com").await;

    app.shutdown().await;
}

/// Accounts registered before addresses were NFKC-normalised keep signing
/// in, and a new address that looks like one of theirs is refused.
async fn accounts_from_before_normalisation_keep_working(store: Store) {
    let app = TestApp::spawn(store).await;
    let state = &app.state().app;
    // As stored then: trimmed and lower-cased only.
    for (stored, name) in [("ｗｉｄｅ@example.com", "Wide"), ("b\u{43e}b@example.com", "Mixed")] {
        let email: Email = serde_json::from_value(json!(stored)).expect("an address as stored");
        let password_hash = state.hasher.hash(SecretString::from(PASSWORD)).await.expect("hashed");
        let command = AccountCommand::Register {
            display_name: DisplayName::parse(name).expect("a name"),
            password_hash,
            role: Role::Employee,
            email: email.clone(),
        };
        let id = UserId::for_email(&email);
        state.write.account(id, command, &Actor::system("test")).await.expect("registered");
        let version = state.read.wait_for(Table::Users, id.as_uuid(), 1, true, Duration::from_secs(10));
        assert!(version.await.expect("the store answers"));
        assert_eq!(app.login(stored, PASSWORD).await.id, id.to_string(), "{stored} signs in as before");
    }
    // `bob@example.com` has the skeleton of the mixed-script `bоb@…`.
    assert_code(&register_raw(&app, "bob@example.com", "Bob").await, "BAD_USER_INPUT");
    app.register("alice@example.com").await;

    app.shutdown().await;
}

/// Bidirectional controls are dropped from every text a person types.
async fn bidi_controls_never_reach_stored_text(store: Store) {
    let app = TestApp::spawn(store).await;
    let body = register_raw(&app, "eve@example.com", "Eve\u{202E}nimda").await;
    let token = body["data"]["register"]["accessToken"].as_str().expect("registered").to_owned();
    assert_eq!(app.gql_ok(Some(&token), ME, json!({})).await["me"]["displayName"], "Evenimda");

    let id = app.create_ticket_with(&token, "invoice\u{202E}fdp.exe", "see \u{2067}attached\u{2069} \u{200F}").await;
    let query = "query($id: ID!) { ticket(id: $id) { title description } }";
    let ticket = app.gql_ok(Some(&token), query, json!({ "id": id })).await["ticket"].clone();
    assert_eq!(ticket["title"], "invoicefdp.exe");
    assert_eq!(ticket["description"], "see attached");
    let controls = "SELECT COUNT(*) FROM tickets WHERE title LIKE '%' || char(8238) || '%'";
    if store == Store::Sqlite {
        assert_eq!(app.count(controls).await, 0);
    }
    let search = "query($s: String!) { tickets(filter: {search: $s}) { edges { node { id } } } }";
    let found = app.gql_ok(Some(&token), search, json!({ "s": "invoice\u{202E}fdp" })).await;
    assert_eq!(found["tickets"]["edges"].as_array().map(Vec::len), Some(1), "{found}");

    app.shutdown().await;
}

/// A sign-in with a huge email is refused before either throttle records
/// anything, and a request the per-address limit refuses spends nothing.
async fn sign_in_floods_leave_nothing_behind(store: Store) {
    let app = TestApp::spawn(store).await;
    let limits = &app.state().app.limits;
    let huge = format!("{}@example.com", "a".repeat(900_000));
    for _ in 0..3 {
        assert_code(&login_raw(&app, &huge).await, "BAD_USER_INPUT");
    }
    assert_eq!(limits.emails_held(), 0, "the refused email was recorded");
    let just_over = format!("{}@example.com", "b".repeat(243));
    assert_code(&login_raw(&app, &just_over).await, "BAD_USER_INPUT");
    assert_eq!(limits.emails_held(), 0);

    // The address's 60 a minute spent (on cheap refusals), further emails
    // are not recorded.
    for i in 0..60 {
        let body = app.gql(None, REFRESH, json!({ "t": format!("not-a-token-{i}") })).await;
        assert_code(&body, "UNAUTHENTICATED");
    }
    for i in 0..20 {
        assert_code(&login_raw(&app, &format!("flood{i}@example.com")).await, "TOO_MANY_REQUESTS");
    }
    assert_eq!(limits.emails_held(), 0, "refused sign-ins left keys behind");

    app.shutdown().await;
}

/// A token issued before its user was disabled stays dead once the user
/// is enabled again; tokens issued after work.
async fn tokens_from_before_a_disabling_stay_dead(store: Store) {
    let app = TestApp::spawn(store).await;
    let root = app.admin().await;
    let worker = app.register("worker@example.com").await;
    app.gql_ok(Some(&worker.token), ME, json!({})).await;

    app.gql_ok(Some(&root.token), SET_DISABLED, json!({ "id": worker.id, "d": true })).await;
    app.gql_ok(Some(&root.token), SET_DISABLED, json!({ "id": worker.id, "d": false })).await;
    assert_code(&app.gql(Some(&worker.token), ME, json!({})).await, "UNAUTHENTICATED");
    let back = app.login("worker@example.com", PASSWORD).await;
    app.gql_ok(Some(&back.token), ME, json!({})).await;

    // A refresh token whose revocation the disabling had not reached yet
    // (as when a refresh races it) is refused too.
    let id = UserId::parse(&back.id).expect("an id");
    let write = &app.state().app.write;
    let actor = Actor::system("test");
    write.account(id, AccountCommand::Disable, &actor).await.expect("disabled");
    write.account(id, AccountCommand::Enable, &actor).await.expect("enabled");
    let settled = app.state().app.read.wait_for(Table::Users, id.as_uuid(), 5, true, Duration::from_secs(10));
    assert!(settled.await.expect("the store answers"));
    assert_code(&app.gql(None, REFRESH, json!({ "t": back.refresh })).await, "UNAUTHENTICATED");
    assert_code(&app.gql(Some(&back.token), ME, json!({})).await, "UNAUTHENTICATED");
    app.login("worker@example.com", PASSWORD).await;

    app.shutdown().await;
}

/// A rebuild stopped after emptying the read models: the server still
/// starts with its bootstrap admin, who can sign in, and the read models
/// are whole; a second rebuild also finishes.
async fn an_interrupted_rebuild_is_finished(store: Store) {
    let mut app = TestApp::spawn(store).await;
    let mut settings = app.settings.clone();
    settings.admin_email = Some(BOOTSTRAP_EMAIL.to_owned());
    settings.admin_password = Some(SecretString::from(BOOTSTRAP_PASSWORD));
    app.restart(settings.clone()).await;
    let ada = app.register("ada@example.com").await;
    app.create_ticket(&ada.token, "Printer on fire").await;
    let users = app.count("SELECT COUNT(*) FROM users").await;
    assert_eq!(users, 2);

    app.stop_server().await;
    {
        let (_, projector) = api::http::assemble(settings.clone()).await.expect("assembled");
        projector.begin_rebuild().await.expect("the read models are emptied");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);

    app.restart(settings.clone()).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    assert_eq!(app.count("SELECT COUNT(*) FROM tickets").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM projector_checkpoints WHERE rebuilding").await, 0);
    app.login(BOOTSTRAP_EMAIL, BOOTSTRAP_PASSWORD).await;
    app.login("ada@example.com", PASSWORD).await;

    // Interrupted again, then a second rebuild runs to the end.
    app.stop_server().await;
    {
        let (_, projector) = api::http::assemble(settings.clone()).await.expect("assembled");
        projector.begin_rebuild().await.expect("the read models are emptied");
        projector.rebuild().await.expect("the rebuild finishes");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    app.restart(settings).await;
    app.login(BOOTSTRAP_EMAIL, BOOTSTRAP_PASSWORD).await;

    app.shutdown().await;
}

both_stores!(
    look_alike_emails_are_not_new_accounts,
    accounts_from_before_normalisation_keep_working,
    bidi_controls_never_reach_stored_text,
    sign_in_floods_leave_nothing_behind,
    tokens_from_before_a_disabling_stay_dead,
    an_interrupted_rebuild_is_finished,
);
