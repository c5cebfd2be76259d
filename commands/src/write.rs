//! The write side: commands go through cqrs-es to the event store.
//!
//! A command that loses an optimistic-concurrency race is re-decided on
//! fresh state a bounded number of times. If the client named an expected
//! version, the fresh decision turns into the aggregate's own version
//! conflict; otherwise the update simply lands on top of the winner's.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use domain::account::{Account, AccountCommand};
use domain::ticket::{Ticket, TicketCommand};
use domain::values::{Role, TicketId, UserId};
use lru::LruCache;
use thiserror::Error;
use tokio::sync::Notify;

use crate::cipher::WrappedKey;
use crate::db::Db;
use crate::event_repo::EventRepo;
use crate::idempotency::{self, KeyTaken, Recorded};
use crate::keys::NewKeys;
use crate::statements::Statements;

/// Aggregates are snapshotted with every command but the one that opens
/// the stream, in the statement that appends its events: loading one is
/// then one snapshot row (or a new stream's first events), whatever the
/// length of its history. (At every 50 events a load read 25 events on
/// average, and decoding them was the costliest part of a PostgreSQL
/// update: 0.13 ms and ~55 buffer reads per load.)
/// Must stay 1: `EventRepo::append` stamps the snapshot with the sequence
/// of the last event it appends, which is right only when the snapshot
/// covers them all.
const SNAPSHOT_EVERY: usize = 1;
/// How many times a command is re-decided after losing a race. Under
/// sustained contention a retry loses about as often as the first try
/// (~45% with four writers on one ticket), so backoff alone does not help;
/// at 8 about one command in 300 that met a race still failed.
const MAX_ATTEMPTS: u32 = 16;
/// How many streams' latest state a write side remembers, per aggregate
/// type (a ticket's is about 200 bytes with its key).
const RECENT_STREAMS: usize = 4096;

type Store<A> = PersistedEventStore<EventRepo, A>;

/// Who asked for a change and in which request; recorded on every event.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<UserId>,
    pub role: Option<Role>,
    pub request_id: String,
}

impl Actor {
    /// The server itself, e.g. bootstrap and the CLI.
    pub fn system(request_id: impl Into<String>) -> Self {
        Self { user_id: None, role: None, request_id: request_id.into() }
    }

    /// What every event this actor appends at `at` records about it.
    pub fn metadata(&self, at: DateTime<Utc>) -> HashMap<String, String> {
        let mut metadata = HashMap::from([
            ("at".to_owned(), at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            ("request_id".to_owned(), self.request_id.clone()),
        ]);
        if let Some(user) = self.user_id {
            metadata.insert("actor_id".to_owned(), user.to_string());
        }
        if let Some(role) = self.role {
            metadata.insert("actor_role".to_owned(), role.as_str().to_owned());
        }
        metadata
    }
}

/// What a command left in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Landed<E> {
    /// The stream's version afterwards.
    pub version: u64,
    /// The events this command appended, in order (none for a no-op).
    pub events: Vec<E>,
    /// The time recorded on those events (the projector stamps rows with it).
    pub at: DateTime<Utc>,
}

impl<E> Landed<E> {
    /// How many events this command appended.
    pub fn appended(&self) -> u64 {
        self.events.len() as u64
    }
}

/// Why a command did not land.
#[derive(Debug, Error)]
pub enum WriteError<E: std::error::Error> {
    /// The aggregate refused: a business rule.
    #[error(transparent)]
    Rejected(E),
    /// Still losing races after every retry.
    #[error("too many concurrent changes")]
    Contended,
    /// The request's `Idempotency-Key` was taken over by a retry (or
    /// already covers another change): nothing was appended.
    #[error(transparent)]
    KeyTaken(KeyTaken),
    #[error("event store failure: {0}")]
    Store(String),
}

fn snapshot_store<A: Aggregate>(statements: &Statements, new_keys: &Arc<NewKeys>) -> PersistedEventStore<EventRepo, A> {
    PersistedEventStore::new_snapshot_store(EventRepo::new(statements, new_keys.clone()), SNAPSHOT_EVERY)
}

/// A stream with nothing in it yet.
fn empty_context<A: Aggregate>(id: &str) -> EventStoreAggregateContext<A> {
    EventStoreAggregateContext {
        aggregate_id: id.to_owned(),
        aggregate: A::default(),
        current_sequence: 0,
        current_snapshot: None,
    }
}

fn store_error<E: std::error::Error>(error: AggregateError<E>) -> WriteError<E> {
    match error {
        AggregateError::UserError(error) => WriteError::Rejected(error),
        AggregateError::AggregateConflict => WriteError::Contended,
        AggregateError::UnexpectedError(error) if error.is::<KeyTaken>() => WriteError::KeyTaken(KeyTaken),
        other => WriteError::Store(other.to_string()),
    }
}

/// The state in which this process's last command left each recently
/// changed stream, so the next command on it decides without reading the
/// store. Its append proves that state current: the next sequence number
/// is free only if nobody (another replica, the CLI) has written since.
/// A decision that appends nothing or refuses proves nothing, so it is
/// taken again on the stored state.
struct Recent<A>(Mutex<LruCache<String, Known<A>>>);

