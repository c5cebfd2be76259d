//! The HTTP edge: routes, the GraphQL endpoint, health and readiness, and
//! the server's life cycle (build, serve, drain on SIGINT/SIGTERM).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{ConnectInfo, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use commands::db::Db;
use commands::keys::KeyRing;
use commands::write::WriteSide;
use projections::feed::Changes;
use projections::projector::Projector;
use projections::read::ReadModels;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::password::PasswordHasher;
use crate::auth::sessions::Sessions;
use crate::blobs::Blobs;
use crate::config::{Introspection, Metrics, Settings};
use crate::graphql::admission::Held;
use crate::graphql::limits::Documents;
use crate::graphql::limits::Prepared;
use crate::graphql::spliced::Texts;
use crate::graphql::subscription::{self, LiveExecutor, UserSockets};
use crate::graphql::{RequestInfo, Schemas};
use crate::secrets;
use crate::state::{App, AppState, RateLimits};

/// How long in-flight requests get to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(20);
/// Projector lag beyond which the server reports itself not ready.
const MAX_READY_LAG: i64 = 10_000;
/// How long `/readyz` waits on the store. With the database away each query
/// waits for the pool's whole acquire timeout, and a probe must hear "not
/// ready" in time rather than time out itself.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schemas: Arc<Schemas>,
    pub documents: Arc<Documents>,
    pub live: LiveHub,
}

/// What `/graphql/ws` connections share.
#[derive(Clone)]
pub struct LiveHub {
    changes: Changes,
    /// One permit a connection open.
    connections: Arc<Semaphore>,
    /// And how many each user holds.
    sockets: UserSockets,
    /// Turns true when the server starts draining: connections then close,
    /// so that clients reconnect to a server that stays.
    closing: watch::Receiver<bool>,
}

/// Live connections one server holds at once.
const MAX_LIVE_CONNECTIONS: usize = 4096;
/// How long a live connection may take to send its `connection_init`
/// (the `graphql-ws` client's own default wait).
const LIVE_INIT_WAIT: Duration = Duration::from_secs(3);
/// The largest message a live connection takes (a subscription's document
/// and variables; `POST /graphql` has its own body limit).
const MAX_LIVE_MESSAGE: usize = 64 * 1024;

/// All routes; tests can call this directly.
pub fn router(state: HttpState) -> Router {
    let routes = Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/attachments/{id}", get(crate::download::download))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error")
        }));
    crate::hygiene::secure(routes)
}

/// Prometheus text, unless `TICKETS_METRICS=off`, and only to the bearer
/// of `TICKETS_METRICS_TOKEN` when it is set.
async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let settings = &state.app.settings;
    if settings.metrics == Metrics::Off {
        return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "not found");
    }
    if let Some(token) = &settings.metrics_token {
        let given = crate::auth::caller::bearer(&headers).unwrap_or_default();
        // Digests compared, so the time taken says nothing of the token.
        if Sha256::digest(given.as_bytes()) != Sha256::digest(token.expose_secret().as_bytes()) {
            let refused = error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "a metrics token is required");
            return ([(header::WWW_AUTHENTICATE, "Bearer")], refused).into_response();
        }
    }
    if let Ok(lag) = state.app.read.lag().await {
        ::metrics::gauge!("tickets_projector_lag_events").set(lag as f64);
    }
    crate::metrics::handle().render().into_response()
}

async fn graphiql() -> impl IntoResponse {
    let page = GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql/ws").finish();
    ([(header::CONTENT_SECURITY_POLICY, crate::hygiene::GRAPHIQL_CSP)], Html(page))
}

/// The address sign-ins and sign-ups are throttled by: the peer's, unless
/// the peer is a trusted reverse proxy. Then it is the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends
/// the address it received from, so everything left of that may be forged
/// by the client). A header that does not parse is ignored.
fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    let Some(peer) = peer else { return "local".to_owned() };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded: Option<Vec<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().ok())
        .collect::<Option<Vec<_>>>()
        .and_then(|values| values.iter().flat_map(|v| v.split(',')).map(|a| a.trim().parse().ok()).collect());
    forwarded
        .and_then(|chain| chain.iter().rev().find(|address| !trusted.contains(address)).copied())
        .unwrap_or(peer)
        .to_string()
}

