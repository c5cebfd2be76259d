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

use super::TicketsSchema;
use crate::auth::caller::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Subscriptions one connection may hold at once.
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// How often a quiet subscription checks that its token has not expired
/// and that its user may still sign in.
const RECHECK: Duration = Duration::from_secs(30);

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
    /// with `UNAUTHENTICATED` once the connection's token has expired or
    /// its user may no longer sign in (checked with each change, and every
    /// 30 s), and with `CONFLICT` when it fell so far behind that changes
    /// were missed: read again, then subscribe again.
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
    let follower = Follower { live: live.clone(), _slot: Slot::take(&live.open)?, changes, only, ended: false };
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
}

impl Live {
    async fn viewer(&self) -> ApiResult<Viewer> {
        self.app.caller_with(Some(&self.token)).await?.viewer()
    }
}

/// Signs a connection in with the access token of its `connection_init`
/// payload (`{"authorization": "Bearer …"}`, the key in any case) or else
/// of the upgrade request's `Authorization` header; refuses it without a
/// valid one.
///
/// # Errors
/// Without a token, or with one that is invalid, expired, or whose user
/// may not sign in; when the store fails.
pub async fn connect(
    app: AppState,
    changes: Changes,
    payload: serde_json::Value,
    header: Option<String>,
) -> async_graphql::Result<Data> {
    let token = token_in(&payload).or(header);
    let refused = |error: ApiError| {
        let code = error.code();
        let told = async_graphql::Error::from(error);
        async_graphql::Error::new(format!("{code}: {}", told.message))
    };
    let caller = app.caller_with(token.as_deref()).await.map_err(refused)?;
    caller.viewer().map_err(refused)?;
    let mut data = Data::default();
    data.insert(Live { app, changes, token: token.unwrap_or_default(), open: Arc::default() });
    Ok(data)
}

fn token_in(payload: &serde_json::Value) -> Option<String> {
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
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = tokio::time::sleep(RECHECK) => match self.live.viewer().await {
                    Ok(_) => continue,
                    Err(error) => return self.end(error),
                },
            };
            let change = match received {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let message = format!("{missed} changes were missed: read again, then subscribe again");
                    return self.end(ApiError::Conflict(message));
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
            let row = match self.live.app.read.ticket(change.id).await {
                Ok(row) => row,
                Err(error) => return self.end(error.into()),
            };
            let Some(row) = row.filter(|row| viewer.is_admin() || row.reporter_id == viewer.id) else { continue };
            let told = TicketChange {
                id: ID(change.id.to_string()),
                version: i32::try_from(change.version).unwrap_or(i32::MAX),
                deleted: row.deleted_at.is_some(),
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
/// shape limits `POST /graphql` applies, errors coded alike.
#[derive(Clone)]
pub struct LiveExecutor(pub TicketsSchema);

impl Executor for LiveExecutor {
    fn execute(&self, _request: Request) -> impl Future<Output = Response> + Send {
        std::future::ready(coded(Response::from_errors(vec![queries_elsewhere()])))
    }

    fn execute_stream(&self, mut request: Request, session: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        match subscriptions_only(&mut request) {
            Ok(()) => self.0.execute_stream_with_session_data(request, session.unwrap_or_default()).map(coded).boxed(),
            Err(error) => stream::once(std::future::ready(coded(Response::from_errors(vec![error])))).boxed(),
        }
    }
}

fn queries_elsewhere() -> ServerError {
    ServerError::new("only subscriptions are served here; send queries and mutations to POST /graphql", None)
}

fn subscriptions_only(request: &mut Request) -> Result<(), ServerError> {
    super::limits::check(request)?;
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
    fn a_connection_holds_a_bounded_number_of_subscriptions() {
        let open = Arc::default();
        let held: Vec<Slot> = (0..MAX_SUBSCRIPTIONS).map(|_| Slot::take(&open).unwrap()).collect();
        assert!(matches!(Slot::take(&open), Err(ApiError::TooManyRequests)));
        drop(held);
        assert_eq!(open.load(Ordering::Acquire), 0);
        assert!(Slot::take(&open).is_ok());
    }
}