#[derive(Clone)]
struct Known<A> {
    aggregate: A,
    sequence: usize,
    snapshot: Option<usize>,
}

impl<A: Aggregate + Clone> Recent<A> {
    fn new() -> Self {
        Self(Mutex::new(LruCache::new(NonZeroUsize::new(RECENT_STREAMS).unwrap_or(NonZeroUsize::MIN))))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<String, Known<A>>> {
        // A panic while holding the lock cannot leave an entry half-written.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn context(&self, id: &str) -> Option<EventStoreAggregateContext<A>> {
        let known = self.entries().get(id).cloned()?;
        Some(EventStoreAggregateContext {
            aggregate_id: id.to_owned(),
            aggregate: known.aggregate,
            current_sequence: known.sequence,
            current_snapshot: known.snapshot,
        })
    }

    fn remember(&self, id: &str, known: Known<A>) {
        self.entries().put(id.to_owned(), known);
    }

    fn forget(&self, id: &str) {
        self.entries().pop(id);
    }
}

pub struct WriteSide {
    db: Db,
    repo: EventRepo,
    tickets: Store<Ticket>,
    accounts: Store<Account>,
    recent_tickets: Recent<Ticket>,
    recent_accounts: Recent<Account>,
    statements: Statements,
    appended: Arc<Notify>,
    new_keys: Arc<NewKeys>,
}

/// Forgets a new ticket's key once its command has run (or was dropped).
struct Forget<'a>(&'a NewKeys, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

impl WriteSide {
    pub fn new(db: Db) -> Self {
        let new_keys = Arc::new(NewKeys::default());
        let statements = Statements::on(&db);
        Self {
            tickets: snapshot_store(&statements, &new_keys),
            accounts: snapshot_store(&statements, &new_keys),
            repo: EventRepo::new(&statements, new_keys.clone()),
            recent_tickets: Recent::new(),
            recent_accounts: Recent::new(),
            db,
            statements,
            appended: Arc::new(Notify::new()),
            new_keys,
        }
    }

    /// The connections loads and appends run on, for the read models to
    /// share (they close them).
    pub fn statements(&self) -> &Statements {
        &self.statements
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Woken after every append, so an in-process projector reacts at once.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Runs a ticket command; returns the ticket's version afterwards.
    ///
    /// # Errors
    /// The aggregate's refusal, persistent contention or a store failure.
    pub async fn ticket(
        &self,
        id: TicketId,
        command: TicketCommand,
        actor: &Actor,
    ) -> Result<u64, WriteError<domain::ticket::TicketError>> {
        Ok(self.ticket_landed(id, command, actor).await?.version)
    }

    /// Runs a ticket command; says what it appended and when.
    ///
    /// # Errors
    /// The aggregate's refusal, persistent contention or a store failure.
    pub async fn ticket_landed(
        &self,
        id: TicketId,
        command: TicketCommand,
        actor: &Actor,
    ) -> Result<Landed<domain::ticket::TicketEvent>, WriteError<domain::ticket::TicketError>> {
        let new_stream = matches!(command, TicketCommand::Open { .. });
        self.execute((&self.tickets, &self.recent_tickets), &id.to_string(), command, new_stream, actor).await
    }

    /// Opens a ticket: its data key (from `KeyRing::mint`) is stored by the
    /// same statement or transaction that appends the first events, so the
    /// key exists exactly when they do and a create is one durable commit.
    ///
    /// # Errors
    /// As [`WriteSide::ticket_landed`].
    pub async fn open_ticket(
        &self,
        id: TicketId,
        key: WrappedKey,
        command: TicketCommand,
        actor: &Actor,
    ) -> Result<Landed<domain::ticket::TicketEvent>, WriteError<domain::ticket::TicketError>> {
        let stream = id.to_string();
        self.new_keys.put(&stream, id.as_uuid(), key);
        let _forget = Forget(&self.new_keys, &stream);
        self.execute((&self.tickets, &self.recent_tickets), &stream, command, true, actor).await
    }

    /// Runs an account command; returns the account's version afterwards.
    ///
    /// # Errors
    /// The aggregate's refusal, persistent contention or a store failure.
    pub async fn account(
        &self,
        id: UserId,
        command: AccountCommand,
        actor: &Actor,
    ) -> Result<u64, WriteError<domain::account::AccountError>> {
        let new_stream = matches!(command, AccountCommand::Register { .. });
        Ok(self
            .execute((&self.accounts, &self.recent_accounts), &id.to_string(), command, new_stream, actor)
            .await?
            .version)
    }

    /// An account as its events say, for decisions that must not depend on
    /// the read models (which lag, and are empty during a rebuild).
    ///
    /// # Errors
    /// When the store fails or the stream cannot be read.
    pub async fn account_state(&self, id: UserId) -> Result<Account, AggregateError<domain::account::AccountError>> {
        Ok(self.load::<Account>(&id.to_string()).await?.aggregate)
    }

    /// The aggregate from its snapshot and the events after it, read in one
    /// statement. A snapshot of an older shape of the aggregate is ignored
    /// (and overwritten at the next snapshot) and the stream replayed.
    async fn load<A: Aggregate>(&self, id: &str) -> Result<EventStoreAggregateContext<A>, AggregateError<A::Error>> {
        let stored = self.repo.load_stream::<A>(id).await?;
        let mut context = empty_context::<A>(id);
        let mut events = stored.events;
        if let Some(snapshot) = stored.snapshot {
            context.current_snapshot = Some(snapshot.current_snapshot);
            match serde_json::from_value(snapshot.aggregate) {
                Ok(aggregate) => {
                    context.aggregate = aggregate;
                    context.current_sequence = snapshot.current_sequence;
                }
                Err(_) => events = self.repo.get_events::<A>(id).await?,
            }
        }
        for event in events {
            let envelope = EventEnvelope::<A>::try_from(event)?;
            context.current_sequence = envelope.sequence;
            context.aggregate.apply(envelope.payload);
        }
        Ok(context)
    }

    /// What an earlier run of this request appended (see
    /// [`idempotency::replaying`]), as if it had just been appended.
    async fn replayed<A: Aggregate>(&self, recorded: &Recorded) -> Result<Landed<A::Event>, WriteError<A::Error>> {
        let from = usize::try_from(recorded.version.saturating_sub(recorded.appended)).unwrap_or(usize::MAX);
        let stored =
            self.repo.get_last_events::<A>(&recorded.aggregate_id, from).await.map_err(|e| store_error(e.into()))?;
        let mut at = None;
        let mut events = Vec::new();
        for event in stored.into_iter().filter(|event| event.sequence as u64 <= recorded.version) {
            at = event
                .metadata
                .get("at")
                .and_then(|at| at.as_str())
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok());
            events.push(EventEnvelope::<A>::try_from(event).map_err(|e| store_error(e.into()))?.payload);
        }
        let at = at.map_or_else(|| Utc::now().trunc_subsecs(6), |at| at.with_timezone(&Utc));
        Ok(Landed { version: recorded.version, events, at })
    }