/// A GraphQL-shaped error for requests that never reach the schema.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

async fn graphql(
    State(state): State<HttpState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let peer = connect.map(|Extension(ConnectInfo(address))| address.ip());
    let client = client_address(peer, &parts.headers, &state.app.settings.trusted_proxies);
    // Recorded on events for ever: only a short id of plain characters is
    // taken from the client; anything else is replaced.
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let caller = match state.app.caller(&parts.headers).await {
        Ok(caller) => caller,
        Err(error) => {
            tracing::error!(error = ?error, "cannot resolve caller");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
        }
    };
    let multipart = crate::upload::is_multipart(&parts.headers);
    if multipart && caller.viewer().is_err() {
        // Uploads are for signed-in users: refuse before reading a byte
        // (`hygiene` then closes the connection).
        return error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "authentication required");
    }
    let request = match crate::upload::read_request(&parts.headers, body, state.app.settings.max_upload_bytes).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let started = std::time::Instant::now();
    let held = std::sync::Arc::new(Held::default());
    let texts = std::sync::Arc::new(Texts::default());
    let key = crate::graphql::idempotency::sent(&parts.headers);
    let info = RequestInfo { caller, request_id, client, held: held.clone(), texts: texts.clone() };
    let deadline = state.app.settings.request_timeout;
    let Ok(mut response) = tokio::time::timeout(deadline, answer(&state, request, info, key)).await else {
        crate::metrics::record_request(started, true);
        tracing::warn!(timeout = ?deadline, "request abandoned at its deadline");
        return abandoned();
    };
    crate::metrics::record_request(started, response.is_err());
    crate::graphql::code_client_errors(&mut response);
    // An INTERNAL anywhere in the answer is the server's failure: 500, as
    // wherever else it arises.
    let status =
        if response.errors.iter().any(is_internal) { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    // Written out before the request's share of the budget for long
    // histories is given back.
    let written = (status, Json(texts.splice(&response))).into_response();
    drop(held);
    written
}

fn is_internal(error: &async_graphql::ServerError) -> bool {
    error.extensions.as_ref().and_then(|extensions| extensions.get("code"))
        == Some(&async_graphql::Value::from("INTERNAL"))
}

/// Prepares the request's document (measured against the shape limits
/// before anything walks it) and runs it, under its `Idempotency-Key`
/// when one was sent.
async fn answer(
    state: &HttpState,
    mut request: async_graphql::Request,
    info: RequestInfo,
    key: Option<Result<String, crate::graphql::idempotency::InvalidKey>>,
) -> async_graphql::Response {
    let prepared = match state.documents.prepare(&mut request).await {
        Ok(prepared) => prepared,
        Err(refused) => return async_graphql::Response::from_errors(vec![refused]),
    };
    let admin = info.caller.viewer().is_ok_and(|viewer| viewer.is_admin());
    if state.app.settings.introspection == Introspection::Admins && !admin {
        request = request.disable_introspection();
    }
    let (viewer, texts) = (info.caller.viewer().ok(), info.texts.clone());
    let (users, histories, attachments) = crate::graphql::loaders::for_request(&state.app.read);
    let request = request.data(info).data(users).data(histories).data(attachments);
    let schema = if matches!(prepared, Prepared::Known) { &state.schemas.known } else { &state.schemas.full };
    let response = crate::graphql::idempotency::execute(&state.app, schema, request, key, viewer, &texts).await;
    state.documents.answered(prepared, &response);
    response
}

/// The answer to a request that ran past its deadline: the server has
/// given up on it, so the client may try again later.
fn abandoned() -> Response {
    let refused = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "TOO_MANY_REQUESTS",
        "the request took too long and was abandoned; try again later",
    );
    ([(header::RETRY_AFTER, "1")], refused).into_response()
}

