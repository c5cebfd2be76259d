//! Live changes on `/graphql/ws` (DESIGN §5): `ticketChanged` tells a
//! signed-in client that a ticket it may see has changed, once the read
//! models show the change, so a `ticket(id)` query sent then answers with
//! it. The socket serves subscriptions only: queries and mutations go to
//! `POST /graphql`, whose per-request parts (the JSON spliced into the
//! answer, the budget for long histories, the loaders' caches) must not
//! live as long as a connection does.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::{Context, Data, Executor, Request, Response, ServerError, SimpleObject, Subscription, ID};
use domain::values::TicketId;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use projections::feed::{Changes, TicketChanged};
use tokio::sync::broadcast;

use super::limits::Documents;
use super::TicketsSchema;
use crate::auth::caller::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Subscriptions one connection may hold at once.
const MAX_SUBSCRIPTIONS: usize = 16;
/// Connections one user may hold at once (tabs, devices).
const MAX_USER_SOCKETS: usize = 16;
/// How often a connection checks that its token has not expired and that
/// its user may still sign in (each change told is checked as well).
pub const RECHECK: Duration = Duration::from_secs(30);

pub struct Subscription;

/// A change to a ticket: read it with `ticket(id)` to see what changed.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct TicketChange {
    /// The ticket that changed.
    pub id: ID,
    /// Its version after the change: `ticket(id)` now answers with this
    /// version or a later one. Changes projected together are told once,
    /// with the newest.
    pub version: i32,
    /// Whether the ticket is deleted (then `ticket(id)` answers `null`,
    /// except to admins).
    pub deleted: bool,
}

