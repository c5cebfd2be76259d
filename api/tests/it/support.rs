//! A real server per test: its own database on either store, its own data
//! folder, a random port, spoken to over HTTP like any client would.

use std::path::PathBuf;

use api::config::Settings;
use api::http::{Application, HttpState};
use chrono::Utc;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use test_support::{Store, TestDb};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A password every policy check accepts for the emails tests use.
pub const PASSWORD: &str = "tangerine-Kettle-47";
/// The bootstrap admin's password.
const ADMIN_PASSWORD: &str = "Adm1n-orchard-Lantern";

/// Text that must never reach a client: it would mean internals leaked.
pub const LEAKS: &[&str] =
    &["sqlx", "panicked", "SELECT ", "INSERT INTO", "UPDATE tickets", "DELETE FROM", "syntax error"];

/// Runs `async fn $name(store: Store)` once per store, as `$name::postgres`
/// and `$name::sqlite`.
macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name(::test_support::Store::Postgres).await;
                }

                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name(::test_support::Store::Sqlite).await;
                }
            }
        )+
    };
}
pub(crate) use both_stores;

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub token: String,
    pub refresh: String,
    pub id: String,
}

/// One running `Application`.
struct Server {
    state: HttpState,
    address: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Builds and serves an `Application` with `settings`.
    async fn start(settings: Settings) -> Self {
        let application = Application::build(settings).await.expect("the application builds");
        let (stop, stopped) = oneshot::channel::<()>();
        let address = format!("http://127.0.0.1:{}", application.port());
        let state = application.state().clone();
        let task = tokio::spawn(application.run_until(async move {
            let _ = stopped.await;
        }));
        Self { state, address, stop, task }
    }

    /// Stops it and waits until it has drained and closed its pool.
    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task did not panic");
        result.expect("the server ran without error");
    }
}

/// A running server and its database.
pub struct TestApp {
    /// `None` only after `shutdown`.
    db: Option<TestDb>,
    pub settings: Settings,
    server: Option<Server>,
    client: reqwest::Client,
    data_dir: PathBuf,
}

impl TestApp {
    /// A fresh database on `store` and a server on it.
    pub async fn spawn(store: Store) -> Self {
        let db = TestDb::new(store).await;
        let data_dir = std::env::temp_dir().join(format!("tickets-it-{}", Uuid::new_v4().simple()));
        let settings = Settings::for_tests(db.url.clone(), data_dir.clone());
        let server = Server::start(settings.clone()).await;
        Self { db: Some(db), settings, server: Some(server), client: reqwest::Client::new(), data_dir }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the server is running")
    }