/// Subscriptions over WebSocket (graphql-transport-ws, or the older
/// graphql-ws), signed in by `connection_init`: see `graphql::subscription`.
async fn graphql_ws(
    State(state): State<HttpState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
) -> Response {
    // Each client opens so many a minute: a socket that never signs in
    // holds a place for seconds, and reconnecting must not hold them all.
    let peer = connect.map(|Extension(ConnectInfo(address))| address.ip());
    let client = client_address(peer, &headers, &state.app.settings.trusted_proxies);
    if state.app.limits.check_live(&client).is_err() {
        return error_response(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", "too many live connections");
    }
    let Ok(permit) = state.live.connections.clone().try_acquire_owned() else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_REQUESTS", "too many live connections");
    };
    let header = crate::auth::caller::bearer(&headers).map(str::to_owned);
    let executor = LiveExecutor::new(state.schemas.full.clone(), state.documents.clone());
    let (app, changes, mut closing) = (state.app.clone(), state.live.changes.clone(), state.live.closing.clone());
    let sockets = state.live.sockets.clone();
    upgrade.max_message_size(MAX_LIVE_MESSAGE).protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| async move {
        let (init_sent, init_seen) = tokio::sync::oneshot::channel();
        let signing_in = app.clone();
        let serve = GraphQLWebSocket::new(socket, executor, protocol)
            .on_connection_init(move |payload| {
                let token = subscription::token_in(&payload).or(header);
                let _ = init_sent.send(token.clone());
                subscription::connect(signing_in, changes, sockets, token)
            })
            .serve();
        tokio::select! {
            () = while_signed_in(serve, init_seen, &app) => {}
            _ = closing.wait_for(|closing| *closing) => {}
        }
        drop(permit);
    })
}

/// Serves a live connection while it is signed in: one that sends no
/// `connection_init` in time, or whose token expires or whose user may no
/// longer sign in (checked every `RECHECK`, with or without
/// subscriptions), is dropped, so it holds no place.
async fn while_signed_in(
    serve: impl std::future::Future<Output = ()>,
    init_seen: tokio::sync::oneshot::Receiver<Option<String>>,
    app: &AppState,
) {
    tokio::pin!(serve);
    let token = tokio::select! {
        () = &mut serve => return,
        sent = tokio::time::timeout(LIVE_INIT_WAIT, init_seen) => match sent {
            Ok(Ok(Some(token))) => token,
            // Refused by `connect`, which closes the socket saying why.
            Ok(Ok(None)) => return serve.await,
            _ => return,
        },
    };
    loop {
        tokio::select! {
            () = &mut serve => return,
            () = tokio::time::sleep(subscription::RECHECK) => {
                if subscription::signed_in(app, &token).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let (store, lag) = tokio::time::timeout(READY_CHECK_TIMEOUT, store_and_lag(&state)).await.unwrap_or((false, None));
    let ready = store && lag.is_some_and(|lag| lag <= MAX_READY_LAG);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready, "store": store, "projector_lag": lag }))).into_response()
}

/// Whether the store answers, and then how far the projector is behind.
async fn store_and_lag(state: &HttpState) -> (bool, Option<i64>) {
    if state.app.read.db().ping().await.is_err() {
        return (false, None);
    }
    (true, state.app.read.lag().await.ok())
}

/// A built server: bound, projector running, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: HttpState,
    stop: watch::Sender<bool>,
    closing: watch::Sender<bool>,
    projector: tokio::task::JoinHandle<()>,
}

/// Connects the store, loads secrets, starts the projector: everything but
/// the listener, for the CLI commands as well as the server.
///
/// # Errors
/// When the store or the secrets cannot be loaded.
pub async fn assemble(settings: Settings) -> anyhow::Result<(AppState, Projector)> {
    let secrets = secrets::load(&settings)?;
    let db = Db::connect(&settings.database_url).await?;
    let write = WriteSide::new(db.clone());
    let keys = KeyRing::new(db.clone(), secrets.master_keys);
    let projector = Projector::new(db.clone(), keys.clone(), write.appended());
    let read = ReadModels::new(write.statements().clone(), projector.progress()).with_projected(projector.projected());
    let blobs = Blobs::open(Some(&settings.blob_store), &settings.data_dir, &settings.blob_options)?;
    let app = Arc::new(App {
        settings,
        write,
        read,
        keys,
        jwt: secrets.jwt,
        hasher: PasswordHasher::new(),
        sessions: Sessions::new(db),
        blobs,
        limits: RateLimits::default(),
        budget: crate::graphql::admission::Budget::default(),
    });
    Ok((app, projector))
}

