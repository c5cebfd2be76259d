//! Subscriptions on `/graphql/ws`, spoken to as a browser's GraphQL client
//! would (graphql-transport-ws): who is told of which change, and what the
//! socket refuses.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use test_support::Store;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{assert_no_leak, both_stores, TestApp};

const ALL: &str = "subscription { ticketChanged { id version deleted } }";
const ONE: &str = "subscription($id: ID!) { ticketChanged(id: $id) { id version deleted } }";
/// Longer than any wait for a message that must come.
const PATIENCE: Duration = Duration::from_secs(15);

/// One client's connection, and messages read ahead of the one awaited.
struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>, VecDeque<Value>);

impl Socket {
    /// Opens `/graphql/ws` and sends `connection_init` with `payload`;
    /// returns the socket and the server's first answer.
    async fn open(app: &TestApp, payload: Value) -> (Self, Message) {
        Self::open_at(app.address(), payload).await
    }

    async fn open_at(address: &str, payload: Value) -> (Self, Message) {
        let mut socket = Self(upgrade(address).await, VecDeque::new());
        socket.send(json!({ "type": "connection_init", "payload": payload })).await;
        let first = socket.receive().await;
        (socket, first)
    }

    /// A socket signed in by the upgrade request's `Authorization` header,
    /// its `connection_init` empty.
    async fn signed_in_with_header(app: &TestApp, token: &str) -> Self {
        let mut socket = Self(upgrade_with(app.address(), Some(token)).await, VecDeque::new());
        socket.send(json!({ "type": "connection_init" })).await;
        let first = socket.next_json().await;
        assert_eq!(first["type"], "connection_ack", "{first}");
        socket
    }

    /// A socket signed in with `token`.
    async fn signed_in(app: &TestApp, token: &str) -> Self {
        Self::signed_in_at(app.address(), token).await
    }

    async fn signed_in_at(address: &str, token: &str) -> Self {
        let (socket, first) = Self::open_at(address, json!({ "authorization": format!("Bearer {token}") })).await;
        assert_eq!(message_json(&first)["type"], "connection_ack", "{first:?}");
        socket
    }

    async fn send(&mut self, message: Value) {
        self.0.send(Message::text(message.to_string())).await.expect("the message is sent");
    }

    async fn receive(&mut self) -> Message {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.0.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a readable message");
            if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
                if let Message::Text(text) = &message {
                    assert_no_leak(text);
                }
                return message;
            }
        }
    }

    /// The next protocol message, as JSON.
    async fn next_json(&mut self) -> Value {
        match self.1.pop_front() {
            Some(message) => message,
            None => message_json(&self.receive().await),
        }
    }

    /// Subscribes as `id`, then waits until the server has started the
    /// subscription: a ping answered after it, and a moment for its first poll.
    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
        self.send(json!({ "type": "ping" })).await;
        // The subscription's own first answer may come before the pong.
        loop {
            let message = message_json(&self.receive().await);
            if message["type"] == "pong" {
                break;
            }
            self.1.push_back(message);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// The next change told on subscription `id`.
    async fn change(&mut self, id: &str) -> Value {
        let message = self.next_json().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"]["ticketChanged"].clone()
    }

    /// The error that ends subscription `id`, then its `complete`.
    async fn ended_with(&mut self, id: &str) -> Value {
        let message = self.next_json().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        let error = message["payload"]["errors"][0].clone();
        assert!(error.is_object(), "{message}");
        let complete = self.next_json().await;
        assert_eq!(complete, json!({ "type": "complete", "id": id }));
        error
    }
}

/// A WebSocket to `address`'s `/graphql/ws`, nothing sent yet.
async fn upgrade(address: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    upgrade_with(address, None).await
}

async fn upgrade_with(address: &str, bearer: Option<&str>) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    upgrade_speaking(address, bearer, "graphql-transport-ws").await
}