#[Subscription]
impl Subscription {
    /// Each change to a ticket the caller may see (an employee their own,
    /// an admin every one) once the read models show it; with `id`, that
    /// ticket's only (`NOT_FOUND` if the caller may not see it). It ends
    /// with `UNAUTHENTICATED` at its next change once the connection's
    /// token has expired or its user may no longer sign in (the connection
    /// itself closes within 30 s), and with `CONFLICT` when it fell so far
    /// behind that changes were missed: read again, then subscribe again.
    async fn ticket_changed(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<TicketChange>>> {
        Ok(follow(ctx, id).await?.map(|told| told.map_err(Into::into)).boxed())
    }
}

async fn follow(ctx: &Context<'_>, id: Option<ID>) -> ApiResult<impl Stream<Item = ApiResult<TicketChange>> + 'static> {
    let live = ctx.data::<Live>().map_err(|_| ApiError::BadInput("subscriptions are served on /graphql/ws".into()))?;
    // Its place first: a flood of subscribe messages is refused before it
    // asks anything of the store.
    let slot = Slot::take(&live.open)?;
    // Listening before looking, so no change falls in between.
    let changes = live.changes.subscribe();
    let viewer = live.viewer().await?;
    let only = match id {
        Some(id) => {
            let id = TicketId::parse(&id)?;
            live.app.visible_ticket(viewer, &id.to_string()).await?.ok_or(ApiError::NotFound("ticket"))?;
            Some(id.as_uuid())
        }
        None => None,
    };
    let follower = Follower { live: live.clone(), _slot: slot, changes, only, ended: false };
    Ok(stream::unfold(follower, Follower::next))
}

/// One socket's connection, as `connection_init` signed it in.
#[derive(Clone)]
pub struct Live {
    app: AppState,
    changes: Changes,
    token: String,
    /// Subscriptions open on this connection.
    open: Arc<AtomicUsize>,
    _socket: Arc<UserSocket>,
}

impl Live {
    async fn viewer(&self) -> ApiResult<Viewer> {
        signed_in(&self.app, &self.token).await
    }
}

/// Who `token` signs in now.
///
/// # Errors
/// `UNAUTHENTICATED` once the token has expired or its user may no longer
/// sign in; store failures.
pub async fn signed_in(app: &AppState, token: &str) -> ApiResult<Viewer> {
    app.caller_with(Some(token)).await?.viewer()
}

/// Signs a connection in with `token` (see [`token_in`]); refuses it
/// without a valid one.
///
/// # Errors
/// Without a token, or with one that is invalid, expired, or whose user
/// may not sign in; when the store fails.
pub async fn connect(
    app: AppState,
    changes: Changes,
    sockets: UserSockets,
    token: Option<String>,
) -> async_graphql::Result<Data> {
    let refused = |error: ApiError| {
        let code = error.code();
        let told = async_graphql::Error::from(error);
        async_graphql::Error::new(format!("{code}: {}", told.message))
    };
    let caller = app.caller_with(token.as_deref()).await.map_err(refused)?;
    let viewer = caller.viewer().map_err(refused)?;
    let socket = Arc::new(sockets.take(viewer.id).map_err(refused)?);
    let mut data = Data::default();
    data.insert(Live { app, changes, token: token.unwrap_or_default(), open: Arc::default(), _socket: socket });
    Ok(data)
}

/// How many connections each user holds, across one server.
#[derive(Debug, Clone, Default)]
pub struct UserSockets(Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, usize>>>);

/// One of a user's [`MAX_USER_SOCKETS`], given back when its connection ends.
pub struct UserSocket {
    sockets: UserSockets,
    user: uuid::Uuid,
}

impl UserSockets {
    fn take(&self, user: uuid::Uuid) -> ApiResult<UserSocket> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(user).or_default();
        if *count >= MAX_USER_SOCKETS {
            return Err(ApiError::TooManyRequests);
        }
        *count += 1;
        Ok(UserSocket { sockets: self.clone(), user })
    }
}

impl Drop for UserSocket {
    fn drop(&mut self) {
        let mut held = self.sockets.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

/// The access token of a `connection_init` payload
/// (`{"authorization": "Bearer …"}`, the key in any case).
pub fn token_in(payload: &serde_json::Value) -> Option<String> {
    let (_, value) = payload.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?;
    let (scheme, token) = value.as_str()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// A place among a connection's [`MAX_SUBSCRIPTIONS`], given back when
/// its subscription ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> ApiResult<Self> {
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_SUBSCRIPTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::TooManyRequests);
        }
        Ok(Self(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One subscription's state between the changes it tells.
struct Follower {
    live: Live,
    _slot: Slot,
    changes: broadcast::Receiver<TicketChanged>,
    only: Option<uuid::Uuid>,
    ended: bool,
}

type Next = Option<(ApiResult<TicketChange>, Follower)>;

impl Follower {
    async fn next(mut self) -> Next {
        if self.ended {
            return None;
        }
        loop {
            let change = match self.changes.recv().await {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // How many were missed would tell of others' tickets.
                    let message = "changes were missed: read again, then subscribe again";
                    return self.end(ApiError::Conflict(message.into()));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if self.only.is_some_and(|only| only != change.id) {
                continue;
            }
            // Who may see what is decided afresh for every change: a
            // demotion or a disabled account takes effect at once.
            let viewer = match self.live.viewer().await {
                Ok(viewer) => viewer,
                Err(error) => return self.end(error),
            };
            if !(viewer.is_admin() || change.reporter == viewer.id) {
                continue;
            }
            let told = TicketChange {
                id: ID(change.id.to_string()),
                version: i32::try_from(change.version).unwrap_or(i32::MAX),
                deleted: change.deleted,
            };
            return Some((Ok(told), self));
        }
    }

    fn end(mut self, error: ApiError) -> Next {
        self.ended = true;
        Some((Err(error), self))
    }
}

/// The schema as `/graphql/ws` runs it: subscriptions only, within the
/// shape limits `POST /graphql` applies (measured the same way, on the
/// same bounded pool), errors coded alike.
#[derive(Clone)]
pub struct LiveExecutor {
    schema: TicketsSchema,
    documents: Arc<Documents>,
}

impl LiveExecutor {
    pub fn new(schema: TicketsSchema, documents: Arc<Documents>) -> Self {
        Self { schema, documents }
    }
}

impl Executor for LiveExecutor {
    fn execute(&self, _request: Request) -> impl Future<Output = Response> + Send {
        std::future::ready(coded(Response::from_errors(vec![queries_elsewhere()])))
    }

    fn execute_stream(&self, mut request: Request, session: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let (schema, documents) = (self.schema.clone(), self.documents.clone());
        let started = async move {
            let checked = documents.parse(&mut request).await.and_then(|()| subscriptions_only(&mut request));
            match checked {
                Ok(()) => {
                    schema.execute_stream_with_session_data(request, session.unwrap_or_default()).map(coded).boxed()
                }
                Err(error) => stream::once(std::future::ready(coded(Response::from_errors(vec![error])))).boxed(),
            }
        };
        stream::once(started).flatten().boxed()
    }
}

fn queries_elsewhere() -> ServerError {
    ServerError::new("only subscriptions are served here; send queries and mutations to POST /graphql", None)
}

fn subscriptions_only(request: &mut Request) -> Result<(), ServerError> {
    let document = request.parsed_query()?;
    if document.operations.iter().all(|(_, operation)| operation.node.ty == OperationType::Subscription) {
        Ok(())
    } else {
        Err(queries_elsewhere())
    }
}

fn coded(mut response: Response) -> Response {
    super::code_client_errors(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_token_comes_from_an_authorization_key_in_any_case() {
        assert_eq!(token_in(&json!({"Authorization": "Bearer abc"})).as_deref(), Some("abc"));
        assert_eq!(token_in(&json!({"authorization": "bearer  abc "})).as_deref(), Some("abc"));
        assert_eq!(token_in(&json!({"authorization": "Basic abc"})), None);
        assert_eq!(token_in(&json!({"token": "abc"})), None);
        assert_eq!(token_in(&json!(null)), None);
    }

    #[test]
    fn a_user_holds_a_bounded_number_of_connections() {
        let sockets = UserSockets::default();
        let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let held: Vec<UserSocket> = (0..MAX_USER_SOCKETS).map(|_| sockets.take(alice).unwrap()).collect();
        assert!(matches!(sockets.take(alice), Err(ApiError::TooManyRequests)));
        let bobs = sockets.take(bob).expect("another user is not limited by Alice's");
        drop(held);
        drop(bobs);
        assert!(sockets.0.lock().unwrap().is_empty(), "nothing is kept for users without connections");
        assert!(sockets.take(alice).is_ok());
    }

    #[test]
    fn a_connection_holds_a_bounded_number_of_subscriptions() {
        let open = Arc::default();
        let held: Vec<Slot> = (0..MAX_SUBSCRIPTIONS).map(|_| Slot::take(&open).unwrap()).collect();
        assert!(matches!(Slot::take(&open), Err(ApiError::TooManyRequests)));
        drop(held);
        assert_eq!(open.load(Ordering::Acquire), 0);
        assert!(Slot::take(&open).is_ok());
    }
}