    /// Load, decide, append: cqrs-es's `CqrsFramework::execute` without
    /// its in-process queries, and returning the stream's new sequence.
    ///
    /// The aggregate decides on a copy: `EventSink::write` applies events to
    /// the aggregate it is given, and `commit` applies them again to the
    /// context's aggregate before snapshotting it, so deciding on the
    /// context's own aggregate would snapshot every new event twice. The
    /// copy is then the stream's state after the command, remembered in
    /// `recent` for the next command.
    ///
    /// A `new_stream` command (a ticket id just drawn at random, or the id
    /// of an account that is being registered) is first decided
    /// on the empty aggregate without reading the store; if the id was
    /// taken after all, the append conflicts and the next attempt loads.
    async fn execute<A>(
        &self,
        (store, recent): (&Store<A>, &Recent<A>),
        id: &str,
        command: A::Command,
        new_stream: bool,
        actor: &Actor,
    ) -> Result<Landed<A::Event>, WriteError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        if let Some(recorded) = idempotency::replaying().filter(|recorded| recorded.aggregate_type == A::TYPE) {
            return self.replayed::<A>(&recorded).await;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let guessing = new_stream && attempt == 1;
            let remembered = if attempt == 1 && !new_stream { recent.context(id) } else { None };
            let recalled = remembered.is_some();
            let context = match remembered {
                Some(context) => context,
                None if guessing => empty_context::<A>(id),
                None => self.load::<A>(id).await.map_err(store_error)?,
            };
            let before = context.current_sequence;
            let snapshot = context.current_snapshot;
            let sink = EventSink::default();
            let mut deciding = context.aggregate.clone();
            let decided = deciding.handle(command.clone(), &(), &sink).await;
            let events = sink.collect().await;
            if recalled && (decided.is_err() || events.is_empty()) {
                recent.forget(id);
                continue;
            }
            decided.map_err(WriteError::Rejected)?;
            let at = Utc::now().trunc_subsecs(6);
            if events.is_empty() {
                return Ok(Landed { version: before as u64, events, at });
            }
            match store.commit(events, context, actor.metadata(at)).await {
                Ok(committed) => {
                    self.appended.notify_one();
                    let events: Vec<A::Event> = committed.into_iter().map(|envelope| envelope.payload).collect();
                    let sequence = before + events.len();
                    let snapshot = Some(snapshot.map_or(1, |n| n + 1));
                    recent.remember(id, Known { aggregate: deciding, sequence, snapshot });
                    return Ok(Landed { version: sequence as u64, events, at });
                }
                Err(AggregateError::AggregateConflict) if guessing || recalled => recent.forget(id),
                Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => {
                    let backoff = 2u64.pow(attempt.min(6)) + rand::random::<u64>() % 5;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                Err(AggregateError::AggregateConflict) => return Err(WriteError::Contended),
                Err(other) => {
                    recent.forget(id);
                    return Err(store_error(other));
                }
            }
        }
    }
}