/// A WebSocket speaking `protocol` (`graphql-transport-ws` or the legacy `graphql-ws`).
async fn upgrade_speaking(
    address: &str,
    bearer: Option<&str>,
    protocol: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let url = format!("{}/graphql/ws", address.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("a request");
    request.headers_mut().insert("sec-websocket-protocol", protocol.parse().expect("a header"));
    if let Some(token) = bearer {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("a header"));
    }
    let (stream, response) = tokio_tungstenite::connect_async(request).await.expect("the socket opens");
    assert_eq!(response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some(protocol));
    stream
}

/// A text message as JSON, anything else as `null`.
fn message_json_or_null(message: &Message) -> Value {
    match message {
        Message::Text(_) => message_json(message),
        _ => Value::Null,
    }
}

fn message_json(message: &Message) -> Value {
    match message {
        Message::Text(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        other => panic!("not a text message: {other:?}"),
    }
}

fn told(id: &str, version: i64, deleted: bool) -> Value {
    json!({ "id": id, "version": version, "deleted": deleted })
}

both_stores!(
    changes_reach_those_who_may_see_them,
    another_replica_tells_its_subscribers_too,
    subscriptions_end_when_their_user_may_no_longer_sign_in,
    a_connection_and_a_user_hold_bounded_places,
    the_legacy_protocol_is_served_alike,
    a_socket_needs_a_valid_token,
    the_socket_serves_subscriptions_only,
    the_socket_refuses_fragment_bombs
);

async fn changes_reach_those_who_may_see_them(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let alice = app.register("alice@example.com").await;
    let bob = app.register("bob@example.com").await;
    let ours = app.create_ticket(&alice.token, "Printer jams").await;
    let theirs = app.create_ticket(&bob.token, "VPN drops").await;

    let mut alice_all = Socket::signed_in(&app, &alice.token).await;
    alice_all.subscribe("a", ALL, json!({})).await;
    let mut admin_all = Socket::signed_in(&app, &admin.token).await;
    admin_all.subscribe("m", ALL, json!({})).await;
    let mut bob_one = Socket::signed_in(&app, &bob.token).await;
    // Another's ticket answers as one that does not exist.
    bob_one.subscribe("b", ONE, json!({ "id": ours })).await;
    let refused = bob_one.ended_with("b").await;
    assert_eq!(refused["extensions"]["code"], "NOT_FOUND", "{refused}");
    bob_one.subscribe("b", ONE, json!({ "id": "not-an-id" })).await;
    assert_eq!(bob_one.ended_with("b").await["extensions"]["code"], "BAD_USER_INPUT");
    bob_one.subscribe("b", ONE, json!({ "id": theirs })).await;

    let updated = app.update(&admin.token, &ours, json!({ "status": "IN_PROGRESS" })).await;
    assert!(updated.get("errors").is_none(), "{updated}");
    assert_eq!(alice_all.change("a").await, told(&ours, 2, false));
    assert_eq!(admin_all.change("m").await, told(&ours, 2, false));

    // Bob's ticket reaches the admin and Bob, never Alice: her next change
    // is her own ticket's, told after Bob's.
    app.update(&admin.token, &theirs, json!({ "priority": "HIGH" })).await;
    assert_eq!(admin_all.change("m").await, told(&theirs, 2, false));
    assert_eq!(bob_one.change("b").await, told(&theirs, 2, false));
    // Alice's own change, with an admin's confidential note: she is told
    // its version only; the note stays the admins'.
    app.update(&admin.token, &ours, json!({ "confidentialNotes": "replace the fuser" })).await;
    assert_eq!(alice_all.change("a").await, told(&ours, 3, false));
    assert_eq!(admin_all.change("m").await, told(&ours, 3, false));

    // A change that is visible when told can be read back at once.
    let read =
        app.gql_ok(Some(&alice.token), "query($id: ID!) { ticket(id: $id) { version } }", json!({ "id": ours })).await;
    assert_eq!(read["ticket"]["version"], 3);

    // A deletion is told to the reporter too, then the ticket is gone for her.
    let deleted =
        app.gql(Some(&admin.token), "mutation($id: ID!) { deleteTicket(id: $id) }", json!({ "id": ours })).await;
    assert!(deleted.get("errors").is_none(), "{deleted}");
    assert_eq!(alice_all.change("a").await, told(&ours, 4, true));
    assert_eq!(admin_all.change("m").await, told(&ours, 4, true));

    // A demoted admin is told only of their own tickets from the next change on.
    let second = app.admin_named("second@example.com").await;
    let mut second_all = Socket::signed_in(&app, &second.token).await;
    second_all.subscribe("s", ALL, json!({})).await;
    let demote = "mutation($id: ID!) { setUserRole(userId: $id, role: EMPLOYEE) { role } }";
    let demoted = app.gql(Some(&admin.token), demote, json!({ "id": second.id })).await;
    assert!(demoted.get("errors").is_none(), "{demoted}");
    app.update(&admin.token, &theirs, json!({ "status": "RESOLVED" })).await;
    assert_eq!(admin_all.change("m").await, told(&theirs, 3, false));
    let own = app.create_ticket(&second.token, "Monitor flickers").await;
    assert_eq!(second_all.change("s").await, told(&own, 1, false));

    app.shutdown().await;
}

/// A subscriber on a second server is told of a change made through the
/// first, and of its own server's changes (on PostgreSQL the second
/// server's projector does not lead, so it learns of them by polling).
async fn another_replica_tells_its_subscribers_too(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let alice = app.register("alice@example.com").await;
    let ticket = app.create_ticket(&alice.token, "Laptop will not boot").await;
    let replica = app.replica().await;
    let mut socket = Socket::signed_in_at(replica.address(), &alice.token).await;
    socket.subscribe("r", ONE, json!({ "id": ticket })).await;
    let updated = app.update(&admin.token, &ticket, json!({ "priority": "HIGH" })).await;
    assert!(updated.get("errors").is_none(), "{updated}");
    assert_eq!(socket.change("r").await, told(&ticket, 2, false));
    let update = "mutation($id: ID!) { updateTicket(id: $id, input: {status: RESOLVED}) { version } }";
    let answered = replica.gql(Some(&admin.token), update, json!({ "id": ticket })).await;
    assert_eq!(answered["data"]["updateTicket"]["version"], 3, "{answered}");
    assert_eq!(socket.change("r").await, told(&ticket, 3, false));
    drop(socket);
    replica.stop().await;
    app.shutdown().await;
}

/// A disabled account's subscription, and one whose token has expired,
/// end at their next change with `UNAUTHENTICATED`.
async fn subscriptions_end_when_their_user_may_no_longer_sign_in(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let alice = app.register("alice@example.com").await;
    let bob = app.register("bob@example.com").await;
    let hers = app.create_ticket(&alice.token, "Printer jams").await;
    let his = app.create_ticket(&bob.token, "VPN drops").await;

    let mut alice_socket = Socket::signed_in(&app, &alice.token).await;
    alice_socket.subscribe("a", ONE, json!({ "id": hers })).await;
    let disable = "mutation($id: ID!) { setUserDisabled(userId: $id, disabled: true) { disabled } }";
    let disabled = app.gql(Some(&admin.token), disable, json!({ "id": alice.id })).await;
    assert!(disabled.get("errors").is_none(), "{disabled}");
    app.update(&admin.token, &hers, json!({ "status": "IN_PROGRESS" })).await;
    assert_eq!(alice_socket.ended_with("a").await["extensions"]["code"], "UNAUTHENTICATED");

    // A token two seconds from its end (and then the 5 s of clock leeway
    // every token has), signed in through the upgrade's header rather than
    // `connection_init`.
    let bob_id = bob.id.parse().expect("a uuid");
    let issued = chrono::Utc::now() - chrono::Duration::minutes(15) + chrono::Duration::seconds(2);
    let (short, _) = app.state().app.jwt.issue_access(bob_id, issued).expect("a token");
    let mut bob_socket = Socket::signed_in_with_header(&app, &short).await;
    bob_socket.subscribe("b", ONE, json!({ "id": his })).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    app.update(&admin.token, &his, json!({ "status": "IN_PROGRESS" })).await;
    let ended = bob_socket.ended_with("b").await;
    assert_eq!(ended["extensions"]["code"], "UNAUTHENTICATED", "{ended}");
    // The socket itself is closed at the connection's next check (every
    // 30 s), with or without subscriptions.
    let closed = tokio::time::timeout(Duration::from_secs(40), async {
        while let Some(Ok(message)) = bob_socket.0.next().await {
            assert!(!matches!(message, Message::Text(_)), "{message:?}");
        }
    });
    closed.await.expect("a socket whose token expired is closed");
    app.shutdown().await;
}

/// A connection holds at most 16 subscriptions, and a user 16 connections.
async fn a_connection_and_a_user_hold_bounded_places(store: Store) {
    let app = TestApp::spawn(store).await;
    let alice = app.register("alice@example.com").await;
    let mut socket = Socket::signed_in(&app, &alice.token).await;
    for id in 0..=16 {
        socket.send(json!({ "id": id.to_string(), "type": "subscribe", "payload": { "query": ALL } })).await;
    }
    // Which one is refused depends on the order the server starts them in.
    let refused = socket.next_json().await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "TOO_MANY_REQUESTS", "{refused}");
    assert_eq!(socket.next_json().await, json!({ "type": "complete", "id": refused["id"] }));

    let mut others = Vec::new();
    for _ in 1..16 {
        others.push(Socket::signed_in(&app, &alice.token).await);
    }
    let (_, first) = Socket::open(&app, json!({ "authorization": format!("Bearer {}", alice.token) })).await;
    let Message::Close(Some(frame)) = &first else { panic!("closed, not {first:?}") };
    assert!(frame.reason.starts_with("TOO_MANY_REQUESTS: "), "{}", frame.reason);
    // A connection given back is a place again.
    drop(others.pop());
    let mut again = None;
    for _ in 0..50 {
        let (candidate, first) =
            Socket::open(&app, json!({ "authorization": format!("Bearer {}", alice.token) })).await;
        if message_json_or_null(&first)["type"] == "connection_ack" {
            again = Some(candidate);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a place given back is taken again");
    app.shutdown().await;
}

/// Apollo's older `graphql-ws` protocol (subscriptions-transport-ws):
/// refused with a `connection_error`, told with `data` messages.
async fn the_legacy_protocol_is_served_alike(store: Store) {
    let app = TestApp::spawn(store).await;
    let admin = app.admin().await;
    let alice = app.register("alice@example.com").await;
    let ticket = app.create_ticket(&alice.token, "Dock not detected").await;

    let mut refused = Socket(upgrade_speaking(app.address(), None, "graphql-ws").await, VecDeque::new());
    refused.send(json!({ "type": "connection_init", "payload": {} })).await;
    let error = refused.next_json().await;
    assert_eq!(error["type"], "connection_error", "{error}");
    assert!(error["payload"]["message"].as_str().unwrap_or_default().starts_with("UNAUTHENTICATED: "), "{error}");

    let mut socket = Socket(upgrade_speaking(app.address(), None, "graphql-ws").await, VecDeque::new());
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", alice.token) } });
    socket.send(init).await;
    assert_eq!(socket.next_json().await["type"], "connection_ack");
    let start = json!({ "id": "1", "type": "start", "payload": { "query": ONE, "variables": { "id": ticket } } });
    socket.send(start).await;
    // This protocol has no ping: a moment for the subscription to start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.update(&admin.token, &ticket, json!({ "status": "IN_PROGRESS" })).await;
    let data = loop {
        let message = socket.next_json().await;
        if message["type"] != "ka" {
            break message;
        }
    };
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["ticketChanged"], told(&ticket, 2, false));
    app.shutdown().await;
}

async fn a_socket_needs_a_valid_token(store: Store) {
    let app = TestApp::spawn(store).await;
    for payload in [json!({}), json!({ "authorization": "Bearer not-a-token" }), json!(null)] {
        let (mut socket, first) = Socket::open(&app, payload.clone()).await;
        let Message::Close(Some(frame)) = &first else { panic!("{payload}: closed, not {first:?}") };
        assert!(frame.reason.starts_with("UNAUTHENTICATED: "), "{payload}: {}", frame.reason);
        // Nothing follows the refusal.
        let rest = tokio::time::timeout(PATIENCE, socket.0.next()).await.expect("the socket closes");
        assert!(!matches!(rest, Some(Ok(Message::Text(_)))), "{rest:?}");
    }
    // A socket that never signs in is closed within seconds.
    let mut silent = upgrade(app.address()).await;
    let opened = std::time::Instant::now();
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(message)) = silent.next().await {
            assert!(!matches!(message, Message::Text(_)), "{message:?}");
        }
    });
    ended.await.expect("a silent socket is closed");
    assert!(opened.elapsed() < Duration::from_secs(8), "closed after {:?}", opened.elapsed());
    // Over plain HTTP a subscription is refused with a code.
    let body = app.gql(None, ALL, json!({})).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("ubscription"), "{body}");
    app.shutdown().await;
}