    /// The running application's state.
    pub fn state(&self) -> &HttpState {
        &self.server().state
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn address(&self) -> &str {
        &self.server().address
    }

    /// Stops the server, leaving the database as it is (`restart` starts one again).
    pub async fn stop_server(&mut self) {
        // Idle keep-alive connections must not hold the drain up.
        self.client = reqwest::Client::new();
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Stops the server and starts a new one with `settings` on the same
    /// database and data folder, as after a restart.
    pub async fn restart(&mut self, settings: Settings) {
        self.stop_server().await;
        self.server = Some(Server::start(settings.clone()).await);
        self.settings = settings;
    }

    /// Stops the server and removes the database and data folder.
    pub async fn shutdown(mut self) {
        self.stop_server().await;
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    pub fn test_db(&self) -> &TestDb {
        self.db.as_ref().expect("the database is there until shutdown")
    }

    /// POSTs a GraphQL request; returns the status and body as sent.
    pub async fn gql_raw(&self, token: Option<&str>, query: &str, variables: Value) -> (StatusCode, String) {
        self.post_raw(token, &json!({ "query": query, "variables": variables }).to_string()).await
    }

    /// POSTs `body` as JSON to `/graphql`; checks it leaks nothing.
    pub async fn post_raw(&self, token: Option<&str>, body: &str) -> (StatusCode, String) {
        post(&self.client, self.address(), token, body).await
    }

    /// A GraphQL request's JSON answer.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, text) = self.gql_raw(token, query, variables).await;
        assert_eq!(status, StatusCode::OK, "GraphQL answers 200: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The `data` of a request that must succeed.
    pub async fn gql_ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors for {query}: {body}");
        body["data"].clone()
    }

    /// A GET on this server.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address())).send().await.expect("the server answers")
    }

    /// Registers an employee and returns its tokens and id.
    pub async fn register(&self, email: &str) -> Account {
        let data =
            self.gql_ok(None, REGISTER, json!({ "email": email, "password": PASSWORD, "name": "Test User" })).await;
        account(&data["register"])
    }

    /// Signs in; panics unless it works.
    pub async fn login(&self, email: &str, password: &str) -> Account {
        let data = self.gql_ok(None, LOGIN, json!({ "email": email, "password": password })).await;
        account(&data["login"])
    }

    /// Makes a bootstrap admin (as the CLI does) and signs it in.
    pub async fn admin(&self) -> Account {
        self.admin_named("admin@example.com").await
    }

    pub async fn admin_named(&self, email: &str) -> Account {
        let user = self
            .state()
            .app
            .ensure_admin(email, "Administrator", SecretString::from(ADMIN_PASSWORD))
            .await
            .expect("the admin is created");
        // An access token exactly as login issues it, without a second
        // argon2 run (slow in debug builds).
        let (token, _) = self.state().app.jwt.issue_access(user.id, Utc::now()).expect("a token");
        Account { token, refresh: String::new(), id: user.id.to_string() }
    }

    /// Opens a ticket and returns its id.
    pub async fn create_ticket(&self, token: &str, title: &str) -> String {
        self.create_ticket_with(token, title, "Something is broken.").await
    }

    pub async fn create_ticket_with(&self, token: &str, title: &str, description: &str) -> String {
        let data = self
            .gql_ok(
                Some(token),
                "mutation($t: String!, $d: String!) { createTicket(input: {title: $t, description: $d}) { id } }",
                json!({ "t": title, "d": description }),
            )
            .await;
        data["createTicket"]["id"].as_str().expect("an id").to_owned()
    }

    /// An admin edit; returns the whole answer.
    pub async fn update(&self, token: &str, id: &str, input: Value) -> Value {
        self.gql(Some(token), UPDATE, json!({ "id": id, "input": input })).await
    }

    /// How many events the store holds.
    pub async fn event_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM events").await
    }

    /// Runs a `SELECT COUNT(*) …` (no binds) on the test's own pool.
    pub async fn count(&self, sql: &str) -> i64 {
        commands::on_db!(&self.test_db().db, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// POSTs `body` to `address`'s `/graphql`; checks the answer leaks nothing.
async fn post(client: &reqwest::Client, address: &str, token: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut request = client
        .post(format!("{address}/graphql"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let text = response.text().await.expect("a readable body");
    assert_no_leak(&text);
    (status, text)
}

/// A second server on the same database and secrets, as another replica
/// behind a load balancer would be.
pub struct Replica {
    server: Server,
    client: reqwest::Client,
}

impl Replica {
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, text) = post(&self.client, &self.server.address, token, &body).await;
        assert_eq!(status, StatusCode::OK, "GraphQL answers 200: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    pub fn address(&self) -> &str {
        &self.server.address
    }

    pub async fn stop(self) {
        drop(self.client);
        self.server.stop().await;
    }
}

impl TestApp {
    /// Starts another server on this test's database and settings.
    pub async fn replica(&self) -> Replica {
        Replica { server: Server::start(self.settings.clone()).await, client: reqwest::Client::new() }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A failed test still leaves no folder behind; the database cleans
        // itself up in `TestDb`'s own drop.
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn account(payload: &Value) -> Account {
    Account {
        token: payload["accessToken"].as_str().expect("accessToken").to_owned(),
        refresh: payload["refreshToken"].as_str().expect("refreshToken").to_owned(),
        id: payload["user"]["id"].as_str().expect("user id").to_owned(),
    }
}

/// `errors[0].extensions.code`, if any.
pub fn error_code(body: &Value) -> Option<String> {
    body["errors"][0]["extensions"]["code"].as_str().map(str::to_owned)
}

/// Panics unless `body` failed with `code`.
#[track_caller]
pub fn assert_code(body: &Value, code: &str) {
    assert_eq!(error_code(body).as_deref(), Some(code), "expected {code}: {body}");
}

#[track_caller]
pub fn assert_no_leak(text: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "a response leaks internals ({leak:?}): {text}");
    }
}

pub const REGISTER: &str = "mutation($email: String!, $password: String!, $name: String!) { \
    register(input: {email: $email, password: $password, displayName: $name}) { \
    accessToken refreshToken expiresIn user { id email role } } }";

pub const LOGIN: &str = "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { \
    accessToken refreshToken user { id email } } }";

pub const TICKET_FIELDS: &str = "id title description status priority version createdAt updatedAt deletedAt \
    confidentialNotes reporter { id } assignee { id } history { sequence action field from to actor { id } }";

pub const UPDATE: &str = "mutation($id: ID!, $input: UpdateTicketInput!, $v: Int) { \
    updateTicket(id: $id, input: $input, expectedVersion: $v) { id status priority version confidentialNotes \
    assignee { id } history { sequence action field from to actor { id } } } }";

/// One ticket, as `viewer` sees it (`null` when hidden).
pub async fn ticket(app: &TestApp, token: &str, id: &str) -> Value {
    let query = format!("query($id: ID!) {{ ticket(id: $id) {{ {TICKET_FIELDS} }} }}");
    app.gql_ok(Some(token), &query, json!({ "id": id })).await["ticket"].clone()
}