impl Application {
    /// # Errors
    /// When the store, the secrets or the listener fail, or bootstrap fails.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listen = settings.listen;
        let (app, projector) = assemble(settings).await?;
        let (stop, stopped) = watch::channel(false);
        let changes = Changes::follow(app.read.clone(), projector.progress(), stopped.clone());
        let projector = tokio::spawn(projector.run(stopped.clone()));
        tokio::spawn(collect_blob_garbage(app.clone(), stopped));
        app.read_models_whole().await.map_err(|e| anyhow::anyhow!("{}", e.describe()))?;
        if let (Some(email), Some(password)) = (&app.settings.admin_email, &app.settings.admin_password) {
            let password: SecretString = password.clone();
            app.bootstrap_admin(email, password)
                .await
                .map_err(|e| anyhow::anyhow!("bootstrap admin failed: {}", e.describe()))?;
            tracing::info!(email = %email, "bootstrap admin ensured");
        }
        let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        crate::metrics::handle();
        let schemas = Arc::new(Schemas::new(&app));
        let (closing, closing_seen) = watch::channel(false);
        let live = LiveHub {
            changes,
            connections: Arc::new(Semaphore::new(MAX_LIVE_CONNECTIONS)),
            sockets: UserSockets::default(),
            closing: closing_seen,
        };
        let state = HttpState { app, schemas, documents: Arc::default(), live };
        Ok(Self { listener, state, stop, closing, projector })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn state(&self) -> &HttpState {
        &self.state
    }

    /// Serves until SIGINT or SIGTERM, then drains and stops the projector.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes; for tests.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tracing::info!(address = %self.listener.local_addr()?, "listening");
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let closing = self.closing;
        let serve = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            signal.await;
            let _ = closing.send(true);
            let _ = drained_tx.send(());
        });
        let served = tokio::select! {
            result = serve => result.map_err(anyhow::Error::from),
            () = async {
                let _ = drained_rx.await;
                tokio::time::sleep(DRAIN).await;
            } => {
                tracing::warn!("drain timeout; closing remaining connections");
                Ok(())
            }
        };
        let _ = self.stop.send(true);
        let _ = self.projector.await;
        self.state.app.read.close().await;
        served
    }
}

/// Housekeeping: removes blobs left by uploads whose event never got
/// appended, once older than any upload still in flight could be, trims
/// the rate limiters and forgets expired idempotency keys.
async fn collect_blob_garbage(app: AppState, mut stop: watch::Receiver<bool>) {
    const EVERY: Duration = Duration::from_secs(600);
    const GRACE: Duration = Duration::from_secs(3600);
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        app.limits.forget_idle();
        app.forget_idempotency_keys().await;
        if let Err(error) = app.blobs.collect_garbage(&app.read, GRACE).await {
            tracing::warn!(error = format!("{error:#}"), "blob clean-up failed");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("stop signal received; draining");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().expect("a header value"));
        }
        headers
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        let cases: &[(&str, &[&str], &[IpAddr], &str)] = &[
            ("no proxy trusted: the header is anyone's", &["203.0.113.7"], &[], "192.0.2.1"),
            ("an untrusted peer's header is ignored", &["203.0.113.7"], &proxies, "192.0.2.1"),
            ("a trusted proxy names its client", &["203.0.113.7"], &[ip("192.0.2.1")], "203.0.113.7"),
            (
                "a forged entry left of the proxy's is skipped",
                &["198.51.100.9, 203.0.113.7"],
                &[ip("192.0.2.1")],
                "203.0.113.7",
            ),
            (
                "chained trusted proxies are walked past",
                &["203.0.113.7, 10.0.0.2", "10.0.0.1"],
                &[ip("192.0.2.1"), ip("10.0.0.1"), ip("10.0.0.2")],
                "203.0.113.7",
            ),
            ("a trusted proxy without the header is the client", &[], &[ip("192.0.2.1")], "192.0.2.1"),
            (
                "a header that does not parse is ignored",
                &["203.0.113.7, not-an-address"],
                &[ip("192.0.2.1")],
                "192.0.2.1",
            ),
            ("IPv6 clients", &["2001:db8::7"], &[ip("192.0.2.1")], "2001:db8::7"),
        ];
        for (case, header, trusted, expected) in cases {
            assert_eq!(client_address(Some(ip("192.0.2.1")), &forwarded(header), trusted), *expected, "{case}");
        }
        assert_eq!(client_address(None, &forwarded(&["203.0.113.7"]), &proxies), "local");
    }
}