/// A subscription document whose fragments expand to 2^30 fields is
/// refused from its text, at once, and the socket goes on serving.
async fn the_socket_refuses_fragment_bombs(store: Store) {
    let app = TestApp::spawn(store).await;
    let alice = app.register("alice@example.com").await;
    let mut socket = Socket::signed_in(&app, &alice.token).await;
    let mut bomb = "fragment F0 on Subscription { ticketChanged { id } }".to_owned();
    for i in 1..=30 {
        bomb.push_str(&format!(" fragment F{i} on Subscription {{ ...F{p} ...F{p} }}", p = i - 1));
    }
    bomb.push_str(" subscription { ...F30 }");
    let started = std::time::Instant::now();
    socket.subscribe("b", &bomb, json!({})).await;
    let error = socket.ended_with("b").await;
    assert!(started.elapsed() < Duration::from_secs(2), "refused in {:?}", started.elapsed());
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(error["message"].as_str().unwrap_or_default().contains("fields"), "{error}");
    let ticket = app.create_ticket(&alice.token, "Monitor flickers").await;
    socket.subscribe("t", ONE, json!({ "id": ticket })).await;
    app.update(&app.admin().await.token, &ticket, json!({ "status": "RESOLVED" })).await;
    assert_eq!(socket.change("t").await, told(&ticket, 2, false));
    app.shutdown().await;
}

async fn the_socket_serves_subscriptions_only(store: Store) {
    let app = TestApp::spawn(store).await;
    let alice = app.register("alice@example.com").await;
    let mut socket = Socket::signed_in(&app, &alice.token).await;
    for (query, says) in [
        ("{ me { id } }", "only subscriptions"),
        ("mutation { logout(refreshToken: \"x\") }", "only subscriptions"),
        ("subscription { ticketChanged { id nope } }", "nope"),
        ("subscription { ticketChanged(", ""),
    ] {
        socket.subscribe("q", query, json!({})).await;
        let error = socket.ended_with("q").await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{query}: {error}");
        assert!(error["message"].as_str().unwrap_or_default().contains(says), "{query}: {error}");
    }
    // The socket is still usable after its refusals.
    let ticket = app.create_ticket(&alice.token, "Keyboard sticks").await;
    socket.subscribe("t", ONE, json!({ "id": ticket })).await;
    app.update(&app.admin().await.token, &ticket, json!({ "status": "RESOLVED" })).await;
    assert_eq!(socket.change("t").await, told(&ticket, 2, false));
    app.shutdown().await;
}
